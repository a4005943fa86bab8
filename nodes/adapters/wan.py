"""Wan 2.1 and Wan 2.2 (t2v, i2v, FLF/Fun, Fun-control, VACE, camera, TI2V 5B, each expert of the
14B two-expert models, which are two separate models patched one by one) and the Wan 2.2 variants
with their own inputs: S2V (audio, reference image, motion frames, pose video), HuMo (audio,
reference image) and Animate (pose video, face video, reference image). ComfyUI's loops for all of
them offer every block to ``patches_replace["dit"]`` under ("double_block", i) with x as "img";
one hidden state flows through, so SimpleHooks fits.

The variants' extra inputs reach the model untouched, because only the blocks are hooked and
ComfyUI's own forward still runs: reference and motion tokens are part of the stack input (their
residual is cached with the rest); HuMo's audio enters each block through the block's own call;
S2V's audio injector and Animate's face adapter add into x *between* blocks, inside the stack on
computed steps (so in the cached residual) and after the last block on every step. Animate 2
(ComfyUI 0.30 and later) runs a pose branch beside the blocks that hands each block the pose keys
and values; it does not depend on the generated tokens, so ComfyUI runs it (or reads it from its
WanAnimate2Cache) on reused steps too, and the reused residual stays the pose-conditioned one.

One family id, "wan": a Wan 2.2 14B expert loads as WAN21_T2V/WAN21_I2V and cannot be told apart
from Wan 2.1, so schedules and profiles could not be kept apart by version anyway.
"""
from __future__ import annotations

from ...cache_core.compile_region import compile_boundary, outside_compile
from ..multigpu import check_runs_here
from .base import BlockReplacePatch, ModuleBoundPatch, ReplaceAdapter, SimpleHooks, controller_for, require

_WIDE = 4096  # 1.3B: dim 1536, TI2V 5B: 3072, 14B: 5120


class _VaceBlockPatch(BlockReplacePatch):
    """VACE adds hints into x in place after some blocks, and its first hint block reads the
    stack input (the same tensor object, x_orig). On a reuse step block 0 passes x through
    unchanged, so hand the loop a copy: the hints must not land in x_orig."""

    @compile_boundary
    def __call__(self, args, extra):
        out = super().__call__(args, extra)
        if out["img"] is args["img"]:
            out = dict(out, img=out["img"].clone())
        return out


class _VaceHintSkip(ModuleBoundPatch):
    """Object patch on a VACE hint block's ``forward``: on a TeaCache reuse step every hint is
    added into an x that the last block then replaces by the restored stack output, so the hint
    blocks' work is thrown away; return a zero hint instead (same output, less compute). Only
    installed when no hint is added after the last main block (true for released VACE models)."""

    def __init__(self, holder, module, original=None):
        self.holder = holder
        self.module = module
        prev = original if original is not None else module.forward
        self.original = prev.original if isinstance(prev, _VaceHintSkip) else prev

    @compile_boundary
    def __call__(self, c, x, **kwargs):
        if self._reusing(kwargs.get("transformer_options")):
            return 0.0, c  # forward_orig does x += c_skip * strength
        return self.original(c, x=x, **kwargs)

    @outside_compile
    def _reusing(self, transformer_options) -> bool:
        controller = controller_for(self.holder, transformer_options)
        if controller is not None:
            check_runs_here(self.module, "VACE hint block")
        ctx = getattr(controller, "ctx", None)
        return ctx is not None and ctx.skip


# Variants with their own network class, no published coefficients and extra inputs: model class
# name in comfy.ldm.wan -> variant name
_OWN_INPUTS = {"WanModel_S2V": "s2v", "HumoWanModel": "humo", "AnimateWanModel": "animate",
               "WanAnimate2Model": "animate2"}


class WanAdapter(ReplaceAdapter):
    name = "wan"
    display = ("Wan 2.1 / 2.2 (t2v, i2v, Fun-control, VACE, camera, TI2V 5B, 14B experts, S2V, HuMo, Animate, "
               "Animate 2)")
    default_profile = "wan2.1_t2v_1.3B_ret"
    recommended_threshold = 0.08

    def __init__(self, model_patcher):
        super().__init__(model_patcher)
        require(self.dm, "blocks", "dim", "model_type", family=self.name)
        self.recommended_threshold = self._threshold()  # per model; the class value is the 1.3B one

    @classmethod
    def _classes(cls):
        import comfy.ldm.wan.model as wan
        from comfy.ldm.wan.model_animate import AnimateWanModel
        classes = (wan.WanModel, wan.VaceWanModel, wan.CameraWanModel, wan.WanModel_S2V, wan.HumoWanModel,
                   AnimateWanModel)
        try:  # Animate 2 (ComfyUI 0.30 and later)
            from comfy.ldm.wan.model_animate2 import WanAnimate2Model
        except ImportError:
            return classes
        return classes + (WanAnimate2Model,)

    @classmethod
    def matches(cls, model_patcher) -> bool:
        # exact classes: other WanModel subclasses (SCAIL, WanDancer, causal AR, ...) run other
        # loops that this adapter was not checked against
        return type(model_patcher.model.diffusion_model) in cls._classes()

    def _own_inputs(self) -> str | None:
        return _OWN_INPUTS.get(type(self.dm).__name__)

    def _is_vace(self) -> bool:
        return hasattr(self.dm, "vace_blocks")

    def _is_5b(self) -> bool:
        return type(self.base_model.model_config).__name__ == "WAN22_T2V"

    def _is_i2v(self) -> bool:
        return self.dm.model_type == "i2v" and not self._is_5b()

    def variant(self) -> str:
        size = "14B" if self.dm.dim >= _WIDE else "1.3B"
        if self._own_inputs():
            return self._own_inputs()  # the task; the checkpoint width gives the size
        if self._is_5b():
            return "ti2v_5B"
        if self._is_vace():
            return f"vace_{size}"
        if self.dm.model_type == "i2v" and self.dm.patch_embedding.weight.shape[1] == 48:
            return f"fun_control_{size}"  # 16 noise + 16 control video + 16 start image channels
        kind = "camera" if type(self.dm).__name__ == "CameraWanModel" else ("i2v" if self._is_i2v() else "t2v")
        return f"{kind}_{size}"

    def profile_for_variant(self) -> str:
        # The blocks receive e0 (the time projection), not e: the `_ret` sets were fitted on e0.
        # i2v: 480p and 720p checkpoints share one architecture; the 480p set is the default.
        # Wan 2.2 has no published set: its 14B experts use the Wan 2.1 14B sets, and TI2V 5B
        # (dim 3072, closest dense t2v) the 1.3B set. Calibrate for better results.
        # S2V, HuMo and Animate add audio/face paths of their own: no set fits them, raw it is.
        # The i2v sets were fitted on 14B; a narrower i2v-type model (Fun 1.3B InP/Control) takes the
        # 1.3B set, fitted at its width.
        if self._own_inputs():
            return "raw"
        if self._is_i2v() and self.dm.dim >= _WIDE:
            return "wan2.1_i2v_480p_14B_ret"
        if self.dm.dim >= _WIDE:
            return "wan2.1_t2v_14B_ret"
        return "wan2.1_t2v_1.3B_ret"

    def _threshold(self) -> float:
        # published TeaCache4Wan2.1 settings: t2v 1.3B 0.08, t2v 14B 0.2, i2v 14B 0.26 (480p)
        if self._own_inputs():
            # raw on e0: the 14B ret set maps e0 changes of 0.03-0.07 to about 4x that, so 0.05
            # raw reuses about as often as 0.2 does there; calibrate for your model
            return 0.05
        if self._is_i2v() and self.dm.dim >= _WIDE:
            return 0.26
        return 0.2 if self.dm.dim >= _WIDE else 0.08

    def block_keys(self):
        return [("double_block", i) for i in range(len(self.dm.blocks))]

    def hooks(self):
        require(self.dm.blocks[0], "modulation", family=self.name)
        # TeaCache4Wan2.1 measures the time embedding: `vec` is e0, the same for every block
        return SimpleHooks(len(self.dm.blocks), "img", lambda inputs: inputs["vec"])

    def install(self, model_patcher, holder) -> None:
        if not self._is_vace():
            return super().install(model_patcher, holder)
        require(self.dm, "vace_blocks", "vace_layers_mapping", family=self.name)
        dit = model_patcher.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
        for i, (kind, n) in enumerate(self.block_keys()):
            model_patcher.set_model_patch_replace(_VaceBlockPatch(i, holder, dit.get((kind, n))), "dit", kind, n)
        if len(self.dm.blocks) - 1 in self.dm.vace_layers_mapping:
            return  # a hint lands after the last block: it must be computed on reuse steps too
        for j, module in enumerate(self.dm.vace_blocks):
            key = f"diffusion_model.vace_blocks.{j}.forward"
            model_patcher.add_object_patch(key, _VaceHintSkip(holder, module, model_patcher.object_patches.get(key)))
