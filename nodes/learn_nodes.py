"""TeaCache Calibrate and L2C Learn Schedule: fit a model's own TeaCache profile / learn its own
block-level L2C schedule through ComfyUI's real sampling, save it in the pack's model folders and
hand back the patched model."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

import comfy.model_management
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import comfy.utils
from comfy_api.latest import io

from ..cache_core.fileio import atomic_write
from ..cache_core.calibrate import RecordingController, prediction_error
from ..cache_core.coefficients import get_profile
from ..cache_core.learn import BlockRouter, LearningController, frozen
from ..cache_core.steps import StepLocator
from ..cache_core.teacache import TeaCacheConfig
from . import folders
from .profiles import model_fingerprint
from . import runtime
from .adapters import detect
from .adapters.base import comfyui_version
from .other_caches import refuse_before

log = logging.getLogger("dit_cache")

WRAPPER_KEY = "dit_cache_learn"


# -- shared plumbing ---------------------------------------------------------------------------
class _Run:
    def __init__(self, holder, controller):
        self.holder = holder
        self.controller = controller


class _DriverHolder:
    """What the adapters' block patches need of a holder: ``active_run()`` with a ``.controller``."""

    def __init__(self, hooks, controller):
        self.hooks = hooks
        self.run = _Run(self, controller)

    def active_run(self, transformer_options=None):
        return self.run


class _Locators:
    """StepLocator for the sampling schedule an evaluation belongs to (ComfyUI passes it)."""

    def __init__(self, steps: int):
        self.steps = steps
        self._key = None
        self._loc = None

    def locate(self, topts: dict, sigma: float):
        sig = topts.get("sample_sigmas")
        if sig is None:
            sig = torch.linspace(1.0, 0.0, self.steps + 1)
        key = (id(sig), tuple(sig.shape))
        if key != self._key:
            self._key = key
            self._loc = StepLocator([float(s) for s in sig.flatten()])
        return self._loc.locate(sigma)


def _driven_clone(model, adapter, controller, wrapper):
    """A clone of ``model`` whose blocks go to ``controller`` and whose APPLY_MODEL goes through
    ``wrapper``; any caching this pack had set up on the model is removed (full compute)."""
    m = model.clone()
    topts = m.model_options.setdefault("transformer_options", {})
    if topts.get(runtime.KEY) is not None:
        for kind in runtime.wrappers():
            m.remove_wrappers_with_key(kind, runtime.WRAPPER_KEY)
        topts.pop(runtime.KEY, None)
    holder = _DriverHolder(adapter.hooks(), controller)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY, wrapper)
    adapter.install(m, holder)
    return m


def _sample(m, latent: dict, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
            positive, negative, callback=None):
    samples = comfy.sample.fix_empty_latent_channels(m, latent["samples"])
    noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
    return comfy.sample.sample(m, noise, steps, cfg, sampler_name, scheduler, positive, negative, samples,
                               noise_mask=latent.get("noise_mask"), callback=callback, disable_pbar=True,
                               seed=seed)


def _oom_message(what: str, latent: dict, exc: BaseException) -> RuntimeError:
    shape = tuple(latent["samples"].shape)
    return RuntimeError(
        f"{what} ran out of memory ({type(exc).__name__}): the model with one step's activations does not fit. "
        f"Lower the latent size (now {shape}: width/height/frames or batch), use cfg 1.0 (one stream instead "
        "of two), or free memory by unloading other models; for L2C also try fewer steps.")


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, comfy.model_management.OOM_EXCEPTION) and "out of memory" in str(exc).lower() \
        or isinstance(exc, MemoryError) or "CUDA out of memory" in str(exc)


def _to_image(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)[None]


BG, FG, GRID = (24, 24, 28), (220, 220, 220), (70, 70, 78)


# -- calibration -------------------------------------------------------------------------------
def record_pairs(model, adapter, positive, negative, latent, seeds, steps, sampler_name, scheduler, cfg,
                 progress=None) -> RecordingController:
    """Samples once per seed at full compute and records (indicator change, output change) pairs.
    The output is the model's prediction in epsilon/velocity units, (x - denoised) / sigma."""
    ctl = RecordingController(adapter.hooks())
    locs = _Locators(steps)

    def wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kw):
        topts = transformer_options if transformer_options is not None else {}
        sigma = float(t.flatten()[0])
        streams = runtime.stream_keys(topts, x.shape[0])
        ctl.begin(locs.locate(topts, sigma), streams)
        try:
            out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kw)
        finally:
            ctl.end()
        if sigma > 0:
            ctl.output((x.float() - out.float()) / sigma, streams)
        return out

    m = _driven_clone(model, adapter, ctl, wrapper)
    for s in seeds:
        cb = (lambda step, x0, x, total: progress(1)) if progress is not None else None
        _sample(m, latent, int(s), steps, cfg, sampler_name, scheduler, positive, negative, cb)
        ctl.reset()
    return ctl


def calibration_plot(xs, ys, result, reference=None, title: str = "", width: int = 640,
                     height: int = 420) -> torch.Tensor:
    img = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(img)
    left, top, right, bottom = 60, 28, width - 16, height - 40
    d.text((8, 6), title[:100], fill=FG)
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    lo, hi = result.input_range
    xmin, xmax = float(min(xs.min(), lo)), float(max(xs.max(), hi))
    if xmax - xmin < 1e-12:
        xmax = xmin + 1e-6
    grid = np.linspace(xmin, xmax, 200)
    fit = result.predict(grid)
    ymax = float(max(ys.max(), fit.max(), 1e-9)) * 1.1
    d.rectangle([left, top, right, bottom], outline=GRID)

    def px(x, y):
        return (left + (x - xmin) / (xmax - xmin) * (right - left), bottom - min(y, ymax) / ymax * (bottom - top))

    for x, y in zip(xs, ys):
        cx, cy = px(x, y)
        d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], outline=(120, 200, 220))
    if reference is not None:
        ref = np.array([reference.rescale(float(v)) for v in grid])
        d.line([px(x, y) for x, y in zip(grid, ref)], fill=(150, 150, 150), width=1)
    d.line([px(x, y) for x, y in zip(grid, fit)], fill=(245, 166, 35), width=2)
    for i in range(5):
        v = xmin + (xmax - xmin) * i / 4
        d.text((px(v, 0)[0] - 14, bottom + 4), f"{v:.3g}", fill=FG)
        w = ymax * i / 4
        d.text((4, px(xmin, w)[1] - 6), f"{w:.3g}", fill=FG)
    d.text((left, height - 18), "x: rel. L1 change of the indicator   y: rel. L1 change of the output   "
                                "orange: fit" + ("   grey: published" if reference is not None else ""), fill=FG)
    return _to_image(img)


def _conditioning_inputs() -> list:
    return [io.Conditioning.Input("positive", tooltip="Positive prompt conditioning, as for KSampler."),
            io.Conditioning.Input("negative", tooltip="Negative prompt conditioning, as for KSampler.")]


def _sampler_inputs() -> list:
    """The KSampler settings both learning nodes sample with, worded the same in both."""
    return [io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS,
                           tooltip="Sampler, as in KSampler; use the one you generate with."),
            io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS,
                           tooltip="Scheduler, as in KSampler; use the one you generate with."),
            io.Float.Input("cfg", default=3.5, min=0.0, max=100.0, step=0.1, round=0.01,
                           tooltip="Classifier-free guidance scale, as in KSampler.")]


class TeaCacheCalibrate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DitCache_TeaCacheCalibrate",
            display_name="TeaCache Calibrate",
            category="dit-cache",
            description="Fits TeaCache's rescaling polynomial to this model: samples at full compute, records how "
                        "much the first block's input and the model output change between steps, fits a "
                        "non-negative, non-decreasing polynomial and saves it as a profile in "
                        "models/teacache_profiles.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion transformer to calibrate (any supported family). "
                                                "Caching set up on it is ignored while calibrating."),
                *_conditioning_inputs(),
                io.Latent.Input("latent", tooltip="The latent to sample from (e.g. Empty Latent Image). Smaller "
                                                  "latents calibrate faster; use the resolution you generate at."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff,
                             tooltip="Noise seed of the first calibration run; run k uses seed + k."),
                io.Int.Input("seeds", default=4, min=1, max=64,
                             tooltip="How many sampling runs (different seeds) to collect data from. More = "
                                     "a steadier fit, longer calibration."),
                io.Int.Input("steps", default=20, min=2, max=1000,
                             tooltip="Sampling steps per run; use the step count you generate with."),
                *_sampler_inputs(),
                io.String.Input("profile_name", default="my_model",
                                tooltip="File name of the profile saved in models/teacache_profiles (.json is "
                                        "added). It then appears in TeaCache Patch's coefficients list."),
            ],
            outputs=[io.Model.Output(tooltip="The model with TeaCache using the new profile at the family's "
                                             "recommended threshold."),
                     io.String.Output(display_name="report", tooltip="Fit, error and where the profile was saved."),
                     io.Image.Output(display_name="plot", tooltip="Recorded pairs and the fitted curve.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent, seed, seeds, steps, sampler_name, scheduler, cfg,
                profile_name) -> io.NodeOutput:
        adapter = detect(model)
        refuse_before(model, "TeaCache Calibrate")
        path = folders.output_path(folders.PROFILES, profile_name.strip(), ".json")  # name checked first
        pbar = comfy.utils.ProgressBar(int(seeds) * int(steps))
        t0 = time.perf_counter()
        try:
            ctl = record_pairs(model, adapter, positive, negative, latent, [seed + k for k in range(int(seeds))],
                               int(steps), sampler_name, scheduler, cfg, progress=pbar.update)
        except Exception as e:
            if _is_oom(e):
                raise _oom_message("TeaCache Calibrate", latent, e) from e
            raise
        ch = ctl.changes
        if len(ch) < 2:
            raise ValueError(f"TeaCache Calibrate recorded only {len(ch)} pairs; use more steps or seeds")
        res = ch.fit(order=4)
        name = os.path.splitext(os.path.basename(path))[0]
        published = None
        try:
            published = get_profile(adapter.profile_for_variant())
        except KeyError:
            pass
        pub_err = prediction_error(published, ch.xs, ch.ys) if published is not None else None
        doc = {"name": name, "family": adapter.name, "variant": adapter.variant(),
               "model_sha256": model_fingerprint(model), "model_sha256_method": "names+shapes+dtypes of all "
               "weights, leading 4096 values of 8 evenly spaced tensors",
               "steps": int(steps), "sampler": sampler_name, "scheduler": scheduler, "cfg": float(cfg),
               "seeds": [int(seed) + k for k in range(int(seeds))],
               "latent_shape": list(latent["samples"].shape), "source": "TeaCache Calibrate",
               **res.to_dict()}
        if pub_err is not None:
            doc["published_profile"] = published.name
            doc["published_rmse_on_same_data"] = pub_err["rmse"]
        atomic_write(path, lambda tmp: open(tmp, "w", encoding="utf-8").write(json.dumps(doc, indent=1) + "\n"))
        profile = res.profile(name, source=f"calibrated: {os.path.basename(path)}")
        tc = TeaCacheConfig(rel_l1_thresh=adapter.recommended_threshold, coefficients=profile)
        patched, _ = runtime.patch_model(model, lambda m: adapter, teacache=tc, node="TeaCache Calibrate")
        lines = [f"TeaCache profile for {adapter.display} saved as {os.path.basename(path)} "
                 f"(models/{folders.PROFILES})",
                 f"{res.n} pairs from {int(seeds)} runs x {int(steps)} steps ({sampler_name}/{scheduler}, "
                 f"cfg {cfg:g}) in {time.perf_counter() - t0:.1f}s",
                 "coefficients (highest power first): " + ", ".join(f"{c:.6g}" for c in res.coefficients),
                 f"input range [{res.input_range[0]:.4g}, {res.input_range[1]:.4g}]",
                 f"fit RMSE {res.rmse:.4g}, relative error {res.rel_error:.3f} (unconstrained RMSE "
                 f"{res.unconstrained_rmse:.4g})"]
        if pub_err is not None:
            lines.append(f"published '{published.name}' coefficients on the same data: RMSE {pub_err['rmse']:.4g}")
        lines.append(f"output model: TeaCache at threshold {adapter.recommended_threshold:g} with this profile")
        plot = calibration_plot(ch.xs, ch.ys, res, published, title=f"TeaCache calibration: {name} ({adapter.name})")
        return io.NodeOutput(patched, "\n".join(lines), plot)


# -- L2C learning ------------------------------------------------------------------------------
def _normal(obj):
    """Inference-mode tensors (ComfyUI runs nodes under torch.inference_mode) cannot take part in
    autograd: clone them into normal tensors, recursing into lists, tuples and dicts."""
    if isinstance(obj, torch.Tensor):
        return obj.clone() if obj.is_inference() else obj
    if isinstance(obj, dict):
        return {k: _normal(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_normal(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_normal(v) for v in obj)
    return obj


class NoBackwardError(RuntimeError):
    """The model runs an operation without a backward, so no schedule can be learned on it here."""


@contextlib.contextmanager
def _autograd_kernels(adapter):
    """Backward through the model. From 0.29.0 ComfyUI runs RoPE and RMSNorm through comfy_kitchen
    kernels without a backward unless ``comfy.model_management.in_training`` is set, the switch
    ComfyUI's own training node (comfy_extras/nodes_train.py) turns on around its loop and off
    after; older releases have neither the switch nor those kernels. A few models call such a
    kernel whatever the switch says (0.29.0: Cosmos-Predict2): that is said plainly."""
    mm = comfy.model_management
    before = getattr(mm, "in_training", None)
    if before is not None:
        mm.in_training = True
    try:
        yield
    except RuntimeError as e:
        m = re.search(r"backward through (\S+?)(?:\.default)? but no autograd formula", str(e))
        # an op writing into an existing tensor (HiDream-O1's Qwen3-VL layers: torch.add(..., out=...))
        out = re.search(r"(\w+)\(\): functions with out=\.\.\. arguments don't support automatic differentiation", str(e))
        if m is None and out is None:
            raise
        op = m.group(1) if m is not None else f"torch.{out.group(1)}(out=...)"
        raise NoBackwardError(
            f"L2C Learn Schedule needs gradients through the model, and this ComfyUI ({comfyui_version()}) runs "
            f"{adapter.display} through {op}, which has no backward (ComfyUI's own training cannot "
            "go through it either). Use TeaCache Patch for this model, or learn the schedule with another "
            "ComfyUI release.") from e
    finally:
        if before is not None:
            mm.in_training = before


def _normalize_weights(module: torch.nn.Module) -> int:
    """Turns inference-mode weights (a model loaded inside a ComfyUI node) into normal tensors with
    the same values, one tensor at a time, so backward can save them. Returns how many changed."""
    n = 0
    for mod in module.modules():
        for name, p in list(mod._parameters.items()):
            if p is not None and p.is_inference():
                mod._parameters[name] = torch.nn.Parameter(p.detach().clone(), requires_grad=False)
                n += 1
        for name, b in list(mod._buffers.items()):
            if b is not None and b.is_inference():
                mod._buffers[name] = b.clone()
                n += 1
    return n


def learn_schedule(model, adapter, positive, negative, latent, seed, steps, sampler_name, scheduler, cfg,
                   lam, theta, iterations, lr=0.25, init_logit=2.0, progress=None):
    """Trains a block-level router on the model's real blocks along its full-compute trajectory and
    returns (schedule, router)."""
    # the paper's layout: full-compute and cache steps alternate, so a reused block always takes
    # the residual of the step just before (exactly what it was trained with); the last step always
    # computes (its output is the sample itself, as TeaCache forces it too)
    router = BlockRouter(int(steps), adapter.n_blocks, cache_steps=range(1, max(2, int(steps) - 1), 2), lam=lam, lr=lr,
                         init_logit=init_logit)
    ctl = LearningController(adapter.hooks(), router)
    locs = _Locators(int(steps))
    state = {"normalized": False, "last_step": -1}

    def wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kw):
        topts = transformer_options if transformer_options is not None else {}
        sigma = float(t.flatten()[0])
        info = locs.locate(topts, sigma)
        streams = runtime.stream_keys(topts, x.shape[0])
        key = (tuple(streams), tuple(x.shape))
        with torch.inference_mode(False):
            if not state["normalized"]:
                n = _normalize_weights(m.model)
                if n:
                    log.info("L2C Learn Schedule: %d inference-mode weights made trainable-through", n)
                state["normalized"] = True
            args = _normal((x, t, c_concat, c_crossattn, control))
            kws = _normal(kw)

            def forward():
                ctl.begin(info, streams)
                try:
                    return executor(*args, transformer_options, **kws)
                finally:
                    ctl.end()

            its = int(iterations) if info.on_schedule else 0
            with _autograd_kernels(adapter):
                out = ctl.evaluate(forward, info.step, key, iterations=its, loss_scale=1.0 / max(sigma, 1e-4))
        if progress is not None and info.step != state["last_step"]:
            state["last_step"] = info.step
            progress(1)
        return out

    m = _driven_clone(model, adapter, ctl, wrapper)
    with frozen([m.model]):
        _sample(m, latent, int(seed), int(steps), cfg, sampler_name, scheduler, positive, negative)
    ctl.reset()
    sched = router.to_schedule(adapter.name, float(theta),
                               source=f"L2C Learn Schedule lam={lam:g} theta={theta:g} it={iterations}")
    return sched, router


def schedule_heatmap(sched, router=None, title: str = "", cell: int = 18) -> torch.Tensor:
    """steps (rows) x layers (columns): blue = compute, orange = reuse; the shade is beta."""
    steps, layers = sched.steps, sched.layers
    cw = max(6, min(cell, 900 // max(1, layers)))
    ch = max(6, min(cell, 600 // max(1, steps)))
    left, top = 48, 26
    w = left + layers * cw + 12
    h = top + steps * ch + 30
    img = Image.new("RGB", (max(w, 320), h), BG)
    d = ImageDraw.Draw(img)
    d.text((6, 6), title[:80], fill=FG)
    beta = torch.sigmoid(router.full_logits()[:, :, 0]) if router is not None else None
    comp = sched.compute.any(dim=2)
    for s in range(steps):
        d.text((4, top + s * ch), str(s), fill=FG)
        for l in range(layers):  # noqa: E741
            b = float(beta[s, l]) if beta is not None else 1.0
            if bool(comp[s, l]):
                col = (int(40 + 26 * b), int(80 + 55 * b), int(140 + 105 * b))
            else:
                col = (int(245 - 60 * b), int(166 - 40 * b), 35)
            x0, y0 = left + l * cw, top + s * ch
            d.rectangle([x0, y0, x0 + cw - 2, y0 + ch - 2], fill=col)
    d.text((left, h - 18), "rows: steps, columns: blocks; blue = compute, orange = reuse", fill=FG)
    return _to_image(img)


class L2CLearnSchedule(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DitCache_L2CLearnSchedule",
            display_name="L2C Learn Schedule",
            category="dit-cache",
            description="Learns a Learning-to-Cache schedule (arXiv 2406.01733) for this model: along one "
                        "full-compute sampling run, a router per step and block learns to mix each block's fresh "
                        "output with its cached residual from the previous step (model frozen). Saved in "
                        "models/l2c_schedules and applied to the output model.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion transformer to learn a schedule for (frozen; only "
                                                "the router is trained)."),
                *_conditioning_inputs(),
                io.Latent.Input("latent", tooltip="The latent to sample from. Training keeps one step's activations "
                                                  "for backward: a smaller latent needs less memory."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, tooltip="Noise seed of the run."),
                io.Int.Input("steps", default=20, min=2, max=1000,
                             tooltip="Sampling steps; the schedule has one row per step (it is resampled for "
                                     "other step counts)."),
                *_sampler_inputs(),
                io.Float.Input("lam", default=1e-3, min=0.0, max=10.0, step=1e-4, round=1e-6,
                               tooltip="lambda: weight of the sum of betas in the loss. Larger = more blocks reused "
                                       "(faster, lower quality)."),
                io.Float.Input("theta", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="theta: a block computes where sigmoid(logit) > theta. Larger = more reuse."),
                io.Int.Input("iterations", default=20, min=1, max=10000,
                             tooltip="Router updates per step (each costs about three model evaluations: "
                                     "forward and backward)."),
                io.String.Input("schedule_name", default="my_model_l2c",
                                tooltip="File name of the schedule saved in models/l2c_schedules (.safetensors "
                                        "is added). It then appears in L2C Schedule Loader's list."),
            ],
            outputs=[io.Model.Output(tooltip="The model with the learned L2C schedule."),
                     io.String.Output(display_name="report", tooltip="Training loss, reuse and where the schedule "
                                                                      "was saved."),
                     io.Image.Output(display_name="heatmap", tooltip="Steps x blocks: compute (blue) or reuse "
                                                                     "(orange).")],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent, seed, steps, sampler_name, scheduler, cfg, lam, theta,
                iterations, schedule_name) -> io.NodeOutput:
        adapter = detect(model)
        refuse_before(model, "L2C Learn Schedule")
        for name, v in (("lam", lam), ("theta", theta)):
            if v is None or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if not 0.0 <= theta <= 1.0:
            raise ValueError(f"theta must be between 0 and 1, got {theta}; 0.5 is a good start")
        path = folders.output_path(folders.SCHEDULES, schedule_name.strip(), ".safetensors")
        pbar = comfy.utils.ProgressBar(int(steps))
        t0 = time.perf_counter()
        try:
            sched, router = learn_schedule(model, adapter, positive, negative, latent, seed, steps, sampler_name,
                                           scheduler, cfg, lam, theta, iterations, progress=pbar.update)
        except Exception as e:
            if _is_oom(e):
                raise _oom_message("L2C Learn Schedule", latent, e) from e
            raise
        atomic_write(path, lambda tmp: sched.save(tmp))
        base = os.path.basename(path)
        patched, _ = runtime.patch_model(model, lambda m: adapter, l2c=sched, l2c_label=base,
                                         node="L2C Learn Schedule")
        hist = router.history
        s = sched.summary()
        lines = [f"L2C schedule for {adapter.display} saved as {base} (models/{folders.SCHEDULES})",
                 f"{int(steps)} steps x {adapter.n_blocks} blocks, lambda {lam:g}, theta {theta:g}, "
                 f"{int(iterations)} updates per step, {len(hist)} in all, {time.perf_counter() - t0:.1f}s",
                 sched.describe()]
        if hist:
            lines.append(f"last loss {hist[-1]['loss']:.4g} (mse {hist[-1]['mse']:.4g}, sum beta "
                         f"{hist[-1]['l1']:.3g})")
        if s["computed"] == s["total"]:
            lines.append("no block is reused: raise lam or theta for more reuse")
        img = schedule_heatmap(sched, router, title=f"L2C {base}")
        return io.NodeOutput(patched, "\n".join(lines), img)


def extra_nodes() -> list:
    return [TeaCacheCalibrate, L2CLearnSchedule]
