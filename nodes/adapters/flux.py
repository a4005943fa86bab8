"""Flux (dev, schnell, Fill, Kontext): 19+38 blocks at full size; double blocks carry img and txt,
single blocks one joined txt+img sequence. TeaCache's residual covers the image tokens only."""
from __future__ import annotations

import torch

from .base import ReplaceAdapter, require, double_single_keys


class FluxHooks:
    def __init__(self, dm, family: str):
        self.dm = dm
        self.n_double = len(dm.double_blocks)
        self.n_blocks = self.n_double + len(dm.single_blocks)
        require(dm.double_blocks[0], "img_mod", "img_norm1", family=family)

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
        from comfy.ldm.flux.model import Flux
        return type(model_patcher.model.diffusion_model) is Flux

    def variant(self) -> str:
        n = type(self.base_model.model_config).__name__
        return {"FluxSchnell": "schnell", "FluxInpaint": "fill"}.get(n, "dev")

    def block_keys(self):
        return double_single_keys(range(len(self.dm.double_blocks)), range(len(self.dm.single_blocks)))

    def hooks(self):
        return FluxHooks(self.dm, self.name)
