"""Lockstep decisions across threads (cache_core/lockstep.py) and the controller's ``agree`` hook:
cond and uncond in two threads, each with its own controller (as ComfyUI's MultiGPU CFG Split
runs them), decide as one controller does with them batched."""
import threading

import pytest
import torch

from cache_core.lockstep import LockstepError, LockstepTimeout, Round
from dit_reference.model import ReferenceConfig, ReferenceDiT
from dit_reference.sampling import flow_sigmas, make_controller
from cache_core.stats import RunRecorder
from cache_core.steps import StepLocator
from cache_core.teacache import TeaCacheConfig


def in_threads(*fns):
    """Runs each fn in a thread of its own; returns their results, re-raising the first error."""
    out, errors = [None] * len(fns), []

    def go(i, fn):
        try:
            out[i] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            errors.append(e)
    threads = [threading.Thread(target=go, args=(i, f)) for i, f in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    return out


@pytest.mark.parametrize("votes, verdict", [((True, True), True), ((True, False), False),
                                             ((False, False), False), ((True, None), True), ((None, None), True)])
def test_round_skips_only_when_no_forward_computes(votes, verdict):
    r = Round(len(votes), timeout=10)

    def cast(v):
        if v is None:
            r.abstain()
            return None
        return r.vote(v)
    got = in_threads(*[lambda v=v: cast(v) for v in votes])
    assert [g for g in got if g is not None] == [verdict] * sum(v is not None for v in votes)


def test_round_that_does_not_fill_raises_a_named_error_in_time():
    r = Round(2, timeout=0.2, label="step 3")
    with pytest.raises(LockstepTimeout, match=r"lockstep \(step 3\): waited 0 s.*1 of 2 forwards arrived"):
        r.vote(True)


def test_more_forwards_than_expected_is_an_error():
    r = Round(1)
    assert r.vote(True) is True
    with pytest.raises(LockstepError, match="2 forwards took part where 1 were expected"):
        r.vote(False)


def test_ballot_votes_once_and_abstains_on_close():
    r = Round(2, timeout=10)
    a, b = r.ballot(), r.ballot()
    b.close()  # an uncached forward: never waited for
    assert a(True) is True and a(False) is False  # a second decision keeps its own verdict
    b.close()
    assert r.arrived == 2


# -- the controller under lockstep, on the reference DiT ---------------------------------------
CFG = ReferenceConfig(width=64, depth=4, heads=2)
STEPS = 10


def model(seed=0):
    torch.manual_seed(seed)
    m = ReferenceDiT(CFG)
    with torch.no_grad():
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.05)
        m.y_emb.weight[:-1] *= 5  # labels that move the modulation: the two streams' changes differ
    return m.eval()


def trajectories(m, teacache, mode: str, steps=STEPS):
    """Two images sampled side by side (streams "a" and "b", other noise, other labels): in one
    batched forward per step through one controller (``mode`` "batched"), or as two forwards in
    two threads, each through a controller of its own sharing one recorder, as ComfyUI's
    MultiGPU CFG Split runs cond and uncond ("lockstep": one Round per step; "independent")."""
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn((1, CFG.channels, CFG.image_size, CFG.image_size), generator=g) for _ in range(2)]
    ys = [torch.tensor([3]), torch.tensor([m.null_class])]
    sig = flow_sigmas(steps)
    loc = StepLocator(sig.tolist())
    rec = RunRecorder(run_id=mode)
    ctls = [make_controller(m, teacache) for _ in range(1 if mode == "batched" else 2)]
    for k, c in enumerate(ctls):
        c.recorder, c.device = rec, ("" if mode == "batched" else f"dev{k}")
    rec.start(steps)
    for i in range(steps):
        t, info = sig[i], loc.locate(float(sig[i]))

        @torch.no_grad()  # grad mode is per thread
        def forward(c, streams, x, y, agree=None):
            c.begin(info, streams, agree=agree)
            try:
                return m(x, t.expand(x.shape[0]), y, block_hook=lambda j, inp, run: c.block(j, inp, run))
            finally:
                c.end()
        if mode == "batched":
            vs = forward(ctls[0], ["a", "b"], torch.cat(xs), torch.cat(ys)).chunk(2)
        else:
            r = Round(2, timeout=30) if mode == "lockstep" else None
            vs = in_threads(*[lambda k=k: forward(ctls[k], ["ab"[k]], xs[k], ys[k], r.ballot() if r else None)
                              for k in range(2)])
        xs = [x + (sig[i + 1] - t) * v for x, v in zip(xs, vs)]
    rec.finish()
    return torch.cat(xs), rec


def per_step(records):
    out = {}
    for r in records:
        out.setdefault(r.stream, []).append((r.step, r.decision))
    return {k: sorted(v) for k, v in out.items()}


def test_lockstep_threads_decide_as_one_batched_controller(one_thread):
    m = model()
    tc = TeaCacheConfig(0.2, "raw")
    ref, batched = trajectories(m, tc, "batched")
    ref_dec = per_step(batched.records)
    assert ref_dec["a"] == ref_dec["b"]  # one batch: one decision per step

    out, rec = trajectories(m, tc, "lockstep")
    dec = per_step(rec.records)
    assert dec == ref_dec
    assert torch.allclose(out, ref, atol=1e-4)  # batched and unbatched matmuls differ in the last bits
    s = rec.summary()
    assert sorted(s["devices"]) == ["dev0", "dev1"]
    assert s["steps_all_reused"] == [st for st, d in dec["a"] if d == "reuse"] != []

    # the test must exercise a coupling: alone, the streams decide differently
    _, alone = trajectories(m, tc, "independent")
    indep = per_step(alone.records)
    assert indep["a"] != indep["b"]
    assert any(r.reason == "lockstep" for r in rec.records)
    assert len(alone.summary()["steps_all_reused"]) < len(s["steps_all_reused"])


def test_stats_breakdown_per_device_and_stream():
    rec = RunRecorder(run_id="x")
    rec.start(3)
    for step, (c, u) in enumerate([(True, True), (False, False), (False, True)]):
        rec.add(step, 1.0 - step / 3, "c", c, "t", None, None, 2, 0, 0.0, 10 * (step + 1), device="cuda:0")
        rec.add(step, 1.0 - step / 3, "u", u, "t", None, None, 2, 0, 0.0, 5, device="cuda:1")
    s = rec.summary()
    assert s["per_stream"] == {"c": {"evaluations": 3, "computed": 1}, "u": {"evaluations": 3, "computed": 2}}
    assert s["devices"]["cuda:0"] == {"evaluations": 3, "computed": 1, "streams": ["c"], "peak_cache_bytes": 30}
    assert s["devices"]["cuda:1"]["computed"] == 2
    assert s["steps_all_reused"] == [1]
    assert s["peak_cache_bytes"] == 35  # both devices' caches at once
    assert "cuda:0 computed 1/3 (c); cuda:1 computed 2/3 (u); every device reused on 1 of 3 steps" in rec.table()


def test_one_device_stats_name_no_device():
    rec = RunRecorder(run_id="x")
    rec.start(2)
    rec.add(0, 1.0, "c", True, "first", None, None, 1, 0, 0.0, 7)
    assert rec.summary()["devices"] == {} and "devices:" not in rec.table()
    assert rec.summary()["peak_cache_bytes"] == 7


def test_recorder_adds_from_many_threads_get_distinct_indices():
    rec = RunRecorder(run_id="x")
    rec.start(1)

    def add(k):
        for _ in range(500):
            rec.add(0, 1.0, f"s{k}", True, "t", None, None, 1, 0, 0.0, k, device=f"d{k}")
            rec.note(f"note {k % 2}")
    in_threads(*[lambda k=k: add(k) for k in range(8)])
    assert sorted(r.eval_index for r in rec.records) == list(range(8 * 500))
    assert sorted(rec.notes) == ["note 0", "note 1"]
