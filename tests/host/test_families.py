"""Every supported family, end to end through real ComfyUI: tiny random-weight models of the
real classes, ComfyUI's samplers at cfg > 1, our nodes patching through ComfyUI's mechanisms."""
from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from helpers import (adapter_of, count_block_runs, l2c, save_schedule, schedule_folder, summary,
                     teacache)

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
