"""Lumina Image 2.0 (NextDiT, also Neta Lumina): after the context and noise refiners, one stack of
joint layers over the joined caption+image sequence. ComfyUI's loop has no block replacement, so
each main layer's ``forward(x, x_mask, freqs_cis, adaln_input, transformer_options)`` is object-
patched (the refiners are left alone). TeaCache's residual covers the whole joined sequence, as in
the official TeaCache4Lumina2. Cond and uncond differ in caption length (``num_tokens`` is a
constant cond, so ComfyUI never batches them); state is kept per stream, so that is fine."""
from __future__ import annotations

from .base import ForwardIO, ForwardPatchAdapter, SimpleHooks, require

FAMILY = "lumina2"


class Lumina2Adapter(ForwardPatchAdapter):
    name = FAMILY
    display = "Lumina Image 2.0 (NextDiT)"
    # Our indicator is the first layer's modulated input, as in the official TeaCache4Lumina2
    # (layers[0].norm1(x, temb)); "lumina2_official_v2" was fitted there and has published
    # thresholds (0.2: 1.5x ... 1.1: 2.1x). "lumina_2_comfyui" was fitted on the bare timestep
    # embedding in welltop-cn/ComfyUI-TeaCache, a different indicator, so it would mis-scale here.
    default_profile = "lumina2_official_v2"
    recommended_threshold = 0.3  # published: 1.6x
    forward_io = ForwardIO(("x",))

    @classmethod
    def matches(cls, model_patcher) -> bool:
        from comfy.ldm.lumina.model import NextDiT
        from .z_image import is_z_image
        return type(model_patcher.model.diffusion_model) is NextDiT and not is_z_image(model_patcher)

    def variant(self) -> str:
        return "lumina2"

    def block_modules(self):
        require(self.dm, "layers", family=FAMILY)
        return [(f"layers.{i}", m) for i, m in enumerate(self.dm.layers)]

    def hooks(self):
        first = self.dm.layers[0]
        require(first, "adaLN_modulation", "attention_norm1", "modulation", family=FAMILY)

        def indicator(inputs):
            # modulate(attention_norm1(x), scale_msa): Lumina's adaLN has no shift
            scale_msa = first.adaLN_modulation(inputs["adaln_input"]).chunk(4, dim=1)[0]
            return first.attention_norm1(inputs["x"]) * (1 + scale_msa.unsqueeze(1))

        return SimpleHooks(len(self.dm.layers), "x", indicator)
