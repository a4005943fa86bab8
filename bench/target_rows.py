"""Shared pieces of the target-mode rows (issue 16) of ``bench.fidelity`` and ``bench.comfy_peers``.

* :func:`even_interval`: the fixed interval at the same budget, i.e. target mode with the indicator
  ignored: the budget's computes spread evenly over the run's evaluations (first and last
  included), ``round(i * (E - 1) / (B - 1))``. It patches ``cache_core.budget.decide`` for the
  duration (bench only), so the rows run through the same nodes and controller as target mode.
* :func:`tune_threshold`: the TeaCache threshold that, tuned by hand (bisection on the run), gives
  a wanted number of computed evaluations per stream.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable

TARGETS = (1.5, 2.0, 3.0, 4.0)
TARGET_MODES = ("cached", "taylor1", "taylor2")


def even_positions(evaluations: int, budget: int) -> set[int]:
    if budget >= evaluations:
        return set(range(evaluations))
    if budget <= 1:
        return {0}
    return {int(math.floor(i * (evaluations - 1) / (budget - 1) + 0.5)) for i in range(budget)}


@contextlib.contextmanager
def even_interval(budget_module):
    """Within the block, target mode computes at evenly spread evaluations (same budget)."""
    real = budget_module.decide

    def decide(p, state, rescaled, accumulated, forced):
        _, _, seen = real(p, state, rescaled, accumulated, forced)
        on = state.evaluations in even_positions(p.evaluations, p.budget)
        return on or forced, (-math.inf if (on or forced) else math.inf), seen

    budget_module.decide = decide
    try:
        yield
    finally:
        budget_module.decide = real


def tune_threshold(count: Callable[[float], int], want: int, lo: float = 0.0, hi: float = 2.0,
                   iterations: int = 9) -> tuple[float, int]:
    """(threshold, computed): bisection of ``count(threshold)`` (computed evaluations per stream,
    falling as the threshold rises) towards ``want``; the closest setting seen, ties to the lower
    threshold (the higher quality)."""
    best = None
    for _ in range(iterations):
        mid = (lo + hi) / 2
        n = count(mid)
        if best is None or (abs(n - want), -n) < (abs(best[1] - want), -best[1]):
            best = (mid, n)
        if n == want:
            break
        if n > want:
            lo = mid
        else:
            hi = mid
    return best
