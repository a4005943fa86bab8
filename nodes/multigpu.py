"""dit-cache under ComfyUI's MultiGPU CFG Split (``comfy_extras/nodes_multigpu.py``, ComfyUI 0.29.0
and newer).

The split gives every extra device its own copy of the model (``deepclone_multigpu``, re-matched
to the main patcher by ``match_multigpu_clones`` before every sampling run) and evaluates the
conds of one step side by side, one pool thread per device (``_calc_cond_batch_multigpu`` in
``comfy/samplers.py``). Every thread's ``transformer_options`` are built from the main model's,
so all devices meet the same :class:`~.runtime.CacheRun`. What keeps them apart:

* **Lanes.** A run has one :class:`Lane` per model copy that evaluates it, each with its own
  :class:`~..cache_core.stack.CacheController` (per-stream TeaCache state and residuals, which
  stay on that device) and stack hooks built on that copy's modules, so an indicator never
  calls another device's weights. The APPLY_MODEL wrapper picks the lane from the model it runs
  (``executor.class_obj``) and marks it as the thread's current one (a context variable, so the
  block patches of a thread only ever see their own lane). On one device there is one lane and
  the run behaves exactly as before.
* **Block patches bound to the copy's blocks.** An object patch is bound to one block instance.
  ComfyUI copies the main patcher's object patches to every device's copy, so the
  ``ON_DEEPCLONE_MULTIGPU`` and ``ON_MATCH_MULTIGPU_CLONES`` callbacks rebind ours to the copy's
  own blocks (:func:`rebind_object_patches`); a block patch that finds itself on another lane's
  model fails loudly instead of running the wrong device's weights.
* **Lockstep** (TeaCache Patch, ``multigpu`` = lockstep, the default). The CALC_COND_BATCH
  wrapper opens a :class:`~..cache_core.lockstep.Round` for every model evaluation whose conds go
  one per device; the forwards decide together at their first block, as cond and uncond do in
  one batched forward on one GPU. A step saves wall time only when every device skips, and
  lockstep makes the devices skip on the same steps. ``independent`` lets each device decide for
  its own conds, as one GPU does when cond and uncond run apart.
"""
from __future__ import annotations

import contextvars
import logging
import threading

from ..cache_core.lockstep import Round

log = logging.getLogger("dit_cache")

ROUND_KEY = "dit_cache_round"  # transformer_options key of the evaluation's lockstep round
MODES = ("lockstep", "independent")

_LANE: contextvars.ContextVar = contextvars.ContextVar("dit_cache_lane", default=None)


class Lane:
    """One model copy's share of a run: its controller and the device it runs on."""

    def __init__(self, run, base_model, controller):
        self.run = run
        self.base_model = base_model
        self.controller = controller
        self.device = ""  # set from ComfyUI's multigpu_thread_device
        self._module_ids: set | None = None

    def owns(self, module) -> bool:
        """Whether ``module`` belongs to this lane's model copy."""
        if self._module_ids is None:
            self._module_ids = {id(m) for m in self.base_model.modules()}
        return id(module) in self._module_ids


class Lanes:
    """The lanes of one run, created as the model copies first evaluate it. ``make_controller(hooks)``
    builds a controller for the run; ``primary`` is the model the node patched."""

    def __init__(self, run, adapter, primary_hooks, make_controller, lockstep: bool = True):
        self.run = run
        self.adapter = adapter
        self.make_controller = make_controller
        self.lockstep = lockstep
        self.primary = Lane(run, adapter.base_model, make_controller(primary_hooks))
        self._lanes = {id(adapter.base_model): self.primary}
        self._lock = threading.Lock()
        self.rounds = 0      # evaluations decided in lockstep
        self.unlocked = 0    # split evaluations decided per device (more conds than devices)

    def all(self) -> list[Lane]:
        with self._lock:
            return list(self._lanes.values())

    def enter(self, base_model, transformer_options: dict) -> Lane:
        """The lane of ``base_model`` (the model the APPLY_MODEL wrapper runs), made on first use."""
        lane = self._lanes.get(id(base_model))
        if lane is None or lane.base_model is not base_model:
            with self._lock:
                lane = self._lanes.get(id(base_model))
                if lane is None or lane.base_model is not base_model:
                    hooks = self.adapter.for_model(base_model).hooks()
                    lane = Lane(self.run, base_model, self.make_controller(hooks))
                    self._lanes[id(base_model)] = lane
        device = transformer_options.get("multigpu_thread_device")
        if device is not None and not lane.device:
            lane.device = lane.controller.device = str(device)
        return lane

    def reset(self) -> None:
        for lane in self.all():
            lane.controller.reset()

    def notes(self) -> list[str]:
        """What the stats say about a run on several devices (nothing on one)."""
        lanes = [lane for lane in self.all() if lane.device]
        if len(lanes) < 2:
            return []
        devices = ", ".join(lane.device for lane in lanes)
        mode = ("decided in lockstep (every device skips the blocks on the same steps)" if self.lockstep
                else "decided per device (multigpu = independent)")
        out = [f"MultiGPU CFG Split over {len(lanes)} devices ({devices}): each device keeps its own caches; "
               f"steps {mode}"]
        if self.lockstep and self.unlocked:
            out.append(f"lockstep needs at most one cond per device: {self.unlocked} evaluations with more conds "
                       "than devices were decided per device")
        return out

    # -- lockstep ------------------------------------------------------------------------------
    def with_round(self, model_options: dict, conds, x_in, timestep, label: str = "") -> dict:
        """``model_options`` for one ``calc_cond_batch`` call: with a lockstep round in its
        ``transformer_options`` when the call is split over devices, one cond each."""
        if not self.lockstep or self.primary.controller.teacache is None \
                or "multigpu_clones" not in model_options or model_options.get("multigpu_thread_pool") is None:
            return model_options
        n = forwards_per_device(conds, x_in, timestep, len(model_options["multigpu_clones"]))
        if n is None:
            self.unlocked += 1
            return model_options
        if n < 2:
            return model_options
        self.rounds += 1
        topts = dict(model_options.get("transformer_options") or {})
        topts[ROUND_KEY] = Round(n, label=label)
        return {**model_options, "transformer_options": topts}


def ballot(transformer_options: dict, cached: bool):
    """This forward's vote in its evaluation's lockstep round, or None. A forward that runs
    uncached abstains at once, so no device waits for it."""
    round_ = transformer_options.get(ROUND_KEY)
    if round_ is None:
        return None
    b = round_.ballot()
    if not cached:
        b.close()
        return None
    return b


def forwards_per_device(conds, x_in, timestep, n_devices: int) -> int | None:
    """How many forwards ``_calc_cond_batch_multigpu`` runs side by side for ``conds``, when it
    runs at most one per device: the conds active at ``timestep`` (ComfyUI's own
    ``get_area_and_mult`` says which), each alone on a device when there are no more of them than
    devices. None when a device would get several (its forwards then run one after another, so
    they cannot wait for each other) or when default conds (hook keyframes) add forwards."""
    import comfy.samplers

    active = 0
    for cond in conds:
        for c in cond or ():
            if "default" in c:
                return None
            if comfy.samplers.get_area_and_mult(c, x_in, timestep) is not None:
                active += 1
    return active if active <= n_devices else None


def enter_lane(lane: Lane):
    """Marks ``lane`` as this thread's current one; returns the token for :func:`leave_lane`."""
    return _LANE.set(lane)


def leave_lane(token) -> None:
    _LANE.reset(token)


def controller_of(run):
    """The controller of the lane this thread runs for ``run``, else the run's own."""
    lane = _LANE.get()
    if lane is not None and lane.run is run:
        return lane.controller
    return run.controller


def check_runs_here(module, what: str = "block") -> None:
    """Fail loudly when a patch bound to ``module`` runs for another model copy's lane."""
    lane = _LANE.get()
    if lane is not None and len(lane.run.lanes.all()) > 1 and not lane.owns(module):
        raise RuntimeError(
            f"dit-cache: a {type(module).__name__} {what} of another device's model copy ran for "
            f"{lane.device or 'this device'} under MultiGPU CFG Split (its patch was not bound to this copy, "
            "e.g. another node pack wraps the same block). Remove that node or MultiGPU CFG Split; "
            "dit-cache will not run one device's weights for another")


def rebind_object_patches(source, clone) -> None:
    """``ON_DEEPCLONE_MULTIGPU`` / ``ON_MATCH_MULTIGPU_CLONES`` callback: the clone got the
    source's object patches, bound to the source's blocks; bind ours to the clone's own."""
    import comfy.utils

    from .adapters.base import ModuleBoundPatch

    if clone.model is source.model:
        return
    for key, patch in list(clone.object_patches.items()):
        if isinstance(patch, ModuleBoundPatch) and key.endswith(".forward"):
            module = comfy.utils.get_attr(clone.model, key[: -len(".forward")])
            clone.object_patches[key] = patch.rebound(module, key)


def callbacks() -> dict:
    """The ComfyUI callbacks this pack registers (releases with MultiGPU CFG Split only)."""
    import comfy.patcher_extension

    c = comfy.patcher_extension.CallbacksMP
    return {getattr(c, name): rebind_object_patches
            for name in ("ON_DEEPCLONE_MULTIGPU", "ON_MATCH_MULTIGPU_CLONES") if hasattr(c, name)}
