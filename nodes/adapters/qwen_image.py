"""Qwen-Image (and Qwen-Image-Edit): 60 dual-stream blocks at full size, each carrying the image
tokens (with any reference-latent tokens appended) and the text tokens. ComfyUI's loop offers
``patches_replace["dit"][("double_block", i)]`` for every block with keys img/txt/vec/pe.
TeaCache's residual covers the image (+reference) tokens."""
from __future__ import annotations

from .base import ReplaceAdapter, require

FAMILY = "qwen_image"


class QwenImageHooks:
    def __init__(self, dm):
        self.dm = dm
        self.n_blocks = len(dm.transformer_blocks)
        require(dm.transformer_blocks[0], "img_mod", "img_norm1", "_modulate", family=FAMILY)

    def indicator(self, inputs):
        # the block's img_modulated: img_norm1(img)·(1+scale)+shift from the first third of img_mod
        b = self.dm.transformer_blocks[0]
        mod1 = b.img_mod(inputs["vec"]).chunk(2, dim=-1)[0]
        modulated, _ = b._modulate(b.img_norm1(inputs["img"]), mod1)
        return modulated

    def stack_input(self, inputs):
        return inputs["img"]

    def stack_output(self, index, outputs, inputs, like):
        return outputs["img"]

    def final_outputs(self, index, inputs, final):
        return {"img": final, "txt": inputs["txt"]}  # txt is unused after the last block

    def hidden_keys(self, index):
        return ("img", "txt")


class QwenImageAdapter(ReplaceAdapter):
    name = FAMILY
    display = "Qwen-Image (incl. Edit)"
    # no published TeaCache coefficients for Qwen-Image: the unscaled relative L1 change with a
    # cautious threshold; calibrating coefficients for your model is recommended
    default_profile = "raw"
    recommended_threshold = 0.15

    @classmethod
    def matches(cls, model_patcher) -> bool:
        from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel
        return type(model_patcher.model.diffusion_model) is QwenImageTransformer2DModel

    def variant(self) -> str:
        return "qwen_image"

    def block_keys(self):
        require(self.dm, "transformer_blocks", family=FAMILY)
        return [("double_block", i) for i in range(len(self.dm.transformer_blocks))]

    def hooks(self):
        return QwenImageHooks(self.dm)
