"""Every supported family, end to end through real ComfyUI: tiny random-weight models of the
real classes, ComfyUI's samplers at cfg > 1, our nodes patching through ComfyUI's mechanisms."""
from __future__ import annotations

import inspect
import os

import pytest
import torch

import tiny_models as tm
from helpers import (adapter_of, count_block_runs, holder_of, l2c, save_schedule, schedule_folder, summary,
                     teacache)
from pack import sub

FAMILIES = tm.family_ids()
SINGLE = tm.single_model_ids()  # two-expert models split one schedule: the one-model tests skip them
STEPS = 6


def _blocks(tiny):
    return tiny.block_modules()


@pytest.mark.parametrize("fam", FAMILIES)
def test_threshold_zero_is_bit_identical(tiny_models, fam):
    tiny = tiny_models(fam)
    base = tm.sample(tiny, steps=STEPS)
    patched = [teacache(p, 0.0) for p in (tiny.experts or [tiny.patcher])]
    out = tm.sample(tiny, steps=STEPS, model=patched if tiny.experts else patched[0])
    assert torch.equal(out, base)


@pytest.mark.parametrize("fam", FAMILIES)
def test_threshold_skips_counted_steps(tiny_models, fam):
    """A huge threshold reuses every step but the forced first and last ones: in each sampling
    run the block stack runs in exactly two steps, and Cache Stats reports the same counts."""
    tiny = tiny_models(fam)
    models = tiny.experts or [tiny.patcher]
    patched = [teacache(p, 1000.0) for p in models]
    per_model = [tm.block_modules(m.model.diffusion_model, tiny.family, tiny.variant) for m in models]
    forwards = [0] * len(models)
    hooks = [m.model.diffusion_model.register_forward_hook(
        lambda *a, i=i: forwards.__setitem__(i, forwards[i] + 1)) for i, m in enumerate(models)]
    try:
        with count_block_runs([b for bl in per_model for b in bl]) as counts:
            out = tm.sample(tiny, steps=STEPS, model=patched if tiny.experts else patched[0])
    finally:
        for h in hooks:
            h.remove()
    assert torch.isfinite(out).all()
    assert not torch.equal(out, tm.sample(tiny, steps=STEPS))  # reuse really replaced computation
    k = 0
    for i, (p, blocks) in enumerate(zip(patched, per_model)):
        s = summary(p)
        steps_run = s["evaluations"] // len(s["streams"])
        assert forwards[i] % steps_run == 0, (forwards[i], steps_run)
        per_step = forwards[i] // steps_run  # 1 when cond and uncond are batched, 2 when split
        mine = counts[k:k + len(blocks)]
        k += len(blocks)
        assert mine == [2 * per_step] * len(blocks), mine
        assert s["computed"] == 2 * len(s["streams"]), s
        assert s["reused"] == s["evaluations"] - s["computed"] > 0
        n_blocks = adapter_of(p).n_blocks
        assert s["layers_computed"] == 2 * len(s["streams"]) * n_blocks
        assert s["layers_reused"] == s["reused"] * n_blocks


@pytest.mark.parametrize("fam", SINGLE)
def test_l2c_all_compute_identical_and_sparse_counts(tiny_models, fam):
    tiny = tiny_models(fam)
    model = tiny.patcher
    ad = adapter_of(model)
    n = ad.n_blocks
    base = tm.sample(tiny, steps=STEPS)
    with schedule_folder() as d:
        save_schedule(d, "all.safetensors", torch.ones(STEPS, n, 1, dtype=torch.bool), ad.name)
        sparse = torch.ones(STEPS, n, 1, dtype=torch.bool)
        sparse[1:STEPS - 1, 1::2, 0] = False  # odd layers reuse on the middle steps
        save_schedule(d, "sparse.safetensors", sparse, ad.name)
        m_all, text = l2c(model, "all.safetensors")
        assert "L2C" in text
        assert torch.equal(tm.sample(tiny, steps=STEPS, model=m_all), base)
        m_sp, _ = l2c(model, "sparse.safetensors")
        blocks = tiny.block_modules()
        forwards = [0]
        h = m_sp.model.diffusion_model.register_forward_hook(lambda *a: forwards.__setitem__(0, forwards[0] + 1))
        try:
            with count_block_runs(blocks) as counts:
                out = tm.sample(tiny, steps=STEPS, model=m_sp)
        finally:
            h.remove()
    assert torch.isfinite(out).all()
    # a reused layer adds its cached residual: never silently a skipped (zero) one
    assert not torch.equal(out, base)
    reused = int((~sparse).sum())
    per_step = forwards[0] // STEPS  # 1 when cond and uncond are batched, 2 when split (Lumina 2)
    assert sum(counts) == per_step * (STEPS * n - reused), (counts, per_step, STEPS * n - reused)
    s = summary(m_sp)
    assert s["layers_reused"] == reused * len(s["streams"])


@pytest.mark.parametrize("fam", SINGLE)
def test_reuse_of_an_unchanged_input_reproduces_the_computed_output(tiny_models, fam):
    """A schedule that evaluates one sigma twice (euler's step between them is zero, so the
    input is the same): the second evaluation reuses, and the restored output must equal the
    computed one. Applying the residual to the wrong tokens (image vs text order, reference
    tokens) or to a stale stream fails this."""
    tiny = tiny_models(fam)
    c = tm.import_comfy()
    sig = c.samplers.calculate_sigmas(tiny.patcher.get_model_object("model_sampling"), "simple", 4)
    sigmas = torch.cat((sig[:2], sig[1:]))  # s0, s1, s1, s2, s3, 0
    base = tm.sample(tiny, sigmas=sigmas)
    m = teacache(tiny.patcher, 1e-6)
    out = tm.sample(tiny, sigmas=sigmas, model=m)
    s = summary(m)
    assert s["reused"] == len(s["streams"]), s  # exactly the repeated evaluation of each stream
    assert torch.allclose(out, base, rtol=1e-4, atol=1e-4), float((out - base).abs().max())


@pytest.mark.parametrize("fam", SINGLE)
def test_multi_evaluation_sampler_counts_steps(tiny_models, fam):
    """heun evaluates twice per step: its second evaluation belongs to the step, not a new one."""
    tiny = tiny_models(fam)
    m = teacache(tiny.patcher, 1000.0)
    out = tm.sample(tiny, steps=STEPS, model=m, sampler="heun")
    assert torch.isfinite(out).all()
    s = summary(m)
    assert s["steps"] == STEPS
    steps_seen = {r.step for r in holder_of(m).last_records}
    assert steps_seen == set(range(STEPS))
    assert s["reused"] > 0


@pytest.mark.parametrize("fam", SINGLE)
def test_second_run_at_another_size_behaves_as_fresh(tiny_models, fam):
    tiny = tiny_models(fam)
    m = teacache(tiny.patcher, 1000.0)
    tm.sample(tiny, steps=STEPS, model=m)
    other = dict(h=8, w=24) if not tiny.video else dict(h=8, w=24, frames=tiny.default_frames + 1)
    pos, neg = tiny.positive(**other), tiny.negative(**other)
    second = tm.sample(tiny, steps=STEPS, model=m, positive=pos, negative=neg, **other)
    fresh = tm.sample(tiny, steps=STEPS, model=teacache(tiny.patcher, 1000.0), positive=pos, negative=neg, **other)
    assert torch.equal(second, fresh)
    assert summary(m)["reused"] > 0


def _no_gradient(tiny) -> bool:
    """ComfyUI 0.29.0's Cosmos-Predict2 attention calls comfy_kitchen's fused rms_rope_split_half,
    which has no autograd formula and no differentiable fallback (ComfyUI cannot train it either)."""
    if tiny.family != "cosmos_predict2":
        return False
    import comfy.ldm.cosmos.predict2 as predict2
    return "ck.rms_rope_split_half" in inspect.getsource(predict2)


@pytest.mark.parametrize("fam", SINGLE)
def test_l2c_learn_then_apply(tiny_models, fam):
    """L2C Learn Schedule on this family's real blocks, then the schedule through L2C Schedule
    Loader: it is this family's, has one row per step and column per block, and applies."""
    tiny = tiny_models(fam)
    ln = sub("nodes.learn_nodes")
    L2CSchedule = sub("cache_core.l2c").L2CSchedule
    ad = adapter_of(tiny.patcher)
    if _no_gradient(tiny):
        with schedule_folder() as d:
            with pytest.raises(RuntimeError, match="kernel without a gradient"):
                ln.L2CLearnSchedule.execute(tiny.patcher, tiny.positive(), tiny.negative(),
                                            {"samples": tiny.latent()}, 0, STEPS, "euler", "simple", 2.5, 1.0,
                                            0.87, 1, "never_saved")
            assert not os.listdir(d)
        return
    with schedule_folder() as d:
        # a few updates with a large lam and theta just under the initial beta (sigmoid(2) = 0.881):
        # blocks the loss pushes down reuse, so the apply step has reuse to count (how well the
        # router learns is tested on Flux in test_learn_nodes.py)
        learned, report, heat = ln.L2CLearnSchedule.execute(
            tiny.patcher, tiny.positive(), tiny.negative(), {"samples": tiny.latent()}, 0, STEPS, "euler",
            "simple", 2.5, 1.0, 0.87, 3, f"tiny_{ad.name}").args
        sched = L2CSchedule.load(f"{d}/tiny_{ad.name}.safetensors")
        assert sched.family == ad.name and sched.steps == STEPS and sched.layers == ad.n_blocks, report
        loaded, text = l2c(tiny.patcher, f"tiny_{ad.name}.safetensors")
        out = tm.sample(tiny, steps=STEPS, model=loaded)
    assert torch.isfinite(out).all()
    reused = int((~sched.compute[:, :, 0]).sum())
    assert reused > 0, report
    s = summary(loaded)
    assert s["layers_reused"] == reused * len(s["streams"]), (s, reused)


# family id -> (adapter, TeaCache coefficients and threshold that "auto" and -1 pick)
AUTO = {
    "hunyuan_video": ("hunyuan_video", "hunyuan_video", 0.15),
    "hunyuan_video15": ("hunyuan_video15", "hunyuan_video1.5_t2v_480p", 0.15),
    "hunyuan_image21": ("hunyuan_image21", "raw", 0.15),
    "ltxav": ("ltxav", "raw", 0.05),
    "kandinsky5:video": ("kandinsky5", "raw", 0.1),
    "kandinsky5:image": ("kandinsky5", "raw", 0.1),
    "wan21:fun_control": ("wan", "wan2.1_t2v_1.3B_ret", 0.08),
    "wan21:humo": ("wan", "raw", 0.05),
    "wan22:s2v": ("wan", "raw", 0.05),
    "wan22:animate": ("wan", "raw", 0.05),
}


@pytest.mark.parametrize("fam", [f for f in FAMILIES if f in AUTO])
def test_family_detected_with_its_coefficients(tiny_models, fam):
    """Each model is its own family (HunyuanVideo 1.5 is not HunyuanVideo 1.0, whose coefficients
    it used to get), and TeaCache Patch's auto settings are that family's."""
    tiny = tiny_models(fam)
    h = holder_of(teacache(tiny.patcher, -1.0, coefficients="auto"))
    assert (h.adapter.name, h.teacache.coefficients.name, h.teacache.rel_l1_thresh) == AUTO[fam]


def test_hunyuan_single_blocks_with_an_unknown_token_order_are_refused(tiny_models):
    """ComfyUI moved the text tokens in front of the image tokens in HunyuanVideo's single blocks
    (0.3.64: image first, flagged by flipped_img_txt; 0.29.0: text first, with img_slice). A
    release that does neither must get a clear error, never a residual on the wrong tokens."""
    tiny = tiny_models("hunyuan_image21")
    hooks = adapter_of(tiny.patcher).hooks()
    err = sub("nodes.adapters.base").AdapterMismatchError
    like, joined = torch.zeros(1, 4, 8), torch.zeros(1, 7, 8)
    last = hooks.n_blocks - 1
    hooks.image_first = False
    with pytest.raises(err, match="changed the model code"):
        hooks.stack_output(last, {"img": joined}, {"transformer_options": {}}, like)
    with pytest.raises(err, match="changed the model code"):  # img_slice that does not fit the shapes
        hooks.final_outputs(last, {"img": joined, "transformer_options": {"img_slice": [1, 7]}}, like)
    out = hooks.stack_output(last, {"img": torch.arange(7.0).view(1, 7, 1).expand(1, 7, 8)},
                             {"transformer_options": {"img_slice": [3, 7]}}, like)
    assert out[0, :, 0].tolist() == [3.0, 4.0, 5.0, 6.0]
