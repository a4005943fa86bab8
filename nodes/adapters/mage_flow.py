"""Mage-Flow (Microsoft, ComfyUI 0.29.0 and later): a 12-layer native-resolution MMDiT built from
Qwen-Image's own ``QwenImageTransformerBlock`` (patch size 1, unrotated text tokens), with the
same ``patches_replace["dit"][("double_block", i)]`` loop and img/txt/vec/pe keys. Reference
latents are appended after the image tokens (``reference_image_num_tokens``), all modulated at
the sampling timestep. So Qwen-Image's hooks serve it unchanged: TeaCache measures block 0's
``img_modulated`` and caches the residual of the image (+reference) tokens."""
from __future__ import annotations

from .qwen_image import DualStreamAdapter


class MageFlowAdapter(DualStreamAdapter):
    name = "mage_flow"
    display = "Mage-Flow"
    network = "comfy.ldm.mage_flow.model:MageFlowTransformer2DModel"
