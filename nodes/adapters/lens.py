"""Microsoft Lens (3.8B dual-stream MMDiT, 48 blocks; ComfyUI 0.29.0 and later). Its
``LensTransformerBlock`` has Qwen-Image's layout: ``img_mod``/``txt_mod`` (SiLU, Linear to six
chunks), ``img_norm1`` and ``_modulate(x, params) -> (x·(1+scale)+shift, gate)``, and its loop
offers every block to ``patches_replace["dit"][("double_block", i)]`` with img/txt/vec/pe (and
the joint attention mask as ``attn_mask``, passed through). Qwen-Image's hooks serve it: TeaCache
measures block 0's ``img_modulated`` and caches the image tokens' residual."""
from __future__ import annotations

from .qwen_image import DualStreamAdapter


class LensAdapter(DualStreamAdapter):
    name = "lens"
    display = "Microsoft Lens"
    network = "comfy.ldm.lens.model:LensTransformer2DModel"
