"""Forecast the skipped computation instead of reusing the last one (TaylorSeer, arXiv 2503.06923).

Reuse (TeaCache's and L2C's ``cached`` mode) hands a skipped step the residual of the last
computed step: a Taylor expansion of order 0. TaylorSeer extrapolates with a higher order, its
derivatives estimated by finite differences over the last computed steps. Here the computed steps
may be unevenly spaced (TeaCache computes when its accumulator says so), so the derivatives are
*divided differences* and the expansion is written in Newton form. With computed positions
``x0`` (the latest), ``x1``, ..., ``xk`` and coefficients ``c_j = f[x0, ..., xj]``:

    P(x) = c0 + (x - x0) * (c1 + (x - x1) * (c2 + ...))

``P`` is the Taylor expansion about ``x0`` whose derivatives are those of the polynomial through
the k+1 computed points: for order 2, ``f'(x0) ~ c1 + c2 (x0 - x1)`` and ``f''(x0) ~ 2 c2`` give
``f0 + f'(x0)(x - x0) + f''(x0)(x - x0)^2 / 2 = P(x)``. So a sequence that is a polynomial of
degree <= k in the position comes back exactly, on any spacing. (On an even grid TaylorSeer uses
the plain backward differences as derivatives, which is exact only for order 1.) Order 0 returns
the stored tensor itself, so it is bit-identical to reuse.

A :class:`History` holds the k+1 coefficients of one stream (a block stack, a layer or a branch of
one cond stream), newest position first: memory is k+1 tensors of the residual's size, the same
as keeping the last k+1 residuals. Every function here is pure (returns a new History, never
changes its argument) and never imports ComfyUI; ``cache_core.stack`` owns the histories.

Positions should be spaced about 1 apart (the controller uses the step coordinate of
:class:`cache_core.steps.StepInfo`): divided differences over tiny spacings grow like
``1/h^k`` and would overflow fp16.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: The ``reuse`` choices of the nodes and their Taylor orders.
REUSE_MODES: dict[str, int] = {"cached": 0, "taylor1": 1, "taylor2": 2}
MAX_ORDER = max(REUSE_MODES.values())


def reuse_order(mode: str) -> int:
    """Taylor order of a ``reuse`` choice: ``cached`` 0, ``taylor1`` 1, ``taylor2`` 2.

    Raises ValueError naming the choices for anything else."""
    if mode not in REUSE_MODES:
        raise ValueError(f"reuse must be one of {', '.join(REUSE_MODES)}, got {mode!r}; "
                         "'cached' reuses the last computed residual (the default), 'taylor1'/'taylor2' "
                         "extrapolate it from the last 2/3 computed steps")
    return REUSE_MODES[mode]


@dataclass(frozen=True)
class History:
    """Newton coefficients of one stream: ``coefs[j] = f[x0..xj]`` at ``positions`` (newest first).

    ``coefs[0]`` is the latest computed value itself; the others have its shape and dtype (their
    arithmetic is done in float32 at least). ``len(coefs) == len(positions) <= order + 1``."""
    order: int
    positions: tuple[float, ...]
    coefs: tuple[torch.Tensor, ...]

    @property
    def latest(self) -> torch.Tensor:
        return self.coefs[0]

    @property
    def available_order(self) -> int:
        """The order a forecast uses now: ``order``, or less while fewer steps were computed."""
        return len(self.coefs) - 1

    def nbytes(self) -> int:
        return sum(c.numel() * c.element_size() for c in self.coefs)

    def matches(self, like: torch.Tensor) -> bool:
        c = self.coefs[0]
        return tuple(c.shape) == tuple(like.shape) and c.dtype == like.dtype


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def push(history: History | None, position: float, value: torch.Tensor, order: int,
         store_device: torch.device | str | None = None) -> History:
    """The history after a computed step at ``position`` gave ``value`` (any shape).

    Updates the divided differences in O(order) tensor operations:
    ``c_j' = (c_{j-1}' - c_{j-1}) / (x_new - x_{j-1})``. A new history starts (holding
    ``value`` alone) when there is none, or when ``value``'s shape or dtype differ from the stored
    ones (a new resolution or batch). A ``position`` equal to the latest one replaces the latest
    value (2nd-order samplers evaluate a sigma twice). ``store_device`` keeps the coefficients there
    (``"cpu"`` for offloading); differences are computed on ``value``'s device.

    Raises ValueError for an order outside 0..2 or a position that is not finite."""
    if not isinstance(order, int) or isinstance(order, bool) or not 0 <= order <= MAX_ORDER:
        raise ValueError(f"forecast order must be 0, 1 or 2, got {order!r}")
    x = float(position)
    if not math.isfinite(x):
        raise ValueError(f"forecast position must be finite, got {position!r}")
    store = (lambda t: t) if store_device is None else (lambda t: t.to(store_device, non_blocking=True))
    if order == 0 or history is None or not history.matches(value):
        return History(order, (x,), (store(value),))
    dev = value.device
    wd = _work_dtype(value.dtype)
    if abs(x - history.positions[0]) <= 1e-9 * max(1.0, abs(x)):
        # the latest position again (a 2nd-order sampler evaluates each sigma twice): replace the
        # latest value. f[x0..xj] changes by delta / prod_{i=1..j} (x0 - x_i) when f(x0) changes by delta
        delta = torch.sub(value.to(wd), history.coefs[0].to(dev, non_blocking=True).to(wd))
        coefs, scale = [store(value)], 1.0
        for j in range(1, len(history.coefs)):
            scale *= history.positions[0] - history.positions[j]
            c = torch.add(history.coefs[j].to(dev, non_blocking=True).to(wd), delta, alpha=1.0 / scale)
            coefs.append(store(c.to(value.dtype)))
        return History(order, history.positions, tuple(coefs))
    new = [value.to(wd)]
    keep = min(order, len(history.coefs))  # the new value plus `keep` older coefficients
    for j in range(1, keep + 1):
        old = history.coefs[j - 1].to(dev, non_blocking=True).to(wd)
        new.append(torch.sub(new[j - 1], old).mul_(1.0 / (x - history.positions[j - 1])))
    coefs = (store(value),) + tuple(store(c.to(value.dtype)) for c in new[1:])
    return History(order, (x,) + history.positions[:keep], coefs)


def extrapolate(history: History, position: float, device: torch.device | str | None = None) -> torch.Tensor:
    """The forecast value at ``position``: ``P(position)`` of the history's Newton polynomial, of
    the available order (order 0: the latest value itself, moved to ``device`` if given).

    The result has the stored shape and dtype; it may be non-finite when the history is (the
    caller checks and computes instead)."""
    c = history.coefs
    dev = c[0].device if device is None else torch.device(device)
    if len(c) == 1:
        return c[0].to(dev, non_blocking=True)
    x = float(position)
    wd = _work_dtype(c[0].dtype)
    # Horner: c_m, then c_j + (x - x_j) * acc for j = m-1 .. 0 (one fused add per order)
    acc = c[-1].to(dev, non_blocking=True).to(wd)
    for j in range(len(c) - 2, -1, -1):
        acc = torch.add(c[j].to(dev, non_blocking=True).to(wd), acc, alpha=x - history.positions[j])
    return acc.to(c[0].dtype)


def all_finite(tensors) -> bool:
    """Whether every element of every tensor is finite, with one host sync.

    A float32 (float64 for float64 tensors) sum is finite exactly when no element is inf or NaN,
    short of a sum overflowing float32, which reads as not finite (the safe side: the caller
    computes). On CPU this is ~50x faster than ``isfinite().all()``."""
    sums = [t.sum(dtype=_work_dtype(t.dtype)) for t in tensors]
    if not sums:
        return True
    total = sums[0] if len(sums) == 1 else torch.stack([v.double() for v in sums]).sum()
    return math.isfinite(float(total))


def mode_tag(order: int) -> str:
    """The run-id tag of an order: '' for reuse, 'taylor1'/'taylor2' otherwise."""
    return "" if order == 0 else f"taylor{order}"


def with_reuse_tag(run_id: str, mode: str) -> str:
    """``L2C(a,b)`` -> ``L2C(a,b,taylor1)`` for a forecasting mode; unchanged for ``cached``."""
    tag = mode_tag(reuse_order(mode))
    if not tag:
        return run_id
    return run_id[:-1] + f",{tag})" if run_id.endswith(")") else f"{run_id}[{tag}]"


def describe(teacache_order: int | None, l2c_order: int | None) -> str:
    """One line for reports: what a skipped step or layer gets (None = that cache is not set)."""
    def one(order: int) -> str:
        return "cached residual" if order == 0 else f"taylor{order} forecast from the last {order + 1} computed steps"
    parts = []
    if teacache_order is not None:
        parts.append(f"TeaCache {one(teacache_order)}")
    if l2c_order is not None:
        parts.append(f"L2C {one(l2c_order)}")
    return "reuse: " + ("; ".join(parts) if parts else "none")


__all__ = ["REUSE_MODES", "History", "all_finite", "describe", "extrapolate", "mode_tag", "push", "reuse_order", "with_reuse_tag"]
