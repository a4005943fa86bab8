"""Where an evaluation sits in the sampling schedule, from sigmas alone.

Multi-evaluation samplers (heun, dpm_2, dpmpp_2s_ancestral, ...) evaluate the model at sigmas
between two schedule entries; they belong to the step whose interval contains them, so step
counts stay right and nothing divides by the number of evaluations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class StepInfo:
    step: int          # 0 .. n_steps-1
    n_steps: int       # len(sample_sigmas) - 1
    position: float    # step / (n_steps - 1), 0 for a one-step run
    sigma: float
    on_schedule: bool  # False for a sampler's intermediate evaluation
    # the position in steps: ``step`` on the schedule, fractional (linear in sigma) between two
    # schedule sigmas; forecasts (cache_core.forecast) extrapolate along it. None: use ``step``.
    coordinate: float | None = None

    @property
    def x(self) -> float:
        """The forecast coordinate (see ``coordinate``)."""
        return float(self.step) if self.coordinate is None else self.coordinate


class StepLocator:
    """Maps a sigma to its step. Build once per run; lookups are O(log n) on host floats."""

    def __init__(self, sample_sigmas: Sequence[float]):
        sig = [float(s) for s in sample_sigmas]
        if len(sig) < 2:
            raise ValueError("a sampling schedule needs at least two sigmas (one step)")
        self.sigmas = sig
        self.n_steps = len(sig) - 1
        self.descending = sig[0] >= sig[-1]

    def locate(self, sigma: float) -> StepInfo:
        s = float(sigma)
        sig = self.sigmas
        n = self.n_steps
        # step i covers [sig[i], sig[i+1]) going down the schedule
        key = (lambda v: -v) if self.descending else (lambda v: v)
        lo, hi = 0, n - 1
        ks = key(s)
        step = 0
        while lo <= hi:
            mid = (lo + hi) // 2
            if key(sig[mid]) <= ks + 1e-9 * max(1.0, abs(s)):
                step = mid
                lo = mid + 1
            else:
                hi = mid - 1
        tol = 1e-6 * max(1.0, abs(s))
        on = abs(sig[step] - s) <= tol
        pos = step / (n - 1) if n > 1 else 0.0
        span = sig[step] - sig[step + 1]
        frac = 0.0 if on or span == 0 else min(1.0, max(0.0, (sig[step] - s) / span))
        return StepInfo(step, n, pos, s, on, step + frac)
