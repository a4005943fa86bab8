"""HiDream-I1 (Full, Dev, Fast): 16 double-stream then 32 single-stream blocks at full size, MoE
feed-forwards. ComfyUI's loop has no block replacement, so each block wrapper's
``forward(image_tokens, image_tokens_masks, text_tokens, adaln_input, rope, transformer_options)``
is object-patched. A fresh Llama layer enters every block: double blocks get
text_tokens = cat(t5+llama_last, llama_i) and return (image, text) (the loop keeps only the first
part of the text); single blocks get image_tokens = cat(image, t5+llama_last, llama_i) and the loop
cuts llama_i off afterwards. TeaCache's residual covers the image tokens, which come first."""
from __future__ import annotations

import torch

from .base import AdapterMismatchError, ForwardIO, ForwardPatchAdapter, require

FAMILY = "hidream"
_DOUBLE = ForwardIO(("image_tokens", "text_tokens"), returns_tuple=True)
_SINGLE = ForwardIO(("image_tokens",))


class HiDreamHooks:
    def __init__(self, dm, base_model, n_double: int, n_single: int):
        self.dm = dm
        self.base_model = base_model
        self.n_double = n_double
        self.n_blocks = n_double + n_single
        require(dm, "t_embedder", "expand_timesteps", family=FAMILY)

    def indicator(self, inputs):
        # The published HiDream coefficients were fitted on the timestep embedding (t_embedder
        # output, without the pooled-text part that adaln_input adds). Blocks only see adaln_input,
        # so recompute it from the sigmas exactly as BaseModel._apply_model and the model do.
        sigmas = (inputs.get("transformer_options") or {}).get("sigmas")
        if sigmas is None:
            raise AdapterMismatchError(f"dit-cache {FAMILY} adapter: no sigmas in transformer_options; this "
                                       "ComfyUI version changed the sampler. Update dit-cache.")
        x = inputs["image_tokens"]
        sigmas = sigmas.flatten().to(x.device)
        if x.shape[0] % sigmas.shape[0]:
            raise AdapterMismatchError(f"dit-cache {FAMILY} adapter: batch {x.shape[0]} is not a multiple of "
                                       f"{sigmas.shape[0]} sigmas")
        sigmas = torch.cat([sigmas] * (x.shape[0] // sigmas.shape[0]))  # how the sampler batches conds
        t = self.base_model.model_sampling.timestep(sigmas).float()  # read now: ModelSampling* patches
        t = self.dm.expand_timesteps(t, x.shape[0], x.device)
        return self.dm.t_embedder(t, x.dtype)

    def stack_input(self, inputs):
        return inputs["image_tokens"]

    def stack_output(self, index, outputs, inputs, like):
        return outputs["image_tokens"][:, :like.shape[1]]

    def final_outputs(self, index, inputs, final):
        joined = inputs["image_tokens"]
        out = {"image_tokens": torch.cat((final, joined[:, final.shape[1]:]), dim=1)}
        if index < self.n_double:  # a model without single blocks
            out["text_tokens"] = inputs["text_tokens"]
        return out

    def hidden_keys(self, index):
        return ("image_tokens", "text_tokens") if index < self.n_double else ("image_tokens",)


class HiDreamAdapter(ForwardPatchAdapter):
    name = FAMILY
    display = "HiDream-I1 (Full, Dev, Fast)"
    # Full, Dev and Fast share one architecture and key layout, so the weights cannot tell them
    # apart: default to Full's published set (0.3: 2.0x); pick hidream_i1_dev/fast by hand for those
    default_profile = "hidream_i1_full"
    recommended_threshold = 0.3

    @classmethod
    def matches(cls, model_patcher) -> bool:
        from comfy.ldm.hidream.model import HiDreamImageTransformer2DModel
        return type(model_patcher.model.diffusion_model) is HiDreamImageTransformer2DModel

    def variant(self) -> str:
        return "full"

    def profile_for_variant(self) -> str:
        return {"full": "hidream_i1_full", "dev": "hidream_i1_dev", "fast": "hidream_i1_fast"}[self.variant()]

    def block_modules(self):
        require(self.dm, "double_stream_blocks", "single_stream_blocks", family=FAMILY)
        return ([(f"double_stream_blocks.{i}", m) for i, m in enumerate(self.dm.double_stream_blocks)]
                + [(f"single_stream_blocks.{i}", m) for i, m in enumerate(self.dm.single_stream_blocks)])

    def io_for(self, index: int) -> ForwardIO:
        return _DOUBLE if index < len(self.dm.double_stream_blocks) else _SINGLE

    def hooks(self):
        return HiDreamHooks(self.dm, self.base_model, len(self.dm.double_stream_blocks),
                            len(self.dm.single_stream_blocks))
