"""The per-model cache holder and the ComfyUI wrappers that drive it.

Lifecycle (like ComfyUI's own EasyCache): the node stores a :class:`CacheHolder` in the cloned
model's ``transformer_options``. The OUTER_SAMPLE wrapper starts a fresh :class:`CacheRun` for
every sampling run and always drops it in ``finally`` (second runs, new resolutions, interrupts).
The PREDICT_NOISE wrapper marks each sampler evaluation, so that the passes a guidance node adds
inside it are told apart from the ordinary pass (``passes.py``). The APPLY_MODEL wrapper tells the
run which step and which cond streams each model evaluation belongs to; the family's block
patches do the caching itself. Under ComfyUI's MultiGPU CFG Split every device's model copy gets
a lane of its own in the run, and the CALC_COND_BATCH wrapper lets the devices decide in
lockstep (``multigpu.py``).
"""
from __future__ import annotations

import dataclasses
import logging
import threading

import comfy.model_patcher
import comfy.patcher_extension

from ..cache_core.forecast import with_reuse_tag
from ..cache_core.stack import CacheController
from ..cache_core.stats import RunRecorder, make_run_id
from ..cache_core.steps import StepLocator
from . import multigpu, stream_names
from .other_caches import refuse_at_sampling, refuse_before
from .passes import PassClassifier, describe
from .sampler_noise import describe_sampler

log = logging.getLogger("dit_cache")

KEY = "dit_cache"          # transformer_options key of the holder
RUN_KEY = "dit_cache_run"  # transformer_options key of the active run (set per sampling run)
WRAPPER_KEY = "dit_cache"


class CacheRun:
    """State of one sampling run: the controller (per-stream caches) and its recorder."""

    def __init__(self, holder: "CacheHolder", sigmas, latent_shape: tuple | None = None, sampler=None):
        self.holder = holder
        self.latent_shape = latent_shape  # of the sampled latent, so Cache Compare can match its input to this run
        self.locator = StepLocator([float(s) for s in sigmas])
        teacache = holder.teacache_for(self.locator.n_steps)
        rec = RunRecorder(run_id=holder.run_id(teacache),
                          threshold=teacache.rel_l1_thresh if teacache is not None else None)
        rec.start(self.locator.n_steps)
        if sampler is not None:
            rec.sampler, rec.noisy_sampler = describe_sampler(sampler)
        for n in holder.notes:
            rec.note(n)
        self.recorder = rec
        self.lock = threading.Lock()  # the devices of a MultiGPU CFG Split classify passes from their threads

        def controller(hooks) -> CacheController:
            c = CacheController(hooks, teacache=teacache, l2c=holder.l2c, recorder=rec,
                                l2c_reuse=holder.l2c_reuse, sync=holder.sync)
            c.plan_budget(self.locator.sigmas, rec.sampler)  # target mode only
            return c

        self.lanes = multigpu.Lanes(self, holder.adapter, holder.hooks, controller, lockstep=holder.lockstep)
        self.controller = self.lanes.primary.controller  # the patched model's own (the only one on one device)
        self.passes = PassClassifier()

    def __deepcopy__(self, memo):  # it sits in model_options for the run; copies must reach this run
        return self


class CacheHolder:
    """Settings of one node execution plus the last run's statistics. Never holds tensors between
    runs: those live in the CacheRun, which is dropped when the run ends."""

    def __init__(self, adapter, teacache=None, l2c=None, l2c_label: str = "", l2c_reuse: str = "cached"):
        self.adapter = adapter
        self.hooks = adapter.hooks()
        self.teacache = teacache
        self.l2c = l2c
        self.l2c_label = l2c_label
        self.l2c_reuse = l2c_reuse
        self.last_summary: dict | None = None
        self.last_report: str | None = None
        self.last_records: list | None = None
        self.last_latent_shape: tuple | None = None
        self.calibrated: list = []  # (steps, profile) calibrated on this model, for coefficients=auto
        self.notes: list[str] = []  # said in every run's stats (e.g. an earlier node's settings replaced)
        self.runs_finished = 0
        self.lockstep = True  # under MultiGPU CFG Split, the devices decide together (multigpu.py)
        self._active: CacheRun | None = None
        self.sync = None  # a decision sync across ranks (cache_core/sync.py; set by nodes/raylight.py)

    def __deepcopy__(self, memo):
        # ModelPatcher.clone() deep-copies model_options. A holder is settings plus the last run's
        # stats, so a clone (a LoRA applied after our node, say) shares it: never copy the model
        # the adapter points at, and let Cache Stats on either side see the run.
        return self

    def __copy__(self):
        return self

    def node_names(self) -> str:
        """Our nodes on this model, as the user sees them in the graph."""
        names = (["TeaCache Patch"] if self.teacache is not None else []) + (
            ["L2C Schedule Loader"] if self.l2c is not None else [])
        return " and ".join(names) or "the dit-cache node"

    def run_id(self, teacache=None) -> str:
        teacache = teacache if teacache is not None else self.teacache
        tc = teacache.run_id() if (teacache is not None and teacache.enabled) else ""
        l2c = ""
        if self.l2c is not None:  # the file name says which schedule; the id says what it does
            l2c = self.l2c.run_id().replace("L2C(", f"L2C({self.l2c_label}:", 1) if self.l2c_label else self.l2c.run_id()
            l2c = with_reuse_tag(l2c, self.l2c_reuse)
        return make_run_id(self.adapter.name, tc, l2c)

    def teacache_for(self, n_steps: int):
        """The TeaCache settings of a run: with ``auto`` coefficients and profiles calibrated on
        this model, the one calibrated for the nearest step count."""
        if self.teacache is None or not self.calibrated:
            return self.teacache
        best = min(self.calibrated, key=lambda c: (abs(c[0] - n_steps), c[1].name))[1]
        return dataclasses.replace(self.teacache, coefficients=best)

    def with_settings(self, teacache=..., l2c=..., l2c_label=None, l2c_reuse=None) -> "CacheHolder":
        """A new holder sharing this one's adapter, for combining TeaCache and L2C nodes."""
        h = CacheHolder(self.adapter,
                        self.teacache if teacache is ... else teacache,
                        self.l2c if l2c is ... else l2c,
                        self.l2c_label if l2c_label is None else l2c_label,
                        self.l2c_reuse if l2c_reuse is None else l2c_reuse)
        h.calibrated = self.calibrated if teacache is ... else []
        h.lockstep = self.lockstep
        if self.sync is not None:  # the ranks' sync and the hooks of their token layout
            h.sync, h.hooks = self.sync, self.hooks
        return h

    # -- run lifecycle -------------------------------------------------------------------------
    def start_run(self, sigmas, latent_shape: tuple | None = None, sampler=None) -> CacheRun:
        run = CacheRun(self, sigmas, latent_shape, sampler)
        self._active = run
        return run

    def finish_run(self, run: CacheRun, ok: bool) -> None:
        try:
            run.recorder.finish()
            for n in run.lanes.notes():
                run.recorder.note(n)
            if not ok:
                run.recorder.note("the run was interrupted or failed; its caches were dropped")
            self.last_summary = run.recorder.summary()
            self.last_records = list(run.recorder.records)
            self.last_report = run.recorder.table()
            self.last_latent_shape = run.latent_shape
            self.runs_finished += 1
            s = self.last_summary
            log.info("dit-cache %s: computed %d/%d evaluations, layers %d/%d, est. %.2fx",
                     s["run_id"], s["computed"], s["evaluations"], s["layers_computed"],
                     s["layers_computed"] + s["layers_reused"], s["estimated_speedup"])
            for n in s["notes"]:
                log.info("dit-cache: %s", n)
        finally:
            run.lanes.reset()
            if self._active is run:
                self._active = None

    def active_run(self, transformer_options: dict | None = None) -> CacheRun | None:
        if transformer_options:
            r = transformer_options.get(RUN_KEY)
            if r is not None and r.holder is self:
                return r
        return self._active


def get_holder(model_options: dict) -> CacheHolder | None:
    return model_options.get("transformer_options", {}).get(KEY)


def outer_sample_wrapper(executor, *args, **kwargs):
    """Starts a fresh run per sampling call and always ends it, whatever happens inside."""
    guider = executor.class_obj
    orig = guider.model_options
    holder: CacheHolder = orig["transformer_options"][KEY]
    refuse_at_sampling(orig, holder.node_names())
    # CFGGuider.outer_sample(noise, latent_image, sampler, sigmas, ...)
    noise, sampler, sigmas = args[0], args[2], args[3]
    guider.model_options = comfy.model_patcher.create_model_options_clone(orig)
    # ComfyUI 0.29 packs several latents (video + audio) into one tensor and passes their shapes
    packed = kwargs.get("latent_shapes") or (args[8] if len(args) > 8 else None)
    shape = tuple(noise.shape) if not packed or len(packed) == 1 else None
    run = holder.start_run(sigmas, shape, sampler)
    run.recorder.stream_names.update(stream_names.cond_names(getattr(guider, "conds", None)))
    guider.model_options["transformer_options"][RUN_KEY] = run
    ok = False
    try:
        out = executor(*args, **kwargs)
        ok = True
        return out
    finally:
        holder.finish_run(run, ok)
        guider.model_options = orig


def predict_noise_wrapper(executor, x, timestep, model_options=None, seed=None, *args, **kwargs):
    """Marks one sampler evaluation: inside it, each cond's first evaluation with the model's own
    patches is the ordinary pass; anything else a guidance node adds (see ``passes.py``)."""
    model_options = model_options if model_options is not None else {}
    topts = model_options.get("transformer_options") or {}
    holder: CacheHolder | None = topts.get(KEY)
    run = holder.active_run(topts) if holder is not None else None
    if run is None:
        return executor(x, timestep, model_options, seed, *args, **kwargs)
    previous = run.passes.begin_call(topts, model_options)
    try:
        return executor(x, timestep, model_options, seed, *args, **kwargs)
    finally:
        run.passes.end_call(previous)


def apply_model_wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None,
                        transformer_options=None, **kwargs):
    """Tells the run which step, cond streams and pass this evaluation is, then runs the model."""
    topts = transformer_options if transformer_options is not None else {}
    holder: CacheHolder | None = topts.get(KEY)
    run = holder.active_run(topts) if holder is not None else None
    if run is None:
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    sigma = float(t.flatten()[0]) if hasattr(t, "flatten") else float(t)
    info = run.locator.locate(sigma)
    with run.lock:
        key = run.passes.classify(stream_keys(topts, x.shape[0]), topts, holder.adapter.stack_intact)
        stream_names.observe(run.recorder.stream_names, key.streams, topts, key.guidance, key.difference,
                             run.passes.call.options if run.passes.call is not None else None)
    if key.guidance:
        _note_pass(run.recorder, key)
    lane = run.lanes.enter(executor.class_obj, topts)  # the model copy this thread runs
    ctl = lane.controller
    ballot = multigpu.ballot(topts, key.cached)
    token = multigpu.enter_lane(lane)
    try:
        ctl.begin(info, key.streams, kind=key.guidance, cached=key.cached, agree=ballot)
        try:
            out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
            check = getattr(holder.adapter, "check_first_run", None)  # the generic route's
            if check is not None:
                check(run, ctl, x, out, lambda: executor(x, t, c_concat, c_crossattn, control, transformer_options,
                                                         **kwargs))
            return out
        finally:
            ctl.end()
    finally:
        if ballot is not None:
            ballot.close()
        multigpu.leave_lane(token)


def calc_cond_batch_wrapper(executor, model, conds, x_in, timestep, model_options, *args, **kwargs):
    """Under MultiGPU CFG Split, one lockstep round per evaluation (see ``multigpu.py``)."""
    topts = model_options.get("transformer_options") or {}
    holder: CacheHolder | None = topts.get(KEY)
    run = holder.active_run(topts) if holder is not None else None
    if run is not None and "multigpu_clones" in model_options:
        sigma = float(timestep.flatten()[0]) if hasattr(timestep, "flatten") else float(timestep)
        model_options = run.lanes.with_round(model_options, conds, x_in, timestep,
                                             f"step {run.locator.locate(sigma).step}")
    return executor(model, conds, x_in, timestep, model_options, *args, **kwargs)


def _note_pass(recorder, key) -> None:
    """What a guidance pass is, once per kind and run, in the stats' notes."""
    if key.difference:
        uncached = "" if key.cached or "#" in key.guidance else \
            "; it replaces the first or last block, so it runs uncached"
        recorder.note(f"guidance pass {key.guidance.split('#')[0]}: {describe(key.difference)}{uncached}")
    if "#" in key.guidance:
        recorder.note("guidance passes marked #n: a cond evaluated again within one sampler step with another "
                      "input (e.g. Self-Attention Guidance, context windows); they run uncached")


def wrappers() -> dict:
    """The ComfyUI wrappers this pack installs (under WRAPPER_KEY), by wrapper type."""
    w = comfy.patcher_extension.WrappersMP
    return {w.OUTER_SAMPLE: outer_sample_wrapper, w.PREDICT_NOISE: predict_noise_wrapper,
            w.APPLY_MODEL: apply_model_wrapper, w.CALC_COND_BATCH: calc_cond_batch_wrapper}


def stream_keys(topts: dict, batch: int) -> list:
    """One key per batch chunk: the cond's uuid when ComfyUI gives it, else cond/uncond."""
    uuids = topts.get("uuids")
    if uuids:
        return [str(u) for u in uuids]
    cou = topts.get("cond_or_uncond")
    if cou:
        names = {0: "cond", 1: "uncond"}
        seen: dict = {}
        keys = []
        for c in cou:  # duplicates (several conds of one kind) get their own key
            n = seen.get(c, 0)
            seen[c] = n + 1
            keys.append(f"{names.get(c, c)}{'' if n == 0 else n}")
        return keys
    return ["all"]


def patch_model(model, adapter_factory, teacache=..., l2c=..., l2c_label: str | None = None,
                l2c_reuse: str | None = None, node: str = "dit-cache"):
    """A clone of ``model`` with caching set up. A model already patched by this pack keeps its
    other settings, so TeaCache Patch and L2C Schedule Loader combine in either order; the same
    node twice on one chain is one cache with the later node's settings (said in the log and in
    every run's stats). A model that ComfyUI's EasyCache/LazyCache caches is refused
    (:class:`~.other_caches.CacheConflictError`, naming the node to remove)."""
    refuse_before(model, node)
    existing = get_holder(model.model_options)
    if existing is not None:
        holder = existing.with_settings(teacache=teacache, l2c=l2c, l2c_label=l2c_label, l2c_reuse=l2c_reuse)
        replaced = _replaced_settings(existing, holder, teacache, l2c)
        if replaced:
            log.warning("dit-cache: %s", replaced)
            holder.notes = [n for n in existing.notes if n != replaced] + [replaced]
        else:
            holder.notes = list(existing.notes)
    else:
        holder = CacheHolder(adapter_factory(model), None if teacache is ... else teacache,
                             None if l2c is ... else l2c, l2c_label or "", l2c_reuse or "cached")
    m = model.clone()
    m.model_options["transformer_options"][KEY] = holder
    if existing is None:
        for kind, fn in wrappers().items():
            m.add_wrapper_with_key(kind, WRAPPER_KEY, fn)
        for kind, fn in multigpu.callbacks().items():
            m.add_callback_with_key(kind, WRAPPER_KEY, fn)
    holder.adapter.install(m, holder)
    return m, holder


def _replaced_settings(old: CacheHolder, new: CacheHolder, teacache, l2c) -> str:
    """What a second TeaCache Patch / L2C Schedule Loader on one chain replaced, or ""."""
    if teacache is not ... and old.teacache is not None:
        before = old.teacache.run_id() if old.teacache.enabled else "off"
        after = new.teacache.run_id() if new.teacache is not None and new.teacache.enabled else "off"
        return (f"TeaCache Patch is applied twice on this model; the later node's settings {after} replaced the "
                f"earlier node's {before} (one cache; remove one node to silence this)")
    if l2c is not ... and old.l2c is not None:
        return (f"L2C Schedule Loader is applied twice on this model; the later schedule {new.l2c_label or 'given'} "
                f"replaced {old.l2c_label or 'the earlier one'} (one cache; remove one node to silence this)")
    return ""
