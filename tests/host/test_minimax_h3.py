"""MiniMax-H3 (audio + video, ComfyUI 0.30 and later): the audio and video rows of its one packed
sequence stay consistent under caching. They are one hidden state, so a step is reused for both or
for neither; the decision must see a change in either stream (the audio rows are few: an
indicator weighted by row count would hardly notice them). Only collected where the release has
MiniMax-H3."""
from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from helpers import adapter_of, assert_reuse_restores_each_part, holder_of, teacache
from pack import sub


@pytest.fixture(scope="module")
def h3(tiny_models):
    return tiny_models("minimax_h3")


def _block0_inputs(tiny):
    seen = {}
    m = tiny.patcher.clone()

    def record(args, extra):
        seen.setdefault("args", args)
        return extra["original_block"](args)
    m.set_model_patch_replace(record, "dit", "double_block", 0)
    tm.sample(tiny, steps=1, model=m)
    return seen["args"]


def _rows(segments, tag):
    """Row indices of the packed sequence whose modulation has modality ``tag`` (0 video, 2 audio)."""
    return torch.cat([torch.arange(a, b) for a, b, row in segments if int(row) % 3 == tag])


class TestMiniMaxH3AudioVideo:
    def test_the_decision_sees_an_audio_only_change(self, h3):
        rel_l1 = sub("cache_core.teacache").rel_l1
        inputs = _block0_inputs(h3)
        hooks = adapter_of(h3.patcher).hooks()
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            ref = hooks.indicator(inputs)
            assert float(rel_l1(hooks.indicator(dict(inputs)), ref)) == 0.0
            for tag in (0, 2):  # video rows, then audio rows
                rows = _rows(inputs["mod_segments"], tag)
                h = inputs["img"].clone()
                h[rows] += 0.5 * torch.randn(h[rows].shape, generator=g)
                assert float(rel_l1(hooks.indicator(dict(inputs, img=h)), ref)) > 0.05, tag

    def test_the_indicator_is_the_first_blocks_attention_input(self, h3):
        """Block 0's attention input, split into its video and its audio rows (text rows left
        out), each divided by its size."""
        m = teacache(h3.patcher, 1e-6)
        hooks = holder_of(m).hooks
        measured, seen, original = [], [], hooks.indicator
        hooks.indicator = lambda inputs: measured.append((original(inputs), inputs["mod_segments"])) or measured[-1][0]
        attn = m.model.diffusion_model.blocks[0].attn
        handle = attn.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
        try:
            tm.sample(h3, steps=2, model=m)
        finally:
            handle.remove()
        assert len(measured) == len(seen) > 0
        for (ind, segments), h in zip(measured, seen):
            video, audio = h[_rows(segments, 0)], h[_rows(segments, 2)]
            expected = torch.cat((video.flatten() / video.numel(), audio.flatten() / audio.numel())).unsqueeze(0)
            assert torch.allclose(ind, expected, rtol=1e-5, atol=1e-9)

    def test_a_reused_step_restores_video_and_audio_of_one_computed_step(self, h3):
        assert_reuse_restores_each_part(h3)


if "minimax_h3" not in tm.family_ids():
    del TestMiniMaxH3AudioVideo  # this ComfyUI has no MiniMax-H3: nothing to collect (not a skip)
