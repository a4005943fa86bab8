"""Flux.2 (dev 32B, klein 4B/9B): the Flux network with ``global_modulation``: its blocks have no
modulation of their own. The model computes one double-stream modulation for the image stream and
one for the text stream, and one single-stream modulation, and hands them to every block as
``vec``: ((img_mod1, img_mod2), (txt_mod1, txt_mod2)) for double blocks, a ModulationOut for
single blocks. 8+48 blocks (dev), 5+20 (klein 4B), 8+24 (klein 9B).

Reference latents are appended after the image tokens. With ``reference_latents_method``
"index_timestep_zero" they are modulated at timestep 0: each modulation then holds two slots per
batch row (sampling timestep, timestep 0) and the block applies them by token range."""
from __future__ import annotations

from .base import ReplaceAdapter, double_single_keys, generated_image_tokens, require, tested_since
from .flux import FluxHooks, flux_kind

FAMILY = "flux2"


class Flux2Hooks(FluxHooks):
    def check(self, family: str) -> None:
        require(self.dm, "double_stream_modulation_img", family=family)
        require(self.dm.double_blocks[0], "img_norm1", family=family)

    def indicator(self, inputs):
        # block 0's modulated image input, as TensorRT-LLM's FLUX.2 TeaCache measures it (its fit):
        # img_norm1(img)·(1+scale)+shift with the shared double-stream image modulation
        (mod1, _), _ = inputs["vec"]
        img, scale, shift = inputs["img"], mod1.scale, mod1.shift
        if scale.shape[1] > 1:  # timestep-0 reference tokens: constant, left out of the measure
            scale, shift = scale[:, :1], shift[:, :1]
            img = img[:, :generated_image_tokens(inputs, img)]
        return self.dm.double_blocks[0].img_norm1(img) * (1 + scale) + shift


class Flux2Adapter(ReplaceAdapter):
    name = FAMILY
    display = "Flux.2 (dev, klein)"
    default_profile = "flux2_dev"
    recommended_threshold = 0.25
    tested_releases = tested_since("0.29.0")

    def __init__(self, model_patcher):
        super().__init__(model_patcher)
        require(self.dm, "params", "double_blocks", "single_blocks", family=self.name)
        if self.variant() == "klein":  # no published fit: the unscaled change, a cautious threshold
            self.recommended_threshold = 0.15

    @classmethod
    def matches(cls, model_patcher) -> bool:
        return flux_kind(model_patcher) == FAMILY

    def variant(self) -> str:
        # dev embeds the guidance value; klein (base and distilled) has no guidance embedding
        return "dev" if self.dm.params.guidance_embed else "klein"

    def profile_for_variant(self) -> str:
        return "flux2_dev" if self.variant() == "dev" else "raw"

    def block_keys(self):
        return double_single_keys(range(len(self.dm.double_blocks)), range(len(self.dm.single_blocks)))

    def hooks(self):
        return Flux2Hooks(self.dm, self.name)
