"""Flux (dev, schnell, Fill, Kontext), and the models ComfyUI runs on the same Flux network class
with their own configs: LongCat-Image and Ovis-Image (SwiGLU MLPs, text RMSNorm). 19+38 blocks at
full size for Flux; double blocks carry img and txt, single blocks one joined txt+img sequence.
Each block computes its own modulation (``img_mod``) from ``vec``. TeaCache's residual covers the
image tokens (with any reference-latent tokens appended, as Kontext's are)."""
from __future__ import annotations

import torch

from .base import ReplaceAdapter, require, double_single_keys, tested_since


def flux_kind(model_patcher) -> str:
    """Which model runs on ComfyUI's Flux network class: "flux2" (one modulation shared by all
    blocks), "longcat_image", "ovis_image", or "flux"; "" for another network."""
    from comfy.ldm.flux.model import Flux
    dm = model_patcher.model.diffusion_model
    if type(dm) is not Flux:
        return ""
    params = getattr(dm, "params", None)
    if getattr(params, "global_modulation", False):
        return "flux2"
    if type(model_patcher.model).__name__ == "LongCatImage":
        return "longcat_image"
    if getattr(params, "yak_mlp", False) and getattr(params, "txt_norm", False):
        return "ovis_image"
    return "flux"


class FluxHooks:
    def __init__(self, dm, family: str):
        self.dm = dm
        self.n_double = len(dm.double_blocks)
        self.n_blocks = self.n_double + len(dm.single_blocks)
        self.check(family)

    def check(self, family: str) -> None:
        require(self.dm.double_blocks[0], "img_mod", "img_norm1", family=family)

    def indicator(self, inputs):
        b = self.dm.double_blocks[0]
        mod1, _ = b.img_mod(inputs["vec"])
        return b.img_norm1(inputs["img"]) * (1 + mod1.scale) + mod1.shift

    def stack_input(self, inputs):
        return inputs["img"]

    def stack_output(self, index, outputs, inputs, like):
        # single blocks see cat(txt, img): the image tokens are the last `like.shape[1]`
        return outputs["img"][:, -like.shape[1]:]

    def final_outputs(self, index, inputs, final):
        joined = inputs["img"]
        return {"img": torch.cat((joined[:, :joined.shape[1] - final.shape[1]], final), dim=1)}

    def hidden_keys(self, index):
        return ("img", "txt") if index < self.n_double else ("img",)


class FluxAdapter(ReplaceAdapter):
    name = "flux"
    display = "Flux (dev, schnell, Fill, Kontext)"
    default_profile = "flux"
    recommended_threshold = 0.4

    @classmethod
    def matches(cls, model_patcher) -> bool:
        return flux_kind(model_patcher) == cls.name

    def variant(self) -> str:
        n = type(self.base_model.model_config).__name__
        return {"FluxSchnell": "schnell", "FluxInpaint": "fill"}.get(n, "dev")

    def block_keys(self):
        return double_single_keys(range(len(self.dm.double_blocks)), range(len(self.dm.single_blocks)))

    def hooks(self):
        return FluxHooks(self.dm, self.name)


class LongCatImageAdapter(FluxAdapter):
    """LongCat-Image (Meituan, 6B): Flux blocks without guidance or pooled-text embedding, a
    Qwen2.5-VL text encoder and text positions on two RoPE axes."""
    name = "longcat_image"
    display = "LongCat-Image"
    # vllm-omni's fit on block 0's modulated image input, our indicator. It turns over at
    # x = 0.18 and is non-decreasing only from 0.276, so every step counts >= 0.21 there: with
    # 0.3 at most every other step is reused. Calibrate for better results.
    default_profile = "longcat_image"
    recommended_threshold = 0.3
    tested_releases = tested_since("0.29.0")

    def variant(self) -> str:
        return "longcat_image"


class OvisImageAdapter(FluxAdapter):
    """Ovis-Image (AIDC-AI, 7B): Flux blocks with SwiGLU MLPs and an RMSNorm on the text input."""
    name = "ovis_image"
    display = "Ovis-Image"
    default_profile = "raw"  # none published: calibrate for better results
    recommended_threshold = 0.15
    tested_releases = tested_since("0.29.0")

    def variant(self) -> str:
        return "ovis_image"
