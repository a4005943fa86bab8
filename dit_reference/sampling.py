"""Sampling the reference model (flow matching, Euler, batched classifier-free guidance),
optionally through a :class:`CacheController`."""
from __future__ import annotations

import torch

from cache_core.stack import CacheController
from cache_core.steps import StepLocator

from .model import ReferenceDiT, ReferenceHooks

STREAMS = ("cond", "uncond")


def flow_sigmas(steps: int, shift: float = 1.0, device="cpu") -> torch.Tensor:
    t = torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=torch.float64)
    if shift != 1.0:
        t = shift * t / (1 + (shift - 1) * t)
    return t.float()


@torch.no_grad()
def sample(model: ReferenceDiT, labels: torch.Tensor, steps: int = 20, cfg: float = 3.0, seed: int = 0,
           controller: CacheController | None = None, sigmas: torch.Tensor | None = None,
           noise: torch.Tensor | None = None) -> torch.Tensor:
    """Samples one image per label. With a controller, every model evaluation goes through it."""
    p = next(model.parameters())
    device, dtype = p.device, p.dtype
    labels = labels.to(device)
    n = labels.shape[0]
    shape = (n, model.cfg.channels, model.cfg.image_size, model.cfg.image_size)
    if noise is None:
        g = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(shape, generator=g)
    x = noise.to(device=device, dtype=dtype)
    sig = (sigmas if sigmas is not None else flow_sigmas(steps)).to(device)
    locator = StepLocator(sig.tolist())
    y = torch.cat([labels, torch.full_like(labels, model.null_class)]) if cfg != 1.0 else labels
    streams = list(STREAMS) if cfg != 1.0 else [STREAMS[0]]
    hook = (lambda i, inp, run: controller.block(i, inp, run)) if controller is not None else None
    branch = (lambda i, name, fn: controller.branch(i, name, fn)) if controller is not None else None
    if controller is not None:
        controller.recorder.start(locator.n_steps)
    try:
        for i in range(len(sig) - 1):
            t = sig[i]
            xin = torch.cat([x, x]) if cfg != 1.0 else x
            if controller is not None:
                controller.begin(locator.locate(float(t)), streams)
            try:
                v = model(xin, t.expand(xin.shape[0]).to(dtype), y, block_hook=hook, branch_fn=branch)
            finally:
                if controller is not None:
                    controller.end()
            if cfg != 1.0:
                vc, vu = v.chunk(2)
                v = vu + cfg * (vc - vu)
            x = x + (sig[i + 1] - t).to(dtype) * v
    finally:
        if controller is not None:
            controller.recorder.finish()
            controller.reset()
    return x


def make_controller(model: ReferenceDiT, teacache=None, l2c=None, run_id: str = "",
                    l2c_reuse: str = "cached") -> CacheController:
    from cache_core.forecast import with_reuse_tag
    from cache_core.stats import RunRecorder, make_run_id
    rid = run_id or make_run_id(teacache.run_id() if teacache is not None and teacache.enabled else "",
                                with_reuse_tag(l2c.run_id(), l2c_reuse) if l2c is not None else "")
    rec = RunRecorder(run_id=rid, threshold=teacache.rel_l1_thresh if teacache is not None else None)
    return CacheController(ReferenceHooks(model), teacache=teacache, l2c=l2c, recorder=rec, l2c_reuse=l2c_reuse)
