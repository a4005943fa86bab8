"""Boogu-Image (ComfyUI 0.29.0 and later): OmniGen2's refiners, then dual-stream layers over the
image tokens ([reference ; generated]) and the instruction tokens, then single-stream layers over
the joined [instruction ; image] sequence. The loop has no block replacement, so each dual- and
single-stream layer is object-patched (the refiners are left alone). Dual layers take and return
(image, instruction); single layers one joined sequence whose image tokens are the last ones.
TeaCache measures the first dual layer's modulated image input (``img_norm1``, an RMSNorm-zero:
norm(x)·(1+scale)) and caches the residual of the image tokens."""
from __future__ import annotations

import torch

from .base import ForwardIO, ForwardPatchAdapter, network_is, require

FAMILY = "boogu"
_DOUBLE = ForwardIO(("img_hidden_states", "instruct_hidden_states"), returns_tuple=True)
_SINGLE = ForwardIO(("hidden_states",))


class BooguHooks:
    def __init__(self, dm):
        self.first = dm.double_stream_layers[0]
        self.n_double = len(dm.double_stream_layers)
        self.n_blocks = self.n_double + len(dm.single_stream_layers)
        require(self.first, "img_norm1", family=FAMILY)

    def indicator(self, inputs):
        return self.first.img_norm1(inputs["img_hidden_states"], inputs["temb"])[0]

    def stack_input(self, inputs):
        return inputs["img_hidden_states"]

    def _joined(self, index: int) -> str:
        return "img_hidden_states" if index < self.n_double else "hidden_states"

    def stack_output(self, index, outputs, inputs, like):
        return outputs[self._joined(index)][:, -like.shape[1]:]  # single layers: [instruction ; image]

    def final_outputs(self, index, inputs, final):
        if index < self.n_double:  # a model without single layers
            return {"img_hidden_states": final, "instruct_hidden_states": inputs["instruct_hidden_states"]}
        joined = inputs["hidden_states"]
        return {"hidden_states": torch.cat((joined[:, :joined.shape[1] - final.shape[1]], final), dim=1)}

    def hidden_keys(self, index):
        return _DOUBLE.hidden if index < self.n_double else _SINGLE.hidden


class BooguAdapter(ForwardPatchAdapter):
    name = FAMILY
    display = "Boogu-Image"
    default_profile = "raw"  # none published: the unscaled change, a cautious threshold; calibrate
    recommended_threshold = 0.15
    tested_releases = ("0.29.0", "0.33.0")

    @classmethod
    def matches(cls, model_patcher) -> bool:
        return network_is(model_patcher, "comfy.ldm.boogu.model:BooguTransformer2DModel")

    def variant(self) -> str:
        return FAMILY

    def block_modules(self):
        require(self.dm, "double_stream_layers", "single_stream_layers", family=FAMILY)
        return ([(f"double_stream_layers.{i}", m) for i, m in enumerate(self.dm.double_stream_layers)]
                + [(f"single_stream_layers.{i}", m) for i, m in enumerate(self.dm.single_stream_layers)])

    def io_for(self, index: int) -> ForwardIO:
        return _DOUBLE if index < len(self.dm.double_stream_layers) else _SINGLE

    def hooks(self):
        return BooguHooks(self.dm)
