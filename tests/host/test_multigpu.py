"""dit-cache under ComfyUI's MultiGPU CFG Split (issue 17), on the releases that have it (0.29.0 and
newer; not collected on older ones).

ComfyUI is made to see two devices, ``cpu`` and ``cpu:0``, through its own device list
(``comfy.model_management.get_all_torch_devices``); the real ``MultiGPU CFG Split`` node then
deep-clones the model onto ``cpu:0`` through the loader factory (``cached_patcher_init``, which
ComfyUI's loaders set and the tiny models get here), and every sampling step runs the positive
on one copy and the negative on the other, in ComfyUI's own pool threads. A barrier in each
copy's forward makes the two threads overlap on every step, so a race cannot hide.

References on one device: with the conds run apart (a negative prompt of another length, which
ComfyUI cannot batch with the positive; Lumina 2's conds never batch), ``multigpu = independent``
must give the same output bit for bit; with the conds batched, ``lockstep`` takes the same
decisions.
"""
from __future__ import annotations

import threading

import pytest
import torch

import tiny_models as tm
from helpers import holder_of, l2c, save_schedule, schedule_folder, summary, teacache

HAS_SPLIT = tm._release_has("comfy_extras.nodes_multigpu:MultiGPUCFGSplitNode")
# a block-replacement family and an object-patch family
FAMILIES = ["flux", "lumina2"] if HAS_SPLIT else []
FLUX = ["flux"] if HAS_SPLIT else []
STEPS = 8
CFG = 4.0
# Flux: lockstep and independent decide differently here; tiny Lumina 2's two streams change alike,
# so both decide as one device does with the conds apart (and lockstep must give its output exactly)
THRESH = {"flux": 0.6, "lumina2": 0.3}
REPEATS = 20
CPU0 = torch.device("cpu", 0)


@pytest.fixture
def two_devices(comfy, monkeypatch):
    """ComfyUI's device list with a second device; sampling then runs the split in pool threads."""
    import comfy.model_management as mm
    monkeypatch.setattr(mm, "get_all_torch_devices",
                        lambda exclude_current=False: [torch.device("cpu"), CPU0])


@pytest.fixture(scope="module")
def models(tiny_models):
    def get(fam):
        tiny = tiny_models(fam)
        if tiny.patcher.cached_patcher_init is None:  # what ComfyUI's loaders register
            tiny.patcher.cached_patcher_init = (lambda: tm.build(tiny.family, tiny.variant, seed=tiny.seed).patcher, ())
        return tiny
    return get


def split(model):
    """ComfyUI's MultiGPU CFG Split node, max_gpus 2."""
    import comfy.model_management as mm
    from comfy_extras.nodes_multigpu import MultiGPUCFGSplitNode
    # The node (reuse_loaded) walks loaded_models(), where a model still loaded after its patcher
    # chain was freed reads None, and fails on it (comfy/multigpu.py, `lm.model`). ComfyUI's
    # output cache keeps a graph's patchers alive; the tests free theirs, so drop those entries.
    mm.current_loaded_models[:] = [m for m in mm.current_loaded_models if m.model is not None]
    out = MultiGPUCFGSplitNode.execute(model, 2).args[0]
    clones = out.get_additional_models_with_key("multigpu")
    assert [c.load_device for c in clones] == [CPU0], "the split must put one copy on the second device"
    return out


def conds(tiny, apart: bool):
    """Positive and negative; ``apart``: a negative ComfyUI cannot batch with the positive."""
    pos, neg = tiny.positive(), tiny.negative()
    if apart and tiny.family == "flux":  # 3 of 8 tokens: the padding to batch them would exceed 4x
        neg = [[neg[0][0][:, :3], dict(neg[0][1])]]
    return dict(positive=pos, negative=neg)


class Watch:
    """Forward hooks on both model copies: the threads each copy's blocks (and every module inside
    them, the indicator's too) ran on, and a barrier at the start and end of every forward that
    makes the two devices' forwards overlap."""

    def __init__(self, tiny, model, overlap: bool = True):
        self.copies = [model.model.diffusion_model] + [
            c.model.diffusion_model for c in model.get_additional_models_with_key("multigpu")]
        assert self.copies[0] is not self.copies[1]
        self.threads = [set() for _ in self.copies]
        self.barrier = threading.Barrier(len(self.copies), timeout=60) if overlap else None
        self.handles = []
        self.tiny = tiny

    def __enter__(self):
        for i, dm in enumerate(self.copies):
            for block in self.tiny.block_modules(dm):
                for m in block.modules():
                    self.handles.append(m.register_forward_hook(lambda *a, i=i: self.threads[i].add(threading.get_ident())))
            if self.barrier is not None:
                self.handles.append(dm.register_forward_pre_hook(self._meet))
                self.handles.append(dm.register_forward_hook(self._meet))
        return self

    def _meet(self, *args) -> None:
        self.barrier.wait()

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def assert_own_threads(self):
        """Within the sampling run just done (each run has a thread pool of its own)."""
        main = threading.get_ident()
        threads, self.threads = self.threads, [set() for _ in self.copies]
        assert all(len(t) == 1 for t in threads), f"a copy's blocks ran on several threads: {threads}"
        owners = [next(iter(t)) for t in threads]
        assert len(set(owners)) == len(owners) and main not in owners, "each copy must run on a pool thread of its own"

    def sample(self, *args, **kwargs):
        out = run(*args, **kwargs)
        self.assert_own_threads()
        return out


def decisions(records) -> dict:
    """Stream -> its decisions, step by step (ordinary passes)."""
    out: dict = {}
    for r in records:
        if not r.kind:
            out.setdefault(r.stream, []).append((r.step, r.decision))
    return {k: sorted(v) for k, v in out.items()}


def run(tiny, model, **c):
    return tm.sample(tiny, steps=STEPS, cfg=CFG, model=model, **c)


@pytest.mark.parametrize("fam", FAMILIES)
def test_split_runs_a_copy_on_the_second_device(models, two_devices, fam):
    """Without dit-cache: ComfyUI loads the copy on cpu:0 and runs it in its own thread; the split's
    output is the one-device output with the conds apart, bit for bit (what the tests below hold us to)."""
    tiny = models(fam)
    c = conds(tiny, apart=True)
    ref = run(tiny, tiny.patcher, **c)
    m = split(tiny.patcher)
    with Watch(tiny, m) as w:
        out = w.sample(tiny, m, **c)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("fam", FAMILIES)
def test_independent_equals_one_device_with_conds_apart(models, two_devices, fam):
    tiny = models(fam)
    c = conds(tiny, apart=True)
    one = teacache(tiny.patcher, THRESH[fam], multigpu="independent")
    ref = run(tiny, one, **c)
    ref_stats = summary(one)
    ref_decisions = sorted(decisions(holder_of(one).last_records).values())
    assert 0 < ref_stats["reused"] < ref_stats["evaluations"], "the threshold must make the test reuse some steps"

    m = split(teacache(tiny.patcher, THRESH[fam], multigpu="independent"))
    with Watch(tiny, m) as w:
        outs = [w.sample(tiny, m, **c) for _ in range(REPEATS)]
    for i, out in enumerate(outs):
        assert torch.equal(out, ref), f"repeat {i} differs from one device by {(out - ref).abs().max().item()}"

    s = summary(m)
    recs = holder_of(m).last_records
    assert sorted(decisions(recs).values()) == ref_decisions
    assert (s["evaluations"], s["computed"]) == (ref_stats["evaluations"], ref_stats["computed"])
    assert s["steps_all_reused"] == ref_stats["steps_all_reused"]
    assert sorted(s["devices"]) == ["cpu", "cpu:0"]
    for d in s["devices"].values():  # one stream per device, every step
        assert len(d["streams"]) == 1 and d["evaluations"] == STEPS
    assert sum(d["computed"] for d in s["devices"].values()) == s["computed"]
    assert {r.device for r in recs} == {"cpu", "cpu:0"}
    assert sorted(r.eval_index for r in recs) == list(range(len(recs)))
    assert any("MultiGPU CFG Split over 2 devices (cpu, cpu:0)" in n and "per device" in n for n in s["notes"])
    assert "every device reused on" in holder_of(m).last_report


@pytest.mark.parametrize("fam", FAMILIES)
def test_split_before_teacache(models, two_devices, fam):
    """MultiGPU CFG Split first, TeaCache Patch after it: ComfyUI re-copies the patched model to the
    second device before the run (match_multigpu_clones), so the result is the same."""
    tiny = models(fam)
    c = conds(tiny, apart=True)
    one = teacache(tiny.patcher, THRESH[fam], multigpu="independent")
    ref = run(tiny, one, **c)
    m = teacache(split(tiny.patcher), THRESH[fam], multigpu="independent")
    with Watch(tiny, m, overlap=False) as w:
        out = w.sample(tiny, m, **c)
    assert torch.equal(out, ref)
    assert sorted(summary(m)["devices"]) == ["cpu", "cpu:0"] and summary(m)["computed"] == summary(one)["computed"]


@pytest.mark.parametrize("fam", FAMILIES)
def test_lockstep_devices_decide_together(models, two_devices, fam):
    """The default: on every step both devices skip or both compute, the same on every repeat, with
    the decisions of one device (Flux: conds batched; Lumina 2: its conds never batch, and here its
    two streams take the same decisions, so the outputs must agree bit for bit)."""
    tiny = models(fam)
    c = conds(tiny, apart=False)
    m = split(teacache(tiny.patcher, THRESH[fam]))
    with Watch(tiny, m) as w:
        outs = [w.sample(tiny, m, **c) for _ in range(REPEATS)]
    assert all(torch.equal(o, outs[0]) for o in outs[1:]), "lockstep output must not change between repeats"

    s = summary(m)
    per_stream = list(decisions(holder_of(m).last_records).values())
    assert len(per_stream) == 2 and per_stream[0] == per_stream[1], "the devices must decide together"
    assert s["steps_all_reused"] == [st for st, d in per_stream[0] if d == "reuse"] != []
    assert any("decided in lockstep" in n for n in s["notes"])

    one = teacache(tiny.patcher, THRESH[fam])
    ref = run(tiny, one, **c)
    ref_per_stream = list(decisions(holder_of(one).last_records).values())
    assert ref_per_stream == per_stream
    if fam == "flux":
        assert summary(one)["streams"] and len(holder_of(one).last_records) == 2 * STEPS
        # the same decisions; batched and unbatched matmuls differ in the last bits
        assert torch.allclose(outs[0], ref, rtol=0, atol=1e-3 * ref.abs().max().item())
        indep = split(teacache(tiny.patcher, THRESH[fam], multigpu="independent"))
        run(tiny, indep, **c)
        assert len(summary(indep)["steps_all_reused"]) < len(s["steps_all_reused"]), \
            "the threshold must make lockstep differ from independent decisions"
    else:
        assert torch.equal(outs[0], ref)


@pytest.mark.parametrize("fam", FLUX)
def test_l2c_and_teacache_under_the_split(models, two_devices, fam):
    """An L2C schedule (per-layer residuals) with TeaCache: each device keeps its own layer caches."""
    tiny = models(fam)
    c = conds(tiny, apart=True)
    n = holder_of(teacache(tiny.patcher, 0.0)).adapter.n_blocks
    plan = torch.ones(STEPS, n, 1, dtype=torch.bool)
    plan[2::2, 1:-1] = False  # reuse the middle layers every other step
    with schedule_folder() as d:
        save_schedule(d, "mg.safetensors", plan, "flux")
        one, _ = l2c(teacache(tiny.patcher, 0.3, multigpu="independent"), "mg.safetensors")
        ref = run(tiny, one, **c)
        m, _ = l2c(split(teacache(tiny.patcher, 0.3, multigpu="independent")), "mg.safetensors")
        with Watch(tiny, m) as w:
            out = w.sample(tiny, m, **c)
    assert torch.equal(out, ref)
    assert summary(m)["layers_reused"] == summary(one)["layers_reused"] > 0


@pytest.mark.parametrize("fam", ["lumina2"] if HAS_SPLIT else [])
def test_foreign_patch_under_ours_is_refused(models, two_devices, fam):
    """Another pack's object patch on a block, under ours, is bound to the first device's block:
    under the split it would run those weights for the second device. Refused when the split is
    made, before anything runs."""
    tiny = models(fam)
    base = tiny.patcher.clone()
    block = tiny.diffusion_model.layers[1]
    base.add_object_patch("diffusion_model.layers.1.forward", lambda *a, **k: type(block).forward(block, *a, **k))
    with pytest.raises(RuntimeError, match="layers.1.forward carries another node pack's patch under dit-cache's"):
        split(teacache(base, 0.3))


if not HAS_SPLIT:  # this ComfyUI has no MultiGPU CFG Split: nothing to collect (not a skip)
    for _name in [n for n in list(globals()) if n.startswith("test_")]:
        del globals()[_name]
