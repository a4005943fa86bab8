"""Qwen-Image and Qwen-Image-Edit (2509, 2511): 60 dual-stream blocks at full size, each carrying
the image tokens (with any reference-latent tokens appended) and the text tokens. ComfyUI's loop
offers ``patches_replace["dit"][("double_block", i)]`` for every block with keys img/txt/vec/pe.
TeaCache's residual covers the image (+reference) tokens.

Edit-2511 (``reference_latents_method`` "index_timestep_zero", ComfyUI 0.29.0) modulates the
reference tokens at timestep 0: ``vec`` then stacks the sampling-timestep embedding of each batch
row over a timestep-0 one (2B rows for B images), and the block gets the index where the
reference tokens start as ``timestep_zero_index``, which ComfyUI keeps out of the patch args."""
from __future__ import annotations

from .base import ReplaceAdapter, generated_image_tokens, network_is, require

FAMILY = "qwen_image"


class QwenImageHooks:
    """Dual-stream blocks that take and return img/txt, with the image tokens (and any
    reference-latent tokens after them) as the cached stack. Also serves the networks built on
    Qwen-Image's block (Mage-Flow) or a copy of it (Lens)."""

    def __init__(self, dm, family: str = FAMILY, blocks: str = "transformer_blocks"):
        self.dm = dm
        self.blocks = getattr(dm, blocks)
        self.n_blocks = len(self.blocks)
        self.check(family)

    def check(self, family: str) -> None:
        require(self.blocks[0], "img_mod", "img_norm1", "_modulate", family=family)

    def indicator(self, inputs):
        # the block's img_modulated: img_norm1(img)·(1+scale)+shift from the first third of img_mod.
        # Timestep-0 reference tokens (2511) are constant from step to step: measure the generated
        # tokens with the sampling-timestep rows, as the block modulates them
        b = self.blocks[0]
        img, vec = inputs["img"], inputs["vec"]
        if vec.shape[0] != img.shape[0]:
            vec = vec[:img.shape[0]]
            img = img[:, :generated_image_tokens(inputs, img)]
        mod1 = b.img_mod(vec).chunk(2, dim=-1)[0]
        modulated, _ = b._modulate(b.img_norm1(img), mod1)
        return modulated

    def stack_input(self, inputs):
        return inputs["img"]

    def stack_output(self, index, outputs, inputs, like):
        return outputs["img"]

    def final_outputs(self, index, inputs, final):
        return {"img": final, "txt": inputs["txt"]}  # txt is unused after the last block

    def hidden_keys(self, index):
        return ("img", "txt")


class QwenImageAdapter(ReplaceAdapter):
    name = FAMILY
    display = "Qwen-Image (incl. Edit, Edit-2509, Edit-2511)"
    # No published fit for Qwen-Image-Edit; the Qwen-Image ones (FastDM) disagree on the indicator
    # and come per cond/uncond branch. The unscaled relative L1 change with a cautious threshold;
    # calibrating coefficients for your model is recommended
    default_profile = "raw"
    recommended_threshold = 0.15

    @classmethod
    def matches(cls, model_patcher) -> bool:
        from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel
        return type(model_patcher.model.diffusion_model) is QwenImageTransformer2DModel

    def variant(self) -> str:
        # the checkpoint's default reference method: "index" (Edit, 2509), "index_timestep_zero"
        # (2511), "negative_index" (Layered)
        method = getattr(self.dm, "default_ref_method", "index")
        return {"index_timestep_zero": "edit_2511", "negative_index": "layered"}.get(method, "qwen_image")

    def block_keys(self):
        require(self.dm, "transformer_blocks", family=FAMILY)
        return [("double_block", i) for i in range(len(self.dm.transformer_blocks))]

    def hooks(self):
        return QwenImageHooks(self.dm)


class DualStreamAdapter(ReplaceAdapter):
    """A network whose loop offers every block to ``patches_replace["dit"][("double_block", i)]``
    with img/txt/vec/pe and whose blocks return both streams: Qwen-Image's layout. Subclasses name
    the exact network class, the block list and, where the block's modulation differs, the hooks."""
    network = ""                 # "module:Class" of the diffusion model, matched exactly
    blocks_attr = "transformer_blocks"
    hooks_class = QwenImageHooks
    default_profile = "raw"      # none published: the unscaled change, a cautious threshold; calibrate
    recommended_threshold = 0.15
    tested_releases = ("0.29.0", "0.33.0")

    @classmethod
    def matches(cls, model_patcher) -> bool:
        return network_is(model_patcher, cls.network)

    def variant(self) -> str:
        return self.name

    def block_keys(self):
        require(self.dm, self.blocks_attr, family=self.name)
        return [("double_block", i) for i in range(len(getattr(self.dm, self.blocks_attr)))]

    def hooks(self):
        return self.hooks_class(self.dm, self.name, self.blocks_attr)
