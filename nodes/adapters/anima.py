"""Anima (ComfyUI 0.29.0 and later): Cosmos-Predict2's ``MiniTrainDIT`` with an LLM adapter in
front that turns Qwen3-0.6B features into its cross-attention context. The block stack is
Predict2's, object-patched the same way, and TeaCache measures the same first-block modulated
self-attention input. Anima is its own family: Predict2's coefficients were not fitted on it."""
from __future__ import annotations

from .base import network_is
from .cosmos import CosmosPredict2Adapter


class AnimaAdapter(CosmosPredict2Adapter):
    name = "anima"
    display = "Anima"
    default_profile = "raw"  # none published: the unscaled change, a cautious threshold; calibrate
    recommended_threshold = 0.15
    tested_releases = ("0.29.0", "0.33.0")

    @classmethod
    def matches(cls, model_patcher) -> bool:
        return network_is(model_patcher, "comfy.ldm.anima.model:Anima")

    def variant(self) -> str:
        return "anima"
