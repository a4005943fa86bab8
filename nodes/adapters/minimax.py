"""MiniMax-H3 (audio + video, ComfyUI 0.30 and later): a single-stream DiT over one packed
sequence of rows (no batch dimension; batch size 1), [text | condition or reference rows | audio |
video], each row modulated by its own (timestep, modality) row of the shared time embedding
(``mod_segments``: (start, stop, row) with row = 3·timestep index + modality tag, 0 video, 1
text, 2 audio; a per-token LongTensor of rows where a denoise mask gives rows their own strength).
The loop offers every block to ``patches_replace["dit"][("double_block", i)]`` with the rows as
"img".

Audio and video stay consistent, as for LTX-2: their tokens are one hidden state, so one TeaCache
decision covers both and the cached residual restores both or neither. The decision is measured
on both: block 0's modulated input, ``norm1(h)·(1+scale)+shift`` per row, split into the video
rows and the audio rows, each weighted by its magnitude rather than its token count (audio has
far fewer rows); the text rows are left out (they do not change from step to step)."""
from __future__ import annotations

import torch

from .base import ReplaceAdapter, SimpleHooks, network_is, require

FAMILY = "minimax_h3"
_VIDEO, _AUDIO = 0, 2  # modality tags of a modulation row (row % 3)


class MiniMaxH3Adapter(ReplaceAdapter):
    name = FAMILY
    display = "MiniMax-H3 (audio + video)"
    # vllm-omni publishes FL2VA and Ref2VA fits (R² 0.09) without saying what they measure: not
    # ours to borrow. The unscaled change with a cautious threshold; calibrate for your model
    default_profile = "raw"
    recommended_threshold = 0.1
    tested_releases = ("0.33.0",)

    @classmethod
    def matches(cls, model_patcher) -> bool:
        return network_is(model_patcher, "comfy.ldm.minimax.model:MiniMaxH3Model")

    def variant(self) -> str:
        return "av"

    def block_keys(self):
        require(self.dm, "blocks", family=FAMILY)
        return [("double_block", i) for i in range(len(self.dm.blocks))]

    def hooks(self):
        first = self.dm.blocks[0]
        require(first, "adaln_proj", "norm1", family=FAMILY)

        def indicator(inputs):
            h, segments = inputs["img"], inputs["mod_segments"]
            shift, scale = first.adaln_proj(inputs["t_emb"])[:2]
            normed = first.norm1(h)
            parts = {_VIDEO: [], _AUDIO: []}
            for a, b, row in segments:
                mod = normed[a:b] * (1.0 + scale[row].to(h.dtype)) + shift[row].to(h.dtype)
                tags = row % 3
                for tag, rows in parts.items():
                    rows.append(mod[tags == tag] if torch.is_tensor(row) else (mod if tags == tag else mod[:0]))
            # rel L1 = sum|change| / sum|previous|: dividing each stream by its size makes a stream
            # count by its magnitude, not its row count
            out = [torch.cat(p) for p in parts.values()]
            return torch.cat([p.flatten() / max(p.numel(), 1) for p in out if p.numel()]).unsqueeze(0)

        return SimpleHooks(len(self.dm.blocks), "img", indicator)
