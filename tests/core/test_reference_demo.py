"""The demo end to end at toy size, the L2C schedule learning on the reference model, and the
benchmarks' baseline controllers and Pareto helpers."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from dit_reference.demo import count_branches, learn_l2c_schedule, main, psnr, teacache_pattern, track_branches
from dit_reference.sampling import make_controller, sample
from cache_core.teacache import TeaCacheConfig

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is not an installed package; it lives beside cache_core
    sys.path.append(str(ROOT))
bench_common = pytest.importorskip("bench.common")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(reference_model):
    return reference_model


def test_demo_runs_and_writes_outputs(tmp_path, capsys):
    pytest.importorskip("PIL")
    rc = main(["--out", str(tmp_path), "--per-class", "1", "--steps", "6", "--repeats", "1",
               "--l2c-iterations", "6", "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "no cache" in out and "TeaCache" in out and "L2C" in out
    for name in ("demo_grid.png", "demo_fidelity.png", "demo_results.json", "l2c_schedule.safetensors"):
        assert (tmp_path / name).is_file()
    rows = json.loads((tmp_path / "demo_results.json").read_text())["rows"]
    assert len(rows) == 8
    assert [r["method"] for r in rows if "taylor1" in r["method"]] == ["TeaCache raw 0.3 taylor1", "L2C lam=0.003 taylor1"]
    assert rows[0]["method"] == "no cache" and rows[0]["branches_computed"] == rows[0]["branches_total"]


def test_learned_schedule_reuses_more_with_larger_lambda(model):
    lo, _ = learn_l2c_schedule(model, steps=6, lam=1e-5, iterations=12, per_class=1, lr=1.0)
    hi, _ = learn_l2c_schedule(model, steps=6, lam=1.0, iterations=12, per_class=1, lr=1.0)
    assert lo.layers == len(model.blocks) and lo.branches == ("attn", "mlp")
    assert int(hi.compute.sum()) < int(lo.compute.sum())
    assert bool(hi.compute[0].all())  # step 0 has nothing cached


def test_schedule_under_teacache_with_the_plain_controller(model):
    tc = TeaCacheConfig(0.6, coefficients="raw")  # 8 steps: ~0.25 indicator change per step
    labels = torch.arange(10)
    pattern = teacache_pattern(model, labels, 8, 3.0, 0, tc)
    assert pattern[0] == 0 and pattern[-1] == 7 and len(pattern) < 8
    sched, info = learn_l2c_schedule(model, steps=8, lam=1.0, iterations=6, per_class=1, lr=1.0, teacache=tc)
    assert set(info["cache_steps"]) <= set(pattern[1:])
    ctl = track_branches(make_controller(model, teacache=tc, l2c=sched))
    x = sample(model, labels, steps=8, cfg=3.0, seed=0, controller=ctl)
    assert torch.isfinite(x).all()
    # the first step computed after a TeaCache reuse computes every branch (its L2C caches are
    # older than the schedule assumes), whatever the schedule says
    recs = ctl.recorder.records
    computed = sorted({r.step for r in recs if r.decision == "compute"})
    per_step = {}
    for s, _, n in ctl.branch_calls:
        per_step[s] = per_step.get(s, 0) + n
    full = 2 * len(model.blocks) * len(model.blocks[0].branches)  # cond + uncond
    for a, b in zip(computed, computed[1:]):
        if b > a + 1:
            assert per_step[b] == full
    bc, bt = count_branches(model, ctl)
    assert bc == sum(per_step.values()) and bt == full * 8


def test_branch_count_is_what_ran_not_the_schedule(model):
    from cache_core.l2c import L2CSchedule
    labels = torch.arange(10)
    s = L2CSchedule.all_compute(6, len(model.blocks))
    s.compute[3] = False  # step 3 reuses every branch from step 2
    ctl = track_branches(make_controller(model, l2c=s))
    sample(model, labels, steps=6, cfg=3.0, seed=0, controller=ctl)
    per = 2 * len(model.blocks) * 2
    assert count_branches(model, ctl) == (per * 5, per * 6)


def test_stack_skip_controller_baselines(model):
    C = bench_common
    labels = torch.arange(10)
    ref = sample(model, labels, steps=8, cfg=3.0, seed=0)
    always = C.StackSkipController(len(model.blocks), lambda ctl, info, h: True)
    assert torch.equal(sample(model, labels, steps=8, cfg=3.0, seed=0, controller=always), ref)
    for ctl in (C.StackSkipController(len(model.blocks), C.UniformSkip(compute_every=2)),
                C.StackSkipController(len(model.blocks), None, first_block=0.3),
                C.StackSkipController(len(model.blocks), C.EasyCacheRate(0.3))):
        x = sample(model, labels, steps=8, cfg=3.0, seed=0, controller=ctl)
        computed = {r.step for r in ctl.recorder.records if r.decision == "compute"}
        assert 0 in computed and 7 in computed and len(computed) < 8
        assert torch.isfinite(x).all() and psnr(x, ref) > 15


def test_pareto_and_interpolation():
    C = bench_common
    pts = [(1.5, 40.0), (2.0, 35.0), (1.8, 30.0), (3.0, 25.0)]
    assert C.pareto(pts) == [(1.5, 40.0), (2.0, 35.0), (3.0, 25.0)]
    assert C.interpolate_at(pts, 2.5) == (30.0, "")
    assert C.interpolate_at(pts, 1.2) == (40.0, ">=")
    assert C.interpolate_at(pts, 3.5) is None


def test_threshold_zero_controller_matches_plain_with_l2c_all_compute(model):
    from cache_core.l2c import L2CSchedule
    labels = torch.arange(10)
    ref = sample(model, labels, steps=6, cfg=3.0, seed=1)
    s = L2CSchedule.all_compute(6, len(model.blocks))
    x = sample(model, labels, steps=6, cfg=3.0, seed=1, controller=make_controller(model, l2c=s))
    assert torch.equal(x, ref)
