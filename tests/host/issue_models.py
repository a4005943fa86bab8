"""Tiny models sized as in the bug reports that the graph tests reproduce (issue 11): a Flux of
ComfyUI's ``Flux`` class with hidden 128, 2 double and 4 single blocks, and an SD3 MMDiT with 3
joint blocks. Built from the tiny-model specs of ``tiny_models`` with other sizes, through the
same ComfyUI loading code."""
from __future__ import annotations

import dataclasses

import torch

import tiny_models as tm
from comfy_env import import_comfy

_CACHE: dict = {}


def _build(family, variant, tag, **unet_overrides):
    key = (family, variant, tag)
    if key in _CACHE:
        return _CACHE[key]
    c = import_comfy()
    spec = tm.SPECS[(family, variant)]
    spec = dataclasses.replace(spec, unet_config=dict(spec.unet_config, **unet_overrides))
    with torch.random.fork_rng(devices=[]):
        patcher, sd, loaded_via = tm._load_one(c, spec, family, f"{variant}-{tag}", torch.float32, 0)
    lf = patcher.get_model_object("latent_format")
    tiny = tm.TinyModel(
        family=family, variant=variant, patcher=patcher, config_class=spec.config_class,
        unet_config=dict(patcher.model.model_config.unet_config), loaded_via=loaded_via, video=spec.video,
        latent_channels=lf.latent_channels, default_frames=spec.default_frames, dtype=torch.float32, seed=0,
        ctx_dim=spec.ctx_dim, ctx_tokens=spec.ctx_tokens, state_dict=sd)
    _CACHE[key] = tiny
    return tiny


def flux_2x4():
    """Flux dev, hidden 128 (4 heads of 32), 2 double + 4 single blocks."""
    return _build("flux", "dev", "h128-2x4", hidden_size=128, num_heads=4, depth=2, depth_single_blocks=4)


def sd3_3():
    """SD3 MMDiT with 3 joint blocks (ComfyUI detects hidden = 64 x depth = 192, 3 heads)."""
    base = tm.SPECS[("sd3", None)].unet_config
    ctx = {"target": "torch.nn.Linear", "params": dict(base["context_embedder_config"]["params"], out_features=192)}
    return _build("sd3", None, "3blocks", depth=3, context_embedder_config=ctx)
