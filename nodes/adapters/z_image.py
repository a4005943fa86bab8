"""Z-Image (Turbo, Base, Omni) and Z-Image pixel space: Alibaba's 6B single-stream DiT, which
ComfyUI runs on Lumina 2's NextDiT class (pixel space: NextDiTPixelSpace, with an MLP decoder
head) with ``z_image_modulation``: each layer's adaLN reads a 256-wide timestep embedding with no
SiLU. A family of its own: its coefficients and thresholds are not Lumina 2's.

As for Lumina 2, the 30 main layers' ``forward`` is object-patched (the refiners are left alone)
and the residual covers the joined caption+image sequence. With reference images (Omni) the
sequence also holds them, modulated at timestep 0: ``adaln_input`` then stacks timestep-0 rows
over the sampling-timestep rows, and ``timestep_zero_index`` (a forward argument here) lists the
token ranges modulated at the sampling timestep, the generated image first."""
from __future__ import annotations

from .base import ForwardIO, ForwardPatchAdapter, SimpleHooks, require, tested_since

FAMILY = "z_image"


def is_z_image(model_patcher) -> bool:
    from comfy.ldm.lumina.model import NextDiT
    cfg = getattr(model_patcher.model.model_config, "unet_config", {})
    return isinstance(model_patcher.model.diffusion_model, NextDiT) and bool(cfg.get("z_image_modulation"))


class ZImageAdapter(ForwardPatchAdapter):
    name = FAMILY
    display = "Z-Image (Turbo, Base, pixel space)"
    # No fit published: sglang ships HunyuanVideo's set for it, vllm-omni a placeholder. The
    # unscaled change with a cautious threshold; calibrate for better results.
    default_profile = "raw"
    recommended_threshold = 0.15
    tested_releases = tested_since("0.29.0")
    forward_io = ForwardIO(("x",))

    @classmethod
    def matches(cls, model_patcher) -> bool:
        return is_z_image(model_patcher)

    def variant(self) -> str:
        return "pixel" if type(self.base_model.model_config).__name__ == "ZImagePixelSpace" else "z_image"

    def block_modules(self):
        require(self.dm, "layers", family=FAMILY)
        return [(f"layers.{i}", m) for i, m in enumerate(self.dm.layers)]

    def hooks(self):
        first = self.dm.layers[0]
        require(first, "adaLN_modulation", "attention_norm1", family=FAMILY)

        def indicator(inputs):
            # the first layer's attention input, modulate(attention_norm1(x), scale_msa) (no shift),
            # over the generated image and caption with their sampling-timestep scale
            x = inputs["x"]
            scale = first.adaLN_modulation(inputs["adaln_input"]).chunk(4, dim=1)[0]
            ranges = inputs.get("timestep_zero_index")
            if ranges:
                scale = scale[scale.shape[0] // 2:]
                x = x[:, ranges[0][0]:ranges[0][1]]
            return first.attention_norm1(x) * (1 + scale.unsqueeze(1))

        return SimpleHooks(len(self.dm.layers), "x", indicator)
