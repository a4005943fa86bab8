"""Kandinsky 5 (Video Lite 2B, Video Pro 19B, Image Lite 6B; ComfyUI 0.29.0 and later): a few text
blocks refine the prompt once, then 32 (Lite) visual blocks run over the video or image tokens with
the text as a read-only context. One hidden state flows through, so SimpleHooks fits; the text
blocks are left alone (they do not depend on the latent).

The loop offers each visual block to ``patches_replace["dit"]``, but in ComfyUI 0.29.0 that route
calls ``block(x=...)`` while the block's parameter is ``visual_embed``: any block replacement
raises a TypeError there. So each visual block's ``forward`` is object-patched instead, which
works whether or not ComfyUI fixes its call."""
from __future__ import annotations

import torch

from .base import ForwardIO, ForwardPatchAdapter, SimpleHooks, require


class Kandinsky5Adapter(ForwardPatchAdapter):
    name = "kandinsky5"
    display = "Kandinsky 5 (video, image)"
    # no published TeaCache coefficients (Kandinsky-5 ships MagCache ratios only): calibrate
    default_profile = "raw"
    recommended_threshold = 0.1
    forward_io = ForwardIO(("visual_embed",))

    @classmethod
    def matches(cls, model_patcher) -> bool:
        from comfy.ldm.kandinsky5.model import Kandinsky5
        return type(model_patcher.model.diffusion_model) is Kandinsky5

    def variant(self) -> str:
        image = type(self.base_model.model_config).__name__ == "Kandinsky5Image"
        size = {1792: "lite", 4096: "pro", 2560: "lite"}.get(getattr(self.dm, "model_dim", 0), "")
        return ("image" if image else "video") + (f"_{size}" if size else "")

    def block_modules(self):
        require(self.dm, "visual_transformer_blocks", family=self.name)
        return [(f"visual_transformer_blocks.{i}", m) for i, m in enumerate(self.dm.visual_transformer_blocks)]

    def hooks(self):
        first = self.dm.visual_transformer_blocks[0]
        require(first, "visual_modulation", "self_attention_norm", family=self.name)

        def indicator(inputs):
            # what block 0's self-attention sees: norm(x) * (1 + scale) + shift, from the first
            # third of its visual modulation (self-attention, cross-attention, feed-forward)
            params = first.visual_modulation(inputs["time_embed"]).chunk(3, dim=-1)[0]
            shift, scale, _ = (p.unsqueeze(1) for p in params.chunk(3, dim=-1))
            return torch.addcmul(shift, first.self_attention_norm(inputs["visual_embed"]), scale + 1.0)

        return SimpleHooks(len(self.dm.visual_transformer_blocks), "visual_embed", indicator)
