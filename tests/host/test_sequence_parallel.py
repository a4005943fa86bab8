"""dit-cache under sequence parallelism and CFG parallelism, with raylight's own code (issue 17).

Two processes joined by torch.distributed (gloo) each run what a raylight worker runs: xFuser's
parallel state, raylight's USP injection (its Flux and Wan ``usp_dit_forward``, Ulysses attention
through yunchang) or its CFG-parallel wrapper, on a tiny ComfyUI Flux and Wan (see
``raylight_usp.py`` for what differs from a GPU worker). dit-cache reaches the workers as the
"TeaCache Patch (Ray)" node sends it: ``nodes/ray_shim.py``'s ``install`` pickled by value
(cloudpickle, as Ray does) and loaded in a process where the pack is not registered, then
``install_in_worker`` with its decision sync over xFuser's groups.

Checked against the single-process run of the same settings: every rank takes the same decisions
and those of one process; the latents agree within float tolerance; Flux's tokens are re-chunked
between double and single blocks (image tokens padded: 63 on 2 ranks); TeaCache cached and
taylor1, TeaCache + L2C; CFG-parallel ranks (batch 1 each, ``uuids`` listing both streams); a
forced desync raises DecisionSyncError on both ranks instead of hanging.

One spawn serves every case (the processes start ComfyUI, which is what costs); its wall time is
printed. Not run: Ray itself (no actors: the node's ``ray.get`` over ``model_function_runner``)
and NCCL/GPU kernels.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback

import pytest
import torch
import torch.multiprocessing as mp

import raylight_usp as ru
import tiny_models as tm
from pack import NAME as PACK_NAME, sub

STEPS = 6
SIZE = {"flux": dict(h=16, w=16), "wan21": dict(h=16, w=16)}
# flux: 64 image tokens in shards of 32 for the double blocks; 8 text + 64 image tokens in shards of
# 36 for the single blocks. "padded": 63 image tokens, which raylight pads to 64 (and 71 to 72); its
# padding tokens take part in attention, so raylight's own output differs from one process there
PADDED = dict(h=18, w=14)
THRESH = {"flux": 0.6, "wan21": 1.0}
# raylight's Flux USP forward reads Flux.txt_norm, which ComfyUI's Flux has only from 0.29 (0.3.64:
# AttributeError inside raylight), so its Flux USP cases exist only where raylight's code can run
RAYLIGHT_FLUX_USP = tm._release_has("comfy.ldm.flux.model:FluxParams.txt_norm")
CASES = ([("flux", "cached"), ("flux", "taylor1"), ("flux", "padded")] if RAYLIGHT_FLUX_USP else []) + [
    ("wan21", "cached"), ("wan21", "taylor1"), ("wan21", "l2c")]
CFG_CASES = ["flux", "wan21"]
# Ulysses attention splits the heads over the ranks: tiny Wan gets 2 (ComfyUI detects dim // 128)
OVERRIDES = {"wan21": dict(dim=256, num_heads=2)}


def _tiny(fam):
    return tm.build(fam, unet_overrides=OVERRIDES.get(fam))


def _settings(fam, reuse="cached"):
    return sub("nodes.raylight").teacache_settings(THRESH[fam], "raw", reuse=reuse, sync_timeout=300)  # generous: 2 shared cores


def _l2c_compute(n_blocks):
    c = torch.ones(STEPS, n_blocks, 1, dtype=torch.bool)
    # the later blocks reused after step 0; usable where the step before computed (after a TeaCache
    # reuse the layer cache is too old and the layer computes, see CacheController._usable)
    c[1:, n_blocks // 2:, 0] = False
    return c


def _decisions(records):
    """(step, compute?) per evaluation, streams numbered in order of appearance (uuids differ per process)."""
    order: dict = {}
    return [(r.step, order.setdefault(r.stream, len(order)), r.decision, r.layers_computed) for r in records]


def _apply_l2c(mods, patched, fam):
    """L2C Schedule Loader's effect (patch_model with a schedule) on an already patched model."""
    holder = mods["runtime"].get_holder(patched.model_options)
    sched = mods["l2c"].L2CSchedule(_l2c_compute(holder.hooks.n_blocks), ("block",), holder.adapter.name)
    return mods["runtime"].patch_model(patched, None, l2c=sched, l2c_label="test")[0]


def _size(fam, mode):
    return PADDED if mode == "padded" else SIZE[fam]


def _run_case(tiny, mods, fam, mode, model):
    if mode == "l2c":
        model = _apply_l2c(mods, model, fam)
    x = tm.sample(tiny, steps=STEPS, model=model, **_size(fam, mode))
    holder = mods["runtime"].get_holder(model.model_options)
    return x, _decisions(holder.last_records)


def _all_settings() -> dict:
    """Every case's settings as the node makes them (plain values), by (family, reuse)."""
    return {(fam, reuse): _settings(fam, reuse) for fam in SIZE for reuse in ("cached", "taylor1")}


def _worker(rank, world, port, out_dir, shipped, settings_by):
    import pickle
    torch.set_num_threads(1)
    res = {"pack_registered_before": [n for n in sys.modules if n in (PACK_NAME, "dit_cache_worker")]}
    try:
        from devtools.comfy_host import import_comfy
        import_comfy()
        ru.boot(rank, world, port, sp=world)
        fn, pack_dir, _ = pickle.loads(shipped)  # by value: no module of the pack is needed to load it
        mods = {}
        for fam, mode in CASES + [("wan21", "desync")]:
            tiny = _tiny(fam)
            t0 = time.perf_counter()
            settings = settings_by[(fam, "taylor1" if mode == "taylor1" else "cached")]
            patched = fn(ru.parallelise(tiny.patcher, usp=True, cfg=False), pack_dir, settings)
            if not mods:
                import importlib
                mods = {k: importlib.import_module(f"dit_cache_worker.{m}") for k, m in (
                    ("runtime", "nodes.runtime"), ("l2c", "cache_core.l2c"), ("sync", "cache_core.sync"))}
            if mode == "desync":  # rank 1 believes it is one decision ahead
                holder = mods["runtime"].get_holder(patched.model_options)
                holder.sync.decisions += rank
                try:
                    tm.sample(tiny, steps=STEPS, model=patched, **SIZE[fam])
                    res["desync"] = "no error"
                except mods["sync"].DecisionSyncError as e:
                    res["desync"] = str(e)
                continue
            res[(fam, mode)] = _run_case(tiny, mods, fam, mode, patched) + (time.perf_counter() - t0,)
            if mode == "padded":  # raylight alone, for its own deviation from one process
                res[(fam, "plain")] = tm.sample(tiny, steps=STEPS, model=ru.parallelise(tiny.patcher, True, False),
                                                **PADDED)
        # CFG parallel: the same two processes as xFuser CFG ranks (one stream each)
        from xfuser.core.distributed import parallel_state
        parallel_state.destroy_model_parallel()
        parallel_state.initialize_model_parallel(classifier_free_guidance_degree=world, sequence_parallel_degree=1,
                                                 backend="gloo")
        for fam in CFG_CASES:
            tiny = _tiny(fam)
            patched = fn(ru.parallelise(tiny.patcher, usp=False, cfg=True), pack_dir, settings_by[(fam, "cached")])
            res[(fam, "cfg")] = _run_case(tiny, mods, fam, "cfg", patched)
    except Exception:
        res["error"] = traceback.format_exc()
        raise
    finally:
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def ranks(comfy):
    """Both ranks' results for every case, from one spawn of 2 processes."""
    ru.ensure_xfuser()
    import cloudpickle
    from devtools.comfy_host import free_port
    shim = sub("nodes.ray_shim")
    shipped = cloudpickle.dumps(shim.remote_call(str(sub("nodes.raylight").PACK_DIR), {}, pickler=cloudpickle))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        try:
            mp.start_processes(_worker, args=(2, free_port(), d, shipped, _all_settings()), nprocs=2, join=True, start_method="spawn")
        finally:
            took = time.perf_counter() - t0
            out = [torch.load(os.path.join(d, f"rank{r}.pt"), weights_only=False)
                   if os.path.exists(os.path.join(d, f"rank{r}.pt")) else {} for r in range(2)]
    print(f"\n2-rank raylight spawn with every case: {took:.1f} s")
    for r in out:
        assert "error" not in r, r.get("error")
    return out


def _single(fam, mode, cfg_split=False):
    """The same settings in this one process, no sync."""
    tiny = _tiny(fam)
    rl = sub("nodes.raylight")
    patched = rl.install_in_worker(tiny.patcher, _settings(fam, "taylor1" if mode == "taylor1" else "cached"), sync=None)
    mods = {"runtime": sub("nodes.runtime"), "l2c": sub("cache_core.l2c")}
    return _run_case(tiny, mods, fam, mode, patched)


def test_the_shim_loads_in_a_process_without_the_pack(ranks):
    for r in ranks:
        assert r["pack_registered_before"] == []
    import pickle
    shim = sub("nodes.ray_shim")
    fn = shim.remote_call("/nowhere", {}, pickler=__import__("cloudpickle"))[0]
    # by reference it would name the pack's module, which a Ray worker cannot import
    assert fn.__module__ == f"{PACK_NAME}.nodes.ray_shim"
    with pytest.raises(Exception):
        pickle.loads(pickle.dumps(fn).replace(PACK_NAME.encode(), b"elsewhere_pack"))


@pytest.mark.parametrize("fam,mode", CASES)
def test_ranks_decide_as_one_process(ranks, comfy, fam, mode):
    ref_x, ref_d = _single(fam, mode)
    (x0, d0, t), (x1, d1, _) = ranks[0][(fam, mode)], ranks[1][(fam, mode)]
    assert d0 == d1 == ref_d
    reused = sum(1 for d in ref_d if d[2] == "reuse")
    assert 0 < reused < len(ref_d), ref_d  # the case reuses on some steps and computes on others
    if mode == "l2c":
        assert any(d[3] < max(e[3] for e in ref_d) for d in ref_d if d[2] == "compute")  # L2C reused layers
    if mode == "padded":
        # raylight's padding token changes its output; the cache adds no deviation of its own beyond that
        own = (ranks[0][(fam, "plain")] - tm.sample(_tiny(fam), steps=STEPS, **PADDED)).abs().max()
        assert torch.equal(x0, x1) and 0 < (x0 - ref_x).abs().max() <= 1.5 * own
    else:
        torch.testing.assert_close(x0, ref_x, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(x1, ref_x, rtol=1e-4, atol=1e-4)
    print(f"{fam} {mode}: {reused}/{len(ref_d)} reused, max |diff| {(x0 - ref_x).abs().max():.2e}, rank 0 {t:.1f} s")


@pytest.mark.parametrize("fam", CFG_CASES)
def test_cfg_parallel_ranks_hold_one_stream_each(ranks, comfy, fam):
    ref_x, ref_d = _single(fam, "cfg")
    (x0, d0), (x1, d1) = ranks[0][(fam, "cfg")], ranks[1][(fam, "cfg")]
    # each rank records its one stream (numbered 0 there); the batched run computes both streams together
    per_step = {}
    for step, _, decision, _ in ref_d:
        per_step.setdefault(step, set()).add(decision)
    assert all(len(v) == 1 for v in per_step.values())
    want = [(s, 0, next(iter(v))) for s, v in sorted(per_step.items())]
    assert [d[:3] for d in d0] == [d[:3] for d in d1] == want
    assert any(d == "reuse" for _, _, d in want)
    torch.testing.assert_close(x0, ref_x, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x1, ref_x, rtol=1e-4, atol=1e-4)


def test_forced_desync_raises_on_every_rank(ranks):
    for r in ranks:
        assert "out of step" in r["desync"], r["desync"]


def test_ray_node_takes_and_returns_ray_actors(comfy):
    node = sub("nodes.raylight").raylight_nodes()[0]
    schema = node.define_schema()
    names = [i.id for i in schema.inputs]
    assert schema.node_id == "DitCache_RayTeaCachePatch"
    assert names[:5] == ["ray_actors", "rel_l1_thresh", "start_percent", "end_percent", "coefficients"]
    assert "sync_timeout" in names and all(i.tooltip for i in schema.inputs)
    assert [o.io_type for o in schema.outputs] == ["RAY_ACTORS"] == [schema.inputs[0].io_type]
    rl = sub("nodes.raylight")
    with pytest.raises(ValueError, match="sync_timeout must be > 0"):
        rl.teacache_settings(0.4, sync_timeout=0)
    with pytest.raises(ValueError, match="reuse must be one of"):
        rl.teacache_settings(0.4, reuse="taylor9")
