"""Learning-to-Cache on the reference DiT: the engine's block-level learner
(:class:`cache_core.learn.BlockRouter`) and branch-level router trainer
(:class:`cache_core.l2c.RouterTrainer`) driven by the reference model's own sampling loop.

Used by ``python -m dit_reference learn``, the demo and the benchmarks; the ComfyUI nodes learn
through ``nodes/learn_nodes.py`` instead.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from cache_core.l2c import L2CSchedule, RouterBatch, RouterTrainer
from cache_core.learn import BlockRouter, LearningController, frozen
from cache_core.steps import StepLocator

from .model import ReferenceHooks
from .sampling import flow_sigmas


def learn_reference(model, *, steps: int = 20, lam: float = 1e-3, theta: float = 0.5,
                    iterations: int = 20, seeds: Sequence[int] = (0,), cfg: float = 3.0, batch: int = 8,
                    lr: float = 0.1, init_logit: float = 2.0, cache_steps: Sequence[int] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> tuple[L2CSchedule, BlockRouter]:
    """Learns a block-level schedule for the reference DiT (velocity output, Euler flow sampling
    with batched CFG, the same loop as :func:`dit_reference.sampling.sample`)."""
    router = BlockRouter(steps, len(model.blocks), cache_steps=cache_steps, lam=lam, lr=lr,
                         init_logit=init_logit)
    ctl = LearningController(ReferenceHooks(model), router)
    p = next(model.parameters())
    sig = flow_sigmas(steps).to(p.device)
    locator = StepLocator(sig.tolist())
    total = len(seeds) * steps
    done = 0
    with frozen([model]):
        for seed in seeds:
            g = torch.Generator().manual_seed(10_000 + int(seed))
            labels = torch.randint(0, model.cfg.classes, (batch,), generator=g).to(p.device)
            shape = (batch, model.cfg.channels, model.cfg.image_size, model.cfg.image_size)
            x = torch.randn(shape, generator=torch.Generator().manual_seed(int(seed))).to(p.device, p.dtype)
            y = torch.cat([labels, torch.full_like(labels, model.null_class)]) if cfg != 1.0 else labels
            ctl.reset()
            for i in range(steps):
                t = sig[i]
                xin = torch.cat([x, x]) if cfg != 1.0 else x
                tt = t.expand(xin.shape[0]).to(p.dtype)

                def forward():
                    ctl.begin(locator.locate(float(t)), ["all"])
                    try:
                        return model(xin, tt, y, block_hook=ctl.block)
                    finally:
                        ctl.end()

                v = ctl.evaluate(forward, i, iterations=iterations).detach()
                if cfg != 1.0:
                    vc, vu = v.chunk(2)
                    v = vu + cfg * (vc - vu)
                x = x + (sig[i + 1] - t).to(p.dtype) * v
                done += 1
                if progress is not None:
                    progress(done, total)
    ctl.reset()
    sched = router.to_schedule("reference", theta, source=f"learned on the reference DiT (lam={lam:g})")
    return sched, router


class ReferenceBranchModel:
    """:class:`cache_core.l2c.RouterTrainable` for the reference DiT (branch-level: attn / mlp).

    ``cond`` is ``(labels, cfg)``; the output is the guided velocity. Branch outputs are taken and
    mixed through the model's ``branch_fn`` hook, where :class:`CacheController` reuses them."""

    branches = ("attn", "mlp")

    def __init__(self, model):
        self.model = model
        self.n_layers = len(model.blocks)

    def parameters(self):
        return self.model.parameters()

    def forward_with_mix(self, x, t, cond, beta, cached):
        labels, cfg = cond
        m = self.model
        fresh = [[None] * len(self.branches) for _ in range(self.n_layers)]
        index = {b: j for j, b in enumerate(self.branches)}

        def branch_fn(i, name, fn):
            j = index[name]
            out = fn()
            fresh[i][j] = out.detach()
            if beta is not None:
                out = beta[i, j] * out + (1 - beta[i, j]) * cached[i][j]
            return out

        guided = cfg != 1.0
        xin = torch.cat([x, x]) if guided else x
        y = torch.cat([labels, torch.full_like(labels, m.null_class)]) if guided else labels
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(xin.shape[0])
        v = m(xin, tt, y, branch_fn=branch_fn)
        if guided:
            vc, vu = v.chunk(2)
            v = vu + cfg * (vc - vu)
        return v, fresh


def learn_reference_branches(model, *, steps: int = 20, lam: float = 3e-3, theta: float = 0.5,
                             iterations: int = 300, lr: float = 0.15, cfg: float = 3.0, per_class: int = 2,
                             seed: int = 10_000, cache_steps: Sequence[int] | None = None,
                             progress: Callable[[int, int], None] | None = None):
    """Branch-level (attn/mlp) L2C schedule for the reference DiT with
    :class:`cache_core.l2c.RouterTrainer`, trained on one full-compute trajectory of
    ``per_class`` images of every class. Returns (schedule, trainer)."""
    p = next(model.parameters())
    labels = torch.arange(model.cfg.classes, device=p.device).repeat_interleave(per_class)
    ad = ReferenceBranchModel(model)
    sig = flow_sigmas(steps).to(p.device)
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn((len(labels), model.cfg.channels, model.cfg.image_size, model.cfg.image_size),
                    generator=g).to(p.device, p.dtype)
    xs = [x]
    with torch.no_grad():
        for i in range(steps):
            v, _ = ad.forward_with_mix(x, sig[i], (labels, cfg), None, None)
            x = x + (sig[i + 1] - sig[i]) * v
            xs.append(x)
    trainer = RouterTrainer(ad, steps, family="reference", lam=lam, lr=lr, cache_steps=cache_steps,
                            device=p.device)

    def batch(step: int) -> RouterBatch:
        return RouterBatch(x_prev=xs[step - 1], t_prev=sig[step - 1], x=xs[step], t=sig[step],
                           cond=(labels, cfg))

    trainer.fit(batch, iterations, progress=progress)
    sched = trainer.to_schedule(theta, source=f"python -m dit_reference learn lam={lam:g} it={iterations}")
    return sched, trainer


__all__ = ["learn_reference", "ReferenceBranchModel", "learn_reference_branches"]
