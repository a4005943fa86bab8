"""Target mode (cache_core.budget): the budget, the layouts and the online split, on hand-made
indicator sequences; and the L2C schedule at a target (cache_core.l2c.target)."""
import math

import pytest
import torch

from cache_core import budget
from cache_core.coefficients import CoefficientProfile
from cache_core.l2c import L2CSchedule
from cache_core.l2c.target import for_target, share
from cache_core.teacache import TeaCacheConfig, TeaCacheState, decide, forced_reason

IDENTITY = CoefficientProfile("id", (0.0, 0.0, 0.0, 1.0, 0.0), (0.0, 1.0))


def linear(n):
    return [1.0 - i / n for i in range(n + 1)]


def simulate(changes, target, sigmas=None, sampler="", **cfg_kw):
    """One stream through teacache.decide with the budget's threshold: the compute flags."""
    sigmas = sigmas or linear(len(budget.evaluation_steps(linear(len(changes)), "")))
    cfg = TeaCacheConfig(1.0, coefficients=IDENTITY, target_speedup=target, **cfg_kw)
    p = budget.plan(target, sigmas, sampler, lambda s, n, pos: forced_reason(s, n, pos, cfg) is not None)
    assert p.evaluations == len(changes)
    st, bs, out = TeaCacheState(), budget.BudgetState(), []
    n = len(sigmas) - 1
    for j, c in enumerate(changes):
        step = p.steps[j]
        forced = forced_reason(step, n, step / (n - 1), cfg)
        ch = None if j == 0 else c
        _, thr, bs = budget.decide(p, bs, ch, st.accumulated + (ch or 0.0), forced is not None)
        d, st = decide(st, ch, cfg, forced, thr)
        if d.compute:
            bs = budget.computed(bs)
        out.append(d.compute)
    return p, out


@pytest.mark.parametrize("target", [0.5, -1, float("nan"), float("inf"), True])
def test_bad_targets_are_refused_with_a_working_value(target):
    with pytest.raises(ValueError, match="try 2"):
        budget.check_target(target)
    with pytest.raises(ValueError, match="try 2"):
        TeaCacheConfig(0.4, target_speedup=target)


def test_target_and_compute_every_conflict():
    with pytest.raises(ValueError, match="set one of them to 0"):
        TeaCacheConfig(0.4, target_speedup=2, compute_every=3)


def test_run_id_names_the_target_and_is_unchanged_without():
    assert TeaCacheConfig(0.4, "raw").run_id() == "TC(t0.4,raw)"
    assert TeaCacheConfig(0.4, "raw", target_speedup=2).run_id() == "TC(x2,raw)"


def test_layouts_count_heun_as_2n_minus_1():
    sig = linear(5)
    assert budget.evaluation_steps(sig, "euler") == [0, 1, 2, 3, 4]
    assert budget.evaluation_steps(sig, "heun") == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert budget.evaluation_steps(sig, "dpm_2") == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    # a schedule that does not end at sigma 0 (the high-noise half of a split run): 2N
    assert len(budget.evaluation_steps([1.0, 0.8, 0.6, 0.5], "heun")) == 6


@pytest.mark.parametrize("n,target", [(20, 2), (20, 3), (25, 1.5), (25, 4), (7, 2), (50, 3)])
@pytest.mark.parametrize("shape", ["flat", "decaying", "spiky", "zero"])
def test_the_budget_is_spent_exactly(n, target, shape):
    g = torch.Generator().manual_seed(n)
    changes = {"flat": [0.1] * n, "decaying": [1.0 / (1 + i) for i in range(n)],
               "spiky": (torch.rand(n, generator=g) ** 4).tolist(), "zero": [0.0] * n}[shape]
    p, flags = simulate(changes, target)
    assert sum(flags) == p.budget == max(round(n / target), 2)
    assert flags[0] and flags[-1]


def test_budget_goes_where_the_change_is():
    """A calm run with jumps: every jump computes (not a fixed interval), the count holds."""
    spikes = {5, 11, 16}
    changes = [1.0 if j in spikes else 0.02 for j in range(20)]
    p, flags = simulate(changes, 4)
    assert sum(flags) == 5
    assert all(flags[j] for j in spikes)


def test_a_flat_indicator_gives_an_even_spacing():
    """Equal change everywhere: equal parts are equal gaps (within one evaluation), never a run
    of leftover computes at the end."""
    p, flags = simulate([0.05] * 40, 4)
    cuts = [j for j, f in enumerate(flags) if f]
    gaps = [b - a for a, b in zip(cuts, cuts[1:])]
    assert len(cuts) == 10 and max(gaps) - min(gaps) <= 1, gaps


def test_forced_steps_above_the_budget_are_computed_and_said():
    p, flags = simulate([0.1] * 10, 4, start_percent=0.0, end_percent=0.3)
    assert sum(flags) == p.budget == sum(p.forced) > p.requested
    assert "forced" in p.missed and "at most" in p.missed


def test_window_steps_count_against_the_budget():
    p, flags = simulate([0.1] * 20, 2, start_percent=0.2)
    assert sum(flags) == 10
    assert all(flags[:4])


def test_heun_budget_2n_minus_1():
    n = 20
    sig = linear(n)
    p = budget.plan(3, sig, "heun", lambda s, k, pos: s >= k - 1)
    assert p.evaluations == 39 and p.budget == 13
    changes = [0.05 + 0.01 * (j % 3) for j in range(39)]
    p2, flags = simulate(changes, 3, sigmas=sig, sampler="heun")
    assert sum(flags) == 13


def test_prior_follows_the_sigma_steps():
    """The prior weight of an evaluation is its sigma step: a shifted flow schedule (shift 3) takes
    small steps at high noise and big ones at the end, and the weights say so."""
    shifted = [3 * t / (1 + 2 * t) for t in linear(20)]
    p = budget.plan(2, shifted, "euler")
    assert p.weights[0] == 0.0 and min(p.weights[1:]) > 0
    assert p.weights[-1] > 3 * p.weights[1]
    assert budget.plan(2, linear(20)).weights[1:] == pytest.approx([0.05] * 19)


def test_summary_note_says_target_and_reached():
    from cache_core.stats import EvalRecord
    p = budget.plan(2, linear(10))
    recs = [EvalRecord(i, i, 0.0, "cond", "compute" if i % 2 == 0 or i == 9 else "reuse", "target", None, None,
                       1, 0, 0.0, 0) for i in range(10)]
    t = budget.target_summary(p, recs, 1.6, None)
    assert t["fields"]["target_computed"] == 6 and t["fields"]["target_budget"] == 5
    assert t["fields"]["target_met"]
    assert "target 2x: computed 6 of 10" in t["note"]


# -- L2C -----------------------------------------------------------------------------------
def _sched(steps=8, layers=4):
    g = torch.Generator().manual_seed(1)
    compute = torch.rand(steps, layers, 2, generator=g) > 0.6
    compute[0] = True
    return L2CSchedule(compute, ("attn", "mlp"), "dit", cache_steps=list(range(1, steps)))


@pytest.mark.parametrize("target", [1.2, 1.5, 2, 3])
def test_l2c_target_share_is_closest_reachable(target):
    s = _sched()
    r = for_target(s, target)
    assert abs(r.share - 1 / target) < 2 / (8 * 4)  # within one entry's cost
    assert r.schedule.compute[0].all()
    assert share(r.schedule) == r.share


def test_l2c_target_keeps_the_learned_choice_when_it_can():
    s = _sched()
    r = for_target(s, 1 / share(s) * 0.999)
    assert torch.equal(r.schedule.compute, s.compute)


def test_l2c_target_from_router_logits_is_a_threshold():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 3, 2, generator=g)
    base = L2CSchedule(torch.ones(6, 3, 2, dtype=torch.bool), ("attn", "mlp"), "dit", cache_steps=[1, 2, 3, 4, 5])
    r = for_target(base, 2, logits)
    expect = torch.sigmoid(logits) > r.threshold
    expect[0] = True
    assert torch.equal(r.schedule.compute, expect)


def test_l2c_target_out_of_reach_is_said():
    s = L2CSchedule(torch.ones(4, 2, 1, dtype=torch.bool), ("block",), "flux", cache_steps=[2])
    r = for_target(s, 4)
    assert r.share == pytest.approx(0.75) and "out of reach" in r.describe()
    with pytest.raises(ValueError, match="try 1.5"):
        for_target(s, 0.5)
    assert math.isfinite(r.reached)


# -- through the controller ------------------------------------------------------------------
def _run(model, cfg, steps=20):
    from dit_reference.sampling import make_controller, sample
    ctl = make_controller(model, teacache=cfg)
    x = sample(model, torch.arange(2), steps=steps, cfg=3.0, controller=ctl)
    return x, ctl.recorder


@pytest.mark.parametrize("target,mode", [(2, "cached"), (3, "taylor1")])
def test_reference_model_spends_the_budget(reference_model, one_thread, target, mode):
    x, rec = _run(reference_model, TeaCacheConfig(0.4, "raw", reuse=mode, target_speedup=target))
    s = rec.summary()
    assert s["computed"] == 2 * round(20 / target)  # cond and uncond
    assert s["target_met"] and s["target_budget"] == round(20 / target)
    assert torch.isfinite(x).all()


def test_reference_model_target_zero_is_bit_identical(reference_model, one_thread):
    a, ra = _run(reference_model, TeaCacheConfig(0.2, "raw"), steps=8)
    b, rb = _run(reference_model, TeaCacheConfig(0.2, "raw", target_speedup=0.0), steps=8)
    assert torch.equal(a, b) and ra.summary()["run_id"] == rb.summary()["run_id"]
