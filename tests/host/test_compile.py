"""torch.compile with our caches (issue 11, part 2), through ComfyUI's own TorchCompileModel node.

The setup of the issue, as written: the tiny Flux (hidden 128, 2 double + 4 single blocks) ->
TeaCache Patch (threshold 10) -> TorchCompileModel (backend eager: Dynamo's graph capture without a
code generator, so it runs on any CPU) -> KSampler euler/simple, 6 steps, cfg 1, queued 4 times with
identical inputs. Graphs are counted with ``torch._dynamo``'s counters. Before the fix each
identical run added 5-6 graphs until Dynamo's recompile limit left the model uncompiled; the
compiled model alone adds none.
"""
from __future__ import annotations

import pytest
import torch

import issue_models as im
import tiny_models as tm
from helpers import l2c, save_schedule, schedule_folder, summary, teacache

RUN = dict(steps=6, cfg=1.0, sampler="euler", scheduler="simple", seed=42)
QUEUED = 4


@pytest.fixture(scope="module")
def flux(comfy):
    return im.flux_2x4()


def compiled(model, backend="eager"):
    """ComfyUI's TorchCompileModel node (its 0.29.0 version also filters guards on
    transformer_options) with the eager backend."""
    from comfy_extras.nodes_torch_compile import TorchCompileModel
    return TorchCompileModel.execute(model, backend).args[0]


def graphs() -> int:
    from torch._dynamo.utils import counters
    return counters["stats"]["unique_graphs"]


COUNTING = "dit_cache_counting"
_PROBES: dict = {}  # id of each block's output-projection weight -> block index, while a test counts
_RUNS: list = []     # per compiled-graph call: the blocks whose weights it consumed


def _counting_backend(gm, example_inputs):
    """Dynamo's eager execution of the captured graph, noting which blocks' weights each call
    consumes (they are graph inputs: Dynamo lifts module parameters)."""
    def run(*args):
        if _PROBES:
            _RUNS.append({_PROBES[id(a)] for a in args if id(a) in _PROBES})
        return gm.forward(*args)
    return run


def _register_counting_backend():
    from torch._dynamo.backends.registry import list_backends, register_backend
    if COUNTING not in list_backends(exclude_tags=()):
        register_backend(compiler_fn=_counting_backend, name=COUNTING)


@pytest.fixture
def dynamo():
    """Each test starts with no compiled code and zeroed counters."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()
    counters.clear()


def _queue(tiny, model, n=QUEUED, **kw):
    outs, counts = [], []
    for _ in range(n):
        outs.append(tm.sample(tiny, model=model, **dict(RUN, **kw)))
        counts.append(graphs())
    return outs, counts


def test_compiled_model_alone_adds_no_graphs(flux, dynamo):
    """The reference point: ComfyUI's compiled model without our nodes."""
    _, counts = _queue(flux, compiled(flux.patcher))
    assert counts[0] > 0 and counts == [counts[0]] * QUEUED


@pytest.mark.parametrize("order", ["teacache_then_compile", "compile_then_teacache"])
def test_repeat_runs_add_no_graphs(flux, dynamo, order):
    ref = tm.sample(flux, model=teacache(flux.patcher, 10.0), **RUN)  # uncompiled, cached
    m = compiled(teacache(flux.patcher, 10.0)) if order == "teacache_then_compile" else \
        teacache(compiled(flux.patcher), 10.0)
    outs, counts = _queue(flux, m)
    assert counts == [counts[0]] * QUEUED, f"graphs after each run: {counts}"
    assert all(torch.equal(o, ref) for o in outs)
    s = summary(m)
    assert (s["computed"], s["reused"]) == (2, RUN["steps"] - 2)  # skips still happen: first and last compute


def test_blocks_that_compute_run_compiled(flux, dynamo):
    """Every execution of a block that computes goes through a compiled graph: the graphs'
    calls consume each block's weights exactly as often as that block computes."""
    from helpers import _probe
    _register_counting_backend()
    blocks = flux.block_modules()
    m = compiled(teacache(flux.patcher, 10.0), COUNTING)
    try:
        _PROBES.update({id(next(_probe(b).parameters(recurse=False))): i for i, b in enumerate(blocks)})
        _RUNS.clear()
        outs, counts = _queue(flux, m, n=2, cfg=2.0)
        runs = list(_RUNS)
    finally:
        _PROBES.clear()
        _RUNS.clear()
    assert counts[0] == counts[1] and torch.equal(outs[0], outs[1])
    per_block = [sum(i in r for r in runs) for i in range(len(blocks))]
    # cond and uncond batched: one forward per step; first and last step compute, in both runs
    assert per_block == [2 * 2] * len(blocks), per_block
    assert summary(m)["computed"] == 4


def test_threshold_zero_compiled_is_bit_identical(flux, dynamo):
    ref = tm.sample(flux, model=compiled(flux.patcher), **RUN)
    assert torch.equal(tm.sample(flux, model=compiled(teacache(flux.patcher, 0.0)), **RUN), ref)


def test_lora_after_compile_takes_effect(flux, dynamo):
    """A LoRA-style weight patch on the compiled, cached model changes its output exactly as it
    changes the uncompiled cached model's, without new graphs on repeat runs."""
    def lora(model):
        m = model.clone()
        g = torch.Generator().manual_seed(3)
        patches = {k: ("diff", (0.05 * torch.randn(v.shape, generator=g),))
                   for k, v in flux.model.state_dict().items()
                   if k.startswith("diffusion_model.double_blocks.") and k.endswith(".weight") and v.ndim == 2}
        assert patches
        m.add_patches(patches, 1.0)
        return m

    base = compiled(teacache(flux.patcher, 10.0))
    without = tm.sample(flux, model=base, **RUN)
    with_lora = lora(base)
    outs, counts = _queue(flux, with_lora, n=2)
    assert not torch.equal(outs[0], without)
    assert torch.equal(outs[0], tm.sample(flux, model=lora(teacache(flux.patcher, 10.0)), **RUN))
    assert torch.equal(outs[0], outs[1]) and counts[0] == counts[1]
    assert summary(with_lora)["reused"] == RUN["steps"] - 2


def test_l2c_schedule_compiled_adds_no_graphs(flux, dynamo):
    """L2C's per-layer reuse (the block's output is the input plus a cached residual, decided
    outside the compiled region) under compile, cfg 2 (two streams)."""
    n = len(flux.block_modules())
    compute = torch.ones(RUN["steps"], n, 1, dtype=torch.bool)
    compute[1:-1:2, 1:-1] = False  # middle blocks reused every other step
    with schedule_folder() as d:
        save_schedule(d, "compile.safetensors", compute, "flux")
        m, _ = l2c(flux.patcher, "compile.safetensors")
        ref = tm.sample(flux, model=m, **dict(RUN, cfg=2.0))
        c = compiled(m)
        outs, counts = _queue(flux, c, n=3, cfg=2.0)
    assert counts == [counts[0]] * 3
    assert all(torch.equal(o, ref) for o in outs)
    assert summary(c)["layers_reused"] > 0
