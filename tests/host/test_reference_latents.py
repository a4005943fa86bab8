"""Reference latents (edit models): which tokens TeaCache's indicator measures, and Z-Image Omni's
timestep-0 reference images. Reference tokens modulated at the sampling timestep (Kontext-style
"index", Qwen-Image-Edit 2509) count like image tokens; tokens modulated at timestep 0
(Qwen-Image-Edit-2511, Flux.2 "index_timestep_zero", Z-Image Omni) are the same at every step
and are left out, as are the timestep-0 rows of the modulation."""
from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from helpers import holder_of, summary, teacache

STEPS = 6
H = W = 16
TINY = 1e-6  # TeaCache on (threshold 0 turns it off), and no change is that small: nothing reused


def _indicator_shapes(model) -> list:
    hooks = holder_of(model).hooks
    shapes, original = [], hooks.indicator

    def recording(inputs):
        out = original(inputs)
        shapes.append(tuple(out.shape[:2]))
        return out
    hooks.indicator = recording
    return shapes


# family id -> (batch rows per forward, tokens measured): the 16x16 latent is 64 generated tokens
# after 2x2 patches (Qwen), 256 at patch 1 (Flux.2); each reference latent is the same size again
CASES = {
    "qwen_image:edit_2509": {(1, 128), (1, 64)},  # refs on the positive only: two forwards per step
    "qwen_image:edit_2511": {(2, 64)},            # refs on both: one batched forward, refs left out
    "flux2:klein_edit": {(2, 256)},
}


@pytest.mark.parametrize("fam", [f for f in CASES if f in tm.family_ids()])
def test_indicator_measures_the_tokens_modulated_at_the_sampling_timestep(tiny_models, fam):
    tiny = tiny_models(fam)
    m = teacache(tiny.patcher, TINY)
    shapes = _indicator_shapes(m)
    assert torch.equal(tm.sample(tiny, steps=STEPS, model=m), tm.sample(tiny, steps=STEPS))
    assert set(shapes) == CASES[fam], shapes


if "z_image" in tm.family_ids():  # collected only on releases that have Z-Image
    def test_z_image_omni_reference_images(tiny_models):
        """Z-Image Omni: reference images join the sequence modulated at timestep 0; a tiny threshold is
        bit-identical, a huge one reuses, and the indicator covers the generated image only."""
        tiny = tiny_models("z_image")
        g = torch.Generator().manual_seed(3)
        ref = torch.randn([1, tiny.latent_channels, H, W], generator=g)
        pos, neg = tiny.positive(), tiny.negative()
        for c in (pos, neg):
            c[0][1]["reference_latents"] = [ref]  # ReferenceLatent on both
        base = tm.sample(tiny, steps=STEPS, positive=pos, negative=neg)
        m0 = teacache(tiny.patcher, TINY)
        shapes = _indicator_shapes(m0)
        assert torch.equal(tm.sample(tiny, steps=STEPS, positive=pos, negative=neg, model=m0), base)
        assert set(shapes) == {(1, 64)}, shapes  # cond and uncond differ in caption length: two forwards
        m = teacache(tiny.patcher, 1000.0)
        out = tm.sample(tiny, steps=STEPS, positive=pos, negative=neg, model=m)
        s = summary(m)
        assert torch.isfinite(out).all() and not torch.equal(out, base)
        assert s["computed"] == 2 * len(s["streams"]) and s["reused"] > 0
