"""HunyuanVideo 1.0 (t2v, i2v, SkyReels i2v), HunyuanVideo 1.5 and HunyuanImage 2.1: one network
class in ComfyUI (``comfy.ldm.hunyuan_video.model.HunyuanVideo``), 20 double + 40 single blocks
for 1.0, 54 double blocks for 1.5 and 20 + 40 for Image 2.1 at full size, all offered to
``patches_replace["dit"]``. Three families, told apart by ComfyUI's ``model_base`` class: each has
its own coefficients, profiles and schedules.

The single blocks see the image and text tokens joined. The order changed between releases:
ComfyUI 0.3.64 joins cat(img, txt) (its double blocks carry ``flipped_img_txt``), 0.29.0 joins
cat(txt, img) and says where the image tokens start in ``transformer_options["img_slice"]``.
TeaCache's residual covers the image tokens only (including any reference-latent tokens that
ComfyUI prepends to img and strips after the stack).
"""
from __future__ import annotations

import torch

from .base import AdapterMismatchError, ReplaceAdapter, require, double_single_keys


class HunyuanVideoHooks:
    def __init__(self, dm, family: str):
        from comfy.ldm.flux.layers import apply_mod
        self._apply_mod = apply_mod
        self.dm = dm
        self.family = family
        self.n_double = len(dm.double_blocks)
        self.n_blocks = self.n_double + len(dm.single_blocks)
        require(dm.double_blocks[0], "img_mod", "img_norm1", family=family)
        # 0.3.64 and earlier: image tokens first in the single blocks
        self.image_first = bool(getattr(dm.double_blocks[0], "flipped_img_txt", False))

    def indicator(self, inputs):
        # TeaCache4HunyuanVideo (and LightX2V for 1.5): double_blocks[0] img_norm1(img) modulated by
        # img_mod1 shift/scale; apply_mod with modulation_dims_img handles the i2v token-replace split
        b = self.dm.double_blocks[0]
        mod1, _ = b.img_mod(inputs["vec"])
        return self._apply_mod(b.img_norm1(inputs["img"]), 1 + mod1.scale, mod1.shift,
                               inputs.get("modulation_dims_img"))

    def stack_input(self, inputs):
        return inputs["img"]

    def _image_start(self, inputs, n_joined: int, n_img: int) -> int:
        """Where the image tokens start in a single block's joined sequence."""
        n_txt = n_joined - n_img
        sl = (inputs.get("transformer_options") or {}).get("img_slice")
        if sl is not None:
            if int(sl[0]) != n_txt:
                raise AdapterMismatchError(
                    f"dit-cache {self.family} adapter: the single blocks' image tokens start at {sl[0]}, "
                    f"expected after the {n_txt} text tokens; this ComfyUI version changed the model code. "
                    "Update dit-cache, or remove the cache node for this model.")
            return n_txt
        if self.image_first:
            return 0
        raise AdapterMismatchError(
            f"dit-cache {self.family} adapter: this ComfyUI's single blocks neither put the image tokens "
            "first (flipped_img_txt) nor say where they are (img_slice); this ComfyUI version changed the "
            "model code. Update dit-cache, or remove the cache node for this model.")

    def stack_output(self, index, outputs, inputs, like):
        out = outputs["img"]
        if index < self.n_double:  # no single blocks: the last block is a double block
            return out
        n = like.shape[1]
        start = self._image_start(inputs, out.shape[1], n)
        return out[:, start:start + n]

    def final_outputs(self, index, inputs, final):
        joined = inputs["img"]
        if index < self.n_double:
            return {"img": final, "txt": inputs["txt"]}
        n = final.shape[1]
        start = self._image_start(inputs, joined.shape[1], n)
        return {"img": torch.cat((joined[:, :start], final, joined[:, start + n:]), dim=1)}

    def hidden_keys(self, index):
        return ("img", "txt") if index < self.n_double else ("img",)


class _HunyuanFamily(ReplaceAdapter):
    """One of the families built on ComfyUI's HunyuanVideo network, picked by ``model_base`` class."""
    model_base_classes: tuple = ()   # names in comfy.model_base; an instance of any of them matches

    @classmethod
    def matches(cls, model_patcher) -> bool:
        import comfy.model_base
        from comfy.ldm.hunyuan_video.model import HunyuanVideo
        if type(model_patcher.model.diffusion_model) is not HunyuanVideo:
            return False
        exact = tuple(getattr(comfy.model_base, n) for n in cls.model_base_classes
                      if hasattr(comfy.model_base, n))
        return type(model_patcher.model) in exact

    def block_keys(self):
        require(self.dm, "double_blocks", "single_blocks", family=self.name)
        return double_single_keys(range(len(self.dm.double_blocks)), range(len(self.dm.single_blocks)))

    def hooks(self):
        return HunyuanVideoHooks(self.dm, self.name)


class HunyuanVideoAdapter(_HunyuanFamily):
    name = "hunyuan_video"
    display = "HunyuanVideo (t2v, i2v)"
    default_profile = "hunyuan_video"  # published for t2v; i2v variants use it too (none published)
    recommended_threshold = 0.15       # published: 0.1 -> 1.6x, 0.15 -> 2.1x
    model_base_classes = ("HunyuanVideo", "HunyuanVideoI2V", "HunyuanVideoSkyreelsI2V")

    def variant(self) -> str:
        n = type(self.base_model.model_config).__name__
        return {"HunyuanVideoI2V": "i2v", "HunyuanVideoSkyreelsI2V": "skyreels_i2v"}.get(n, "t2v")


class HunyuanVideo15Adapter(_HunyuanFamily):
    name = "hunyuan_video15"
    display = "HunyuanVideo 1.5 (t2v, i2v)"
    # LightX2V fitted four sets (480p/720p x t2v/i2v) on this indicator; t2v and i2v checkpoints
    # share one architecture, so the 480p t2v set is the default and the others are offered by name
    default_profile = "hunyuan_video1.5_t2v_480p"
    recommended_threshold = 0.15  # LightX2V's default teacache_thresh for all four sets
    model_base_classes = ("HunyuanVideo15", "HunyuanVideo15_SR_Distilled")

    def variant(self) -> str:
        n = type(self.base_model.model_config).__name__
        return "sr_distilled" if n == "HunyuanVideo15_SR_Distilled" else "base"


class HunyuanImage21Adapter(_HunyuanFamily):
    name = "hunyuan_image21"
    display = "HunyuanImage 2.1"
    default_profile = "raw"      # no published TeaCache coefficients: calibrate for better results
    recommended_threshold = 0.15
    model_base_classes = ("HunyuanImage21", "HunyuanImage21Refiner")

    def variant(self) -> str:
        n = type(self.base_model.model_config).__name__
        return "refiner" if n == "HunyuanImage21Refiner" else "base"
