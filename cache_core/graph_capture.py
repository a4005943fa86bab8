"""The cache's per-step decisions and CUDA graphs.

A CUDA graph replays the kernels it recorded and none of the Python around them, so a cache
decision taken while a graph was captured would be replayed forever (the same blocks computed or
reused at every step, whatever the input): a silently wrong result. What ComfyUI 0.33.0 captures
(``comfy/model_prefetch.py``, ``prefetch_queue_pop(..., core=..., enable_graph=True)``): only
callers that ask for it, on CUDA, with dynamic VRAM (the module has a ``_v_block``), unless
``--disable-cuda-graphs``: the autoregressive decode loops of the Gemma 4 and Llama-style text
encoders (ACE-Step 1.5's LM, MiniMax Music 3) and MiniMax Music 3's depth decoder. The DiT block
loops it prefetches weights for (LTX-2 audio-video, MiniMax-H3) call ``prefetch_queue_pop``
without ``core``: they are never captured, so the decisions run in Python at every step. ComfyUI
reads no per-model option to turn capture off; if a patched block ever runs inside a capture, the
run stops with :func:`refuse_capture`'s message instead of recording a decision.
"""
from __future__ import annotations

import torch

from .compile_region import outside_compile

CAPTURE_NOTE = ("cuda graphs: a CUDA graph capture reached the transformer blocks; the run was stopped (a replayed "
                "graph would skip the cache's decisions). Start ComfyUI with --disable-cuda-graphs")
CAPTURE_MESSAGE = (
    "dit-cache: this model's transformer blocks are being captured into a CUDA graph (ComfyUI's "
    "model_prefetch); a cache decides in Python at every step, which a replayed graph would skip, so the "
    "output would be wrong. Start ComfyUI with --disable-cuda-graphs, or remove the cache node for this model.")


def capturing() -> bool:
    """Whether the current CUDA stream is capturing a graph (False without CUDA; never initialises it)."""
    return torch.cuda.is_available() and torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing()


@outside_compile
def refuse_capture(recorder=None) -> None:
    """Raises RuntimeError(:data:`CAPTURE_MESSAGE`) while a CUDA graph is being captured, after
    noting it in ``recorder`` (the run's Cache Stats report) when given."""
    if capturing():
        if recorder is not None:
            recorder.note(CAPTURE_NOTE)
        raise RuntimeError(CAPTURE_MESSAGE)
