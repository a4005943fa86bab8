"""Block-level Learning-to-Cache router training over the controller's block hook.

Any model whose forward hands its blocks to ``controller.block(index, inputs, run)`` (the
reference DiT's ``block_hook``, or a ComfyUI model patched through a family adapter) can learn a
block-level L2C schedule (branches ``("block",)``) with :class:`BlockLearner`:

* the teacher is the full-compute trajectory: every evaluation runs once at full compute
  (no grad) and records each block's residual ``out - in`` per hidden state;
* at a cache step the student runs the same evaluation with, for every block,
  ``out = beta * fresh + (1 - beta) * (in + residual of that block at the previous evaluation)``,
  ``beta = sigmoid(logit[step, block])``; the loss is ``mean((student - teacher)^2) + lam * sum(beta)``
  (arXiv 2406.01733, Eq. 7-9) and only the logits get gradients (AdamW, logits clamped);
* one evaluation's activations are alive at a time; the trajectory continues on the teacher
  output, so no trajectory is stored.

The router is then thresholded (compute where ``sigmoid(logit) > theta``) into an
:class:`~cache_core.l2c.L2CSchedule`.
"""
from __future__ import annotations

import math
from typing import Callable, Hashable, Sequence

import torch
import torch.nn.functional as F

from .l2c.train import frozen as _frozen
from .l2c.schedule import L2CSchedule, ScheduleError, default_positions


def frozen(modules: Sequence[torch.nn.Module]):
    """No weight gradients while training the router (flags restored afterwards)."""
    return _frozen(*modules)


def _pack(t: torch.Tensor):
    """Saved-for-backward activations are copied: model code adds into tensors in place after
    using them (Flux's ``x += ...``), which plain autograd refuses. Weights are never copied."""
    return t if isinstance(t, torch.nn.Parameter) else t.clone()


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


class BlockRouter:
    """logits[step, block] (one parameter per cache step, so AdamW never moves a step that is not
    being trained) and their optimiser."""

    def __init__(self, steps: int, n_blocks: int, *, cache_steps: Sequence[int] | None = None,
                 lam: float = 1e-3, lr: float = 0.1, init_logit: float = 2.0, clamp: float = 5.0,
                 weight_decay: float = 0.0):
        if steps < 2:
            raise ScheduleError("router training needs at least 2 sampling steps")
        if n_blocks < 1:
            raise ScheduleError("router training needs a model with at least one block")
        for name, v in (("lam", lam), ("lr", lr), ("init_logit", init_logit), ("clamp", clamp)):
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if lam < 0:
            raise ValueError(f"lam (lambda) must be >= 0, got {lam}; larger values reuse more blocks")
        self.steps = int(steps)
        self.n_blocks = int(n_blocks)
        cs = range(1, steps) if cache_steps is None else cache_steps
        self.cache_steps = tuple(sorted({int(s) for s in cs}))
        if not self.cache_steps or self.cache_steps[0] < 1 or self.cache_steps[-1] >= steps:
            raise ScheduleError(f"cache steps must be in 1..{steps - 1} (step 0 has no cache)")
        self.lam = float(lam)
        self.clamp = float(clamp)
        self.logits = {s: torch.nn.Parameter(torch.full((self.n_blocks,), float(init_logit)))
                       for s in self.cache_steps}
        self.opt = torch.optim.AdamW(list(self.logits.values()), lr=lr, weight_decay=weight_decay)
        self.history: list[dict] = []

    def beta(self, step: int) -> torch.Tensor:
        return torch.sigmoid(self.logits[step])

    def full_logits(self) -> torch.Tensor:
        """[steps, blocks, 1] logits; +inf on full-compute steps."""
        out = torch.full((self.steps, self.n_blocks, 1), math.inf)
        for s, p in self.logits.items():
            out[s, :, 0] = p.detach().float().cpu()
        return out

    def to_schedule(self, family: str, theta: float = 0.5, source: str = "learned") -> L2CSchedule:
        if not (isinstance(theta, (int, float)) and 0.0 <= theta <= 1.0):
            raise ValueError(f"theta must be between 0 and 1, got {theta!r}")
        compute = torch.sigmoid(self.full_logits()) > theta
        return L2CSchedule(compute, ("block",), family, positions=default_positions(self.steps),
                           threshold=float(theta), source=source, kind="trained",
                           cache_steps=self.cache_steps)


class LearningController:
    """Stands where :class:`~cache_core.stack.CacheController` goes (``begin``/``block``/``end``)
    and runs each block as the teacher (record residuals) or the student (mix with the previous
    evaluation's residuals using the router's betas)."""

    def __init__(self, hooks, router: BlockRouter):
        if hooks.n_blocks != router.n_blocks:
            raise ValueError(f"router has {router.n_blocks} blocks but the model has {hooks.n_blocks}")
        self.hooks = hooks
        self.router = router
        self.mode = "teacher"
        self.beta: torch.Tensor | None = None
        self.key: Hashable = None
        self._prev: dict = {}      # key -> {block: {name: residual}} of the previous evaluation
        self._new: dict = {}       # residuals recorded by the current teacher pass
        self.active = False
        self.step = -1

    # controller protocol ---------------------------------------------------------------------
    def begin(self, info, streams: Sequence[Hashable]) -> None:
        self.active = True
        self.step = getattr(info, "step", -1)

    def end(self) -> None:
        self.active = False

    def reset(self) -> None:
        self._prev.clear()
        self._new.clear()

    def branch(self, index, name, fn):
        return fn()

    def block(self, index: int, inputs: dict, run: Callable[[dict], dict]) -> dict:
        if not self.active:
            return run(inputs)
        keys = self.hooks.hidden_keys(index)
        # blocks may add into their inputs in place (Flux single blocks, txt streams, ...): they get
        # copies, so `inputs` still holds the block input for the residual and the mix
        fresh_in = dict(inputs)
        for k in keys:
            fresh_in[k] = inputs[k].clone()
        if self.mode == "teacher":
            out = run(fresh_in)
            self._new[index] = {k: (out[k] - inputs[k]).detach() for k in keys}
            return out
        prev = self._prev.get(self.key, {}).get(index)
        out = run(fresh_in)
        if prev is None or any(prev[k].shape != inputs[k].shape for k in keys):
            return out
        b = self.beta[index].to(inputs[keys[0]].dtype)
        mixed = dict(out)
        for k in keys:
            mixed[k] = b * out[k] + (1 - b) * (inputs[k] + prev[k])
        return mixed

    # one evaluation --------------------------------------------------------------------------
    def has_cache(self, key: Hashable) -> bool:
        return len(self._prev.get(key, {})) == self.hooks.n_blocks

    def evaluate(self, forward: Callable[[], torch.Tensor], step: int, key: Hashable = "all",
                 iterations: int = 1, loss_scale: float = 1.0,
                 on_iteration: Callable[[dict], None] | None = None) -> torch.Tensor:
        """One model evaluation at ``step``: teacher at full compute (returned, so sampling goes on
        along the full-compute trajectory), then ``iterations`` router updates when ``step`` is a
        cache step and this evaluation's previous residuals exist. ``forward()`` runs the model
        through this controller; ``loss_scale`` multiplies both outputs before the MSE."""
        r = self.router
        self.key = key
        self.mode = "teacher"
        self._new = {}
        with torch.no_grad():
            target = forward()
        target_d = target.detach()
        if step in r.logits and self.has_cache(key) and iterations > 0:
            try:
                self.mode = "student"
                with torch.enable_grad():
                    for _ in range(int(iterations)):
                        self.beta = r.beta(step)
                        with torch.autograd.graph.saved_tensors_hooks(_pack, _unpack):
                            out = forward()
                        mse = F.mse_loss(out.float() * loss_scale, target_d.float() * loss_scale)
                        l1 = self.beta.sum()
                        loss = mse + r.lam * l1
                        r.opt.zero_grad(set_to_none=True)
                        loss.backward()
                        r.opt.step()
                        with torch.no_grad():
                            r.logits[step].clamp_(-r.clamp, r.clamp)
                        rec = {"step": step, "loss": loss.item(), "mse": mse.item(), "l1": l1.item()}
                        r.history.append(rec)
                        if on_iteration is not None:
                            on_iteration(rec)
                        del out, loss, mse
            finally:
                self.mode = "teacher"
                self.beta = None
        self._prev[key] = self._new
        self._new = {}
        return target


__all__ = ["BlockRouter", "LearningController", "frozen"]
