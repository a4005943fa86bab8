"""Stable Diffusion 3 / 3.5 (MMDiT): one stack of joint blocks, each an x (image) and a context
(text) half. ComfyUI's loop offers ``patches_replace["dit"][("double_block", i)]`` for every joint
block with keys img/txt/vec. The last block's context half is ``pre_only``: it returns no txt
(``None``), so that block carries only img. TeaCache's residual covers the image tokens."""
from __future__ import annotations

from ...cache_core.compile_region import compile_boundary
from .base import BlockReplacePatch, ReplaceAdapter, require

FAMILY = "sd3"


class SD3Hooks:
    def __init__(self, dm):
        self.dm = dm
        self.n_blocks = len(dm.joint_blocks)
        first = dm.joint_blocks[0]
        require(first, "x_block", "context_block", family=FAMILY)
        require(first.x_block, "adaLN_modulation", "norm1", "x_block_self_attn", "scale_mod_only", family=FAMILY)
        last = dm.joint_blocks[-1].context_block
        require(last, "pre_only", family=FAMILY)
        self.last_pre_only = bool(last.pre_only)

    def indicator(self, inputs):
        # x_block.pre_attention's modulated input: norm1(x)·(1+scale_msa)+shift_msa, shift/scale
        # the first two chunks of the block's own adaLN (6 chunks, 9 with SD3.5's x self-attn,
        # scale only with scale_mod_only)
        xb = self.dm.joint_blocks[0].x_block
        mod = xb.adaLN_modulation(inputs["vec"])
        if xb.scale_mod_only:
            scale, shift = mod.chunk(4, dim=1)[0], 0
        else:
            n = 9 if xb.x_block_self_attn else 6
            shift, scale = mod.chunk(n, dim=1)[:2]
            shift = shift.unsqueeze(1)
        return xb.norm1(inputs["img"]) * (1 + scale.unsqueeze(1)) + shift

    def stack_input(self, inputs):
        return inputs["img"]

    def stack_output(self, index, outputs, inputs, like):
        return outputs["img"]

    def final_outputs(self, index, inputs, final):
        # what the real last block returns: no context when its context half is pre_only
        return {"img": final, "txt": None if self.last_pre_only else inputs["txt"]}

    def hidden_keys(self, index):
        if index == self.n_blocks - 1 and self.last_pre_only:
            return ("img",)
        return ("img", "txt")


class _SD3BlockPatch(BlockReplacePatch):
    """ComfyUI reads ``out["txt"]`` after every joint block; an L2C reuse of the pre_only last
    block yields only img (its txt is None, there is no residual to keep), so add it back."""

    @compile_boundary
    def __call__(self, args, extra):
        out = super().__call__(args, extra)
        if "txt" not in out:
            out = dict(out, txt=None)
        return out


class SD3Adapter(ReplaceAdapter):
    name = FAMILY
    display = "Stable Diffusion 3 / 3.5 (MMDiT)"
    # no published TeaCache coefficients for SD3: the unscaled relative L1 change with a cautious
    # threshold; calibrating coefficients for your model is recommended
    default_profile = "raw"
    recommended_threshold = 0.1

    @classmethod
    def matches(cls, model_patcher) -> bool:
        from comfy.ldm.modules.diffusionmodules.mmdit import OpenAISignatureMMDITWrapper
        return type(model_patcher.model.diffusion_model) is OpenAISignatureMMDITWrapper

    def variant(self) -> str:
        return type(self.base_model.model_config).__name__.lower()  # sd3, sd35 ...

    def block_keys(self):
        require(self.dm, "joint_blocks", family=FAMILY)
        return [("double_block", i) for i in range(len(self.dm.joint_blocks))]

    def hooks(self):
        return SD3Hooks(self.dm)

    def install(self, model_patcher, holder) -> None:
        dit = model_patcher.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
        for i, (kind, n) in enumerate(self.block_keys()):
            model_patcher.set_model_patch_replace(_SD3BlockPatch(i, holder, dit.get((kind, n))), "dit", kind, n)
