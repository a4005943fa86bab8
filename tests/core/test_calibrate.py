"""TeaCache calibration: the constrained polynomial fit and the pair recorder (hand-made data)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cache_core.calibrate import (ChangeRecorder, RecordingController, fit_coefficients, lsi, nnls,
                                  prediction_error)
from cache_core.coefficients import CoefficientProfile
from cache_core.teacache import rel_l1


def _dense_check(res, n=20001, rtol=1e-9):
    lo, hi = res.input_range
    t = np.linspace(lo, hi, n)
    p = np.poly1d(res.coefficients)
    v = p(t)
    scale = max(1.0, float(np.abs(v).max()))
    assert v.min() >= -rtol * scale, f"negative at {t[v.argmin()]}: {v.min()}"
    d = p.deriv()(t)
    assert d.min() >= -1e-9 * scale, f"decreasing at {t[d.argmin()]}: {d.min()}"


def test_exact_monotone_polynomial_recovered():
    true = [120.0, -30.0, 4.0, 0.5, 0.01]   # monotone and positive on [0.01, 0.3]
    x = np.linspace(0.01, 0.3, 80)
    assert (np.poly1d(true).deriv()(x) > 0).all()
    y = np.polyval(true, x)
    res = fit_coefficients(x, y, order=4)
    assert res.order == 4 and res.n == 80
    assert np.allclose(res.coefficients, true, rtol=1e-6, atol=1e-8)
    assert res.rmse < 1e-10 and res.rel_error < 1e-9
    assert res.input_range == (pytest.approx(0.01), pytest.approx(0.3))
    _dense_check(res)


def test_exact_recovery_with_shuffled_noisy_free_points_and_lower_order():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.05, 0.8, 200)
    y = 2.0 * x ** 2 + 0.3 * x
    res = fit_coefficients(x, y, order=2)
    assert np.allclose(res.coefficients, [2.0, 0.3, 0.0], atol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_non_monotone_target_gives_monotone_nonnegative_fit(seed):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0.0, 0.5, 120))
    y = np.sin(9 * x + seed) * 0.5 + 0.2 * x - 0.1 + rng.normal(0, 0.02, x.size)   # goes up, down, below 0
    res = fit_coefficients(x, y, order=4)
    _dense_check(res)
    # the unconstrained fit is better on the data but violates the constraints
    free = np.polyfit(x, y, 4)
    fd = np.poly1d(free).deriv()(np.linspace(x.min(), x.max(), 2001))
    if fd.min() < 0:
        assert res.rmse >= res.unconstrained_rmse - 1e-12
    # error is reported and matches a recomputation
    pred = np.polyval(res.coefficients, x)
    assert res.rmse == pytest.approx(float(np.sqrt(np.mean((pred - y) ** 2))), rel=1e-6, abs=1e-9)
    assert res.rel_error == pytest.approx(float(np.mean(np.abs(pred - y)) / np.mean(np.abs(y))), rel=1e-6)


def test_constrained_fit_is_optimal_against_scipy():
    scipy_opt = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0.0, 1.0, 60))
    y = np.where(x < 0.5, x, 1.0 - x) + rng.normal(0, 0.01, x.size)
    res = fit_coefficients(x, y, order=4)
    lo, hi = res.input_range
    t = np.linspace(lo, hi, 256)
    a = np.vander(x, 5)
    cons = [{"type": "ineq", "fun": lambda c: np.poly1d(c).deriv()(t)},
            {"type": "ineq", "fun": lambda c: np.poly1d(c)(t)}]
    ref = scipy_opt.minimize(lambda c: np.sum((a @ c - y) ** 2), np.zeros(5), constraints=cons,
                             method="SLSQP", options={"maxiter": 2000, "ftol": 1e-15})
    ref_rmse = float(np.sqrt(np.mean((a @ ref.x - y) ** 2)))
    assert res.rmse <= ref_rmse + 1e-6


def test_nnls_and_lsi_small_cases():
    a = np.eye(3)
    assert np.allclose(nnls(a, np.array([1.0, -2.0, 3.0])), [1.0, 0.0, 3.0])
    # min ||x - b|| s.t. x >= 1  -> clip
    x = lsi(np.eye(2), np.array([0.0, 5.0]), np.eye(2), np.ones(2))
    assert np.allclose(x, [1.0, 5.0])
    # infeasible: x >= 1 and -x >= 0
    assert lsi(np.eye(1), np.array([0.0]), np.array([[1.0], [-1.0]]), np.array([1.0, 0.0])) is None


def test_degenerate_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        fit_coefficients([0.1], [0.2])
    res = fit_coefficients([0.1, 0.1, 0.1], [0.2, 0.4, 0.3])
    assert res.coefficients == (pytest.approx(0.3),) and res.order == 0
    res = fit_coefficients([0.1, 0.2], [0.3, 0.5], order=4)   # two points: a line
    assert res.order == 1 and res.rmse < 1e-12
    with pytest.raises(ValueError, match="same length"):
        fit_coefficients([0.1, 0.2], [0.3])


def test_result_profile_and_prediction():
    x = np.linspace(0.05, 0.5, 30)
    res = fit_coefficients(x, 2 * x, order=3)
    prof = res.profile("mine")
    assert isinstance(prof, CoefficientProfile)
    assert prof.rescale(0.25) == pytest.approx(0.5, rel=1e-6)
    assert prof.rescale(10.0) == pytest.approx(1.0, rel=1e-6)  # clamped to the observed range
    assert res.predict([0.0])[0] == pytest.approx(0.1, rel=1e-6)
    e = prediction_error(prof, x, 2 * x)
    assert e["rmse"] < 1e-6 and e["n"] == 30
    d = res.to_dict()
    assert set(d) >= {"coefficients", "input_range", "fit_rmse", "fit_rel_error", "points"}


def test_change_recorder_pairs_per_stream():
    rec = ChangeRecorder()
    ind = [torch.full((2, 3), v) for v in (1.0, 2.0, 3.0)]
    out = [torch.full((2, 3), v) for v in (10.0, 5.0, 5.0)]
    for i, o in zip(ind, out):
        rec.add_batch(["cond", "uncond"], indicator=torch.cat([i, i * 2]), output=torch.cat([o, o]))
    # two streams x two consecutive pairs
    assert len(rec) == 4
    assert rec.xs[0] == pytest.approx(float(rel_l1(ind[1], ind[0])))
    assert rec.ys[0] == pytest.approx(0.5)
    assert rec.ys[2] == pytest.approx(0.0)
    rec.new_run()
    rec.add_batch(["cond"], indicator=ind[0], output=out[0])
    assert len(rec) == 4  # no pair across runs


def test_recording_controller_sees_block0_indicator():
    class Hooks:
        n_blocks = 2

        def indicator(self, inputs):
            return inputs["img"] * 2

    ctl = RecordingController(Hooks())
    for k in range(3):
        ctl.begin(None, ["a"])
        x = {"img": torch.full((1, 4), float(k + 1))}
        h = ctl.block(0, x, lambda d: {"img": d["img"] + 1})
        h = ctl.block(1, h, lambda d: {"img": d["img"] + 1})
        ctl.end()
        ctl.output(h["img"])
    assert len(ctl.changes) == 2
    assert ctl.changes.xs[0] == pytest.approx(1.0)       # 2 -> 4
    assert ctl.changes.ys[0] == pytest.approx(1 / 3)     # 3 -> 4
