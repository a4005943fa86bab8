"""JoyImage (JD, image edit; ComfyUI 0.29.0 and later): a HunyuanVideo-style dual-stream DiT of
``double_blocks`` only, over 3-D patches. The loop offers every block to
``patches_replace["dit"][("double_block", i)]`` with img/txt/vec/pe; reference latents are
patchified and appended after the generated image's tokens (the loop keeps only those at the end).
Each block's modulation is a learned table plus the shared ``vec`` (6 chunks of the time
projection): TeaCache measures block 0's modulated image input, ``img_norm1(img)·(1+scale)+shift``,
and caches the residual of the image (+reference) tokens."""
from __future__ import annotations

from .base import require
from .qwen_image import DualStreamAdapter, QwenImageHooks


class JoyImageHooks(QwenImageHooks):
    def check(self, family: str) -> None:
        require(self.blocks[0], "img_mod", "img_norm1", family=family)

    def indicator(self, inputs):
        b = self.blocks[0]
        shift, scale = b.img_mod(inputs["vec"])[:2]
        return b.img_norm1(inputs["img"]) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class JoyImageAdapter(DualStreamAdapter):
    name = "joyimage"
    display = "JoyImage"
    network = "comfy.ldm.joyimage.model:JoyImageTransformer3DModel"
    blocks_attr = "double_blocks"
    hooks_class = JoyImageHooks
