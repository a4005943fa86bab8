"""Tiny random-weight models of REAL ComfyUI model classes, for host tests.

Every family is the real ComfyUI stack: a ``comfy.supported_models`` config
class, the ``comfy.model_base`` wrapper it creates (``extra_conds``,
``model_sampling``, concat conds, ...), the real ``comfy.ldm`` diffusion
transformer, wrapped in a real ``comfy.model_patcher.ModelPatcher`` and sampled
through ``comfy.sample.sample`` (the path ``nodes.common_ksampler`` takes) with
CFG > 1.  Only the sizes are tiny (hidden width 64-128, 2-3 blocks of each
kind, 1-4 heads) and the weights are random (seeded, so deterministic).

How a model is built (``build``):

1. The family's tiny ``unet_config`` (same keys ComfyUI's
   ``model_detection.detect_unet_config`` produces, small values) is matched to
   its config class with ComfyUI's own ``model_detection.model_config_from_unet_config``
   (asserted to be the class ComfyUI would use for the real checkpoint).
2. ``model_config.get_model()`` builds the model; its diffusion-model state
   dict is filled with seeded random values -> a state dict with the exact key
   layout of the real checkpoints.
3. Loading:

   * ``loaded_via == "load_diffusion_model_state_dict"``: the state dict is
     loaded with ``comfy.sd.load_diffusion_model_state_dict`` (ComfyUI's
     UNETLoader path, including detection from the keys).  Used for the
     families whose detection reads every size from tensor shapes:
     Wan 2.1/2.2 (t2v, i2v, vace, ti2v 5B), HunyuanVideo, SD3 (MMDiT) and
     LTX-Video.  The builder checks that detection picked the expected class
     and config.
   * ``loaded_via == "model_config"``: for families where detection hardcodes
     full-size widths (Flux/Flux Fill/Kontext: hidden 3072; Chroma: 3072;
     Lumina 2: dim 2304; Qwen-Image: 24x128 heads; HiDream: everything;
     Cosmos-Predict2: num_blocks/heads only for 2048/5120 channels), we follow
     the same steps as ``load_diffusion_model_state_dict`` after detection:
     ``set_inference_dtype`` -> ``get_model`` -> ``load_model_weights`` ->
     ``ModelPatcher(model, load_device, offload_device)``.  The state dict
     still has the real key layout (``tests/host/test_tiny_models.py`` checks
     that ComfyUI's key-based detection maps it to the same config class).

Conditioning is ComfyUI's format ``[[cross_attn, {extra}]]`` with what the
text encoder / conditioning nodes of each family put there (pooled_output,
guidance, attention_mask, conditioning_llama3, reference_latents,
clip_vision_output, concat_latent_image/concat_mask, vace_frames, ...), with
tiny embedding widths matching the tiny model.

Families / variants (``FAMILIES``):

* ``flux``: ``dev`` (default, guidance embed, Flux class), ``schnell``
  (FluxSchnell, no guidance embed)
* ``flux_fill``: FluxInpaint (in_channels 96 = 16 latent + 16 image + 64 mask)
  with concat_latent_image / concat_mask in the cond
* ``flux_kontext``: Flux dev with ``reference_latents`` in the cond
* ``chroma``: Chroma (pooled_output None, Approximator modulation)
* ``hunyuan_video``: HunyuanVideo t2v (pooled_output 768, guidance embed)
* ``wan21``: ``t2v`` (default), ``i2v`` (WAN21_I2V: 36 in-channels concat
  latent + clip_vision_output), ``vace`` (WAN21_Vace with vace_frames/mask)
* ``wan22``: ``ti2v_5b`` (default; WAN22_T2V, 48-channel Wan22 latent),
  ``t2v_14b`` (two separately loaded WAN21_T2V experts, high noise / low noise;
  ``sample`` runs the two-stage KSamplerAdvanced split)
* ``ltxv``: LTXV (128-channel latent, long 0/1 attention_mask, frame_rate)
* ``sd3``: SD3 MMDiT (pooled_output, pos_embed)
* ``lumina2``: Lumina2 NextDiT (long 0/1 attention_mask -> num_tokens)
* ``qwen_image``: QwenImage
* ``hidream``: HiDream (MoE blocks, conditioning_llama3, pooled_output)
* ``cosmos_predict2``: CosmosT2IPredict2 (text-to-image: 1 latent frame by
  default; 5-D latent)
* ``hunyuan_video15``: HunyuanVideo15 (3 double blocks and no single block, as
  the real 54+0; i2v conditioning: start-image concat + SigLIP tokens)
* ``hunyuan_image21``: HunyuanImage21 (2-D patches, 64-channel latent)
* ``ltxav``: LTXAV, LTX-2 audio + video (latents are
  ``NestedTensor((video, audio))``; ``sample`` returns them packed)
* ``kandinsky5``: ``video`` (Kandinsky5, default), ``image`` (Kandinsky5Image,
  matched on the full-size width and built tiny: see ``_Spec.match_as``)
* ``wan21``/``wan22`` variants with their own inputs: ``wan21:fun_control``
  (control video in the concat latent), ``wan21:humo`` (audio + reference),
  ``wan22:s2v`` (audio, reference, motion frames, pose video),
  ``wan22:animate`` (pose video, reference image; the face video only on
  request, see ``wan_variant_inputs``)
* ``qwen_image``: ``edit_2509`` (reference latents on the positive only) and, from 0.29.0,
  ``edit_2511`` (``default_ref_method`` index_timestep_zero, reference latents on both)
* ``chroma_radiance``: ChromaRadiance (pixel space, 3 channels, patch 2, NeRF head)
* From 0.29.0 (``_Spec.requires``): ``flux2`` ``dev`` (default; Flux2 config, width 128 = one
  head of 128 as detection derives it, guidance embed), ``klein`` (no guidance embed),
  ``klein_edit`` (klein with reference latents at timestep 0 on both conds); ``z_image``
  (ZImage; width 256, the narrowest its 256-wide timestep embedding allows) and ``z_image:pixel``
  (ZImagePixelSpace); ``longcat_image`` (LongCatImage, 3584-wide text); ``ovis_image``
  (FluxSchnell config, SwiGLU MLPs and text RMSNorm)

How cond/uncond reach the model (ComfyUI batches them only when every cond
can be concatenated): one batched call per step for all families except
``flux_kontext`` and ``qwen_image:edit_2509`` (reference_latents only on the
positive, as the ReferenceLatent node gives) and ``lumina2``/``z_image``
(different ``num_tokens``), where
the positive and negative run as two separate calls per step.

Notes on sizes forced by detection: Wan detects ``num_heads = dim // 128`` and
keeps ``text_dim`` 4096, so tiny Wan is dim 128 / 1 head with 4096-wide text
embeddings; HunyuanVideo likewise (hidden 128, 1 head, pooled 768); LTX-Video
detects ``attention_head_dim = inner // 32`` with the default 32 heads, so tiny
LTXV is 32 heads of dim 2 with 4096-wide T5 captions; SD3 detects
``hidden = 64 * depth`` (2 blocks -> hidden 128, 2 heads).

A family only newer releases have names what it needs in ``_Spec.requires`` (a
``comfy.supported_models`` class, or "module:attr"); where the running ComfyUI lacks it the
family is left out of ``FAMILIES``, so its tests are not collected there (never skipped).

API summary: ``build(family, variant=None, dtype=torch.float32, seed=0)``,
``sample(tiny, steps=6, cfg=2.5, sampler="euler", scheduler="simple", seed=0,
batch=1, h=16, w=16, frames=None, denoise=1.0, model=None, positive=None,
negative=None, latent=None, callback=None, noise_mask=None)``,
``block_modules(diffusion_model, family=None, variant=None)``, ``build_vae(latent_channels=16, seed=0)``,
``family_ids()``, ``FAMILIES``, ``SPECS``, ``UNAVAILABLE``,
``random_state_dict(...)``; ``TinyModel`` fields: family, variant, patcher,
config_class, unet_config, loaded_via, video, latent_channels,
default_frames, dtype, seed, ctx_dim, ctx_tokens, state_dict, experts,
expert_split; properties name / model / diffusion_model; methods
latent(batch, h, w, frames), positive(...), negative(...), block_modules().
Latent sizes given to ``latent()``/``sample()`` are in LATENT units (h=16 means
16 latent rows); ``frames`` is the number of latent frames for video families.
"""

from __future__ import annotations

import copy
import hashlib
import math
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from comfy_env import import_comfy

# --------------------------------------------------------------------------
# family specs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    config_class: str
    unet_config: Dict[str, Any]
    detect: bool  # load through comfy.sd.load_diffusion_model_state_dict
    video: bool = False
    default_frames: int = 1
    ctx_dim: int = 64
    ctx_tokens: int = 8
    blocks: Tuple[str, ...] = ()
    # What the running ComfyUI must have for this model to exist there: a class of
    # ``comfy.supported_models`` ("Flux2"), or "module:attr.path" for a feature of an older class.
    # Specs whose requirement is missing are left out of FAMILIES (not collected, never skipped).
    requires: Optional[str] = None
    # unet_config keys a real checkpoint of this class is matched on, where no tiny width matches
    # (Kandinsky5Image: model_dim 2560); the class matched from them is built with the tiny config
    match_as: Optional[Dict[str, Any]] = None
    # what ComfyUI's key-based detection makes of the tiny layout when it is not config_class,
    # because detection recognises the model only at full width (Kandinsky5Image, Z-Image: dim
    # 3840), or ``tiny_generic.NOT_DETECTED`` where it recognises none (SeedVR2: only full depth).
    # Without ``match_as`` the builder then instantiates ``config_class`` directly.
    detected_as: Optional[str] = None
    # latent audio frames of audio-video models (LTX-2): latents are NestedTensor(video, audio)
    audio_frames: int = 0
    # submodules ComfyUI builds at a fixed full size whatever the config (HuMo's audio projection,
    # Animate's face motion encoder): not counted against the tiny size
    fixed_size: Tuple[str, ...] = ()
    # latent rows/columns per requested one, and the fewest: PixArt's position embedding needs more
    # than 32 (its base size, round((h + w) / 2 / 64) * 64 // patch, is 0 below that)
    latent_scale: int = 1
    latent_min: int = 0
    # full-size submodules the tiny conds never run (Anima's LLM adapter: the tiny prompt is its
    # output already): zero weights, cheap to build, and not counted against the tiny size
    idle: Tuple[str, ...] = ()
    # the config class fixes full-size widths in ``unet_extra_config`` (Ideogram 4): the tiny
    # config's values replace them
    over_extra: bool = False


_FLUX_BASE = dict(
    image_model="flux", in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=64,
    hidden_size=64, mlp_ratio=4.0, num_heads=2, depth=2, depth_single_blocks=2,
    axes_dim=[8, 12, 12], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True,
)

_WAN_BASE = dict(
    image_model="wan2.1", dim=128, out_dim=16, num_heads=1, ffn_dim=256, num_layers=2,
    patch_size=(1, 2, 2), freq_dim=256, window_size=(-1, -1), qk_norm=True,
    cross_attn_norm=True, eps=1e-6, in_dim=16, model_type="t2v",
)

SPECS: Dict[Tuple[str, Optional[str]], _Spec] = {
    ("flux", "dev"): _Spec("Flux", dict(_FLUX_BASE), False, blocks=("double_blocks", "single_blocks")),
    ("flux", "schnell"): _Spec("FluxSchnell", dict(_FLUX_BASE, guidance_embed=False), False,
                               blocks=("double_blocks", "single_blocks")),
    ("flux_fill", None): _Spec("FluxInpaint", dict(_FLUX_BASE, in_channels=96), False,
                               blocks=("double_blocks", "single_blocks")),
    ("flux_kontext", None): _Spec("Flux", dict(_FLUX_BASE), False, blocks=("double_blocks", "single_blocks")),
    ("chroma", None): _Spec("Chroma", dict(
        image_model="chroma", in_channels=64, out_channels=64, context_in_dim=64, hidden_size=64,
        mlp_ratio=4.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12], theta=10000,
        patch_size=2, qkv_bias=True, in_dim=64, out_dim=64, hidden_dim=128, n_layers=2,
    ), False, blocks=("double_blocks", "single_blocks")),
    ("hunyuan_video", None): _Spec("HunyuanVideo", dict(
        image_model="hunyuan_video", in_channels=16, patch_size=[1, 2, 2], out_channels=16,
        vec_in_dim=768, axes_dim=[16, 56, 56], meanflow=False, context_in_dim=64, hidden_size=128,
        mlp_ratio=4.0, num_heads=1, depth=2, depth_single_blocks=2, theta=256, qkv_bias=True,
        byt5=False, guidance_embed=True,
    ), True, video=True, default_frames=3, blocks=("double_blocks", "single_blocks")),
    # HunyuanVideo 1.5: 54 double blocks and no single block at full size
    ("hunyuan_video15", None): _Spec("HunyuanVideo15", dict(
        image_model="hunyuan_video", in_channels=65, patch_size=[1, 1, 1], out_channels=32, vec_in_dim=None,
        axes_dim=[16, 56, 56], meanflow=False, context_in_dim=64, hidden_size=128, mlp_ratio=4.0, num_heads=1,
        depth=3, depth_single_blocks=0, theta=256, qkv_bias=True, byt5=False, guidance_embed=False,
        use_cond_type_embedding=True, vision_in_dim=1152, meanflow_sum=True,
    ), True, video=True, default_frames=2, blocks=("double_blocks",), requires="HunyuanVideo15"),
    ("hunyuan_image21", None): _Spec("HunyuanImage21", dict(
        image_model="hunyuan_video", in_channels=64, patch_size=[1, 1], out_channels=64, vec_in_dim=None,
        axes_dim=[64, 64], meanflow=False, context_in_dim=64, hidden_size=128, mlp_ratio=4.0, num_heads=1,
        depth=2, depth_single_blocks=2, theta=256, qkv_bias=True, byt5=False, guidance_embed=True,
    ), True, blocks=("double_blocks", "single_blocks"), requires="HunyuanImage21"),
    ("wan21", "t2v"): _Spec("WAN21_T2V", dict(_WAN_BASE), True, video=True, default_frames=3, ctx_dim=4096,
                            blocks=("blocks",)),
    ("wan21", "fun_control"): _Spec("WAN21_FunControl2V", dict(_WAN_BASE, in_dim=48, model_type="i2v"), True,
                                    video=True, default_frames=3, ctx_dim=4096, blocks=("blocks",),
                                    requires="WAN21_FunControl2V"),
    ("wan21", "humo"): _Spec("WAN21_HuMo", dict(_WAN_BASE, model_type="humo"), True, video=True, default_frames=3,
                             ctx_dim=4096, blocks=("blocks",), requires="WAN21_HuMo", fixed_size=("audio_proj",)),
    # S2V injects the audio after blocks 0, 4, 8, ... of 40; here after both blocks, so that one
    # injection lands inside the block stack and one after its last block (config given whole:
    # detection would keep the 40-block injection list)
    ("wan22", "s2v"): _Spec("WAN22_S2V", dict(_WAN_BASE, model_type="s2v", audio_inject_layers=[0, 1]), False,
                            video=True, default_frames=3, ctx_dim=4096, blocks=("blocks",), requires="WAN22_S2V"),
    # 5 blocks: Animate fuses the face motion after every 5th block, with num_layers // 5 fusers
    ("wan22", "animate"): _Spec("WAN22_Animate", dict(_WAN_BASE, model_type="animate", in_dim=36, num_layers=5),
                                True, video=True, default_frames=3, ctx_dim=4096, blocks=("blocks",),
                                requires="WAN22_Animate", fixed_size=("motion_encoder", "face_encoder")),
    ("wan21", "i2v"): _Spec("WAN21_I2V", dict(_WAN_BASE, in_dim=36, model_type="i2v"), True, video=True,
                            default_frames=3, ctx_dim=4096, blocks=("blocks",)),
    ("wan21", "vace"): _Spec("WAN21_Vace", dict(_WAN_BASE, model_type="vace", vace_in_dim=96, vace_layers=2),
                             True, video=True, default_frames=3, ctx_dim=4096, blocks=("blocks",)),
    ("wan22", "ti2v_5b"): _Spec("WAN22_T2V", dict(_WAN_BASE, in_dim=48, out_dim=48), True, video=True,
                                default_frames=3, ctx_dim=4096, blocks=("blocks",)),
    ("wan22", "t2v_14b"): _Spec("WAN21_T2V", dict(_WAN_BASE), True, video=True, default_frames=3,
                                ctx_dim=4096, blocks=("blocks",)),
    ("ltxv", None): _Spec("LTXV", dict(
        image_model="ltxv", num_layers=2, attention_head_dim=2, cross_attention_dim=64,
    ), True, video=True, default_frames=2, blocks=("transformer_blocks",)),
    # LTX-2: detection reads only the video widths (the audio ones would stay 2048-wide), so the
    # config is given whole; 4 video and 4 audio heads of dim 16, tiny prompt connectors
    ("ltxav", None): _Spec("LTXAV", dict(
        image_model="ltxav", num_layers=2, attention_head_dim=16, num_attention_heads=4, cross_attention_dim=64,
        audio_attention_head_dim=16, audio_num_attention_heads=4, audio_cross_attention_dim=64, caption_channels=32,
        connector_attention_head_dim=4, connector_num_attention_heads=8, connector_num_layers=1,
    ), False, video=True, default_frames=2, ctx_dim=64, blocks=("transformer_blocks",), requires="LTXAV",
        audio_frames=6),
    ("kandinsky5", "video"): _Spec("Kandinsky5", dict(
        image_model="kandinsky5", model_dim=64, time_dim=32, ff_dim=128, visual_embed_dim=132, num_text_blocks=1,
        num_visual_blocks=2,
    ), True, video=True, default_frames=3, ctx_dim=3584, blocks=("visual_transformer_blocks",),
        requires="Kandinsky5"),
    ("kandinsky5", "image"): _Spec("Kandinsky5Image", dict(
        image_model="kandinsky5", model_dim=64, time_dim=32, ff_dim=128, visual_embed_dim=64, num_text_blocks=1,
        num_visual_blocks=2, rope_scale_factor=(1.0, 1.0, 1.0),
    ), False, ctx_dim=3584, blocks=("visual_transformer_blocks",), requires="Kandinsky5Image",
        match_as={"image_model": "kandinsky5", "model_dim": 2560, "visual_embed_dim": 64},
        detected_as="Kandinsky5"),
    ("sd3", None): _Spec("SD3", dict(
        in_channels=16, patch_size=2, out_channels=16, depth=2, input_size=None, adm_in_channels=64,
        context_embedder_config={"target": "torch.nn.Linear", "params": {"in_features": 64, "out_features": 128}},
        num_patches=1024, pos_embed_max_size=32, qk_norm="rms", pos_embed_scaling_factor=None,
        x_block_self_attn_layers=[],
    ), True, blocks=("joint_blocks",)),
    ("lumina2", None): _Spec("Lumina2", dict(
        image_model="lumina2", patch_size=2, in_channels=16, dim=64, cap_feat_dim=64, n_layers=2,
        n_refiner_layers=1, n_heads=2, n_kv_heads=1, qk_norm=True, axes_dims=[8, 12, 12], axes_lens=[300, 512, 512],
        multiple_of=16,
    ), False, ctx_tokens=24, blocks=("layers",)),
    ("qwen_image", None): _Spec("QwenImage", dict(
        image_model="qwen_image", in_channels=64, out_channels=16, num_layers=2, attention_head_dim=32,
        num_attention_heads=2, joint_attention_dim=64, axes_dims_rope=(8, 12, 12),
    ), False, blocks=("transformer_blocks",)),
    ("hidream", None): _Spec("HiDream", dict(
        image_model="hidream", attention_head_dim=32, axes_dims_rope=[16, 8, 8], caption_channels=[64, 64],
        max_resolution=[128, 128], in_channels=16, llama_layers=[0, 1, 2, 3], num_attention_heads=2,
        num_routed_experts=4, num_activated_experts=2, num_layers=2, num_single_layers=2, out_channels=16,
        patch_size=2, text_emb_dim=32,
    ), False, blocks=("double_stream_blocks", "single_stream_blocks")),
    ("cosmos_predict2", None): _Spec("CosmosT2IPredict2", dict(
        image_model="cosmos_predict2", max_img_h=240, max_img_w=240, max_frames=128, in_channels=16,
        out_channels=16, patch_spatial=2, patch_temporal=1, model_channels=64, concat_padding_mask=True,
        crossattn_emb_channels=64, pos_emb_cls="rope3d", pos_emb_learnable=True, pos_emb_interpolation="crop",
        min_fps=1, max_fps=30, use_adaln_lora=True, adaln_lora_dim=32, num_blocks=2, num_heads=2,
        extra_per_block_abs_pos_emb=False, rope_h_extrapolation_ratio=4.0, rope_w_extrapolation_ratio=4.0,
        rope_t_extrapolation_ratio=1.0, extra_h_extrapolation_ratio=1.0, extra_w_extrapolation_ratio=1.0,
        extra_t_extrapolation_ratio=1.0, rope_enable_fps_modulation=False,
    ), False, video=True, default_frames=1, blocks=("blocks",)),
}


_FLUX2_BASE = dict(  # what comfy/model_detection.py derives for a Flux.2 state dict, at width 128
    image_model="flux2", in_channels=128, out_channels=128, vec_in_dim=None, context_in_dim=64, hidden_size=128,
    mlp_ratio=3.0, num_heads=1, depth=2, depth_single_blocks=2, axes_dim=[32, 32, 32, 32], theta=2000,
    patch_size=1, qkv_bias=False, guidance_embed=True, txt_ids_dims=[3], global_modulation=True,
    mlp_silu_act=True, ops_bias=False, default_ref_method="index", ref_index_scale=10.0, yak_mlp=False,
    txt_norm=False,
)
# Z-Image's t_embedder emits 256 features that its adaLN reads as min(dim, 256): dim >= 256
_Z_IMAGE_BASE = dict(
    image_model="lumina2", patch_size=2, in_channels=16, dim=256, cap_feat_dim=64, n_layers=2, n_refiner_layers=1,
    n_heads=4, n_kv_heads=4, qk_norm=True, axes_dims=[16, 24, 24], axes_lens=[1536, 512, 512], rope_theta=256.0,
    ffn_dim_multiplier=1.0, multiple_of=16, z_image_modulation=True, time_scale=1000.0, pad_tokens_multiple=32,
)
_QWEN_BASE = dict(
    image_model="qwen_image", in_channels=64, out_channels=16, num_layers=2, attention_head_dim=32,
    num_attention_heads=2, joint_attention_dim=64, axes_dims_rope=(8, 12, 12),
)
_DOUBLE_SINGLE = ("double_blocks", "single_blocks")

SPECS.update({
    ("flux2", "dev"): _Spec("Flux2", dict(_FLUX2_BASE), True, blocks=_DOUBLE_SINGLE, requires="Flux2"),
    ("flux2", "klein"): _Spec("Flux2", dict(_FLUX2_BASE, guidance_embed=False), True, blocks=_DOUBLE_SINGLE,
                              requires="Flux2"),
    # reference latents whose tokens are modulated at timestep 0 (FluxKontextMultiReferenceLatentMethod)
    ("flux2", "klein_edit"): _Spec("Flux2", dict(_FLUX2_BASE, guidance_embed=False), True,
                                   blocks=_DOUBLE_SINGLE, requires="Flux2"),
    ("z_image", None): _Spec("ZImage", dict(_Z_IMAGE_BASE), False, ctx_tokens=17, blocks=("layers",),
                             requires="ZImage", detected_as="Lumina2"),
    ("z_image", "pixel"): _Spec("ZImagePixelSpace", dict(
        _Z_IMAGE_BASE, image_model="zimage_pixel", in_channels=3, decoder_in_channels=12, decoder_hidden_size=32,
        decoder_num_res_blocks=1, decoder_max_freqs=4,
    ), False, ctx_tokens=17, blocks=("layers",), requires="ZImagePixelSpace", detected_as="Lumina2"),
    ("qwen_image", "edit_2509"): _Spec("QwenImage", dict(_QWEN_BASE), False, blocks=("transformer_blocks",)),
    ("qwen_image", "edit_2511"): _Spec("QwenImage", dict(_QWEN_BASE, default_ref_method="index_timestep_zero"),
                                       False, blocks=("transformer_blocks",),
                                       requires="comfy.ldm.qwen_image.model:QwenImageTransformerBlock._apply_gate"),
    ("chroma_radiance", None): _Spec("ChromaRadiance", dict(
        image_model="chroma_radiance", in_channels=3, out_channels=3, context_in_dim=64, hidden_size=64,
        mlp_ratio=4.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12], theta=10000,
        patch_size=2, qkv_bias=True, in_dim=64, out_dim=64, hidden_dim=128, n_layers=2, nerf_hidden_size=16,
        nerf_mlp_ratio=2, nerf_depth=2, nerf_max_freqs=4, nerf_tile_size=512, nerf_final_head_type="conv",
        nerf_embedder_dtype=None,
    ), False, blocks=_DOUBLE_SINGLE, requires="ChromaRadiance"),
    ("longcat_image", None): _Spec("LongCatImage", dict(
        _FLUX_BASE, guidance_embed=False, vec_in_dim=None, context_in_dim=3584, txt_ids_dims=[1, 2],
    ), False, ctx_dim=3584, blocks=_DOUBLE_SINGLE, requires="LongCatImage"),
    # Ovis-Image: Flux blocks with SwiGLU ("yak") MLPs and an RMSNorm on the text input; no guidance
    # embedding, so its keys match the FluxSchnell config class
    ("ovis_image", None): _Spec("FluxSchnell", dict(
        _FLUX_BASE, guidance_embed=False, vec_in_dim=None, yak_mlp=True, txt_norm=True, txt_ids_dims=[1, 2],
    ), False, blocks=_DOUBLE_SINGLE, requires="comfy.ldm.flux.model:FluxParams.yak_mlp"),
})

# The 2026 image families (ComfyUI 0.29.0 and later; the same model code in 0.33.0). Detection
# fixes full-size widths for Ernie-Image, Boogu, Ideogram 4 (and Mage-Flow at full width only),
# so those are given whole; Lens, JoyImage and Krea 2 load through detection.
SPECS.update({
    ("mage_flow", None): _Spec("MageFlow", dict(_QWEN_BASE, image_model="mage_flow", in_channels=128,
                                                out_channels=128), False, blocks=("transformer_blocks",),
                               requires="MageFlow", detected_as="QwenImage"),
    # 2 text-encoder layers of 32 features; detection reads one head per 64 features
    ("lens", None): _Spec("Lens", dict(
        image_model="lens", in_channels=128, out_channels=32, num_layers=2, num_attention_heads=1, enc_hidden_dim=32,
        multi_layer_encoder_feature=True, selected_layer_index=(0, 1),
    ), True, blocks=("transformer_blocks",), requires="Lens"),
    # the fixed rope_dim_list (16, 56, 56) makes heads 128 wide; latents are 5-D (one frame)
    ("joyimage", None): _Spec("JoyImage", dict(
        image_model="joyimage", in_channels=16, hidden_size=128, patch_size=[1, 2, 2], num_layers=2,
        num_attention_heads=1, text_dim=4096,
    ), True, video=True, ctx_dim=4096, blocks=("double_blocks",), requires="JoyImage"),
    # detection reads 128-wide heads; the text fusion keeps its 20 heads (not detected)
    ("krea2", None): _Spec("Krea2", dict(
        image_model="krea2", features=128, channels=16, patch=2, layers=2, heads=1, kvheads=1, txtlayers=2, txtdim=40,
    ), True, ctx_dim=80, blocks=("blocks",), requires="Krea2"),
    ("ideogram4", None): _Spec("Ideogram4", dict(
        image_model="ideogram4", in_channels=128, num_layers=2, num_attention_heads=2, attention_head_dim=32,
        intermediate_size=128, adaln_dim=32, llm_features_dim=64,
    ), False, blocks=("layers",), requires="Ideogram4", over_extra=True),
    ("ernie_image", None): _Spec("ErnieImage", dict(
        image_model="ernie", hidden_size=64, num_attention_heads=2, num_layers=2, ffn_hidden_size=128, in_channels=128,
        out_channels=128, text_in_dim=32, rope_axes_dim=(8, 12, 12),
    ), False, ctx_dim=32, blocks=("layers",), requires="ErnieImage"),
    ("boogu", None): _Spec("Boogu", dict(
        image_model="boogu", hidden_size=64, num_layers=2, num_double_stream_layers=2, num_refiner_layers=1,
        num_attention_heads=2, num_kv_heads=1, multiple_of=16, axes_dim_rope=(8, 12, 12), axes_lens=(300, 512, 512),
        instruction_feat_dim=64,
    ), False, blocks=("double_stream_layers", "single_stream_layers"), requires="Boogu"),
    ("anima", None): _Spec("Anima", dict(SPECS[("cosmos_predict2", None)].unet_config, image_model="anima"), False,
                           video=True, blocks=("blocks",), requires="Anima", idle=("llm_adapter",)),
})

# New in ComfyUI 0.30-0.33
SPECS.update({
    # MiniMax-H3: packed rows of batch size 1; latents NestedTensor(video 24 ch, audio 32x2 per
    # frame), made from a 32-channel empty latent by the latent format. Heads of 32 features, of
    # which 24 are rotated (3 axes x 4 frequencies x 2)
    ("minimax_h3", None): _Spec("MiniMaxH3", dict(
        image_model="minimax_h3", num_layers=2, token_refiner_num_layers=1, hidden_size=64, latents_dim=24,
        audio_latents_dim=32, attention_head_dim=32, num_attention_heads=2, ffn_hidden_size=128, text_dim=64,
        timestep_input_dim=32, time_embed_hidden_size=64, time_embed_dim=32, rope_inv_freq_len=4,
    ), True, video=True, default_frames=2, blocks=("blocks",), requires="MiniMaxH3"),
    # Animate 2: an i2v-shaped checkpoint (detection sees WAN21_I2V) with a pose branch
    ("wan22", "animate2"): _Spec("WAN_Animate2", dict(_WAN_BASE, model_type="animate2", in_dim=36), False,
                                 video=True, default_frames=3, ctx_dim=4096, blocks=("blocks",),
                                 requires="WAN_Animate2", detected_as="WAN21_I2V"),
})

from tiny_generic import GENERIC_SPECS, NOT_DETECTED, REFUSED_SPECS, generic_cond  # noqa: E402, F401  (the generic route's families)

SPECS.update({k: _Spec(**v) for k, v in GENERIC_SPECS.items()})

DEFAULT_VARIANT = {"flux": "dev", "wan21": "t2v", "wan22": "ti2v_5b", "kandinsky5": "video", "flux2": "dev",
                   "pixart": "alpha"}


def _release_has(requirement: Optional[str]) -> bool:
    """Whether the running ComfyUI has ``requirement`` (see ``_Spec.requires``); False when ComfyUI
    cannot be imported (then every host test skips anyway, saying why)."""
    if requirement is None:
        return True
    import importlib
    try:
        import_comfy()
        module, _, path = requirement.rpartition(":")
        obj = importlib.import_module(module or "comfy.supported_models")
        for name in path.split("."):
            obj = getattr(obj, name)
        return True
    except Exception:
        return False


# (family, variant) pairs, variant None for families without variants: the ones this ComfyUI has
FAMILIES: List[Tuple[str, Optional[str]]] = [k for k, spec in SPECS.items() if _release_has(spec.requires)]

# tiny models the generic route refuses at the first run (test_generic.py): built on request, never
# in the family tests; the ones this ComfyUI has
REFUSED: List[Tuple[str, Optional[str]]] = [k for k, v in REFUSED_SPECS.items() if _release_has(v.get("requires"))]
SPECS.update({k: _Spec(**v) for k, v in REFUSED_SPECS.items()})

# Families that cannot be built in the current snapshot: (family, variant) -> reason.
UNAVAILABLE: Dict[Tuple[str, Optional[str]], str] = {}


# families sampled by two separately loaded expert models (KSamplerAdvanced split)
TWO_EXPERTS = {("wan22", "t2v_14b")}


def family_ids() -> List[str]:
    return [f if v is None else f"{f}:{v}" for f, v in FAMILIES]


def single_model_ids() -> List[str]:
    """``family_ids()`` without the two-expert families (for tests that need one model)."""
    return [f if v is None else f"{f}:{v}" for f, v in FAMILIES if (f, v) not in TWO_EXPERTS]


def _resolve(family: str, variant: Optional[str]) -> Tuple[str, Optional[str]]:
    if ":" in family and variant is None:
        family, variant = family.split(":", 1)
    if variant is None:
        variant = DEFAULT_VARIANT.get(family)
    key = (family, variant)
    if key not in SPECS:
        raise KeyError(f"unknown tiny model family/variant {family!r}/{variant!r}; known: {family_ids()}")
    if key not in FAMILIES and key not in REFUSED:
        raise KeyError(f"tiny model {family!r}/{variant!r} needs {SPECS[key].requires}, which this ComfyUI "
                       "does not have")
    return key


# --------------------------------------------------------------------------
# TinyModel
# --------------------------------------------------------------------------


@dataclass
class TinyModel:
    family: str
    variant: Optional[str]
    patcher: Any  # comfy.model_patcher.ModelPatcher
    config_class: str
    unet_config: Dict[str, Any]
    loaded_via: str  # "load_diffusion_model_state_dict" or "model_config"
    video: bool
    latent_channels: int
    default_frames: int
    dtype: torch.dtype
    seed: int
    ctx_dim: int
    ctx_tokens: int
    state_dict: Dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    # extra expert patchers (Wan 2.2 14B: [high_noise, low_noise]); empty otherwise
    experts: List[Any] = field(default_factory=list)
    # fraction of the steps run by the first expert (Wan 2.2 14B)
    expert_split: float = 0.5
    # latent audio frames of audio-video models (LTX-2), 0 otherwise
    audio_frames: int = 0
    latent_scale: int = 1  # see _Spec.latent_scale
    latent_min: int = 0

    @property
    def name(self) -> str:
        return self.family if self.variant is None else f"{self.family}:{self.variant}"

    @property
    def model(self):
        """The ``comfy.model_base.BaseModel`` subclass."""
        return self.patcher.model

    @property
    def diffusion_model(self):
        return self.patcher.model.diffusion_model

    def block_modules(self, diffusion_model=None) -> List[torch.nn.Module]:
        return block_modules(diffusion_model if diffusion_model is not None else self.diffusion_model,
                             family=self.family, variant=self.variant)

    # ---- latents ----------------------------------------------------------
    def latent(self, batch: int = 1, h: int = 16, w: int = 16, frames: Optional[int] = None) -> torch.Tensor:
        """An empty (zeros) latent like the Empty*Latent nodes give, already
        passed through ``comfy.sample.fix_empty_latent_channels`` (so it has
        exactly the shape that gets sampled).  h, w in latent pixels."""
        c = import_comfy()
        h, w = (max(s * self.latent_scale, self.latent_min) for s in (h, w))
        if self.video:
            f = self.default_frames if frames is None else frames
            lat = torch.zeros([batch, self.latent_channels, f, h, w])
        else:
            lat = torch.zeros([batch, 4, h, w])  # EmptyLatentImage: 4 channels, fixed below
        if self.audio_frames:
            # LTXVEmptyLatentAudio (8 channels x 16 frequency bins) joined by LTXVConcatAVLatent
            import comfy.nested_tensor
            audio = torch.zeros([batch, 8, self.audio_frames, 16])
            return comfy.nested_tensor.NestedTensor((lat, audio))
        return c.sample.fix_empty_latent_channels(self.patcher, lat)

    # ---- conditioning -----------------------------------------------------
    def positive(self, batch: int = 1, h: int = 16, w: int = 16, frames: Optional[int] = None):
        return _cond(self, True, batch, h, w, self.default_frames if frames is None else frames)

    def negative(self, batch: int = 1, h: int = 16, w: int = 16, frames: Optional[int] = None):
        return _cond(self, False, batch, h, w, self.default_frames if frames is None else frames)


def block_modules(diffusion_model, family: Optional[str] = None, variant: Optional[str] = None) -> List[torch.nn.Module]:
    """Ordered list of the main transformer blocks of a tiny (or real) model.

    Double-stream blocks come before single-stream blocks (the order they run).
    Refiner / VACE side blocks are not included."""
    if family is not None:
        names = SPECS[_resolve(family, variant)].blocks
    else:
        names = ()
        for cand in (("double_blocks", "single_blocks"), ("double_stream_blocks", "single_stream_blocks"),
                     ("double_stream_layers", "single_stream_layers"), ("joint_blocks",), ("transformer_blocks",),
                     ("visual_transformer_blocks",), ("layers",), ("blocks",), ("double_blocks",),
                     ("single_layers",), ("language_model.layers",)):
            if all(_attr(diffusion_model, n) is not None for n in cand):
                names = cand
                break
    out: List[torch.nn.Module] = []
    for n in names:
        out.extend(list(_attr(diffusion_model, n)))
    return out


def _attr(module, path: str):
    """``module``'s attribute at a dotted ``path`` (HiDream-O1: "language_model.layers"), None if absent."""
    for name in path.split("."):
        module = getattr(module, name, None)
    return module


# --------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------


def _seed_for(*parts) -> int:
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:6], "little")


def random_state_dict(template: Dict[str, torch.Tensor], param_names, seed: int) -> Dict[str, torch.Tensor]:
    """Seeded random weights with the template's keys/shapes/dtypes.

    Matrices/convs: N(0, 1/fan_in); 1-D ``*.weight``/``*.scale`` (norm gains):
    1 + N(0, 0.1); biases and other 1-D params: N(0, 0.02).  Floating-point
    persistent buffers are checkpoint contents too (SD3's ``pos_embed`` is
    created with ``torch.empty`` and only ever filled by the checkpoint), so
    they get N(0, 0.5), the magnitude of the sin/cos tables they hold.
    Integer tensors are kept as the model computed them."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k in sorted(template.keys()):
        t = template[k]
        if not t.is_floating_point():
            out[k] = t.detach().clone()
            continue
        shape = tuple(t.shape)
        if k not in param_names:
            v = 0.5 * torch.randn(shape, generator=g)
        elif len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            v = torch.randn(shape, generator=g) / math.sqrt(max(fan_in, 1))
        elif len(shape) == 1 and (k.endswith(".weight") or k.endswith(".scale")):
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            v = 0.02 * torch.randn(shape, generator=g)
        out[k] = v.to(t.dtype)
    return out


# --------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------


# The params dataclass each family's diffusion model builds from its unet_config. Releases add
# fields to these (0.29.0: Flux/Chroma ``txt_ids_dims``, HunyuanVideo ``use_cond_type_embedding``,
# ``vision_in_dim``, ``meanflow_sum``); the tiny configs are completed from the dataclass the
# running release has, never pinned to one release's signature.
_PARAMS_CLASS = {
    "flux": ("comfy.ldm.flux.model", "FluxParams"),
    "flux_fill": ("comfy.ldm.flux.model", "FluxParams"),
    "flux_kontext": ("comfy.ldm.flux.model", "FluxParams"),
    "chroma": ("comfy.ldm.chroma.model", "ChromaParams"),
    "hunyuan_video": ("comfy.ldm.hunyuan_video.model", "HunyuanVideoParams"),
    "hunyuan_video15": ("comfy.ldm.hunyuan_video.model", "HunyuanVideoParams"),
    "hunyuan_image21": ("comfy.ldm.hunyuan_video.model", "HunyuanVideoParams"),
    "flux2": ("comfy.ldm.flux.model", "FluxParams"),
    "longcat_image": ("comfy.ldm.flux.model", "FluxParams"),
    "ovis_image": ("comfy.ldm.flux.model", "FluxParams"),
    "chroma_radiance": ("comfy.ldm.chroma_radiance.model", "ChromaRadianceParams"),
}
# What ComfyUI's detection (``comfy/model_detection.py``) puts in a base model's unet_config for
# fields that only newer releases have: the value that keeps the release's original behaviour.
_BASE_MODEL_FIELD_VALUES = {
    "txt_ids_dims": [],
    "use_cond_type_embedding": False,
    "vision_in_dim": None,
    "meanflow_sum": False,
    "vec_in_dim": None,
    "use_x0": False,
    "use_sequential_txt_ids": False,
}


def release_unet_config(family: str, unet_config: Dict[str, Any]) -> Dict[str, Any]:
    """``unet_config`` completed with the required fields of this release's params dataclass.

    Raises ``RuntimeError`` naming the field when the release requires one whose base-model value
    is not known (add it to ``_BASE_MODEL_FIELD_VALUES`` from ``comfy/model_detection.py``)."""
    import dataclasses
    import importlib

    out = dict(unet_config)
    where = _PARAMS_CLASS.get(family)
    if where is None:
        return out
    cls = getattr(importlib.import_module(where[0]), where[1])
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if not required or f.name in out:
            continue
        if f.name not in _BASE_MODEL_FIELD_VALUES:
            raise RuntimeError(f"{where[0]}.{where[1]} in this ComfyUI requires {f.name!r}, which the tiny "
                               f"{family} config lacks: add its base-model value (see comfy/model_detection.py)")
        out[f.name] = copy.deepcopy(_BASE_MODEL_FIELD_VALUES[f.name])
    return out


def _match_config(c, unet_config, expected: str, state_dict=None, match_as=None):
    mc = c.comfy_model_detection.model_config_from_unet_config(match_as or unet_config, state_dict)
    if mc is None or type(mc).__name__ != expected:
        raise RuntimeError(f"ComfyUI matched {type(mc).__name__ if mc else None} for tiny config, expected {expected}")
    return type(mc)(unet_config) if match_as else mc


def _load_one(c, spec: _Spec, family, variant, dtype, seed):
    mm = c.model_management
    load_device = mm.get_torch_device()
    offload_device = mm.unet_offload_device()

    unet_config = release_unet_config(family, spec.unet_config)
    if spec.detected_as is not None and spec.match_as is None:
        model_config = getattr(c.comfy_supported_models, spec.config_class)(unet_config)
    else:
        model_config = _match_config(c, unet_config, spec.config_class, match_as=spec.match_as)
    if spec.over_extra:
        model_config.unet_config.update(unet_config)
    manual_cast = mm.unet_manual_cast(dtype, load_device, model_config.supported_inference_dtypes)
    model_config.set_inference_dtype(dtype, manual_cast)
    model = model_config.get_model({}, "")
    dm = model.diffusion_model
    params = {k for k, _ in dm.named_parameters()}
    template = dm.state_dict()
    idle = {k for k in template if k.split(".")[0] in spec.idle}
    sd = random_state_dict({k: v for k, v in template.items() if k not in idle}, params,
                           _seed_for(family, variant, seed))
    sd.update({k: torch.zeros((), dtype=template[k].dtype).expand(template[k].shape) for k in idle})

    if spec.detect:
        del model
        patcher = c.sd.load_diffusion_model_state_dict(dict(sd), model_options={"dtype": dtype})
        if patcher is None:
            raise RuntimeError(f"comfy.sd.load_diffusion_model_state_dict could not detect tiny {family}")
        got = type(patcher.model.model_config).__name__
        if got != spec.config_class:
            raise RuntimeError(f"detection picked {got} for tiny {family}/{variant}, expected {spec.config_class}")
        det = patcher.model.model_config.unet_config
        for k, v in release_unet_config(family, spec.unet_config).items():
            if k in det and det[k] != v and not (isinstance(v, (list, tuple)) and list(det[k]) == list(v)):
                raise RuntimeError(f"detected {k}={det[k]!r} for tiny {family}/{variant}, expected {v!r}")
        loaded_via = "load_diffusion_model_state_dict"
    else:
        model = model.to(offload_device)
        model.load_model_weights(dict(sd), "")
        patcher = c.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)
        loaded_via = "model_config"
    return patcher, sd, loaded_via


def build(family: str, variant: Optional[str] = None, dtype: torch.dtype = torch.float32, seed: int = 0,
          unet_overrides: Optional[Dict[str, Any]] = None) -> TinyModel:
    """Build a tiny random-weight model of ``family`` (see ``FAMILIES``); ``unet_overrides``
    changes its unet config (e.g. more attention heads for sequence-parallel tests)."""
    c = import_comfy()
    family, variant = _resolve(family, variant)
    if (family, variant) in UNAVAILABLE:
        raise RuntimeError(UNAVAILABLE[(family, variant)])
    spec = SPECS[(family, variant)]
    if unet_overrides:
        spec = dataclasses.replace(spec, unet_config=dict(spec.unet_config, **unet_overrides))
    if not _release_has(spec.requires):
        raise RuntimeError(f"this ComfyUI ({c.version}) has no comfy.supported_models.{spec.requires}")
    with torch.random.fork_rng(devices=[]):
        patcher, sd, loaded_via = _load_one(c, spec, family, variant, dtype, seed)
        experts = []
        if (family, variant) in TWO_EXPERTS:
            low, _, _ = _load_one(c, spec, family, variant + "_low_noise", dtype, seed)
            experts = [patcher, low]
    lf = patcher.get_model_object("latent_format")
    return TinyModel(
        family=family, variant=variant, patcher=patcher, config_class=spec.config_class,
        unet_config=dict(patcher.model.model_config.unet_config), loaded_via=loaded_via, video=spec.video,
        latent_channels=lf.latent_channels, default_frames=spec.default_frames, dtype=dtype, seed=seed,
        ctx_dim=spec.ctx_dim, ctx_tokens=spec.ctx_tokens, state_dict=sd, experts=experts,
        audio_frames=spec.audio_frames, latent_scale=spec.latent_scale,
        latent_min=spec.latent_min,
    )


def build_vae(latent_channels: int = 16, seed: int = 0):
    """A tiny random-weight VAE through ComfyUI's VAE loader path (``comfy.sd.VAE(sd=...)``, what
    ``VAELoader`` calls): the real TAESD architecture (``comfy.taesd.taesd.TAESD``, detected from
    its ``taesd_decoder.*`` keys), 8x upscaling, ``latent_channels`` channels (16: Flux, SD3)."""
    c = import_comfy()
    import comfy.taesd.taesd as taesd

    with torch.random.fork_rng(devices=[]):
        template = taesd.TAESD(latent_channels=latent_channels)
        params = {k for k, _ in template.named_parameters()} - {"vae_scale", "vae_shift"}
        sd = random_state_dict(template.state_dict(), params, _seed_for("taesd", latent_channels, seed))
    sd["vae_scale"], sd["vae_shift"] = torch.tensor(1.0), torch.tensor(0.0)  # TAESD's own defaults
    vae = c.sd.VAE(sd=sd)
    if type(vae.first_stage_model).__name__ != "TAESD" or vae.latent_channels != latent_channels:
        raise RuntimeError(f"comfy.sd.VAE loaded {type(vae.first_stage_model).__name__} with "
                           f"{vae.latent_channels} channels for a tiny TAESD of {latent_channels}")
    return vae


# --------------------------------------------------------------------------
# conditioning
# --------------------------------------------------------------------------


def _start_image_inputs(g: torch.Generator, batch: int, channels: int, mask_channels: int, frames: int, h: int,
                        w: int, cv_field: str, cv_tokens: int, cv_width: int) -> dict:
    """The conds an image-to-video node adds: ``concat_latent_image`` [batch, channels, frames, h, w]
    whose first frame is the (random) encoded start image and zeros after, ``concat_mask``
    [1, mask_channels, frames, h, w] that is 0 on that frame and 1 after, and a CLIP-vision output
    with ``cv_field`` [batch, cv_tokens, cv_width]; random draws from ``g`` in that order."""
    img = torch.zeros([batch, channels, frames, h, w])
    img[:, :, :1] = torch.randn([batch, channels, 1, h, w], generator=g)
    mask = torch.ones([1, mask_channels, frames, h, w])
    mask[:, :, :1] = 0.0
    cvo = import_comfy().comfy_clip_vision.Output()
    setattr(cvo, cv_field, torch.randn([batch, cv_tokens, cv_width], generator=g))
    return {"concat_latent_image": img, "concat_mask": mask, "clip_vision_output": cvo}


def _cond(tiny: TinyModel, positive: bool, batch: int, h: int, w: int, frames: int):
    g = torch.Generator().manual_seed(_seed_for(tiny.family, tiny.variant, tiny.seed, "pos" if positive else "neg"))

    def rn(*shape, scale=1.0):
        return torch.randn(shape, generator=g) * scale

    fam, var = tiny.family, tiny.variant
    L, D = tiny.ctx_tokens, tiny.ctx_dim
    extra: Dict[str, Any] = {}
    ctx = rn(batch, L, D)

    if fam in ("flux", "flux_fill", "flux_kontext"):
        extra["pooled_output"] = rn(batch, tiny.unet_config["vec_in_dim"])
        if tiny.unet_config.get("guidance_embed", False):
            extra["guidance"] = 3.5  # FluxGuidance node default
        if fam == "flux_fill":
            # InpaintModelConditioning: both positive and negative get the same concat inputs
            g2 = torch.Generator().manual_seed(_seed_for(fam, tiny.seed, "concat"))
            extra["concat_latent_image"] = torch.randn([batch, tiny.latent_channels, h, w], generator=g2)
            mask = torch.zeros([batch, 1, h * 8, w * 8])
            mask[:, :, h * 2: h * 6, w * 2: w * 6] = 1.0
            extra["concat_mask"] = mask
        if fam == "flux_kontext" and positive:
            # ReferenceLatent node: list of (VAE-encoded) reference latents
            g2 = torch.Generator().manual_seed(_seed_for(fam, tiny.seed, "ref"))
            extra["reference_latents"] = [torch.randn([1, tiny.latent_channels, h, w], generator=g2)]
    elif fam == "chroma":
        extra["pooled_output"] = None
    elif fam == "hunyuan_video":
        extra["pooled_output"] = rn(batch, 768)
        extra["guidance"] = 6.0
    elif fam == "hunyuan_video15":
        # HunyuanVideo15ImageToVideo: start-image latent + mask and the SigLIP image tokens (which
        # the model puts in front of the text tokens), on both conds
        extra["pooled_output"] = None
        g2 = torch.Generator().manual_seed(_seed_for(fam, tiny.seed, "i2v"))
        extra.update(_start_image_inputs(g2, batch, 32, 1, frames, h, w, "last_hidden_state", 5, 1152))
    elif fam == "hunyuan_image21":
        extra["guidance"] = 3.5
    elif fam == "kandinsky5":
        extra["pooled_output"] = rn(batch, 768)  # CLIP-L pooled, the model's in_text_dim2
    elif fam == "ltxav":
        # Gemma prompt embeddings as LTX-2's connectors output them: video and audio halves
        ctx = rn(batch, L, 2 * tiny.unet_config["caption_channels"])
        m = torch.zeros([batch, L], dtype=torch.long)
        m[:, : (7 if positive else 4)] = 1
        extra["attention_mask"] = m
        extra["frame_rate"] = 25.0
    elif fam in ("wan21", "wan22"):
        if var == "i2v":
            # WanImageToVideo: concat latent (VAE-encoded start image + zeros), 4-channel mask, clip vision
            # (WanImageToVideo reshapes the pixel-frame mask to 4 channels per latent frame)
            g2 = torch.Generator().manual_seed(_seed_for(fam, var, tiny.seed, "concat"))
            extra.update(_start_image_inputs(g2, batch, 16, 4, frames, h, w, "penultimate_hidden_states", 257, 1280))
        if var in ("fun_control", "s2v", "humo", "animate", "animate2"):
            extra.update(wan_variant_inputs(tiny, var, positive, batch, h, w, frames))
        if var == "vace":
            # WanVaceToVideo: control video latent (inactive+reactive, 32 ch) and 64-ch mask
            g2 = torch.Generator().manual_seed(_seed_for(fam, var, tiny.seed, "vace"))
            extra["vace_frames"] = [torch.randn([batch, 32, frames, h, w], generator=g2)]
            extra["vace_mask"] = [torch.ones([batch, 64, frames, h, w])]
            extra["vace_strength"] = [1.0]
    elif fam == "ltxv":
        # T5 with a long, mostly-padded 0/1 mask (LTXV pads to 128 tokens)
        L = 32
        ctx = rn(batch, L, tiny.unet_config.get("caption_channels", 4096))
        m = torch.zeros([batch, L], dtype=torch.long)
        m[:, : (7 if positive else 4)] = 1
        extra["attention_mask"] = m
        extra["frame_rate"] = 25.0
    elif fam == "sd3":
        extra["pooled_output"] = rn(batch, tiny.unet_config["adm_in_channels"])
    elif fam == "lumina2":
        # Gemma-2 output padded to the batch's longest prompt
        m = torch.zeros([batch, L], dtype=torch.long)
        m[:, : (17 if positive else 9)] = 1
        extra["attention_mask"] = m
    elif fam == "qwen_image":
        if var in ("edit_2509", "edit_2511"):
            # TextEncodeQwenImageEditPlus with a VAE: reference latents of the input image(s); 2509
            # gets them on the positive only (cond and uncond then run as separate calls), 2511 on
            # both, as its template encodes the negative with the image too (one batched call)
            if positive or var == "edit_2511":
                extra["reference_latents"] = [_ref_latent(tiny, 1, h, w)]
    elif fam == "flux2":
        if tiny.unet_config.get("guidance_embed", False):
            extra["guidance"] = 4.0  # FluxGuidance in the Flux.2 dev template
        if var == "klein_edit":
            # ReferenceLatent on both, then FluxKontextMultiReferenceLatentMethod(index_timestep_zero)
            extra["reference_latents"] = [_ref_latent(tiny, 1, h, w)]
            extra["reference_latents_method"] = "index_timestep_zero"
    elif fam == "z_image":
        # Qwen3-4B hidden states, unpadded: cond and uncond differ in length (never batched)
        L = 17 if positive else 9
        ctx = rn(batch, L, D)
        extra["attention_mask"] = torch.ones([batch, L], dtype=torch.long)
    elif fam == "chroma_radiance":
        extra["pooled_output"] = None
    elif fam == "hidream":
        uc = tiny.unet_config
        extra["pooled_output"] = rn(batch, uc["text_emb_dim"])
        n_llama = max(uc["llama_layers"]) + 1
        extra["conditioning_llama3"] = rn(batch, n_llama, L, uc["caption_channels"][1])
        ctx = rn(batch, L, uc["caption_channels"][0])
    elif fam == "cosmos_predict2":
        pass
    elif fam == "boogu":
        extra["attention_mask"] = torch.ones([batch, L], dtype=torch.long)  # OmniGen2's num_tokens
    elif any(f == fam for f, _ in list(GENERIC_SPECS) + list(REFUSED_SPECS)):
        ctx, extra = generic_cond(tiny, positive, batch, h, w, frames, rn)
    return [[ctx, extra]]


def wan_variant_inputs(tiny: TinyModel, var: str, positive: bool, batch: int, h: int, w: int, frames: int,
                        face: bool = False, salt: str = "inputs", pose: bool = False) -> Dict[str, Any]:
    """The extra inputs the Wan 2.2 variants' conditioning nodes set (comfy_extras/nodes_wan.py),
    random where they carry an encoded image, video or sound (``salt`` draws another set). ``face``:
    Animate's face video (512x512 frames through a full-size motion encoder: seconds per evaluation
    on a CPU); ``pose``: Animate 2's pose video."""
    g = torch.Generator().manual_seed(_seed_for(tiny.family, var, tiny.seed, salt))
    rn = lambda *shape: torch.randn(shape, generator=g)  # noqa: E731
    if var == "fun_control":
        # WanFunControlToVideo: control video latent in the first 16 channels, start image after
        return {"concat_latent_image": rn(batch, 32, frames, h, w)}
    if var == "s2v":
        # WanSoundImageToVideo: wav2vec layers per video frame (negative: silence), reference image,
        # 19 motion frames, pose video
        audio = rn(batch, 25, 1024, 4 * frames)
        return {"audio_embed": audio if positive else audio * 0.0, "reference_latents": [rn(1, 16, 1, h, w)],
                "reference_motion": rn(batch, 16, 19, h, w), "control_video": rn(batch, 16, frames, h, w)}
    if var == "humo":
        # WanHuMoImageToVideo: whisper features (8 windows x 5 blocks x 1280) per latent frame
        # (negative: silence), reference image (negative: zeros)
        audio, ref = rn(batch, frames, 8, 5, 1280), rn(1, 16, 1, h, w)
        return {"audio_embed": audio if positive else audio * 0.0,
                "reference_latents": [ref if positive else ref * 0.0]}
    if var == "animate":
        # WanAnimateToVideo: reference image latent + mask, pose video, CLIP vision of the reference
        img = torch.zeros([batch, 16, frames, h, w])
        img[:, :, :1] = rn(batch, 16, 1, h, w)
        cvo = import_comfy().comfy_clip_vision.Output()
        cvo.penultimate_hidden_states = rn(batch, 257, 1280)
        out = {"concat_latent_image": img, "concat_mask": torch.zeros([1, 4, frames, h, w]),
               "clip_vision_output": cvo, "pose_video_latent": rn(batch, 16, frames - 1, h, w)}
        if face:
            fv = torch.rand([batch, 3, 1, 512, 512], generator=g) * 2 - 1
            out["face_video_pixels"] = fv if positive else fv * 0.0 - 1.0
        return out
    if var == "animate2":
        # WanAnimate2ToVideo: reference image latent then the grey video's, known-mask on the
        # reference slot, CLIP vision of the reference; the pose video (one latent frame fewer, on
        # both) only on request (``pose``): its branch runs the blocks' layers beside the counted
        # generation runs, as the node's pose window leaves it out of the steps outside it
        img = rn(batch, 16, frames, h, w)
        mask = torch.ones([1, 1, frames, h, w])
        mask[:, :, :1] = 0.0
        cvo = import_comfy().comfy_clip_vision.Output()
        cvo.penultimate_hidden_states = rn(batch, 257, 1280)
        out = {"concat_latent_image": img, "concat_mask": mask, "clip_vision_output": cvo}
        if pose:
            out["pose_video_latent"] = rn(batch, 16, frames - 1, h, w)
        return out
    raise KeyError(var)


def _ref_latent(tiny: TinyModel, batch: int, h: int, w: int) -> torch.Tensor:
    """A VAE-encoded reference image (what ReferenceLatent / TextEncodeQwenImageEditPlus attach),
    the same for positive and negative."""
    g = torch.Generator().manual_seed(_seed_for(tiny.family, tiny.variant, tiny.seed, "ref"))
    shape = [batch, tiny.latent_channels, 1, h, w] if tiny.family == "qwen_image" else [batch, tiny.latent_channels, h, w]
    return torch.randn(shape, generator=g)


# --------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------


def packed(x):
    """A latent as one tensor: audio-video latents (``NestedTensor``) packed the way ComfyUI's
    sampler packs them (``comfy.utils.pack_latents``: each part flattened, joined on the last dim)."""
    if getattr(x, "is_nested", False):
        return import_comfy().comfy_utils.pack_latents(x.unbind())[0]
    return x


def unpacked(tiny: TinyModel, x: torch.Tensor, batch: int = 1, h: int = 16, w: int = 16,
             frames: Optional[int] = None) -> List[torch.Tensor]:
    """The inverse of :func:`packed` for this model's latent of that size."""
    lat = tiny.latent(batch, h, w, frames)
    shapes = [t.shape for t in lat.unbind()] if getattr(lat, "is_nested", False) else [lat.shape]
    return import_comfy().comfy_utils.unpack_latents(x, shapes)


def sample(tiny: TinyModel, steps: int = 6, cfg: float = 2.5, sampler: str = "euler", scheduler: str = "simple",
           seed: int = 0, batch: int = 1, h: int = 16, w: int = 16, frames: Optional[int] = None,
           denoise: float = 1.0, model=None, positive=None, negative=None, latent: Optional[torch.Tensor] = None,
           callback: Optional[Callable] = None, noise_mask: Optional[torch.Tensor] = None,
           sigmas: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sample with ComfyUI's real path (what ``nodes.common_ksampler`` does) and
    return the output latent (audio-video latents as one tensor, see :func:`packed`).

    ``model``: a patched clone to use instead of ``tiny.patcher``; for
    two-expert models (Wan 2.2 14B) a ``(high_noise, low_noise)`` pair (a
    single patcher replaces only the high-noise expert).
    ``latent``/``noise_mask``: like a LATENT dict's ``samples``/``noise_mask``
    (e.g. Wan22ImageToVideoLatent: start-image latent in frame 0, mask 0 there).
    ``sigmas``: a custom schedule (as SamplerCustom takes) instead of ``steps``/``scheduler``;
    single models only.
    """
    c = import_comfy()
    if frames is None:
        frames = tiny.default_frames
    if positive is None:
        positive = tiny.positive(batch, h, w, frames)
    if negative is None:
        negative = tiny.negative(batch, h, w, frames)
    if latent is None:
        latent = tiny.latent(batch, h, w, frames)

    if tiny.experts:
        if model is None:
            models = list(tiny.experts)
        elif isinstance(model, (list, tuple)):
            models = list(model)
        else:
            models = [model] + list(tiny.experts[1:])
    else:
        models = [tiny.patcher if model is None else model]

    lat = c.sample.fix_empty_latent_channels(models[0], latent)
    noise = c.sample.prepare_noise(lat, seed)
    if len(models) == 1:
        return packed(c.sample.sample(models[0], noise, steps, cfg, sampler, scheduler, positive, negative, lat,
                                      denoise=denoise, noise_mask=noise_mask, callback=callback, disable_pbar=True,
                                      seed=seed, sigmas=sigmas))
    if sigmas is not None:
        raise ValueError("custom sigmas are for single models; two-expert models split one schedule")

    # Two KSamplerAdvanced nodes, as in the Wan 2.2 14B template workflows:
    # high-noise expert: add_noise, steps [0, split), return_with_leftover_noise
    # low-noise expert:  no noise, steps [split, steps), full denoise
    split = max(1, min(steps - 1, int(round(steps * tiny.expert_split))))
    x = c.sample.sample(models[0], noise, steps, cfg, sampler, scheduler, positive, negative, lat,
                        denoise=denoise, start_step=0, last_step=split, force_full_denoise=False,
                        noise_mask=noise_mask, callback=callback, disable_pbar=True, seed=seed)
    zeros = torch.zeros_like(x)
    return c.sample.sample(models[1], zeros, steps, cfg, sampler, scheduler, positive, negative, x,
                           denoise=denoise, disable_noise=True, start_step=split, last_step=steps,
                           force_full_denoise=True, noise_mask=noise_mask, callback=callback, disable_pbar=True,
                           seed=seed)
