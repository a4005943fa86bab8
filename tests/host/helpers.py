"""Shared helpers of the host tests: patching through our nodes and counting block executions."""
from __future__ import annotations

import contextlib
import os
import tempfile

import torch

from pack import sub


def teacache(model, thresh, coefficients="raw", start=0.0, end=1.0, device="main", max_skips=0, **optional):
    """TeaCache Patch; ``optional``: the node's optional inputs (reuse, compute_every)."""
    node = sub("nodes.teacache_node").TeaCachePatch
    return node.execute(model, thresh, start, end, coefficients, device, max_skips, **optional).args[0]


def holder_of(model):
    return sub("nodes.runtime").get_holder(model.model_options)


def adapter_of(model):
    return sub("nodes.adapters").detect(model)


def summary(model) -> dict:
    return holder_of(model).last_summary


def assert_reuse_restores_each_part(tiny, parts=("video", "audio")):
    """One sigma evaluated twice (same input): the reuse must give back each part of the computed
    output (a packed audio+video latent: video and audio, each on its own)."""
    import tiny_models as tm
    c = tm.import_comfy()
    sig = c.samplers.calculate_sigmas(tiny.patcher.get_model_object("model_sampling"), "simple", 4)
    sigmas = torch.cat((sig[:2], sig[1:]))
    base = tm.unpacked(tiny, tm.sample(tiny, sigmas=sigmas))
    m = teacache(tiny.patcher, 1e-6)
    out = tm.unpacked(tiny, tm.sample(tiny, sigmas=sigmas, model=m))
    assert summary(m)["reused"] == len(summary(m)["streams"])
    for name, o, b in zip(parts, out, base):
        assert torch.allclose(o, b, rtol=1e-4, atol=1e-4), (name, float((o - b).abs().max()))


def _probe(block: torch.nn.Module) -> torch.nn.Module:
    """A leaf module with weights that runs exactly once per real execution of ``block``: the
    last one in registration order (an output projection), never the first-block modulation
    that the TeaCache indicator also calls."""
    leaves = [(n, m) for n, m in block.named_modules()
              if not list(m.children()) and any(True for _ in m.parameters(recurse=False))]
    # SD3, Lumina 2 and MiniMax-H3 register their adaLN modulation last: skip modulation layers
    plain = [m for n, m in leaves if "modulation" not in n.lower() and "adaln" not in n.lower() and not any(
        p.endswith("_mod") for p in n.split("."))]
    leaves = plain or [m for _, m in leaves]
    if not leaves:
        raise AssertionError(f"{type(block).__name__} has no leaf module with weights to count")
    return leaves[-1]


@contextlib.contextmanager
def count_block_runs(blocks):
    """Counts real executions of each block (identity pass-through on a reuse does not count)."""
    counts = [0] * len(blocks)
    handles = []
    for i, b in enumerate(blocks):
        def hook(mod, inp, out, i=i):
            counts[i] += 1
        handles.append(_probe(b).register_forward_hook(hook))
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def schedule_folder():
    """A temporary folder registered as ComfyUI's l2c_schedules model folder."""
    import folder_paths
    folders = sub("nodes.folders")
    folders.register()
    with tempfile.TemporaryDirectory() as d:
        old = folder_paths.folder_names_and_paths[folders.SCHEDULES]
        folder_paths.folder_names_and_paths[folders.SCHEDULES] = ([d], old[1])
        folder_paths.filename_list_cache.clear() if hasattr(folder_paths, "filename_list_cache") else None
        try:
            yield d
        finally:
            folder_paths.folder_names_and_paths[folders.SCHEDULES] = old


def l2c(model, name, threshold=0.1, **optional):
    node = sub("nodes.l2c_node").L2CScheduleLoader
    out = node.execute(model, name, threshold, **optional)
    return out.args[0], out.args[1]


def save_schedule(folder, name, compute: torch.Tensor, family: str):
    from dit_cache_pack.cache_core.l2c import L2CSchedule
    s = L2CSchedule(compute, ("block",), family, source="test")
    path = os.path.join(folder, name)
    s.save(path)
    return path
