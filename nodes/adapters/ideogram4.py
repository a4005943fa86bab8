"""Ideogram 4 (ComfyUI 0.29.0 and later): a single-stream DiT over a packed [text, image]
sequence (image only for an empty prompt). The loop has no block replacement, so each of
``layers`` is object-patched: ``forward(x, attn_mask, freqs_cis, adaln_input,
transformer_options)``. Its adaLN, like Lumina 2's, scales without a shift; the residual covers
the whole packed sequence."""
from __future__ import annotations

from .base import ForwardIO, StackForwardAdapter


class Ideogram4Adapter(StackForwardAdapter):
    name = "ideogram4"
    display = "Ideogram 4"
    network = "comfy.ldm.ideogram4.model:Ideogram4Transformer2DModel"
    forward_io = ForwardIO(("x",))
    first_requires = ("adaln_modulation", "attention_norm1")
    tested_releases = ("0.29.0", "0.33.0")

    def indicator(self, first, inputs):
        # block 0's attention input: attention_norm1(x)·(1+scale_msa)
        scale_msa = first.adaln_modulation(inputs["adaln_input"]).chunk(4, dim=-1)[0]
        return first.attention_norm1(inputs["x"]) * (1.0 + scale_msa)
