"""Which samplers cache well: TeaCache reuse per ComfyUI sampler on the reference DiT.

    COMFYUI_PATH=<a ComfyUI checkout> <its env's python> -m bench.sampler_noise [--threads 1]

Runs ComfyUI's own k-diffusion sampler functions (``comfy/k_diffusion/sampling.py``, imported from
the checkout, never copied) on the shipped reference DiT (class-conditional flow matching, 8x8
digits), batched cond/uncond with cfg 3, through :class:`cache_core.stack.CacheController`
(TeaCache, ``raw`` coefficients, at the demo's thresholds). The samplers see the model as they see
a ComfyUI flow model: called with ``(x, sigma)`` it returns the denoised image, and it carries
ComfyUI's ``ModelSamplingDiscreteFlow`` + ``CONST`` model sampling (shift 1), so the ancestral
samplers take their rectified-flow branches as in ComfyUI.

Per sampler: model evaluations per stream, how many computed at each threshold, the median
relative L1 change of the TeaCache indicator between consecutive evaluations (uncached run), and
PSNR of the cached samples against the same sampler uncached (same seed and noise). Writes
``bench/results/sampler_noise.json``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from types import SimpleNamespace

import torch

from dit_reference.demo import psnr
from dit_reference.model import ReferenceDiT
from dit_reference.sampling import STREAMS, flow_sigmas, make_controller
from cache_core.steps import StepLocator
from cache_core.teacache import TeaCacheConfig

from .common import environment, log, setup, write_json

DETERMINISTIC = ["euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ipndm", "deis", "res_multistep",
                 "gradient_estimation"]
NOISY = ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde",
         "dpmpp_3m_sde", "er_sde", "seeds_2", "sa_solver", "res_multistep_ancestral", "ddpm", "lcm"]


def import_comfy():
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        raise SystemExit("set COMFYUI_PATH to a ComfyUI checkout (and run with its environment's python)")
    sys.path.insert(0, path)
    import comfy.options
    comfy.options.enable_args_parsing(False)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import comfy.k_diffusion.sampling as k_sampling
    import comfy.model_sampling as model_sampling
    return k_sampling, model_sampling


class FlowDenoiser:
    """The reference DiT with cfg as ComfyUI's k-diffusion samplers call a model: ``(x, sigma)`` ->
    denoised. Flow matching: x = (1 - sigma) x0 + sigma noise, the DiT predicts v = noise - x0, so
    x0 = x - sigma v. Every evaluation goes through ``controller`` when one is given."""

    def __init__(self, model, labels, cfg, sigmas, model_sampling, controller=None):
        self.model, self.labels, self.cfg, self.controller = model, labels, cfg, controller
        self.locator = StepLocator(sigmas.tolist())
        self.y = torch.cat([labels, torch.full_like(labels, model.null_class)])
        self.evaluations = 0
        self.inner_model = SimpleNamespace(inner_model=SimpleNamespace(model_sampling=model_sampling),
                                           model_patcher=SimpleNamespace(get_model_object=lambda name: model_sampling))

    @torch.no_grad()
    def __call__(self, x, sigma, **extra):
        s = float(sigma.flatten()[0])
        self.evaluations += 1
        xin = torch.cat([x, x])
        t = torch.full((xin.shape[0],), s, dtype=x.dtype)
        ctl = self.controller
        if ctl is None:
            v = self.model(xin, t, self.y)
        else:
            ctl.begin(self.locator.locate(s), list(STREAMS))
            try:
                v = self.model(xin, t, self.y, block_hook=ctl.block)
            finally:
                ctl.end()
        vc, vu = v.chunk(2)
        v = vu + self.cfg * (vc - vu)
        return x - s * v


def run(k_sampling, ms, model, labels, name, steps, cfg, seed, teacache=None):
    sigmas = flow_sigmas(steps)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(labels), model.cfg.channels, model.cfg.image_size, model.cfg.image_size), generator=g)
    ctl = make_controller(model, teacache=teacache) if teacache is not None else None
    if ctl is not None:
        ctl.recorder.start(steps)
    den = FlowDenoiser(model, labels, cfg, sigmas, ms, ctl)
    fn = getattr(k_sampling, f"sample_{name}")
    try:
        out = fn(den, noise.clone(), sigmas.clone(), extra_args={"seed": seed}, disable=True)
    finally:
        if ctl is not None:
            ctl.recorder.finish()
            ctl.reset()
    return out, den.evaluations, (ctl.recorder.summary() if ctl is not None else None), ctl


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sampler_noise", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--per-class", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    ap.add_argument("--samplers", nargs="+", default=DETERMINISTIC + NOISY)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    setup(args.threads)
    k_sampling, model_sampling = import_comfy()

    class FlowSampling(model_sampling.ModelSamplingDiscreteFlow, model_sampling.CONST):
        pass

    ms = FlowSampling(None)
    model = ReferenceDiT.load()
    labels = torch.arange(model.cfg.classes).repeat_interleave(args.per_class)
    rows = []
    for name in args.samplers:
        t0 = time.perf_counter()
        ref, evals, _, _ = run(k_sampling, ms, model, labels, name, args.steps, args.cfg, args.seed)
        # indicator changes of the uncached run: a threshold of ~0 computes every evaluation
        _, _, s0, ctl0 = run(k_sampling, ms, model, labels, name, args.steps, args.cfg, args.seed,
                             TeaCacheConfig(1e-9, "raw"))
        changes = [r.rel_l1 for r in ctl0.recorder.records if r.rel_l1 is not None and r.stream == "cond"]
        row = {"sampler": name, "noisy": name in NOISY, "evaluations_per_stream": evals,
               "median_rel_l1": statistics.median(changes) if changes else None, "thresholds": {}}
        for th in args.thresholds:
            out, _, s, _ = run(k_sampling, ms, model, labels, name, args.steps, args.cfg, args.seed,
                               TeaCacheConfig(th, "raw"))
            row["thresholds"][f"{th:g}"] = {"computed": s["computed"] // len(STREAMS),
                                            "evaluations": s["evaluations"] // len(STREAMS),
                                            "psnr": psnr(out, ref)}
        rows.append(row)
        cells = "  ".join(f"{k}: {v['computed']}/{v['evaluations']} ({v['psnr']:.1f} dB)"
                          for k, v in row["thresholds"].items())
        log.info("%-24s change %.3f  %s  [%.0fs]", name, row["median_rel_l1"] or float("nan"), cells,
                 time.perf_counter() - t0)
    write_json("sampler_noise.json", {"environment": environment(), "comfyui": os.environ.get("COMFYUI_PATH"),
                                      "steps": args.steps, "cfg": args.cfg, "samples": len(labels),
                                      "coefficients": "raw", "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
