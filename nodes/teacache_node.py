"""TeaCache Patch node."""
from __future__ import annotations

import math

from comfy_api.latest import io

from ..cache_core.coefficients import published_profiles
from ..cache_core.forecast import REUSE_MODES
from ..cache_core.teacache import TeaCacheConfig
from . import profiles
from .adapters import detect, model_tooltip
from .multigpu import MODES as MULTIGPU_MODES
from .runtime import patch_model

AUTO_THRESHOLD = -1.0


def coefficient_choices() -> list[str]:
    return ["auto"] + sorted(published_profiles()) + profiles.saved_profile_names()


def resolve_threshold(value: float, adapter) -> float:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        raise ValueError(f"rel_l1_thresh must be a finite number, got {value!r}; use 0 to turn caching off "
                         f"or {adapter.recommended_threshold} (recommended for {adapter.display})")
    if value == AUTO_THRESHOLD:
        return adapter.recommended_threshold
    if value < 0:
        raise ValueError(f"rel_l1_thresh must be >= 0 (or -1 for the recommended value), got {value}; "
                         f"try {adapter.recommended_threshold} for {adapter.display}")
    return float(value)


def reuse_input(what: str) -> io.Combo.Input:
    """The optional ``reuse`` input of TeaCache Patch and L2C Schedule Loader."""
    return io.Combo.Input("reuse", options=list(REUSE_MODES), default="cached", optional=True,
                          tooltip=f"What a {what} gets. cached = the residual of the last computed step (as "
                                  "before). taylor1 / taylor2 = that residual extrapolated to this step from the "
                                  "last 2 / 3 computed steps (TaylorSeer-style forecast): better at high speed-ups, "
                                  "costs 1 / 2 more cached residuals of memory.")


def threshold_inputs() -> list:
    """rel_l1_thresh, start_percent, end_percent and coefficients: TeaCache's inputs that every
    TeaCache node shares (TeaCache Patch, TeaCache Patch (Ray))."""
    return [
        io.Float.Input("rel_l1_thresh", default=AUTO_THRESHOLD, min=-1.0, max=10.0, step=0.01,
                       tooltip="How much accumulated change to tolerate before recomputing. Higher = faster, "
                               "lower quality. 0 turns caching off (output identical to no node). -1 = the "
                               "recommended value for the detected family (Flux 0.4, Wan 2.1 0.08-0.3, ...)."),
        io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Schedule position (0 = first step) before which every step computes."),
        io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Schedule position after which every step computes (1 = up to the end)."),
        io.Combo.Input("coefficients", options=coefficient_choices(), default="auto",
                       tooltip="Rescaling polynomial. auto = the published set for the detected family "
                               "and variant, or a calibrated profile of this model if one is saved."),
    ]


class TeaCachePatch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DitCache_TeaCachePatch",
            display_name="TeaCache Patch",
            category="dit-cache",
            description="Skips the transformer blocks on steps where the model's input barely changed, reusing "
                        "the cached residual (TeaCache, arXiv 2411.19108). Works per cond stream and per run.",
            inputs=[
                io.Model.Input("model", tooltip=model_tooltip()),
                *threshold_inputs(),
                io.Combo.Input("cache_device", options=["main", "offload"], default="main",
                               tooltip="Where cached residuals live: main = the GPU (fastest), offload = system RAM "
                                       "(saves VRAM, costs a copy per reused step)."),
                io.Int.Input("max_consecutive_skips", default=0, min=0, max=1000,
                             tooltip="Compute at least every N+1 steps. 0 = no cap."),
                reuse_input("skipped step"),
                io.Int.Input("compute_every", default=0, min=0, max=1000, optional=True,
                             tooltip="Fixed schedule instead of the threshold: compute every N-th step and reuse "
                                     "or forecast in between (TaylorSeer's schedule, a predictable speed-up of "
                                     "about N). 0 = the accumulated change decides. rel_l1_thresh 0 still turns "
                                     "caching off."),
                io.Float.Input("target_speedup", default=0.0, min=0.0, max=100.0, step=0.1, optional=True,
                               tooltip="Ask for a speed-up instead of a threshold: 2 = compute about half of the "
                                       "model evaluations per cond stream (heun's too), spent where the model's "
                                       "input changes most; works with any coefficients, step count and sampler. "
                                       "First and last steps always compute, and count. 0 = off (rel_l1_thresh "
                                       "decides). rel_l1_thresh 0 still turns caching off."),
                io.Combo.Input("multigpu", options=list(MULTIGPU_MODES), default="lockstep", optional=True,
                               tooltip="Under ComfyUI's MultiGPU CFG Split (cond and uncond on different GPUs). "
                                       "lockstep = the GPUs skip the blocks on the same steps, as cond and uncond "
                                       "do in one batch on one GPU; a step only gets faster when every GPU skips. "
                                       "independent = each GPU decides for its own cond, as on one GPU when cond "
                                       "and uncond run apart. No effect on one GPU."),
            ],
            outputs=[io.Model.Output(tooltip="The model with TeaCache.")],
        )

    @classmethod
    def execute(cls, model, rel_l1_thresh, start_percent, end_percent, coefficients, cache_device,
                max_consecutive_skips, reuse="cached", compute_every=0, target_speedup=0.0,
                multigpu="lockstep") -> io.NodeOutput:
        if multigpu not in MULTIGPU_MODES:
            raise ValueError(f"multigpu must be one of {', '.join(MULTIGPU_MODES)}, got {multigpu!r}")
        adapter = detect(model)  # raises with the supported list before anything is changed
        thresh = resolve_threshold(rel_l1_thresh, adapter)
        profile, candidates = profiles.resolve_profile(coefficients, adapter, model)
        cfg = TeaCacheConfig(rel_l1_thresh=thresh, coefficients=profile, start_percent=start_percent,
                             end_percent=end_percent, max_consecutive_skips=int(max_consecutive_skips),
                             cache_device=cache_device, reuse=reuse, compute_every=int(compute_every),
                             target_speedup=target_speedup)
        patched, holder = patch_model(model, lambda m: adapter, teacache=cfg, node="TeaCache Patch")
        holder.calibrated = candidates  # a run picks the one calibrated nearest its step count
        holder.lockstep = multigpu == "lockstep"
        return io.NodeOutput(patched)
