"""HunyuanVideo (t2v, i2v, SkyReels i2v): 20 double + 40 single blocks at full size, all offered to
``patches_replace["dit"]`` by ComfyUI's forward loop. Unlike Flux, the single blocks see
cat(img, txt): image tokens FIRST. TeaCache's residual covers the image tokens only (including
any reference-latent tokens prepended to img, which the model strips after the stack)."""
from __future__ import annotations

import torch

from .base import ReplaceAdapter, require, double_single_keys


class HunyuanVideoHooks:
    def __init__(self, dm, family: str):
        from comfy.ldm.flux.layers import apply_mod
        self._apply_mod = apply_mod
        self.dm = dm
        self.n_double = len(dm.double_blocks)
        self.n_blocks = self.n_double + len(dm.single_blocks)
        require(dm.double_blocks[0], "img_mod", "img_norm1", family=family)

    def indicator(self, inputs):
        # TeaCache4HunyuanVideo: double_blocks[0] img_norm1(img) modulated by img_mod1 shift/scale;
        # apply_mod with the block's modulation_dims_img handles the i2v token-replace split
        b = self.dm.double_blocks[0]
        mod1, _ = b.img_mod(inputs["vec"])
        return self._apply_mod(b.img_norm1(inputs["img"]), 1 + mod1.scale, mod1.shift,
                               inputs.get("modulation_dims_img"))

    def stack_input(self, inputs):
        return inputs["img"]

    def stack_output(self, index, outputs, inputs, like):
        # single blocks carry cat(img, txt): the image tokens are the first `like.shape[1]`
        return outputs["img"][:, :like.shape[1]]

    def final_outputs(self, index, inputs, final):
        joined = inputs["img"]
        return {"img": torch.cat((final, joined[:, final.shape[1]:]), dim=1)}

    def hidden_keys(self, index):
        return ("img", "txt") if index < self.n_double else ("img",)


class HunyuanVideoAdapter(ReplaceAdapter):
    name = "hunyuan_video"
    display = "HunyuanVideo (t2v, i2v)"
    default_profile = "hunyuan_video"  # published for t2v; i2v variants use it too (none published)
    recommended_threshold = 0.15       # published: 0.1 -> 1.6x, 0.15 -> 2.1x

    @classmethod
    def matches(cls, model_patcher) -> bool:
        import comfy.model_base
        from comfy.ldm.hunyuan_video.model import HunyuanVideo
        # HunyuanImage 2.1 reuses the same network class but is a different model (no coefficients)
        return (type(model_patcher.model.diffusion_model) is HunyuanVideo
                and isinstance(model_patcher.model, comfy.model_base.HunyuanVideo))

    def variant(self) -> str:
        n = type(self.base_model.model_config).__name__
        return {"HunyuanVideoI2V": "i2v", "HunyuanVideoSkyreelsI2V": "skyreels_i2v"}.get(n, "t2v")

    def block_keys(self):
        return double_single_keys(range(len(self.dm.double_blocks)), range(len(self.dm.single_blocks)))

    def hooks(self):
        return HunyuanVideoHooks(self.dm, self.name)
