"""Router training with the Learning-to-Cache objective (arXiv 2406.01733, Eq. 7-9).

For a cache step s, each branch output is interpolated between a fresh computation and the
un-gated output cached at the preceding full-compute step:

    out = beta * fresh + (1 - beta) * cached,   beta = sigmoid(logit[s, layer, branch])

and the router logits (the only trainable parameters; the model stays frozen) minimise

    loss = mean((student - teacher)^2) + lambda * sum(beta)

where teacher is the un-cached model output at step s. Larger lambda pushes more betas
towards 0, i.e. more branches reused. The learned logits are then thresholded into a
static ``L2CSchedule``. Only one step's activations are kept for backward: the cache and the
teacher are computed under no_grad.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F

from .routers import save_logits
from .schedule import L2CSchedule, ScheduleError, default_positions

log = logging.getLogger(__name__)

#: cached[layer][branch] un-gated branch outputs, as returned by forward_with_mix.
BranchOutputs = Sequence[Sequence[torch.Tensor]]


@runtime_checkable
class RouterTrainable(Protocol):
    """What the trainer needs from a model (an adapter around a real DiT/Flux/...).

    forward_with_mix(x, t, cond, beta, cached) runs the model once and returns
    (output, fresh) where fresh[layer][branch] are this call's un-gated branch outputs.
    beta is None (plain forward, no mixing) or a [n_layers, len(branches)] tensor; when
    given, each branch output is replaced by beta * fresh + (1 - beta) * cached before its
    gate and residual add.
    """

    n_layers: int
    branches: tuple[str, ...]

    def forward_with_mix(self, x: torch.Tensor, t: Any, cond: Any,
                         beta: torch.Tensor | None, cached: BranchOutputs | None
                         ) -> tuple[torch.Tensor, BranchOutputs]: ...


@dataclass
class RouterBatch:
    """Model inputs for one training example at cache step s.

    x_prev/t_prev: the preceding full-compute step (its branch outputs become the cache);
    x/t: the cache step itself; cond: conditioning shared by both calls.
    """
    x_prev: torch.Tensor
    t_prev: Any
    x: torch.Tensor
    t: Any
    cond: Any = None


@contextlib.contextmanager
def frozen(*models: Any) -> Iterator[None]:
    """Turn off grads of the models' own parameters for the duration (restored after), so
    backward only touches router logits and no weight gradients are allocated."""
    params = [p for m in models if hasattr(m, "parameters") for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


class RouterTrainer:
    """Learns per-(step, layer, branch) logits for a frozen RouterTrainable model."""

    def __init__(self, model: RouterTrainable, steps: int, *, family: str,
                 cache_steps: Sequence[int] | None = None,
                 positions: Sequence[float] | None = None, lam: float = 1e-3,
                 lr: float = 5e-2, weight_decay: float = 0.0, init_logit: float = 3.0,
                 clamp: float = 5.0, device: torch.device | str | None = None):
        if steps < 2:
            raise ScheduleError("router training needs at least 2 sampling steps")
        self.model = model
        self.steps = int(steps)
        self.family = family
        self.branches = tuple(model.branches)
        self.n_layers = int(model.n_layers)
        # Paper default: alternate full and cache steps, starting with a full step.
        cs = range(1, steps, 2) if cache_steps is None else cache_steps
        self.cache_steps = tuple(sorted({int(s) for s in cs}))
        if not self.cache_steps or self.cache_steps[0] < 1 or self.cache_steps[-1] >= steps:
            raise ScheduleError(f"cache steps must be in 1..{steps - 1} (step 0 has no cache)")
        self.positions = list(positions) if positions is not None else default_positions(steps)
        self.lam = float(lam)
        self.clamp = float(clamp)
        shape = (self.n_layers, len(self.branches))
        # One parameter per cache step: AdamW then skips steps not in the current batch
        # instead of drifting them with stale momentum.
        self.logits = {s: torch.nn.Parameter(torch.full(shape, float(init_logit), device=device))
                       for s in self.cache_steps}
        self.opt = torch.optim.AdamW(list(self.logits.values()), lr=lr,
                                     weight_decay=weight_decay)
        self.history: list[float] = []

    def beta(self, step: int) -> torch.Tensor:
        return torch.sigmoid(self.logits[step])

    def train_step(self, step: int, batch: RouterBatch) -> dict[str, float]:
        """One optimisation step at cache step `step`."""
        if step not in self.logits:
            raise ScheduleError(f"step {step} is not a cache step {self.cache_steps}")
        with frozen(self.model):
            with torch.no_grad():
                _, cached = self.model.forward_with_mix(batch.x_prev, batch.t_prev, batch.cond,
                                                        None, None)
                teacher, _ = self.model.forward_with_mix(batch.x, batch.t, batch.cond,
                                                         None, None)
            beta = self.beta(step)
            student, _ = self.model.forward_with_mix(batch.x, batch.t, batch.cond,
                                                     beta.to(batch.x.dtype), cached)
            mse = F.mse_loss(student.float(), teacher.float())
            l1 = beta.sum()
            loss = mse + self.lam * l1
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        with torch.no_grad():  # the paper keeps logits in a bounded range
            self.logits[step].clamp_(-self.clamp, self.clamp)
        out = {"loss": loss.item(), "mse": mse.item(), "l1": l1.item()}
        self.history.append(out["loss"])
        return out

    def fit(self, sample: Callable[[int], RouterBatch], iterations: int,
            progress: Callable[[int, int], None] | None = None) -> list[float]:
        """Train for `iterations` steps, cycling through the cache steps.

        sample(step) must return a RouterBatch for that cache step (e.g. noised latents at
        the two timesteps). progress(i, total) is called after each iteration.
        """
        losses = []
        for i in range(iterations):
            step = self.cache_steps[i % len(self.cache_steps)]
            losses.append(self.train_step(step, sample(step))["loss"])
            if progress is not None:
                progress(i + 1, iterations)
        if losses:
            log.info("L2C router training: %d iterations, last loss %.4g", iterations,
                     losses[-1])
        return losses

    def full_logits(self) -> torch.Tensor:
        """[steps, layers, branches] logits; +inf on full-compute steps."""
        out = torch.full((self.steps, self.n_layers, len(self.branches)), math.inf)
        for s, p in self.logits.items():
            out[s] = p.detach().float().cpu()
        return out

    def to_schedule(self, threshold: float = 0.5, source: str = "trained") -> L2CSchedule:
        """Static schedule: compute a branch where sigmoid(logit) > threshold."""
        compute = torch.sigmoid(self.full_logits()) > threshold
        return L2CSchedule(compute, self.branches, self.family, positions=self.positions,
                           threshold=threshold, source=source, kind="trained",
                           cache_steps=self.cache_steps)

    def save_logits(self, path: str | os.PathLike, threshold: float = 0.5,
                    source: str = "trained") -> None:
        save_logits(path, self.full_logits(), family=self.family, branches=self.branches,
                    cache_steps=list(self.cache_steps), positions=self.positions,
                    threshold=threshold, source=source)
