"""The pure TeaCache decision on hand-made values and 4-element tensors."""
import math

import pytest
import torch

from cache_core.coefficients import CoefficientProfile
from cache_core.teacache import TeaCacheConfig, TeaCacheState, decide, forced_reason, rel_l1

IDENTITY = CoefficientProfile("id", (0.0, 0.0, 0.0, 1.0, 0.0), (0.0, 1.0))


def cfg(t, **kw):
    return TeaCacheConfig(rel_l1_thresh=t, coefficients=IDENTITY, **kw)


def run(changes, config, forced=None):
    st = TeaCacheState()
    out = []
    for i, c in enumerate(changes):
        d, st = decide(st, c, config, forced[i] if forced else None)
        out.append(d)
    return out


def test_rel_l1_on_four_elements(device):
    prev = torch.tensor([1.0, -2.0, 3.0, -4.0], device=device)
    cur = torch.tensor([1.5, -2.0, 2.0, -4.0], device=device)
    # mean|cur-prev| = (0.5+0+1+0)/4 = 0.375 ; mean|prev| = 2.5
    assert rel_l1(cur, prev).item() == pytest.approx(0.15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_rel_l1_low_precision_is_computed_in_float32(device, dtype):
    prev = torch.tensor([1.0, -2.0, 3.0, -4.0], device=device, dtype=dtype)
    cur = torch.tensor([1.5, -2.0, 2.0, -4.0], device=device, dtype=dtype)
    v = rel_l1(cur, prev)
    assert v.dtype == torch.float32
    assert v.item() == pytest.approx(0.15, rel=1e-2)


def test_accumulates_and_resets_at_threshold():
    ds = run([None, 0.1, 0.1, 0.1, 0.05, 0.3], cfg(0.25))
    assert [d.compute for d in ds] == [True, False, False, True, False, True]
    assert [d.reason for d in ds] == ["first", "reuse", "reuse", "threshold", "reuse", "threshold"]
    assert ds[2].accumulated == pytest.approx(0.2)
    assert ds[3].accumulated == 0.0 and ds[4].accumulated == pytest.approx(0.05)


def test_threshold_zero_always_computes():
    ds = run([None, 0.0, 0.0, 1e-9], cfg(0.0))
    assert all(d.compute for d in ds)


def test_negative_polynomial_never_lowers_accumulator():
    neg = CoefficientProfile("neg", (-5.0, 0.0), (0.0, 1.0))  # y = -5x: negative everywhere
    c = TeaCacheConfig(rel_l1_thresh=0.5, coefficients=neg)
    st = TeaCacheState(accumulated=0.3)
    d, st2 = decide(st, 0.2, c)
    assert d.rescaled == 0.0 and st2.accumulated == pytest.approx(0.3)


def test_input_is_clamped_to_profile_range():
    p = CoefficientProfile("clamp", (1.0, 0.0), (0.1, 0.2))  # y = x on [0.1, 0.2]
    assert p.rescale(0.0) == pytest.approx(0.1)
    assert p.rescale(5.0) == pytest.approx(0.2)
    assert p.rescale(0.15) == pytest.approx(0.15)


def test_forced_steps_compute_and_reset():
    c = cfg(10.0, warmup_steps=1, start_percent=0.2, end_percent=0.8)
    assert forced_reason(0, 10, 0.0, c) == "warmup"
    assert forced_reason(1, 10, 1 / 9, c) == "window"
    assert forced_reason(5, 10, 5 / 9, c) is None
    assert forced_reason(8, 10, 8 / 9, c) == "window"
    assert forced_reason(9, 10, 1.0, c) == "last"
    st = TeaCacheState(accumulated=3.0, consecutive_reuses=2)
    d, st2 = decide(st, 0.1, c, "last")
    assert d.compute and d.reason == "last" and st2.accumulated == 0.0


def test_consecutive_reuse_cap():
    ds = run([None] + [0.01] * 6, cfg(10.0, max_consecutive_skips=2))
    assert [d.compute for d in ds] == [True, False, False, True, False, False, True]
    assert ds[3].reason == "cap"


@pytest.mark.parametrize("bad, match", [
    (dict(rel_l1_thresh=-0.1), "finite number >= 0"),
    (dict(rel_l1_thresh=float("nan")), "finite number"),
    (dict(rel_l1_thresh=math.inf), "finite number"),
    (dict(start_percent=0.8, end_percent=0.2), "after end_percent"),
    (dict(start_percent=1.5), "between 0 and 1"),
    (dict(cache_device="gpu"), "'main' or 'offload'"),
    (dict(max_consecutive_skips=-1), "whole number"),
    (dict(coefficients="nope"), "known:"),
])
def test_config_errors_say_what_to_do(bad, match):
    with pytest.raises((ValueError, KeyError), match=match):
        TeaCacheConfig(**bad)


def test_run_id_is_compact_and_changes_with_settings():
    a = TeaCacheConfig(0.4, "flux").run_id()
    b = TeaCacheConfig(0.3, "flux").run_id()
    assert a == "TC(t0.4,flux)" and a != b
