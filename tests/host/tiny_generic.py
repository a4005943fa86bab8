"""Tiny models of the DiTs that dit-cache runs through its generic route (no family adapter):
the real ``comfy.supported_models`` config classes and ``comfy.ldm`` networks at tiny widths, built
and sampled like every family in ``tiny_models.py`` (which adds these specs to its table). Each
spec names the ComfyUI class it needs, so a release without it does not collect its tests."""
from __future__ import annotations

from typing import Any, Dict

import torch

# (family, variant) -> keyword arguments of tiny_models._Spec (built by tiny_models, which owns _Spec)
GENERIC_SPECS: Dict[tuple, Dict[str, Any]] = {
    ("aura_flow", None): dict(config_class="AuraFlow", unet_config=dict(
        cond_seq_dim=2048, dim=64, n_layers=3, n_double_layers=1, n_heads=2, max_seq=64, global_conddim=64), detect=False,
        ctx_dim=2048, blocks=("single_layers",)),
    ("pixart", "alpha"): dict(config_class="PixArtAlpha", unet_config=dict(
        image_model="pixart_alpha", num_heads=2, patch_size=4, hidden_size=96, in_channels=4, depth=2,
        model_max_length=8, input_size=48, pe_interpolation=1, micro_condition=True), detect=False,
        ctx_dim=4096, blocks=("blocks",), latent_scale=3, latent_min=36),
    ("pixart", "sigma"): dict(config_class="PixArtSigma", unet_config=dict(
        image_model="pixart_sigma", num_heads=2, patch_size=4, hidden_size=96, in_channels=4, depth=2,
        model_max_length=8, input_size=48, pe_interpolation=1, micro_condition=False), detect=False,
        ctx_dim=4096, blocks=("blocks",), latent_scale=3, latent_min=36),
    ("hunyuan_dit", None): dict(config_class="HunyuanDiT1", unet_config=dict(
        image_model="hydit1", depth=4, hidden_size=64, num_heads=2, size_cond=True, use_style_cond=True,
        text_states_dim=64, text_states_dim_t5=64, text_len=8, text_len_t5=8), detect=False, blocks=("blocks",),
        detected_as="HunyuanDiT"),  # 1.1 is told from 1.0 by its 3968-wide extra embedder only
    ("mochi", None): dict(config_class="GenmoMochi", unet_config=dict(
        image_model="mochi_preview", depth=2, patch_size=2, num_heads=2, hidden_size_x=32, hidden_size_y=32,
        mlp_ratio_x=384.0, mlp_ratio_y=4.0, in_channels=12, use_t5=True, qk_norm=True, qkv_bias=False, out_bias=True,
        patch_embed_bias=True, timestep_mlp_bias=True, timestep_scale=1000.0, learn_sigma=False, t5_feat_dim=64, t5_token_length=8,
        rope_theta=10000.0), detect=False, video=True, default_frames=1, ctx_dim=64,
        blocks=("blocks",)),
    ("cogvideox", None): dict(config_class="CogVideoX_T2V", unet_config=dict(
        image_model="cogvideox", num_attention_heads=2, attention_head_dim=32, time_embed_dim=64, num_layers=2,
        in_channels=16, patch_size=2, text_embed_dim=64, use_learned_positional_embeddings=False,
        use_rotary_positional_embeddings=True), detect=False, video=True, default_frames=2,
        blocks=("blocks",), requires="CogVideoX_T2V"),
    ("wan_causal_ar", None): dict(config_class="WAN21_CausalAR_T2V", unet_config=dict(
        image_model="wan2.1", dim=128, out_dim=16, num_heads=1, ffn_dim=256, num_layers=2, patch_size=(1, 2, 2),
        freq_dim=256, window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=1e-6, in_dim=16,
        model_type="t2v", text_dim=64, causal_ar=True), detect=False, video=True, default_frames=2, ctx_dim=64,
        blocks=("blocks",), requires="WAN21_CausalAR_T2V", detected_as="WAN21_T2V"),  # same keys; a loader option picks it
    ("omnigen2", None): dict(config_class="Omnigen2", unet_config=dict(
        image_model="omnigen2", axes_dim_rope=[8, 12, 12], axes_lens=[300, 512, 512], ffn_dim_multiplier=None,
        hidden_size=64, in_channels=16, multiple_of=16, norm_eps=1e-5, num_attention_heads=2, num_kv_heads=1,
        num_layers=2, num_refiner_layers=1, out_channels=None, patch_size=2, text_feat_dim=64,
        timestep_scale=1000.0), detect=False, blocks=("layers",)),
}


def generic_cond(tiny, positive: bool, batch: int, h: int, w: int, frames: int, rn) -> tuple:
    """(cross_attn, extra conds) as each family's text encoder and nodes give them; ``rn(*shape)``
    draws from the cond's seeded generator."""
    fam, L, D = tiny.family, tiny.ctx_tokens, tiny.ctx_dim
    ctx, extra = rn(batch, L, D), {}
    if fam == "hunyuan_dit":
        extra["attention_mask"] = torch.ones([batch, L], dtype=torch.long)
        extra["conditioning_mt5xl"] = rn(batch, L, tiny.unet_config["text_states_dim_t5"])
        extra["attention_mask_mt5xl"] = torch.ones([batch, L], dtype=torch.long)
    elif fam == "omnigen2":
        extra["attention_mask"] = torch.ones([batch, L], dtype=torch.long)
    elif fam == "mochi":
        m = torch.zeros([batch, L], dtype=torch.long)
        m[:, : (7 if positive else 4)] = 1
        extra["attention_mask"] = m
    return ctx, extra
