"""dit-cache inside raylight (komikndr/raylight: Ray actors, one per GPU, with xDiT USP, CFG
parallel and FSDP).

The node "TeaCache Patch (Ray)" takes and returns raylight's ``RAY_ACTORS``. It sends
``nodes/ray_shim.py``'s ``install`` (pickled by value) to every worker through raylight's
``model_function_runner``; in the worker :func:`install_in_worker` patches the worker's model as
TeaCache Patch does and adds a decision sync (``cache_core/sync.py``) over raylight's own process
groups (xFuser's sequence-parallel group for the indicator's sums; its world group for the
compute flag, which covers USP, CFG-parallel and FSDP ranks). Under USP the tokens' layout inside
the stack picks the hooks (``nodes/sequence_parallel.py``).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from ..cache_core.sync import make_sync
from ..cache_core.teacache import TeaCacheConfig
from .adapters import detect
from .runtime import patch_model
from .sequence_parallel import parallel_hooks

log = logging.getLogger("dit_cache")

PACK_DIR = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT = 120.0


def worker_sync(timeout: float = DEFAULT_TIMEOUT):
    """The decision sync of this raylight worker, or None (one worker, or no process group).

    With xFuser's parallel state (USP/CFG): statistics over the sequence-parallel group, the flag
    over the world, both on xFuser's gloo ``cpu_group`` (a few scalars; gloo gives the timeout);
    the stack-input gather on the sequence-parallel ``device_group``. FSDP alone: a gloo group of
    the world, made here (every worker runs this at once, so ``new_group`` is matched)."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return None
    xd = sys.modules.get("xfuser.core.distributed")
    if xd is not None and xd.model_parallel_is_initialized():
        sp, world = xd.get_sp_group(), xd.get_world_group()
        return make_sync(token_group=sp.cpu_group if sp.world_size > 1 else None, branch_group=world.cpu_group,
                         cfg_rank=xd.get_classifier_free_guidance_rank(),
                         cfg_world=xd.get_classifier_free_guidance_world_size(), timeout=timeout,
                         gather_group=sp.device_group if sp.world_size > 1 else None)
    if dist.get_world_size() <= 1:
        return None
    return make_sync(branch_group=dist.new_group(backend="gloo"), timeout=timeout)


def teacache_settings(rel_l1_thresh: float, coefficients: str = "auto", start_percent: float = 0.0,
                      end_percent: float = 1.0, max_consecutive_skips: int = 0, reuse: str = "cached",
                      compute_every: int = 0, cache_device: str = "main",
                      sync_timeout: float = DEFAULT_TIMEOUT) -> dict:
    """The node's settings as plain values (what travels to the workers); checked here, in the
    ComfyUI process, so that bad input fails before any worker is touched."""
    if not sync_timeout or sync_timeout <= 0:
        raise ValueError(f"sync_timeout must be > 0 seconds, got {sync_timeout!r}; try {DEFAULT_TIMEOUT:g}")
    s = dict(rel_l1_thresh=float(rel_l1_thresh), coefficients=str(coefficients), start_percent=float(start_percent),
             end_percent=float(end_percent), max_consecutive_skips=int(max_consecutive_skips), reuse=str(reuse),
             compute_every=int(compute_every), cache_device=str(cache_device), sync_timeout=float(sync_timeout))
    _config(s, threshold=max(s["rel_l1_thresh"], 0.0), profile="raw")  # raises with working values
    return s


def _config(s: dict, threshold: float, profile) -> TeaCacheConfig:
    return TeaCacheConfig(rel_l1_thresh=threshold, coefficients=profile, start_percent=s["start_percent"],
                          end_percent=s["end_percent"], max_consecutive_skips=s["max_consecutive_skips"],
                          cache_device=s["cache_device"], reuse=s["reuse"], compute_every=s["compute_every"])


def install_in_worker(model, settings: dict, sync=...):
    """``model`` (a raylight worker's ModelPatcher) with TeaCache as TeaCache Patch installs it,
    plus the decision sync of this worker (``sync``: default :func:`worker_sync`) and the hooks of
    its token layout. Returns the patched clone."""
    from . import profiles
    from .teacache_node import resolve_threshold
    adapter = detect(model)
    threshold = resolve_threshold(settings["rel_l1_thresh"], adapter)
    profile, candidates = profiles.resolve_profile(settings["coefficients"], adapter, model)
    patched, holder = patch_model(model, lambda m: adapter, teacache=_config(settings, threshold, profile),
                                  node="TeaCache Patch (Ray)")
    holder.calibrated = candidates
    if sync is ...:
        sync = worker_sync(settings.get("sync_timeout", DEFAULT_TIMEOUT))
    if sync is not None:
        holder.hooks = parallel_hooks(holder.adapter, holder.adapter.hooks(), sync)
        holder.sync = sync
        where = f"rank {sync.token_rank} of {sync.token_world} sequence-parallel" if sync.token_world > 1 else \
            "one of several ranks"
        holder.notes = list(holder.notes) + [f"decisions synchronised across raylight's ranks ({where})"]
    return patched


def _node():
    from comfy_api.latest import io

    from .teacache_node import reuse_input, threshold_inputs
    actors = io.Custom("RAY_ACTORS")

    class RayTeaCachePatch(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> io.Schema:
            return io.Schema(
                node_id="DitCache_RayTeaCachePatch",
                display_name="TeaCache Patch (Ray)",
                category="dit-cache",
                description="TeaCache inside raylight's GPU workers (USP, CFG parallel, FSDP): every rank takes "
                            "the same compute-or-reuse decision, made from the indicator reduced over the ranks "
                            "that share the image's tokens. Place it after raylight's model loader.",
                inputs=[
                    actors.Input("ray_actors", tooltip="raylight's workers (from its Ray Init / model loader nodes)."),
                    *threshold_inputs(),
                    io.Int.Input("max_consecutive_skips", default=0, min=0, max=1000,
                                 tooltip="Compute at least every N+1 steps. 0 = no cap."),
                    reuse_input("skipped step"),
                    io.Int.Input("compute_every", default=0, min=0, max=1000, optional=True,
                                 tooltip="Compute every N-th step and reuse or forecast between; 0 = the "
                                         "accumulated change decides."),
                    io.Float.Input("sync_timeout", default=DEFAULT_TIMEOUT, min=1.0, max=3600.0, step=1.0,
                                   optional=True,
                                   tooltip="Seconds a worker waits for the others at a decision before failing "
                                           "with DecisionSyncError (instead of hanging until NCCL's watchdog)."),
                ],
                outputs=[actors.Output(tooltip="The same workers, their models now cached.")],
            )

        @classmethod
        def execute(cls, ray_actors, rel_l1_thresh, start_percent, end_percent, coefficients,
                    max_consecutive_skips, reuse="cached", compute_every=0,
                    sync_timeout=DEFAULT_TIMEOUT) -> io.NodeOutput:
            import ray

            from .ray_shim import remote_call
            settings = teacache_settings(rel_l1_thresh, coefficients, start_percent, end_percent,
                                         max_consecutive_skips, reuse, compute_every, sync_timeout=sync_timeout)
            fn, *args = remote_call(PACK_DIR, settings)
            ray.get([w.model_function_runner.remote(fn, *args) for w in ray_actors["workers"]])
            return io.NodeOutput(ray_actors)

    return RayTeaCachePatch


def raylight_nodes() -> list:
    """The raylight node (listed whether or not raylight is installed: it needs Ray only to run)."""
    return [_node()]
