"""The coefficient table: its shape, sources, and the derived clamp ranges."""
import json

import numpy as np
import pytest

from cache_core.coefficients import DATA_FILE, CoefficientProfile, get_profile, published_profiles

SHARED = DATA_FILE.parents[2] / ".." / "shared" / "reference" / "teacache_coefficients.json"


def test_table_shape():
    profiles = published_profiles()
    assert len(profiles) >= 20
    for name, p in profiles.items():
        assert len(p.coefficients) >= 2, name  # any degree, highest power first
        assert p.source, name
        lo, hi = p.input_range
        assert 0.0 <= lo < hi <= 1.0, name


@pytest.mark.parametrize("name", sorted(published_profiles()))
def test_rescale_is_nonnegative_and_nondecreasing(name):
    p = get_profile(name)
    xs = np.linspace(0, 1.5, 3001)
    ys = [p.rescale(float(x)) for x in xs]
    assert min(ys) >= 0.0
    assert all(b >= a - 1e-9 for a, b in zip(ys, ys[1:]))


def test_any_degree_evaluates_as_numpy_does():
    """Published fits are degree 3 (FLUX.2-dev), 4 (most) or 5 (LightX2V): rescale is the polynomial
    of whatever degree the profile has, inside its clamp range."""
    degrees = {len(p.coefficients) - 1 for p in published_profiles().values()}
    assert {3, 4} <= degrees
    for c in ([2.0, -1.0, 0.5, 0.1], [1.0, 0.0, -0.2, 0.3, 0.1, 0.05], [3.0, 0.5]):
        p = CoefficientProfile("t", tuple(c), (0.0, 1.0))
        for x in (0.0, 0.05, 0.3, 0.9):
            assert p.rescale(x) == pytest.approx(max(0.0, float(np.polyval(c, x))), rel=1e-12, abs=1e-15)
    assert get_profile("flux2_dev").rescale(0.1) == pytest.approx(
        np.polyval([104.58236, -6.87605554, -0.0861659379, 0.0537600252], 0.1))


def test_published_values_match_the_reference_data():
    if not SHARED.is_file():
        pytest.skip(f"reference data not found at {SHARED}")
    ref = json.loads(SHARED.read_text())["models"]
    table = published_profiles()
    for name, e in ref.items():
        assert list(table[name].coefficients) == e["coefficients"], name


def test_derived_range_is_the_longest_monotone_nonnegative_interval():
    x = np.linspace(0, 1, 20001)
    for name, p in published_profiles().items():
        poly = np.poly1d(p.coefficients)
        y, dy = poly(x), np.polyder(poly)(x)
        ok = (y >= 0) & (dy >= 0)
        best, s = (0, 0), None
        for i, o in enumerate(list(ok) + [False]):
            if o and s is None:
                s = i
            if not o and s is not None:
                best = max(best, (s, i), key=lambda b: b[1] - b[0])
                s = None
        assert p.input_range == pytest.approx((x[best[0]], x[best[1] - 1]), abs=1e-3), name


@pytest.mark.parametrize("coefficients", [
    (1.04582360e02, -6.87605554e00, -8.61659379e-02, 5.37600252e-02),  # degree 3 (TensorRT-LLM FLUX.2-dev)
    (-2.97190924e+04, 2.22834983e+04, -4.37418360e+03, 3.39340251e+02, -1.01365855e+01, 1.29101768e-01),
    (0.5, 0.1),  # degree 1
])
def test_rescale_evaluates_any_degree(coefficients):
    p = CoefficientProfile("t", coefficients, (0.0, 1.0))
    for x in (0.0, 0.05, 0.2, 0.7, 1.0):
        assert p.rescale(x) == pytest.approx(max(0.0, float(np.polyval(coefficients, x))), rel=1e-12, abs=1e-12)


def test_degree_five_published_set_is_read_whole():
    p = get_profile("hunyuan_video1.5_t2v_480p")
    assert len(p.coefficients) == 6 and p.coefficients[0] == -2.97190924e+04
    lo, hi = p.input_range
    assert p.rescale(0.2) == pytest.approx(float(np.polyval(p.coefficients, 0.2)))
    assert p.rescale(0.9) == pytest.approx(float(np.polyval(p.coefficients, hi)))  # clamped above the fit
