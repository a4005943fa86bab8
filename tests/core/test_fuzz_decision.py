"""Property-based tests of the TeaCache decision."""
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from cache_core.coefficients import CoefficientProfile
from cache_core.teacache import TeaCacheConfig, TeaCacheState, decide

coeffs = st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=6)
changes = st.lists(st.one_of(st.none(), st.floats(0, 50, allow_nan=False)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(coeffs, st.floats(0, 5), changes, st.integers(0, 5),
       st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_decision_invariants(cs, thresh, seq, cap, rng):
    lo, hi = sorted(rng)
    prof = CoefficientProfile("fuzz", tuple(cs), (lo, hi))
    cfg = TeaCacheConfig(rel_l1_thresh=thresh, coefficients=prof, max_consecutive_skips=cap)
    state = TeaCacheState()
    run = 0
    for c in seq:
        before = state.accumulated
        d, state = decide(state, c, cfg)
        assert math.isfinite(d.accumulated) and d.accumulated >= 0
        if d.rescaled is not None:
            assert d.rescaled >= 0
        if d.compute:
            assert state.accumulated == 0.0 and state.consecutive_reuses == 0
            run = 0
        else:
            assert thresh > 0  # threshold 0 never reuses
            assert state.accumulated >= before  # the accumulator never decreases
            assert state.accumulated < thresh
            run += 1
            if cap:
                assert run <= cap
        if c is None:
            assert d.compute and d.reason == "first"
