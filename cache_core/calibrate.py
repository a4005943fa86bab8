"""TeaCache calibration: fit the rescaling polynomial of one model from a full-compute run.

TeaCache (arXiv 2411.19108) estimates how much the model output changed between two evaluations
of a stream from how much the first block's modulated input (the *indicator*) changed, through a
polynomial fitted on pairs collected at full compute. This module

* collects those pairs (:class:`ChangeRecorder`, and :class:`RecordingController`, which stands
  where a :class:`~cache_core.stack.CacheController` goes and only looks at the indicator), and
* fits the polynomial with :func:`fit_coefficients`: least squares under the constraints that the
  polynomial be non-negative and non-decreasing over the observed input range, so the TeaCache
  accumulator never decreases and a larger indicator change never means a smaller estimate.

numpy only (no scipy): the constrained problem is a least-squares problem with linear inequality
constraints (LSI), solved exactly by the Lawson-Hanson reduction LSI -> LDP -> NNLS on a dense grid
of constraint points, refined where a denser check finds a violation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

import numpy as np
import torch

from .coefficients import CoefficientProfile
from .teacache import rel_l1

# ---------------------------------------------------------------------------------------------
# constrained fit
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationResult:
    coefficients: tuple[float, ...]    # numpy.poly1d order, highest power first (in x itself)
    input_range: tuple[float, float]   # observed [min x, max x]
    rmse: float                        # sqrt(mean((p(x) - y)^2)) on the fitted points
    rel_error: float                   # mean|p(x) - y| / mean|y|
    n: int                             # number of (x, y) points
    order: int                         # polynomial order actually used
    unconstrained_rmse: float = float("nan")  # plain least squares, for reference

    def predict(self, x) -> np.ndarray:
        """Evaluate like TeaCache does: clamp into the range, never below 0."""
        lo, hi = self.input_range
        xs = np.clip(np.asarray(x, dtype=np.float64), lo, hi)
        return np.maximum(np.polyval(np.asarray(self.coefficients), xs), 0.0)

    def profile(self, name: str, source: str = "calibrated") -> CoefficientProfile:
        return CoefficientProfile(name=name, coefficients=tuple(self.coefficients),
                                  input_range=tuple(self.input_range), source=source)

    def to_dict(self) -> dict:
        return {"coefficients": list(self.coefficients), "input_range": list(self.input_range),
                "fit_rmse": self.rmse, "fit_rel_error": self.rel_error, "points": self.n,
                "order": self.order, "unconstrained_rmse": self.unconstrained_rmse}


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int | None = None, tol: float | None = None) -> np.ndarray:
    """min ||a u - b|| subject to u >= 0 (Lawson & Hanson 1974, chapter 23)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m, n = a.shape
    if tol is None:
        tol = 10 * np.finfo(float).eps * max(1.0, np.linalg.norm(a, 1)) * max(m, n)
    max_iter = max_iter or 30 * n + 100
    u = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = a.T @ (b - a @ u)
    it = 0
    while (~passive).any() and (w[~passive] > tol).any():
        j = int(np.argmax(np.where(~passive, w, -np.inf)))
        passive[j] = True
        while True:
            it += 1
            if it > max_iter:
                return u
            s = np.zeros(n)
            idx = np.flatnonzero(passive)
            s[idx] = np.linalg.lstsq(a[:, idx], b, rcond=None)[0]
            if (s[idx] > 0).all():
                break
            neg = idx[s[idx] <= 0]
            alpha = np.min(u[neg] / np.maximum(u[neg] - s[neg], 1e-300))
            u = u + alpha * (s - u)
            passive &= ~(u <= tol)
            u[~passive] = 0.0
        u = s
        w = a.T @ (b - a @ u)
    return u


def lsi(a: np.ndarray, b: np.ndarray, g: np.ndarray, h: np.ndarray) -> np.ndarray | None:
    """min ||a x - b|| subject to g x >= h, for ``a`` of full column rank (Lawson-Hanson LSI via
    LDP and NNLS). None when the constraints are infeasible."""
    q, r = np.linalg.qr(a)
    rinv = np.linalg.inv(r)
    qb = q.T @ b
    e = g @ rinv                      # in z = r x - q^T b:  e z >= h - e q^T b
    f = h - e @ qb
    n = e.shape[1]
    # LDP: min ||z|| s.t. e z >= f  <=>  NNLS on [e^T; f^T] u ~ [0..0, 1]
    big = np.vstack([e.T, f[None, :]])
    rhs = np.zeros(n + 1)
    rhs[-1] = 1.0
    u = nnls(big, rhs)
    res = big @ u - rhs
    if abs(res[-1]) < 1e-12:
        return None
    z = -res[:n] / res[-1]
    return rinv @ (z + qb)


def _compose_to_x(q_low_first: np.ndarray, lo: float, scale: float) -> tuple[float, ...]:
    """Coefficients (highest power first) of p(x) = q((x - lo) / scale)."""
    p = np.poly1d(q_low_first[::-1])
    lin = np.poly1d([1.0 / scale, -lo / scale])
    return tuple(float(c) for c in np.atleast_1d(p(lin).coeffs))


def fit_coefficients(x: Sequence[float], y: Sequence[float], order: int = 4,
                     grid: int = 256, check: int = 4096) -> CalibrationResult:
    """Least-squares polynomial of ``order`` through (x, y), constrained to be >= 0 and
    non-decreasing on [min x, max x].

    The constraints hold on ``grid`` points (derivative >= 0, value >= 0); a check on ``check``
    points adds any point where the derivative dips below zero and refits (a few rounds at most).
    """
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length, got {xs.size} and {ys.size}")
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    n = int(xs.size)
    if n < 2:
        raise ValueError(f"calibration needs at least 2 finite (indicator change, output change) pairs, got {n}; "
                         "sample more steps or more seeds")
    if int(order) != order or order < 0:
        raise ValueError(f"order must be a whole number >= 0, got {order!r}")
    lo, hi = float(xs.min()), float(xs.max())
    span = hi - lo
    if span <= 1e-12 * max(1.0, abs(hi)):
        c = max(0.0, float(ys.mean()))
        err = ys - c
        return CalibrationResult((c,), (lo, hi), float(np.sqrt(np.mean(err ** 2))),
                                 float(np.mean(np.abs(err)) / max(np.mean(np.abs(ys)), 1e-12)), n, 0)
    distinct = len(np.unique(xs))
    deg = int(min(order, distinct - 1))
    t = (xs - lo) / span
    powers = np.arange(deg + 1)
    a = t[:, None] ** powers[None, :]                     # low power first
    # constraint rows: q'(t) >= 0 on the grid, q(0) >= 0 (with q' >= 0 that gives q >= 0 on [0, 1])
    def rows(ts: np.ndarray) -> np.ndarray:
        d = np.zeros((ts.size, deg + 1))
        for k in range(1, deg + 1):
            d[:, k] = k * ts ** (k - 1)
        return d
    gt = np.linspace(0.0, 1.0, max(2, grid))
    g = np.vstack([rows(gt), (gt[:, None] ** powers[None, :])])
    q_free = np.linalg.lstsq(a, ys, rcond=None)[0]
    free_rmse = float(np.sqrt(np.mean((a @ q_free - ys) ** 2)))
    if deg == 0:
        q_free = np.array([max(0.0, float(ys.mean()))])
    ct = np.linspace(0.0, 1.0, max(2, check))
    scale_y = max(float(np.abs(ys).max()), 1e-30)
    tol = 1e-12 * scale_y

    def worst_points(qq: np.ndarray) -> np.ndarray:
        """Points of [0, 1] where q' or q is below -tol: the dense check plus the exact minima of
        q' (roots of q'') so that nothing dips between grid points."""
        cand = [ct]
        if deg >= 3:
            d2 = np.polynomial.polynomial.polyder(qq, 2)
            r = np.roots(d2[::-1]) if np.any(d2) else np.array([])
            r = np.real(r[np.abs(np.imag(r)) < 1e-12])
            cand.append(r[(r >= 0) & (r <= 1)])
        pts = np.concatenate(cand)
        d = rows(pts) @ qq
        v = (pts[:, None] ** powers[None, :]) @ qq
        return pts[(d < -tol) | (v < -tol)]

    q = q_free
    for _ in range(25):
        bad = worst_points(q)
        if bad.size == 0:
            break
        if q is not q_free:  # cut: add the violated points (and their neighbours) and refit
            near = np.clip(np.concatenate([bad, bad - 1e-4, bad + 1e-4]), 0.0, 1.0)
            g = np.vstack([g, rows(near), near[:, None] ** powers[None, :]])
        sol = lsi(a, ys, g, np.zeros(g.shape[0]))
        if sol is None:  # cannot happen (q = 0 is feasible); keep a constant fallback anyway
            sol = np.zeros(deg + 1)
            sol[0] = max(0.0, float(ys.mean()))
        q = sol
    # tiny negative values from round-off: lift the constant term
    vmin = float(((ct[:, None] ** powers[None, :]) @ q).min())
    if vmin < 0:
        q = q.copy()
        q[0] -= vmin
    pred = a @ q
    err = pred - ys
    rmse = float(np.sqrt(np.mean(err ** 2)))
    rel = float(np.mean(np.abs(err)) / max(float(np.mean(np.abs(ys))), 1e-30))
    coeffs = _compose_to_x(q, lo, span)
    return CalibrationResult(coeffs, (lo, hi), rmse, rel, n, deg, free_rmse)


def prediction_error(profile: CoefficientProfile | CalibrationResult, x, y) -> dict:
    """How well a profile predicts output changes from indicator changes (held-out data)."""
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    if isinstance(profile, CalibrationResult):
        pred = profile.predict(xs)
    else:
        pred = np.array([profile.rescale(float(v)) for v in xs])
    err = pred - ys
    return {"rmse": float(np.sqrt(np.mean(err ** 2))) if xs.size else float("nan"),
            "rel_error": float(np.mean(np.abs(err)) / max(float(np.mean(np.abs(ys))), 1e-30)) if xs.size
            else float("nan"), "n": int(xs.size)}


# ---------------------------------------------------------------------------------------------
# collecting pairs
# ---------------------------------------------------------------------------------------------


@dataclass
class _Stream:
    indicator: torch.Tensor | None = None
    output: torch.Tensor | None = None
    pending: torch.Tensor | None = None   # indicator of the current evaluation (output not yet seen)


@dataclass
class ChangeRecorder:
    """(indicator change, output change) pairs per stream from a full-compute run.

    Per evaluation of a stream: :meth:`indicator` (at block 0), then :meth:`output` (the model
    output). A pair is added from the second evaluation of a stream on: the relative L1 change of
    the indicator (exactly TeaCache's ``rel_l1``) and that of the output, both against the previous
    evaluation of the same stream. :meth:`new_run` starts over (pairs never span two runs).
    """
    xs: list = field(default_factory=list)
    ys: list = field(default_factory=list)
    meta: list = field(default_factory=list)   # (run, stream, step) per pair
    run: int = 0
    _streams: dict = field(default_factory=dict)

    def new_run(self) -> None:
        self._streams.clear()
        self.run += 1

    def indicator(self, stream: Hashable, value: torch.Tensor) -> None:
        self._streams.setdefault(stream, _Stream()).pending = value.detach().float().clone()

    def output(self, stream: Hashable, value: torch.Tensor, step: int = -1) -> None:
        st = self._streams.setdefault(stream, _Stream())
        out = value.detach().float().clone()
        ind = st.pending
        st.pending = None
        if ind is None:  # an evaluation that never reached block 0: keep the chain consistent
            st.indicator, st.output = None, out
            return
        if st.indicator is not None and st.output is not None and st.indicator.shape == ind.shape \
                and st.output.shape == out.shape:
            x = float(rel_l1(ind, st.indicator))
            y = float(rel_l1(out, st.output))
            if math.isfinite(x) and math.isfinite(y):
                self.xs.append(x)
                self.ys.append(y)
                self.meta.append((self.run, stream, step))
        st.indicator, st.output = ind, out

    def add_batch(self, streams: Sequence[Hashable], indicator: torch.Tensor | None = None,
                  output: torch.Tensor | None = None, step: int = -1) -> None:
        """Batched evaluation (batch split evenly over ``streams``, as ComfyUI batches cond/uncond)."""
        k = len(streams)
        if indicator is not None:
            for s, c in zip(streams, indicator.chunk(k) if k > 1 else [indicator]):
                self.indicator(s, c)
        if output is not None:
            for s, c in zip(streams, output.chunk(k) if k > 1 else [output]):
                self.output(s, c, step)

    def __len__(self) -> int:
        return len(self.xs)

    def fit(self, order: int = 4) -> CalibrationResult:
        return fit_coefficients(self.xs, self.ys, order=order)


class RecordingController:
    """Stands where a :class:`CacheController` goes: computes every block and hands the block-0
    indicator of each evaluation to a :class:`ChangeRecorder` (``.changes``). The caller reports
    the model output with :meth:`output` after the forward. ``.recorder`` is a plain
    :class:`~cache_core.stats.RunRecorder`, for callers that start/finish one per run."""

    def __init__(self, hooks, changes: ChangeRecorder | None = None):
        from .stats import RunRecorder
        self.hooks = hooks
        self.changes = changes if changes is not None else ChangeRecorder()
        self.recorder = RunRecorder()
        self.streams: list = []
        self.step = -1
        self.active = False

    def begin(self, info, streams: Sequence[Hashable]) -> None:
        self.streams = list(streams)
        self.step = getattr(info, "step", -1)
        self.active = True

    def end(self) -> None:
        self.active = False

    def reset(self) -> None:
        """End of a sampling run (the next run's pairs start over)."""
        self.changes.new_run()

    def block(self, index: int, inputs: dict, run: Callable[[dict], dict]) -> dict:
        if self.active and index == 0:
            with torch.no_grad():
                self.changes.add_batch(self.streams, indicator=self.hooks.indicator(inputs))
        return run(inputs)

    def branch(self, index: int, name: str, fn):
        return fn()

    def output(self, value: torch.Tensor, streams: Sequence[Hashable] | None = None) -> None:
        self.changes.add_batch(list(streams) if streams is not None else self.streams, output=value,
                               step=self.step)


__all__ = ["CalibrationResult", "fit_coefficients", "prediction_error", "nnls", "lsi", "ChangeRecorder",
           "RecordingController"]
