"""Krea 2 (ComfyUI 0.29.0 and later): a single-stream DiT over the joined text+image sequence
(text first), after a text-fusion transformer that runs once per call. The loop has no block
replacement, so each of ``blocks`` is object-patched: ``forward(x, vec, freqs, mask,
timestep_zero_index, transformer_options)``. Every block adds the shared ``vec`` to its own
learned modulation (``DoubleSharedModulation``). The residual covers the whole joined sequence.

With reference latents at timestep 0 (``index_timestep_zero``) ``vec`` stacks timestep-0 rows
under the sampling-timestep rows and the tokens from ``timestep_zero_index`` on are the references:
the indicator then measures the text and generated image with the sampling-timestep modulation."""
from __future__ import annotations

from .base import ForwardIO, StackForwardAdapter


class Krea2Adapter(StackForwardAdapter):
    name = "krea2"
    display = "Krea 2"
    network = "comfy.ldm.krea2.model:SingleStreamDiT"
    blocks_attr = "blocks"
    forward_io = ForwardIO(("x",))
    first_requires = ("mod", "prenorm")
    tested_releases = ("0.29.0", "0.33.0")

    def indicator(self, first, inputs):
        # what block 0's attention sees: (1 + prescale)·prenorm(x) + preshift
        x, vec = inputs["x"], inputs["vec"]
        zero = inputs.get("timestep_zero_index")
        if zero is not None:
            x, vec = x[:, :zero], vec[:x.shape[0]]
        prescale, preshift = first.mod(vec)[:2]
        return (1 + prescale) * first.prenorm(x) + preshift
