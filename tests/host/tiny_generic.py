"""Tiny models of the DiTs that dit-cache runs through its generic route (no family adapter):
the real ``comfy.supported_models`` config classes and ``comfy.ldm`` networks at tiny widths, built
and sampled like every family in ``tiny_models.py`` (which adds these specs to its table). Each
spec names the ComfyUI class it needs, so a release without it does not collect its tests."""
from __future__ import annotations

from typing import Any, Dict

import torch

# ``detected_as`` of a tiny layout ComfyUI's key-based detection recognises as no model at all
NOT_DETECTED = "(none)"

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
    # HiDream-O1: Qwen3-VL's decoder and vision tower at width 16 through the class's own config
    # overrides; the embedding keeps the real vocabulary (the prompt template's special tokens reach
    # id 151673), 2.4M of its 2.5M parameters. Pixel space, 32x32 patches: 64x64 pixels are 4 tokens.
    ("hidream_o1", None): dict(config_class="HiDreamO1", unet_config=dict(
        image_model="hidream_o1",
        text_config_overrides=dict(vocab_size=151674, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, head_dim=16, rope_dims=[4, 2, 2]),
        vision_config_overrides=dict(hidden_size=16, num_heads=1, intermediate_size=32, depth=1,
                                     num_position_embeddings=16, deepstack_visual_indexes=())),
        detect=False, ctx_dim=1, blocks=("language_model.layers",), requires="HiDreamO1",
        latent_scale=4, latent_min=64),
}

# Tiny models the generic route refuses at the first run (test_generic.py checks the refusal): not in
# the family tests.
REFUSED_SPECS: Dict[tuple, Dict[str, Any]] = {
    # SeedVR2 3B's layout (swiglu MLPs, shared all.* weights after the mm_layers, output norm) at width 32;
    # the 5120-wide text input is fixed by the prompt embeddings the checkpoint carries as buffers.
    # ComfyUI detects SeedVR2 only from a block 31 (3B) or 35 (7B) key, so the 2-block tiny layout is
    # detected as nothing and the config class is built directly.
    ("seedvr2", None): dict(config_class="SeedVR2", unet_config=dict(
        image_model="seedvr2", vid_dim=32, heads=1, head_dim=32, num_layers=2, mm_layers=1, norm_eps=1e-5,
        mlp_type="swiglu", rope_dim=16, vid_out_norm=True), detect=False, video=True, default_frames=2,
        ctx_dim=5120, blocks=("blocks",), requires="SeedVR2", detected_as=NOT_DETECTED),
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
    elif fam == "seedvr2":
        # SeedVR2Conditioning (comfy_extras/nodes_seedvr.py): the prompt embeddings the checkpoint
        # carries, and the VAE latent of the low-resolution video with a ones mask channel
        dm = tiny.diffusion_model
        ctx = (dm.positive_conditioning if positive else dm.negative_conditioning).unsqueeze(0).repeat(batch, 1, 1)
        g = torch.Generator().manual_seed(tiny.seed + 2)
        lat = torch.randn([batch, tiny.latent_channels, frames, h, w], generator=g)
        extra["condition"] = torch.cat([lat, torch.ones([batch, 1, frames, h, w])], dim=1)
    elif fam == "hidream_o1":
        # HiDreamO1Tokenizer's chat template around the prompt's token ids, and HiDreamO1TE's output
        # (comfy/text_encoders/hidream_o1.py): a float copy of the ids as cross_attn, the ids as
        # text_input_ids; the model builds positions and image tokens from them (extra_conds)
        import comfy.text_encoders.hidream_o1 as te
        prompt = (rn(L).abs() * 1000).long().tolist()
        ids = torch.tensor([[te.IM_START_ID, te.USER_ID, te.NEWLINE_ID] + prompt + [
            te.IM_END_ID, te.NEWLINE_ID, te.IM_START_ID, te.ASSISTANT_ID, te.NEWLINE_ID, te.BOI_TOKEN_ID,
            te.TMS_TOKEN_ID]]).repeat(batch, 1)
        ctx, extra = ids.unsqueeze(-1).to(torch.float32), {"text_input_ids": ids}
    elif fam == "mochi":
        m = torch.zeros([batch, L], dtype=torch.long)
        m[:, : (7 if positive else 4)] = 1
        extra["attention_mask"] = m
    return ctx, extra
