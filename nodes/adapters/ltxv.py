"""LTX-Video (LTXV 0.9.x): 28 transformer blocks at full size (48 for 13B), all offered to
``patches_replace["dit"]`` as ("double_block", i) with x as "img". The text attention mask is a
non-hidden replace argument, passed through untouched. Blocks update x in place (``x += ...``);
the controller clones the stack input before the blocks run, so the TeaCache residual is sound."""
from __future__ import annotations

from .base import ReplaceAdapter, SimpleHooks, require


class LTXVAdapter(ReplaceAdapter):
    name = "ltxv"
    display = "LTX-Video"
    default_profile = "ltxv"
    recommended_threshold = 0.05  # published: 0.03 -> 1.6x, 0.05 -> 2.1x

    @classmethod
    def matches(cls, model_patcher) -> bool:
        from comfy.ldm.lightricks.model import LTXVModel
        return type(model_patcher.model.diffusion_model) is LTXVModel

    def variant(self) -> str:
        return "13B" if len(self.dm.transformer_blocks) > 28 else "2B"

    def block_keys(self):
        return [("double_block", i) for i in range(len(self.dm.transformer_blocks))]

    def hooks(self):
        from comfy.ldm.common_dit import rms_norm
        b = self.dm.transformer_blocks[0]
        require(b, "scale_shift_table", family=self.name)

        def indicator(inputs):
            # TeaCache4LTX-Video: block 0's norm1(x) * (1 + scale_msa) + shift_msa, computed the way
            # BasicTransformerBlock.forward derives its modulation from `timestep` (vec)
            x, t = inputs["img"], inputs["vec"]
            table = b.scale_shift_table[None, None].to(device=x.device, dtype=x.dtype)
            mod = table + t.reshape(x.shape[0], t.shape[1], table.shape[2], -1)
            shift_msa, scale_msa = mod[:, :, 0], mod[:, :, 1]
            return rms_norm(x) * (1 + scale_msa) + shift_msa

        return SimpleHooks(len(self.dm.transformer_blocks), "img", indicator)
