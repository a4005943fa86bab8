"""Every supported family, end to end through real ComfyUI: tiny random-weight models of the
real classes, ComfyUI's samplers at cfg > 1, our nodes patching through ComfyUI's mechanisms."""
from __future__ import annotations

import re

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
        forwards[i] -= sum("checked at the first step" in n for n in s["notes"])  # the generic route's check
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


@pytest.mark.parametrize("fam", FAMILIES)
def test_multi_evaluation_sampler_then_another_size(tiny_models, fam):
    """Heun evaluates the model twice per step (once at the last): Cache Stats counts every
    evaluation under its sampler step. The same patched model then samples another size exactly as
    a freshly patched one does: nothing of the first run is carried over."""
    tiny = tiny_models(fam)

    def patched():
        ps = [teacache(p, 1000.0) for p in (tiny.experts or [tiny.patcher])]
        return ps, (ps if tiny.experts else ps[0])
    ps, m = patched()
    assert torch.isfinite(tm.sample(tiny, steps=STEPS, model=m, sampler="heun")).all()
    sums = [summary(p) for p in ps]
    streams = len(sums[0]["streams"])
    assert sum(s["evaluations"] for s in sums) == (2 * STEPS - 1) * streams, sums
    assert sum(s["steps"] for s in sums) == STEPS  # two experts: each counts the steps it samples
    for p, s in zip(ps, sums):
        assert {r.step for r in holder_of(p).last_records} == set(range(s["steps"]))
    assert sum(s["reused"] for s in sums) > 0
    other = tm.sample(tiny, steps=STEPS, model=m, h=24, w=16)
    assert torch.equal(other, tm.sample(tiny, steps=STEPS, model=patched()[1], h=24, w=16))


# family id -> (module, call in its source, the op the error names): models this ComfyUI runs
# through a comfy_kitchen op that has no backward, whatever ``in_training`` says
_NO_BACKWARD = {
    "cosmos_predict2": ("comfy.ldm.cosmos.predict2", "ck.rms_rope_split_half(", "comfy_kitchen.rms_rope_split_half"),
    "anima": ("comfy.ldm.cosmos.predict2", "ck.rms_rope_split_half(", "comfy_kitchen.rms_rope_split_half"),
    "joyimage": ("comfy.ldm.joyimage.model", "comfy_kitchen.rms_rope(", "comfy_kitchen.rms_rope"),
    "ernie_image": ("comfy.ldm.ernie.model", "ck.apply_rope_split_half(", "comfy_kitchen.apply_rope_split_half"),
    "minimax_h3": ("comfy.ldm.minimax.model", "ck.rms_rope_split_half(", "comfy_kitchen.rms_rope_split_half"),
    # Qwen3-VL's decoder layers add their MLP output into their input tensor
    "hidream_o1": ("comfy.text_encoders.llama", "torch.add(residual, x, out=output)", "torch.add(out=...)"),
}


def _runs_without_backward(fam):
    """The op this ComfyUI runs the family through that has no backward (0.29.0's Cosmos-Predict2
    attention, JoyImage's, Ernie-Image's, MiniMax-H3's), or None."""
    import importlib
    import inspect
    if fam not in _NO_BACKWARD:
        return None
    module, call, op = _NO_BACKWARD[fam]
    return op if call in inspect.getsource(importlib.import_module(module)) else None


@pytest.mark.parametrize("fam", FAMILIES)
def test_l2c_learn_then_apply(tiny_models, fam):
    """L2C Learn Schedule on the family's model (a small latent, a few iterations) writes a schedule
    for its blocks; the loader applies it at another size, and Cache Stats counts the layers it
    reuses. Where ComfyUI runs the model through an op without a backward, the node says so."""
    from pack import sub
    tiny = tiny_models(fam)
    model = (tiny.experts or [tiny.patcher])[0]
    ad = adapter_of(model)
    ln = sub("nodes.learn_nodes")
    with schedule_folder() as d:
        def learn():
            ln.L2CLearnSchedule.execute(model, tiny.positive(h=8, w=8), tiny.negative(h=8, w=8),
                                        {"samples": tiny.latent(h=8, w=8)}, 0, STEPS, "euler", "simple", 2.5, 0.06,
                                        0.5, 3, "learned")
        op = _runs_without_backward(fam)
        if op is not None:
            with pytest.raises(ln.NoBackwardError, match=re.escape(f"runs {ad.display} through {op}, which has no")):
                learn()
            return
        learn()
        sched = sub("cache_core.l2c").L2CSchedule.load(f"{d}/learned.safetensors")
        assert (sched.family, sched.layers, sched.steps) == (ad.name, ad.n_blocks, STEPS)
        m, text = l2c(model, "learned.safetensors")
        out = tm.sample(tiny, steps=STEPS, model=m)
    assert torch.isfinite(out).all()
    s = summary(m)
    streams = len(s["streams"])
    assert s["layers_computed"] + s["layers_reused"] == s["steps"] * ad.n_blocks * streams
    if not tiny.experts:  # an expert samples part of the steps: its rows of the schedule
        assert s["layers_reused"] == int((~sched.compute).sum()) * streams


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
    "wan22:animate2": ("wan", "raw", 0.05),
    "mage_flow": ("mage_flow", "raw", 0.15),
    "lens": ("lens", "raw", 0.15),
    "joyimage": ("joyimage", "raw", 0.15),
    "krea2": ("krea2", "raw", 0.15),
    "ideogram4": ("ideogram4", "raw", 0.15),
    "ernie_image": ("ernie_image", "raw", 0.15),
    "boogu": ("boogu", "raw", 0.15),
    "anima": ("anima", "raw", 0.15),
    "minimax_h3": ("minimax_h3", "raw", 0.1),
}
AUTO.update({f: ("generic", "raw", 0.1) for f in FAMILIES if (f.split(":")[0], None) in tm.GENERIC_SPECS
             or tuple(f.split(":")) in tm.GENERIC_SPECS})  # the generic route


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
