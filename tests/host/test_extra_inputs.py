"""The Wan 2.2 variants' own inputs (and Animate 2's) reach the model through TeaCache, never swallowed (another
pack's TeaCache silently dropped VACE's control video by running its own copy of the forward).

For every input a variant's conditioning node sets, on tiny real models: the input changes the
uncached output (so the test can fail), the patched model at threshold 0 gives the uncached output
bit for bit with the input changed, and with most steps reused the input still changes the output.

Animate's face video is left out: it runs 512x512 frames through a full-size motion encoder
(about 10 s per evaluation on one CPU thread, several minutes for these tests). It is fused after
blocks like S2V's audio, outside the blocks we hook, which the S2V cases cover.
"""
from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from helpers import summary, teacache

STEPS = 6
CASES = [(fid, key) for fid, key in (
    ("wan21:fun_control", "concat_latent_image"),   # control video (and start image) latents
    ("wan21:humo", "audio_embed"),
    ("wan21:humo", "reference_latents"),
    ("wan22:s2v", "audio_embed"),
    ("wan22:s2v", "reference_latents"),
    ("wan22:s2v", "reference_motion"),
    ("wan22:s2v", "control_video"),                 # pose video
    ("wan22:animate", "pose_video_latent"),
    ("wan22:animate", "concat_latent_image"),       # reference image
    ("wan22:animate", "clip_vision_output"),
    ("wan22:animate2", "pose_video_latent"),        # the pose branch, beside the hooked blocks
    ("wan22:animate2", "concat_latent_image"),
) if fid in tm.family_ids()]


def _with_other(tiny, key):
    """The conditioning with ``key`` replaced by another draw of the same input."""
    out = []
    for positive, cond in ((True, tiny.positive()), (False, tiny.negative())):
        other = tm.wan_variant_inputs(tiny, tiny.variant, positive, 1, 16, 16, tiny.default_frames, salt="other",
                                      pose=True)
        out.append([[cond[0][0], dict(cond[0][1], **{key: other[key]})]])
    return out


@pytest.mark.parametrize("fid,key", CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_variant_input_reaches_the_patched_model(tiny_models, fid, key):
    tiny = tiny_models(fid)
    pos_b, neg_b = _with_other(tiny, key)
    base_a = tm.sample(tiny, steps=STEPS)
    base_b = tm.sample(tiny, steps=STEPS, positive=pos_b, negative=neg_b)
    assert not torch.equal(base_a, base_b), f"{key} does not change the uncached output: the test would prove nothing"
    zero = teacache(tiny.patcher, 0.0)
    assert torch.equal(tm.sample(tiny, steps=STEPS, model=zero, positive=pos_b, negative=neg_b), base_b)
    m = teacache(tiny.patcher, 1000.0)
    cached_a = tm.sample(tiny, steps=STEPS, model=m)
    assert summary(m)["reused"] > 0
    cached_b = tm.sample(tiny, steps=STEPS, model=m, positive=pos_b, negative=neg_b)
    assert not torch.equal(cached_a, cached_b)
