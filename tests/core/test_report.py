"""Cache Stats' first line, stream names and the "why nothing was reused" note (issue 19)."""
import pytest
import torch

from cache_core import report
from cache_core.stats import RunRecorder
from cache_core.teacache import TeaCacheConfig
from dit_reference.sampling import make_controller, sample

LABELS = torch.tensor([3, 7])


def _run(reasons, changes, threshold=0.1, streams=("cond", "uncond"), decisions=None):
    rec = RunRecorder(run_id="x+TC(t0.1,raw)#0", threshold=threshold)
    rec.start(len(reasons))
    for step, (reason, change) in enumerate(zip(reasons, changes)):
        for k in streams:
            compute = decisions[step] if decisions else True
            rec.add(step, 1 - step / len(reasons), k, compute, reason, change, 0.0 if compute else change, 2,
                    0 if compute else 2, 0.01, 0, rescaled=change)
    return rec


def _why(rec):
    return [n for n in rec.summary()["notes"] if n.startswith("no reuse")]


def test_four_steps_at_a_low_threshold_blame_the_threshold_not_the_step_count():
    """The issue's case: steps 1 and 2 were decided by the threshold, so the note names it and the
    threshold that would have reused a step, not "only 4 steps"."""
    [why] = _why(_run(["first", "threshold", "threshold", "last"], [None, 0.31, 0.45, 0.5]))
    assert "steps" in why and "only 4 steps" not in why
    assert "reached rel_l1_thresh 0.1 at steps 1-2" in why
    assert "a threshold above 0.31 reuses step 1" in why and "raise rel_l1_thresh" in why


def test_every_step_forced_blames_the_forced_steps():
    [why] = _why(_run(["first", "last"], [None, 0.4]))
    assert "every evaluation fell on a forced step (first step, last step)" in why
    assert "threshold decided none" in why and "rel_l1_thresh 0.1" not in why


def test_forced_and_threshold_steps_name_both():
    [why] = _why(_run(["first", "window", "window", "threshold", "threshold", "last"],
                      [None, 0.2, 0.3, 0.25, 0.4, 0.3]))
    assert why.startswith("no reuse: both: steps 1-2 were forced (outside start/end percent)")
    assert "reached rel_l1_thresh 0.1 at steps 3-4" in why and "above 0.25 reuses step 3" in why


def test_a_batched_step_needs_every_stream_under_the_threshold():
    rec = RunRecorder(threshold=0.1)
    rec.start(3)
    for k in ("cond", "uncond"):
        rec.add(0, 1.0, k, True, "first", None, 0.0, 1, 0, 0.01, 0)
    for k, c in (("cond", 0.2), ("uncond", 0.5)):
        rec.add(1, 0.5, k, True, "threshold", c, 0.0, 1, 0, 0.01, 0, rescaled=c)
    for k in ("cond", "uncond"):
        rec.add(2, 0.2, k, True, "last", 0.1, 0.0, 1, 0, 0.01, 0, rescaled=0.1)
    [why] = _why(rec)
    assert "a threshold above 0.5 reuses step 1" in why


def test_accumulator_trace_is_the_value_held_against_the_threshold():
    recs = _run(["first", "reuse", "reuse", "threshold", "reuse"], [None, 0.1, 0.15, 0.2, 0.05],
                streams=("cond",), decisions=[True, False, False, True, False]).records
    # reuse records store their running sum; the computed step shows what crossed the threshold
    recs[1].accumulated, recs[2].accumulated, recs[4].accumulated = 0.1, 0.25, 0.05
    assert report.accumulator_trace(recs) == [None, 0.1, 0.25, pytest.approx(0.45), 0.05]


def test_headline_says_speed_computed_mode_and_where_to_look():
    rec = _run(["first", "reuse", "threshold", "last"], [None, 0.05, 0.2, 0.1],
               decisions=[True, False, True, True])
    rec.reuse = "reuse: TeaCache cached residual"
    s = rec.summary()
    line = report.headline(s)
    assert line.startswith("speed-up ") and "computed 6/8 evaluations (2 streams)" in line
    assert "reuse TeaCache cached residual" in line and "lower rel_l1_thresh" in line
    assert rec.table().splitlines()[0] == line
    assert "target" not in line
    s.update(target_speedup=2.0, target_met=False)  # target mode (TeaCache Patch's target_speedup)
    line = report.headline(s)
    assert "target 2x not met" in line and "target was not reached" in line


def test_streams_are_named_as_the_user_knows_them():
    names = {"u-pos": "positive", "u-neg": "negative", "u-area": "positive 2 (area)"}
    assert report.stream_name("u-neg", names) == "negative"
    assert report.stream_name("g1:u-pos", names) == "positive · pass g1"
    assert report.stream_name("cond") == "positive" and report.stream_name("uncond1") == "negative 2"
    assert report.stream_order(["g1:u-pos", "u-neg", "u-area", "u-pos"], names) == \
        ["u-pos", "u-neg", "u-area", "g1:u-pos"]
    rec = _run(["first", "last"], [None, 0.3], streams=("cond", "uncond"))
    table = rec.table()
    assert "streams: positive, negative" in table.splitlines()[1]
    assert all(k not in line.split() for line in table.splitlines()[5:] for k in ("cond", "uncond"))


def test_reference_model_four_steps_note_is_true(reference_model):
    """On the reference model: 4 steps at a low threshold reuse nothing and the note names the
    threshold that reuses a step; that threshold does reuse it."""
    low = make_controller(reference_model, TeaCacheConfig(0.01, "raw"))
    sample(reference_model, LABELS, steps=4, controller=low)
    s = low.recorder.summary()
    assert s["reused"] == 0
    [why] = [n for n in s["notes"] if n.startswith("no reuse")]
    assert "reached rel_l1_thresh 0.01" in why and "only 4 steps" not in why
    above, step = why.split("a threshold above ")[1].split(" reuses step ")
    higher = make_controller(reference_model, TeaCacheConfig(float(above) + 1e-9, "raw"))
    sample(reference_model, LABELS, steps=4, controller=higher)
    reused = [r.step for r in higher.recorder.records if r.decision == "reuse"]
    assert int(step.split(";")[0]) in reused
