"""Guidance passes and noisy samplers in the controller and the run statistics (issue 11): an
uncached pass touches no state, guidance passes are counted apart, and the "why nothing was
reused" note names a noisy sampler."""
import torch

from dit_reference.model import ReferenceConfig, ReferenceDiT, ReferenceHooks
from cache_core.stack import CacheController
from cache_core.stats import RunRecorder
from cache_core.steps import StepLocator
from cache_core.teacache import TeaCacheConfig

SIGMAS = [1.0, 0.85, 0.7, 0.55, 0.4, 0.25, 0.0]


def _model():
    torch.manual_seed(0)
    m = ReferenceDiT(ReferenceConfig(width=64, depth=3, heads=2))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return m.eval()


def _forward(m, ctl, x, sigma, streams, loc, **kw):
    ctl.begin(loc.locate(sigma), streams, **kw)
    try:
        return m(x, torch.full((x.shape[0],), sigma), torch.zeros(x.shape[0], dtype=torch.long), block_hook=ctl.block)
    finally:
        ctl.end()


@torch.no_grad()
def test_uncached_pass_leaves_the_stream_alone(one_thread):
    """An uncached pass of the same stream between its evaluations changes neither its decisions
    nor its outputs, and computes what the plain model computes."""
    m = _model()
    loc = StepLocator(SIGMAS)
    x = torch.randn(1, 1, 8, 8)
    runs = []
    for extra in (False, True):
        ctl = CacheController(ReferenceHooks(m), TeaCacheConfig(0.3, "raw"))
        outs = []
        for s in SIGMAS[:-1]:
            outs.append(_forward(m, ctl, x * (1 + s), s, ["a"], loc))
            if extra:
                plain = m(x * 2, torch.full((1,), s), torch.zeros(1, dtype=torch.long))
                got = _forward(m, ctl, x * 2, s, ["a"], loc, kind="#2", cached=False)
                assert torch.equal(got, plain)
        runs.append((outs, [(r.decision, r.reason) for r in ctl.recorder.records if not r.kind], ctl))
    (a, da, _), (b, db, ctl) = runs
    assert da == db and any(d == "reuse" for d, _ in da)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    g = [r for r in ctl.recorder.records if r.kind]
    assert len(g) == len(SIGMAS) - 1 and {(r.decision, r.reason) for r in g} == {("compute", "uncached")}
    assert all(r.layers_computed == 3 and r.layers_reused == 0 for r in g)


def _rec(rec, step, stream, compute, reason, rel=None, kind=""):
    rec.add(step, 1.0 - step / 10, stream, compute, reason, rel, 0.0 if compute else rel, 4 if compute else 0,
            0 if compute else 4, 0.01, 0, kind=kind)


def test_guidance_passes_are_counted_apart():
    rec = RunRecorder(run_id="x", threshold=0.5)
    rec.start(3)
    for step in range(3):
        _rec(rec, step, "c", step != 1, "first" if step == 0 else ("reuse" if step == 1 else "last"), 0.1)
        _rec(rec, step, "g1:c", True, "uncached", kind="g1")
    s = rec.summary()
    assert (s["evaluations"], s["computed"], s["reused"]) == (3, 2, 1)
    assert (s["guidance_passes"], s["guidance_computed"]) == (3, 3)
    assert s["streams"] == ["c"]
    assert (s["layers_computed"], s["layers_reused"]) == (5 * 4, 4)  # all block work of the run
    assert "guidance passes: 3, computed 3" in rec.table()


def test_why_no_reuse_names_a_noisy_sampler():
    def run(noisy):
        rec = RunRecorder(run_id="x", threshold=0.2)
        rec.start(5)
        rec.sampler, rec.noisy_sampler = "euler_ancestral", noisy
        for step, rel in enumerate([None, 0.6, 0.7, 0.8, 0.5]):
            _rec(rec, step, "c", True, "first" if rel is None else ("last" if step == 4 else "threshold"), rel)
        return [n for n in rec.summary()["notes"] if n.startswith("no reuse")]
    [noisy] = run(True)
    assert "the sampler euler_ancestral adds fresh noise at every step" in noisy
    assert "median relative change 0.7 per evaluation" in noisy
    [plain] = run(False)
    assert "sampler" not in plain and "raise rel_l1_thresh" in plain
