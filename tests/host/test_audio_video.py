"""LTX-2 (audio + video, ComfyUI's LTXAVModel): the two token streams stay consistent under caching.

Every LTX-2 block carries the video and the audio tokens and mixes them, so a step is reused for
both or for neither, with the residuals of one and the same computed step. ComfyUI's EasyCache
decided on the video cache alone and could pair fresh video with a stale audio residual; the
controller-level version of that failure is tested in tests/core/test_stack.py
(test_two_part_stack_never_reuses_a_stale_part). Only collected where the release has LTX-2.
"""
from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from helpers import adapter_of, assert_reuse_restores_each_part, summary, teacache
from pack import sub

STEPS = 6


@pytest.fixture(scope="module")
def av(tiny_models):
    return tiny_models("ltxav")


def _audio_latent(tiny, frames):
    import comfy.nested_tensor
    video = tiny.latent().unbind()[0]
    return comfy.nested_tensor.NestedTensor((video, torch.zeros([1, 8, frames, 16])))


class TestLTX2AudioVideo:
    def test_video_and_audio_are_reused_together(self, av):
        """At a threshold that reuses every middle step, each block's video and audio
        feed-forwards run in exactly the same evaluations: the first and the last step."""
        m = teacache(av.patcher, 1000.0)
        blocks = av.block_modules(m.model.diffusion_model)
        runs = {"video": [0] * len(blocks), "audio": [0] * len(blocks)}
        hooks = []
        for i, b in enumerate(blocks):
            hooks.append(b.ff.register_forward_hook(lambda *a, i=i: runs["video"].__setitem__(i, runs["video"][i] + 1)))
            hooks.append(b.audio_ff.register_forward_hook(
                lambda *a, i=i: runs["audio"].__setitem__(i, runs["audio"][i] + 1)))
        try:
            out = tm.sample(av, steps=STEPS, model=m)
        finally:
            for h in hooks:
                h.remove()
        assert torch.isfinite(out).all()
        s = summary(m)
        assert s["reused"] == s["evaluations"] - s["computed"] > 0
        per_step = s["computed"] // (2 * len(s["streams"])) or 1
        assert runs["video"] == runs["audio"] == [2 * per_step] * len(blocks), runs

    def test_a_reused_step_restores_video_and_audio_of_one_computed_step(self, av):
        assert_reuse_restores_each_part(av)

    def test_the_decision_sees_an_audio_only_change(self, av):
        """The indicator is measured on both streams: changing only the audio tokens moves it
        (a video-only indicator, EasyCache's, would not notice)."""
        rel_l1 = sub("cache_core.teacache").rel_l1
        seen = {}
        m = av.patcher.clone()

        def record(args, extra):
            seen.setdefault("args", args)
            return extra["original_block"](args)
        m.set_model_patch_replace(record, "dit", "double_block", 0)
        tm.sample(av, steps=1, model=m)
        ad = adapter_of(av.patcher)
        inputs = ad.replace_patch.split(seen["args"])
        hooks = ad.hooks()
        g = torch.Generator().manual_seed(0)
        audio = inputs["audio"] + 0.5 * torch.randn(inputs["audio"].shape, generator=g)
        video = inputs["img"] + 0.5 * torch.randn(inputs["img"].shape, generator=g)
        with torch.no_grad():
            ref = hooks.indicator(inputs)
            assert float(rel_l1(hooks.indicator(dict(inputs, audio=audio)), ref)) > 0.05
            assert float(rel_l1(hooks.indicator(dict(inputs, img=video)), ref)) > 0.05
            assert float(rel_l1(hooks.indicator(dict(inputs)), ref)) == 0.0

    def test_another_audio_length_behaves_as_fresh(self, av):
        m = teacache(av.patcher, 1000.0)
        tm.sample(av, steps=STEPS, model=m, latent=_audio_latent(av, 6))
        longer = _audio_latent(av, 9)
        second = tm.sample(av, steps=STEPS, model=m, latent=longer)
        assert torch.equal(second, tm.sample(av, steps=STEPS, model=teacache(av.patcher, 1000.0), latent=longer))

    def test_video_only_latent(self, av):
        """LTX-2 sampled without an audio latent (the model sees an empty audio stream)."""
        video = av.latent().unbind()[0]
        base = tm.sample(av, steps=STEPS, latent=video)
        assert torch.equal(tm.sample(av, steps=STEPS, latent=video, model=teacache(av.patcher, 0.0)), base)
        m = teacache(av.patcher, 1000.0)
        out = tm.sample(av, steps=STEPS, latent=video, model=m)
        assert torch.isfinite(out).all() and summary(m)["reused"] > 0


if "ltxav" not in tm.family_ids():
    del TestLTX2AudioVideo  # this ComfyUI has no LTX-2: nothing to collect (not a skip)
