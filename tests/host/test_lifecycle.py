"""Runs after runs: a patched model behaves as a fresh one would, whatever came before."""
from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from helpers import l2c, save_schedule, schedule_folder, summary, teacache, holder_of

STEPS = 6
THRESH = 0.6  # reuses some steps of the tiny random models without reusing all of them


@pytest.fixture(scope="module")
def flux(tiny_models):
    return tiny_models("flux")


def fresh(tiny, **kw):
    """The output of a newly patched model: what every later run must equal."""
    return tm.sample(tiny, steps=STEPS, model=teacache(tiny.patcher, THRESH), **kw)


def test_second_run_equals_first(flux):
    m = teacache(flux.patcher, THRESH)
    a = tm.sample(flux, steps=STEPS, model=m)
    b = tm.sample(flux, steps=STEPS, model=m)
    assert torch.equal(a, b)
    assert summary(m)["reused"] > 0, "the threshold must make this test exercise reuse"


def test_new_resolution_and_batch_behave_as_fresh(flux):
    m = teacache(flux.patcher, THRESH)
    tm.sample(flux, steps=STEPS, model=m)
    big = tm.sample(flux, steps=STEPS, model=m, h=24, w=16)
    assert torch.equal(big, fresh(flux, h=24, w=16))
    two = tm.sample(flux, steps=STEPS, model=m, batch=2)
    assert torch.equal(two, fresh(flux, batch=2))


def test_interrupted_run_leaves_no_state(flux, comfy):
    import comfy.model_management as mm
    m = teacache(flux.patcher, THRESH)

    def stop(step, *a, **k):
        if step == 2:
            raise mm.InterruptProcessingException()
    with pytest.raises(mm.InterruptProcessingException):
        tm.sample(flux, steps=STEPS, model=m, callback=stop)
    h = holder_of(m)
    assert h._active is None
    assert any("interrupted" in n for n in h.last_summary["notes"])
    assert torch.equal(tm.sample(flux, steps=STEPS, model=m), fresh(flux))


def test_two_samplers_share_one_patched_model(flux):
    """Hires-fix style: a second sampler with another size and denoise, then the first again."""
    m = teacache(flux.patcher, THRESH)
    a1 = tm.sample(flux, steps=STEPS, model=m)
    b = tm.sample(flux, steps=STEPS, model=m, h=24, w=24, denoise=0.6, seed=3)
    a2 = tm.sample(flux, steps=STEPS, model=m)
    assert torch.equal(a1, a2)
    assert torch.equal(b, tm.sample(flux, steps=STEPS, model=teacache(flux.patcher, THRESH), h=24, w=24,
                                    denoise=0.6, seed=3))
    assert summary(m)["steps"] == STEPS


def test_two_clones_patched_differently_do_not_cross_talk(flux):
    m1 = teacache(flux.patcher, THRESH)
    m2 = teacache(flux.patcher, 1000.0)
    a = tm.sample(flux, steps=STEPS, model=m1)
    b = tm.sample(flux, steps=STEPS, model=m2)
    a2 = tm.sample(flux, steps=STEPS, model=m1)
    assert torch.equal(a, a2)
    assert summary(m2)["computed"] == 2 * len(summary(m2)["streams"])
    assert summary(m1)["run_id"] != summary(m2)["run_id"]
    assert not torch.equal(a, b)


def test_teacache_and_l2c_combine_in_either_order(flux):
    from helpers import adapter_of
    n = adapter_of(flux.patcher).n_blocks
    comp = torch.ones(STEPS, n, 1, dtype=torch.bool)
    comp[1:STEPS - 1, 0, 0] = False
    with schedule_folder() as d:
        save_schedule(d, "s.safetensors", comp, "flux")
        m_a, _ = l2c(teacache(flux.patcher, 0.0), "s.safetensors")
        m_b = teacache(l2c(flux.patcher, "s.safetensors")[0], 0.0)
        only = l2c(flux.patcher, "s.safetensors")[0]
        out_only = tm.sample(flux, steps=STEPS, model=only)
        # TeaCache at threshold 0 adds nothing: both orders equal L2C alone
        assert torch.equal(tm.sample(flux, steps=STEPS, model=m_a), out_only)
        assert torch.equal(tm.sample(flux, steps=STEPS, model=m_b), out_only)
        both = teacache(l2c(flux.patcher, "s.safetensors")[0], 1000.0)
        tm.sample(flux, steps=STEPS, model=both)
    s = summary(both)
    streams = len(s["streams"])
    # computed steps (first and last) compute every block; L2C reuses nothing there
    assert s["computed"] == 2 * streams
    assert "L2C" in s["run_id"] and "TC(" in s["run_id"]


def test_lora_before_or_after_the_node(flux):
    """Weight patches (what LoRA loaders add) work on either side of our node."""
    key = next(k for k in flux.patcher.model_state_dict() if k.endswith("img_attn.qkv.weight"))
    w = flux.patcher.model_state_dict()[key]
    delta = torch.randn_like(w) * 0.05

    def with_lora(p):
        p = p.clone()
        p.add_patches({key: ("diff", (delta,))}, 1.0)
        return p
    before = teacache(with_lora(flux.patcher), 0.0)
    after = with_lora(teacache(flux.patcher, 0.0))
    ref = tm.sample(flux, steps=STEPS, model=with_lora(flux.patcher))
    assert torch.equal(tm.sample(flux, steps=STEPS, model=before), ref)
    assert torch.equal(tm.sample(flux, steps=STEPS, model=after), ref)
    assert not torch.equal(ref, tm.sample(flux, steps=STEPS))


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2s_ancestral", "dpm_2"])
def test_multi_evaluation_samplers_count_steps(flux, sampler):
    m = teacache(flux.patcher, THRESH)
    out = tm.sample(flux, steps=STEPS, model=m, sampler=sampler)
    assert torch.isfinite(out).all()
    s = summary(m)
    assert s["steps"] == STEPS
    steps_seen = {r.step for r in holder_of(m).last_records}
    assert steps_seen <= set(range(STEPS)) and 0 in steps_seen and STEPS - 1 in steps_seen


def test_unsupported_model_names_supported_families(comfy):
    import comfy.model_patcher
    import comfy.sd
    fake = comfy.model_patcher.ModelPatcher(torch.nn.Linear(2, 2), torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ValueError, match="Supported families: .*Flux"):
        teacache(fake, 0.4)
