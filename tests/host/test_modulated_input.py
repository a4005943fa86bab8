"""The TeaCache indicator of the 2026 families is what TeaCache defines for them: the modulated
input of the first block, exactly the tensor the first block hands its attention. Checked on tiny
real models against the attention module's own input, recorded during sampling (the generated
tokens only where a family measures those: none of these tiny conds carries reference latents)."""
from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from helpers import holder_of, teacache

# family id -> (the first block's attention module, the argument that is its modulated input:
# a position or a keyword)
CASES = {
    "mage_flow": ("attn", "hidden_states"),
    "lens": ("attn", "hidden_states"),
    "joyimage": ("attn", 0),
    "krea2": ("attn", 0),
    "ideogram4": ("attention", 0),
    "ernie_image": ("self_attention", 0),
    "boogu": ("img_instruct_attn", 0),
    "anima": ("self_attn", 0),  # Cosmos' B,T,H,W,D grid, flattened to tokens for attention
}


FAMILIES = [f for f in CASES if f in tm.family_ids()]


@pytest.mark.parametrize("fam", FAMILIES)
def test_indicator_is_the_first_blocks_attention_input(tiny_models, fam):
    tiny = tiny_models(fam)
    m = teacache(tiny.patcher, 1e-6)
    hooks = holder_of(m).hooks
    measured, seen, original = [], [], hooks.indicator

    def recording(inputs):
        measured.append(original(inputs))
        return measured[-1]
    hooks.indicator = recording
    name, arg = CASES[fam]
    attn = getattr(tiny.block_modules(m.model.diffusion_model)[0], name)

    def pre(module, args, kwargs):
        seen.append((kwargs[arg] if isinstance(arg, str) else args[arg]).detach().clone())
    handle = attn.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        tm.sample(tiny, steps=2, model=m)
    finally:
        handle.remove()
    assert len(measured) == len(seen) > 0
    for ind, inp in zip(measured, seen):
        assert ind.numel() == inp.numel()
        ind = ind.reshape(inp.shape)
        assert torch.allclose(ind, inp, rtol=1e-5, atol=1e-6), float((ind - inp).abs().max())


if not FAMILIES:
    del test_indicator_is_the_first_blocks_attention_input  # none of them in this ComfyUI: nothing to collect
