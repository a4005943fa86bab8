"""Cosmos-Predict2 (text-to-image and video2world, MiniTrainDIT): one stack of blocks over a
B,T,H,W,D token grid, each with self-attention, cross-attention and MLP under AdaLN(-LoRA).
ComfyUI's loop has no block replacement, so each block's
``forward(x_B_T_H_W_D, emb_B_T_D, crossattn_emb, ...)`` is object-patched."""
from __future__ import annotations

from .base import ForwardIO, ForwardPatchAdapter, SimpleHooks, require

FAMILY = "cosmos_predict2"


class CosmosPredict2Adapter(ForwardPatchAdapter):
    name = FAMILY
    display = "Cosmos-Predict2 (text-to-image, video2world)"
    # The only published Cosmos set was fitted on Cosmos 1 (7B text-to-video, TeaCache4Cosmos),
    # not on Predict2: a starting point, 0.3 published as 1.4x there. Calibrate for Predict2.
    default_profile = "cosmos"
    recommended_threshold = 0.3
    forward_io = ForwardIO(("x_B_T_H_W_D",))

    @classmethod
    def matches(cls, model_patcher) -> bool:
        from comfy.ldm.cosmos.predict2 import MiniTrainDIT
        return type(model_patcher.model.diffusion_model) is MiniTrainDIT

    def variant(self) -> str:
        n = type(self.base_model.model_config).__name__
        return {"CosmosT2IPredict2": "t2i", "CosmosI2VPredict2": "video2world"}.get(n, n)

    def block_modules(self):
        require(self.dm, "blocks", family=self.name)
        return [(f"blocks.{i}", m) for i, m in enumerate(self.dm.blocks)]

    def hooks(self):
        first = self.dm.blocks[0]
        require(first, "adaln_modulation_self_attn", "layer_norm_self_attn", "use_adaln_lora", family=self.name)

        def indicator(inputs):
            # the block's self-attention input: norm(x)·(1+scale)+shift, per frame (emb is B,T,D;
            # video2world gives conditioning frames their own timestep)
            x = inputs["x_B_T_H_W_D"]
            pos = inputs.get("extra_per_block_pos_emb")
            if pos is not None:
                x = x + pos
            mod = first.adaln_modulation_self_attn(inputs["emb_B_T_D"])
            if first.use_adaln_lora:
                mod = mod + inputs["adaln_lora_B_T_3D"]
            shift, scale, _ = (m[:, :, None, None] for m in mod.chunk(3, dim=-1))
            return first.layer_norm_self_attn(x) * (1 + scale) + shift

        return SimpleHooks(len(self.dm.blocks), "x_B_T_H_W_D", indicator)
