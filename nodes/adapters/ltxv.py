"""LTX-Video (LTXV 0.9.x) and LTX-2 (audio-video, ``LTXAVModel``, ComfyUI 0.29.0 and later).

LTX-Video: 28 transformer blocks at full size (48 for 13B), all offered to
``patches_replace["dit"]`` as ("double_block", i) with x as "img". The text attention mask is a
non-hidden replace argument, passed through untouched. Blocks update x in place (``x += ...``);
the controller clones the stack input before the blocks run, so the TeaCache residual is sound.

LTX-2: 48 blocks, each carrying the video and the audio tokens as ``img=(vx, ax)`` and mixing
them (audio-to-video and video-to-audio cross attention). The two streams stay consistent: one
TeaCache decision covers both, measured on both (each stream's modulated block-0 input, weighted
by magnitude rather than token count: audio has far fewer tokens), and the cached residual is a
(video, audio) pair that is restored whole or not at all. A step never pairs fresh video with a
stale audio residual, which is what ComfyUI's EasyCache did when it checked only the video cache.
"""
from __future__ import annotations

import torch

from .base import BlockReplacePatch, ReplaceAdapter, SimpleHooks, require


class LTXVAdapter(ReplaceAdapter):
    name = "ltxv"
    display = "LTX-Video"
    default_profile = "ltxv"
    recommended_threshold = 0.05  # published: 0.03 -> 1.6x, 0.05 -> 2.1x

    @classmethod
    def matches(cls, model_patcher) -> bool:
        from comfy.ldm.lightricks.model import LTXVModel
        return type(model_patcher.model.diffusion_model) is LTXVModel

    def variant(self) -> str:
        return "13B" if len(self.dm.transformer_blocks) > 28 else "2B"

    def block_keys(self):
        return [("double_block", i) for i in range(len(self.dm.transformer_blocks))]

    def hooks(self):
        from comfy.ldm.common_dit import rms_norm
        b = self.dm.transformer_blocks[0]
        require(b, "scale_shift_table", family=self.name)

        def indicator(inputs):
            # TeaCache4LTX-Video: block 0's norm1(x) * (1 + scale_msa) + shift_msa, computed the way
            # BasicTransformerBlock.forward derives its modulation from `timestep` (vec)
            x, t = inputs["img"], inputs["vec"]
            table = b.scale_shift_table[None, None].to(device=x.device, dtype=x.dtype)
            mod = table + t.reshape(x.shape[0], t.shape[1], table.shape[2], -1)
            shift_msa, scale_msa = mod[:, :, 0], mod[:, :, 1]
            return rms_norm(x) * (1 + scale_msa) + shift_msa

        return SimpleHooks(len(self.dm.transformer_blocks), "img", indicator)


class _AVBlockPatch(BlockReplacePatch):
    """LTX-2 blocks take and return ``img=(video, audio)``: the controller sees two hidden states."""

    @staticmethod
    def split(d: dict) -> dict:
        out = dict(d)
        out["img"], out["audio"] = d["img"]
        return out

    @staticmethod
    def join(d: dict) -> dict:
        out = dict(d)
        out["img"] = (out["img"], out.pop("audio"))
        return out


class LTXAVHooks:
    def __init__(self, dm, family: str):
        from comfy.ldm.common_dit import rms_norm
        self._rms_norm = rms_norm
        self.n_blocks = len(dm.transformer_blocks)
        self.first = dm.transformer_blocks[0]
        require(self.first, "get_ada_values", "scale_shift_table", "audio_scale_shift_table", family=family)

    def _modulated(self, x, table, timestep):
        # what block 0's self-attention sees: rms_norm(x) * (1 + scale_msa) + shift_msa
        shift, scale = self.first.get_ada_values(table, x.shape[0], timestep, slice(0, 2))
        return self._rms_norm(x) * (1 + scale) + shift

    def indicator(self, inputs):
        vx, ax = inputs["img"], inputs["audio"]
        parts = [self._modulated(vx, self.first.scale_shift_table, inputs["v_timestep"])]
        if ax.numel() > 0:
            parts.append(self._modulated(ax, self.first.audio_scale_shift_table, inputs["a_timestep"]))
        # rel L1 = sum|change| / sum|previous|: dividing each stream by its size makes a stream
        # count by its magnitude, not its token count
        return torch.cat([p.flatten(1) / p[0].numel() for p in parts], dim=1)

    def stack_input(self, inputs):
        return inputs["img"], inputs["audio"]

    def stack_output(self, index, outputs, inputs, like):
        return outputs["img"], outputs["audio"]

    def final_outputs(self, index, inputs, final):
        return {"img": final[0], "audio": final[1]}

    def hidden_keys(self, index):
        return ("img", "audio")


class LTXAVAdapter(ReplaceAdapter):
    name = "ltxav"
    display = "LTX-2 (audio + video)"
    default_profile = "raw"       # no published TeaCache coefficients: calibrate for better results
    # raw ~ LTX-Video's published polynomial near 0 (0.79x + 0.01), whose 0.05 gave 2.1x there
    recommended_threshold = 0.05
    replace_patch = _AVBlockPatch

    @classmethod
    def matches(cls, model_patcher) -> bool:
        from comfy.ldm.lightricks.av_model import LTXAVModel
        return type(model_patcher.model.diffusion_model) is LTXAVModel

    def variant(self) -> str:
        return "av"

    def block_keys(self):
        require(self.dm, "transformer_blocks", family=self.name)
        return [("double_block", i) for i in range(len(self.dm.transformer_blocks))]

    def hooks(self):
        return LTXAVHooks(self.dm, self.name)
