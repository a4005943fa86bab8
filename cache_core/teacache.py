"""TeaCache (arXiv 2411.19108): the per-evaluation compute-or-reuse decision.

`decide` is a pure function of (state, indicator, config): it never touches a model, so it is
unit-tested with hand-made tensors. The caller (``cache_core.stack``) owns the states, one per
stream, and the residual cache.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .budget import check_target
from .coefficients import CoefficientProfile, get_profile
from .forecast import mode_tag, reuse_order


@dataclass
class TeaCacheConfig:
    """Validated TeaCache settings; errors suggest working values."""
    rel_l1_thresh: float = 0.4
    coefficients: CoefficientProfile | str = "flux"
    start_percent: float = 0.0   # before this schedule position every step computes
    end_percent: float = 1.0     # after this schedule position every step computes
    warmup_steps: int = 0        # the first N steps always compute
    max_consecutive_skips: int = 0  # 0 = no cap
    cache_device: str = "main"   # "main" (compute device) or "offload" (CPU)
    reuse: str = "cached"        # "cached" (reuse the residual) or "taylor1"/"taylor2" (forecast it)
    compute_every: int = 0       # N >= 1: compute every N-th step, reuse or forecast between; 0 = the accumulator decides
    target_speedup: float = 0.0  # s >= 1: compute about 1/s of the evaluations (cache_core.budget); 0 = the threshold decides

    def __post_init__(self):
        t = self.rel_l1_thresh
        if not isinstance(t, (int, float)) or math.isnan(t) or math.isinf(t) or t < 0:
            raise ValueError(f"rel_l1_thresh must be a finite number >= 0 (0 turns caching off), got {t!r}; "
                             "try 0.2-0.6 for Flux or the family's recommended value")
        for name in ("start_percent", "end_percent"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or math.isnan(v) or not (0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be between 0 and 1, got {v!r}")
        if self.start_percent > self.end_percent:
            raise ValueError(f"start_percent ({self.start_percent}) is after end_percent ({self.end_percent}); "
                             "use e.g. start_percent=0.0, end_percent=1.0")
        if int(self.warmup_steps) != self.warmup_steps or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be a whole number >= 0, got {self.warmup_steps!r}")
        if int(self.max_consecutive_skips) != self.max_consecutive_skips or self.max_consecutive_skips < 0:
            raise ValueError(f"max_consecutive_skips must be a whole number >= 0 (0 = no cap), "
                             f"got {self.max_consecutive_skips!r}")
        reuse_order(self.reuse)  # raises with the choices
        if isinstance(self.compute_every, bool) or int(self.compute_every) != self.compute_every \
                or self.compute_every < 0:
            raise ValueError(f"compute_every must be a whole number >= 0 (0 = the threshold decides, "
                             f"N = compute every N-th step), got {self.compute_every!r}")
        self.target_speedup = check_target(self.target_speedup)
        if self.target_speedup and self.compute_every:
            raise ValueError(f"target_speedup ({self.target_speedup:g}) and compute_every ({self.compute_every}) both "
                             "choose which steps compute; set one of them to 0 (e.g. target_speedup 2, compute_every 0)")
        if self.cache_device not in ("main", "offload"):
            raise ValueError(f"cache_device must be 'main' or 'offload', got {self.cache_device!r}")
        if isinstance(self.coefficients, str):
            self.coefficients = get_profile(self.coefficients)

    @property
    def enabled(self) -> bool:
        return self.rel_l1_thresh > 0

    @property
    def order(self) -> int:
        """Taylor order of the reuse (0 = plain reuse), see cache_core.forecast."""
        return reuse_order(self.reuse)

    def run_id(self) -> str:
        parts = [f"x{self.target_speedup:g}" if self.target_speedup else f"t{self.rel_l1_thresh:g}",
                 self.coefficients.name]
        if self.start_percent > 0 or self.end_percent < 1:
            parts.append(f"w{self.start_percent:g}-{self.end_percent:g}")
        if self.warmup_steps:
            parts.append(f"wu{self.warmup_steps}")
        if self.max_consecutive_skips:
            parts.append(f"max{self.max_consecutive_skips}")
        if self.cache_device != "main":
            parts.append("off")
        if self.compute_every:
            parts.append(f"every{self.compute_every}")
        if self.order:
            parts.append(mode_tag(self.order))
        return "TC(" + ",".join(parts) + ")"


@dataclass
class TeaCacheState:
    """Per-stream TeaCache state. `prev_indicator` is updated on every evaluation."""
    prev_indicator: torch.Tensor | None = None
    accumulated: float = 0.0
    consecutive_reuses: int = 0
    evaluations: int = 0


@dataclass(frozen=True)
class Decision:
    compute: bool
    reason: str          # "first", "window", "warmup", "last", "interval", "cap", "threshold", "reuse"
    rel_l1: float | None  # None on the first evaluation
    rescaled: float | None
    accumulated: float   # accumulator after this evaluation (0 after a compute)


def rel_l1(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """mean|F - F_prev| / mean|F_prev| as a 0-d float32 tensor (no host sync here)."""
    c = current.float()
    p = previous.float()
    return (c - p).abs().mean() / p.abs().mean().clamp_min(1e-12)


def forced_reason(step: int, n_steps: int, position: float, config: TeaCacheConfig) -> str | None:
    """Why this step must compute regardless of the accumulator, or None."""
    if n_steps > 0 and step >= n_steps - 1:
        return "last"
    if step < config.warmup_steps:
        return "warmup"
    if position < config.start_percent or position > config.end_percent:
        return "window"
    if config.compute_every and step % config.compute_every == 0:
        return "interval"
    return None


def decide(state: TeaCacheState, change: float | None, config: TeaCacheConfig,
           forced: str | None = None, threshold: float | None = None) -> tuple[Decision, TeaCacheState]:
    """Pure decision for one evaluation of one stream.

    ``change`` is the relative L1 change of the indicator against the previous evaluation (None on
    the first). Returns the decision and the new state (the caller stores the new indicator).
    With ``config.compute_every`` the accumulator is kept for the report but does not decide:
    only forced steps (``forced_reason`` says "interval" every N-th step) and the cap compute.
    ``threshold`` replaces ``config.rel_l1_thresh`` (target mode, ``cache_core.budget``: the reason
    is then "target").
    """
    evals = state.evaluations + 1
    if change is None:
        return (Decision(True, "first", None, None, 0.0),
                TeaCacheState(None, 0.0, 0, evals))
    rescaled = config.coefficients.rescale(change)
    if forced is not None:
        return (Decision(True, forced, change, rescaled, 0.0), TeaCacheState(None, 0.0, 0, evals))
    acc = state.accumulated + rescaled
    if acc >= (config.rel_l1_thresh if threshold is None else threshold) and not config.compute_every:
        return (Decision(True, "threshold" if threshold is None else "target", change, rescaled, 0.0),
                TeaCacheState(None, 0.0, 0, evals))
    if config.max_consecutive_skips and state.consecutive_reuses >= config.max_consecutive_skips:
        return Decision(True, "cap", change, rescaled, 0.0), TeaCacheState(None, 0.0, 0, evals)
    return (Decision(False, "reuse", change, rescaled, acc),
            TeaCacheState(None, acc, state.consecutive_reuses + 1, evals))
