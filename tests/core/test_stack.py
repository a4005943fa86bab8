"""The block-stack controller on the reference DiT (random weights): bit-identity, per-stream
state, resets, L2C schedules, non-finite residuals."""
import dataclasses

import pytest
import torch

from cache_core.l2c import L2CSchedule
from dit_reference.model import ReferenceConfig, ReferenceDiT, ReferenceHooks
from dit_reference.sampling import make_controller, sample
from cache_core.stack import CacheController
from cache_core.steps import StepLocator
from cache_core.teacache import TeaCacheConfig

CFG = ReferenceConfig(width=64, depth=4, heads=2)


def model(device, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    m = ReferenceDiT(CFG)
    for p in m.parameters():  # zero-init gates would make every block an identity
        torch.nn.init.normal_(p, std=0.05)
    return m.to(device=device, dtype=dtype).eval()


LABELS = torch.tensor([1, 7, 3])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("steps", [4, 10])
def test_threshold_zero_is_bit_identical(device, dtype, steps):
    if dtype == torch.float16 and device == "cpu":
        pytest.skip("fp16 matmul on CPU is not a target")
    m = model(device, dtype)
    base = sample(m, LABELS, steps=steps)
    out = sample(m, LABELS, steps=steps, controller=make_controller(m, TeaCacheConfig(0.0, "raw")))
    assert torch.equal(base, out)


@pytest.mark.parametrize("steps", [6, 12])
def test_huge_threshold_computes_first_and_last_only(device, steps):
    m = model(device)
    ctl = make_controller(m, TeaCacheConfig(1000.0, "raw"))
    calls = []
    h = m.blocks[-1].mlp.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = sample(m, LABELS, steps=steps, controller=ctl)
    finally:
        h.remove()
    assert torch.isfinite(out).all()
    s = ctl.recorder.summary()
    assert s["computed"] == 4 and s["evaluations"] == 2 * steps  # 2 streams x (first, last)
    assert len(calls) == 2  # cond and uncond batched: one forward per step
    assert s["layers_reused"] == 2 * (steps - 2) * CFG.depth


def test_all_compute_schedule_is_bit_identical(device):
    m = model(device)
    base = sample(m, LABELS, steps=8)
    sched = L2CSchedule.all_compute(8, CFG.depth, ("attn", "mlp"), family="reference")
    assert torch.equal(base, sample(m, LABELS, steps=8, controller=make_controller(m, l2c=sched)))
    blk = L2CSchedule.all_compute(8, CFG.depth, ("block",), family="reference")
    assert torch.equal(base, sample(m, LABELS, steps=8, controller=make_controller(m, l2c=blk)))


def test_sparse_branch_schedule_reuses_counted_branches(device):
    m = model(device)
    comp = torch.ones(8, CFG.depth, 2, dtype=torch.bool)
    comp[2:7:2, :, 1] = False  # MLPs reused on steps 2, 4, 6
    sched = L2CSchedule(comp, ("attn", "mlp"), "reference")
    mlp_calls = []
    hooks = [b.mlp.register_forward_hook(lambda *a: mlp_calls.append(1)) for b in m.blocks]
    try:
        base_calls = len(mlp_calls)
        out = sample(m, LABELS, steps=8, controller=make_controller(m, l2c=sched))
    finally:
        for h in hooks:
            h.remove()
    assert torch.isfinite(out).all()
    assert len(mlp_calls) - base_calls == 8 * CFG.depth - 3 * CFG.depth
    base = sample(m, LABELS, steps=8)
    assert not torch.equal(base, out)


def test_block_schedule_wrong_depth_is_refused():
    m = model("cpu")
    sched = L2CSchedule.all_compute(8, CFG.depth + 1, ("block",), family="reference")
    with pytest.raises(ValueError, match="layers but this model has"):
        make_controller(m, l2c=sched)


def test_streams_do_not_share_state():
    m = model("cpu")
    ctl = make_controller(m, TeaCacheConfig(0.5, "raw"))
    sample(m, LABELS, steps=6, controller=ctl)
    recs = ctl.recorder.records
    cond = [r.rel_l1 for r in recs if r.stream == "cond"]
    uncond = [r.rel_l1 for r in recs if r.stream == "uncond"]
    assert len(cond) == len(uncond) == 6
    assert cond[1:] != uncond[1:]  # computed from each stream's own previous indicator


def _one_forward(m, ctl, x, t, streams, locator):
    y = torch.arange(x.shape[0]) % 10
    ctl.begin(locator.locate(t), streams)
    try:
        return m(x, torch.full((x.shape[0],), t), y, block_hook=lambda i, a, r: ctl.block(i, a, r))
    finally:
        ctl.end()


def test_shape_change_resets_the_stream():
    m = model("cpu")
    ctl = CacheController(ReferenceHooks(m), TeaCacheConfig(1000.0, "raw"))
    loc = StepLocator([1.0, 0.8, 0.6, 0.4, 0.0])
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        _one_forward(m, ctl, x, 1.0, ["a"], loc)
        _one_forward(m, ctl, x, 0.8, ["a"], loc)
        assert ctl.recorder.records[-1].decision == "reuse"
        _one_forward(m, ctl, torch.randn(2, 1, 8, 8), 0.6, ["a"], loc)  # batch changed
    last = ctl.recorder.records[-1]
    assert last.decision == "compute" and last.reason == "first"
    assert ctl.tc_states.resets == 1


def test_nonfinite_residual_computes_instead():
    m = model("cpu")
    ctl = CacheController(ReferenceHooks(m), TeaCacheConfig(1000.0, "raw"))
    loc = StepLocator([1.0, 0.8, 0.6, 0.0])
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        _one_forward(m, ctl, x, 1.0, ["a"], loc)
        ctl._residuals["a"] = tuple(dataclasses.replace(h, coefs=(torch.full_like(h.latest, float("inf")),))
                                    for h in ctl._residuals["a"])
        out = _one_forward(m, ctl, x, 0.8, ["a"], loc)
    assert torch.isfinite(out).all()
    r = ctl.recorder.records[-1]
    assert r.decision == "compute" and r.reason == "nonfinite"
    assert any("not finite" in n for n in ctl.recorder.notes)


def test_offload_keeps_residual_on_cpu(device):
    m = model(device)
    ctl = make_controller(m, TeaCacheConfig(1000.0, "raw", cache_device="offload"))
    base_ctl = make_controller(m, TeaCacheConfig(1000.0, "raw"))
    a = sample(m, LABELS, steps=5, controller=ctl)
    b = sample(m, LABELS, steps=5, controller=base_ctl)
    assert torch.equal(a, b)


def test_reset_drops_every_tensor():
    m = model("cpu")
    ctl = make_controller(m, TeaCacheConfig(1000.0, "raw"))
    sample(m, LABELS, steps=5, controller=ctl)  # sample() resets at the end
    assert ctl.cache_bytes() == 0 and len(ctl.tc_states) == 0


def test_l2c_caches_are_stale_after_a_teacache_reuse(device):
    """After TeaCache reused a step, L2C's caches are older than the one step its schedule was
    learned for: the next computed step recomputes every layer, later steps reuse again."""
    m = model(device)
    steps = 10
    comp = torch.ones(steps, CFG.depth, 1, dtype=torch.bool)
    comp[1:steps - 1, 1::2, 0] = False  # odd layers reuse on every middle step
    sched = L2CSchedule(comp, ("block",), "reference")
    # the first half always computes (window), so L2C reuses there; TeaCache reuses later
    ctl = make_controller(m, TeaCacheConfig(0.1, "raw", start_percent=0.5), l2c=sched)
    sample(m, LABELS, steps=steps, controller=ctl)
    recs = [r for r in ctl.recorder.records if r.stream == "cond"]
    assert any(r.decision == "reuse" for r in recs), "the threshold must make TeaCache reuse"
    for prev, cur in zip(recs, recs[1:]):
        if prev.decision == "reuse" and cur.decision == "compute":
            assert cur.layers_reused == 0, (prev, cur)
    assert any(p.decision == "compute" and c.decision == "compute" and c.layers_reused > 0
               for p, c in zip(recs[1:], recs[2:])), "L2C must still reuse between computed steps"


class TwoPartHooks:
    """Hooks of a stack carrying two token streams side by side (LTX-2's video and audio), with
    a video-only indicator: the layout where a decision taken on video could reuse audio."""
    n_blocks = 2

    def indicator(self, inputs):
        return inputs["v"]

    def stack_input(self, inputs):
        return inputs["v"], inputs["a"]

    def stack_output(self, index, outputs, inputs, like):
        return outputs["v"], outputs["a"]

    def final_outputs(self, index, inputs, final):
        return {"v": final[0], "a": final[1]}

    def hidden_keys(self, index):
        return ("v", "a")


def _two_part_forward(ctl, v, a, sigma, runs):
    def block(inputs):
        runs.append(1)
        # each stream reads the other, as LTX-2's audio-video cross attention does
        return {"v": inputs["v"] * 1.1 + inputs["a"].mean(), "a": inputs["a"] * 0.9 + inputs["v"].mean()}
    ctl.begin(StepLocator([1.0, 0.8, 0.6, 0.4, 0.0]).locate(sigma), ["cond"])
    try:
        out = {"v": v, "a": a}
        for i in range(2):
            out = ctl.block(i, out, block)
        return out
    finally:
        ctl.end()


def test_two_part_stack_reuses_every_part_together():
    ctl = CacheController(TwoPartHooks(), TeaCacheConfig(1000.0, "raw"))
    v, a = torch.randn(1, 6, 4), torch.randn(1, 3, 2)
    runs = []
    first = _two_part_forward(ctl, v, a, 1.0, runs)
    again = _two_part_forward(ctl, v, a, 0.8, runs)
    assert len(runs) == 2 and ctl.recorder.records[-1].decision == "reuse"
    assert torch.allclose(again["v"], first["v"]) and torch.allclose(again["a"], first["a"])


def test_two_part_stack_never_reuses_a_stale_part():
    """The video part is unchanged in shape and the video indicator says reuse, but the audio
    part changed length: ComfyUI's EasyCache applied a stale audio residual here. Nothing is
    reused; the step computes, and every part's output is the freshly computed one."""
    ctl = CacheController(TwoPartHooks(), TeaCacheConfig(1000.0, "raw"))
    v = torch.randn(1, 6, 4)
    runs = []
    _two_part_forward(ctl, v, torch.randn(1, 3, 2), 1.0, runs)
    a2 = torch.randn(1, 5, 2)
    out = _two_part_forward(ctl, v, a2, 0.8, runs)
    r = ctl.recorder.records[-1]
    assert r.decision == "compute" and r.reason == "no_cache", r
    assert len(runs) == 4
    ref = _two_part_forward(CacheController(TwoPartHooks()), v, a2, 0.8, [])
    assert torch.equal(out["v"], ref["v"]) and torch.equal(out["a"], ref["a"])
