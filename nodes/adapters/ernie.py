"""Ernie-Image (Baidu, ComfyUI 0.29.0 and later): a single-stream DiT over the joined image+text
sequence (image first) whose layers share one adaLN modulation (``temb``: shift, scale and gate
for attention and MLP, computed once per call). The loop has no block replacement and passes no
``transformer_options`` to the layers, so each of ``layers`` is object-patched:
``forward(x, rotary_pos_emb, temb, attention_mask)``. The residual covers the joined sequence."""
from __future__ import annotations

from .base import ForwardIO, StackForwardAdapter


class ErnieImageAdapter(StackForwardAdapter):
    name = "ernie_image"
    display = "Ernie-Image"
    network = "comfy.ldm.ernie.model:ErnieImageModel"
    forward_io = ForwardIO(("x",))
    first_requires = ("adaLN_sa_ln",)
    tested_releases = ("0.29.0", "0.33.0")

    def indicator(self, first, inputs):
        # block 0's attention input: adaLN_sa_ln(x)·(1+scale_msa)+shift_msa
        shift_msa, scale_msa = inputs["temb"][:2]
        return first.adaLN_sa_ln(inputs["x"]) * (1 + scale_msa) + shift_msa
