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

How cond/uncond reach the model (ComfyUI batches them only when every cond
can be concatenated): one batched call per step for all families except
``flux_kontext`` (reference_latents only on the positive, as the
ReferenceLatent node gives) and ``lumina2`` (different ``num_tokens``), where
the positive and negative run as two separate calls per step.

Notes on sizes forced by detection: Wan detects ``num_heads = dim // 128`` and
keeps ``text_dim`` 4096, so tiny Wan is dim 128 / 1 head with 4096-wide text
embeddings; HunyuanVideo likewise (hidden 128, 1 head, pooled 768); LTX-Video
detects ``attention_head_dim = inner // 32`` with the default 32 heads, so tiny
LTXV is 32 heads of dim 2 with 4096-wide T5 captions; SD3 detects
``hidden = 64 * depth`` (2 blocks -> hidden 128, 2 heads).

Nothing here is impossible in the v0.3.64 snapshot; no family is skipped.

API summary: ``build(family, variant=None, dtype=torch.float32, seed=0)``,
``sample(tiny, steps=6, cfg=2.5, sampler="euler", scheduler="simple", seed=0,
batch=1, h=16, w=16, frames=None, denoise=1.0, model=None, positive=None,
negative=None, latent=None, callback=None, noise_mask=None)``,
``block_modules(diffusion_model, family=None, variant=None)``,
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
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

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
    ("wan21", "t2v"): _Spec("WAN21_T2V", dict(_WAN_BASE), True, video=True, default_frames=3, ctx_dim=4096,
                            blocks=("blocks",)),
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

DEFAULT_VARIANT = {"flux": "dev", "wan21": "t2v", "wan22": "ti2v_5b"}

# (family, variant) pairs, variant None for families without variants
FAMILIES: List[Tuple[str, Optional[str]]] = list(SPECS.keys())

# Families that cannot be built in the current snapshot: (family, variant) -> reason.
UNAVAILABLE: Dict[Tuple[str, Optional[str]], str] = {}


def family_ids() -> List[str]:
    return [f if v is None else f"{f}:{v}" for f, v in FAMILIES]


def _resolve(family: str, variant: Optional[str]) -> Tuple[str, Optional[str]]:
    if ":" in family and variant is None:
        family, variant = family.split(":", 1)
    if variant is None:
        variant = DEFAULT_VARIANT.get(family)
    key = (family, variant)
    if key not in SPECS:
        raise KeyError(f"unknown tiny model family/variant {family!r}/{variant!r}; known: {family_ids()}")
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
        if self.video:
            f = self.default_frames if frames is None else frames
            lat = torch.zeros([batch, self.latent_channels, f, h, w])
        else:
            lat = torch.zeros([batch, 4, h, w])  # EmptyLatentImage: 4 channels, fixed below
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
                     ("joint_blocks",), ("transformer_blocks",), ("layers",), ("blocks",)):
            if all(hasattr(diffusion_model, n) for n in cand):
                names = cand
                break
    out: List[torch.nn.Module] = []
    for n in names:
        out.extend(list(getattr(diffusion_model, n)))
    return out


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
}
# What ComfyUI's detection (``comfy/model_detection.py``) puts in a base model's unet_config for
# fields that only newer releases have: the value that keeps the release's original behaviour.
_BASE_MODEL_FIELD_VALUES = {
    "txt_ids_dims": [],
    "use_cond_type_embedding": False,
    "vision_in_dim": None,
    "meanflow_sum": False,
    "vec_in_dim": None,
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


def _match_config(c, unet_config, expected: str, state_dict=None):
    mc = c.comfy_model_detection.model_config_from_unet_config(unet_config, state_dict)
    if mc is None or type(mc).__name__ != expected:
        raise RuntimeError(f"ComfyUI matched {type(mc).__name__ if mc else None} for tiny config, expected {expected}")
    return mc


def _load_one(c, spec: _Spec, family, variant, dtype, seed):
    mm = c.model_management
    load_device = mm.get_torch_device()
    offload_device = mm.unet_offload_device()

    model_config = _match_config(c, release_unet_config(family, spec.unet_config), spec.config_class)
    manual_cast = mm.unet_manual_cast(dtype, load_device, model_config.supported_inference_dtypes)
    model_config.set_inference_dtype(dtype, manual_cast)
    model = model_config.get_model({}, "")
    dm = model.diffusion_model
    params = {k for k, _ in dm.named_parameters()}
    sd = random_state_dict(dm.state_dict(), params, _seed_for(family, variant, seed))

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


def build(family: str, variant: Optional[str] = None, dtype: torch.dtype = torch.float32, seed: int = 0) -> TinyModel:
    """Build a tiny random-weight model of ``family`` (see ``FAMILIES``)."""
    c = import_comfy()
    family, variant = _resolve(family, variant)
    if (family, variant) in UNAVAILABLE:
        raise RuntimeError(UNAVAILABLE[(family, variant)])
    spec = SPECS[(family, variant)]
    with torch.random.fork_rng(devices=[]):
        patcher, sd, loaded_via = _load_one(c, spec, family, variant, dtype, seed)
        experts = []
        if (family, variant) == ("wan22", "t2v_14b"):
            low, _, _ = _load_one(c, spec, family, variant + "_low_noise", dtype, seed)
            experts = [patcher, low]
    lf = patcher.get_model_object("latent_format")
    return TinyModel(
        family=family, variant=variant, patcher=patcher, config_class=spec.config_class,
        unet_config=dict(patcher.model.model_config.unet_config), loaded_via=loaded_via, video=spec.video,
        latent_channels=lf.latent_channels, default_frames=spec.default_frames, dtype=dtype, seed=seed,
        ctx_dim=spec.ctx_dim, ctx_tokens=spec.ctx_tokens, state_dict=sd, experts=experts,
    )


# --------------------------------------------------------------------------
# conditioning
# --------------------------------------------------------------------------


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
    elif fam in ("wan21", "wan22"):
        if var == "i2v":
            # WanImageToVideo: concat latent (VAE-encoded start image + zeros), 4-channel mask, clip vision
            g2 = torch.Generator().manual_seed(_seed_for(fam, var, tiny.seed, "concat"))
            img = torch.zeros([batch, 16, frames, h, w])
            img[:, :, :1] = torch.randn([batch, 16, 1, h, w], generator=g2)
            # WanImageToVideo reshapes the pixel-frame mask to 4 channels per latent frame
            mask4 = torch.ones([1, 4, frames, h, w])
            mask4[:, :, :1] = 0.0
            extra["concat_latent_image"] = img
            extra["concat_mask"] = mask4
            cvo = import_comfy().comfy_clip_vision.Output()
            cvo.penultimate_hidden_states = torch.randn([batch, 257, 1280], generator=g2)
            extra["clip_vision_output"] = cvo
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
        pass
    elif fam == "hidream":
        uc = tiny.unet_config
        extra["pooled_output"] = rn(batch, uc["text_emb_dim"])
        n_llama = max(uc["llama_layers"]) + 1
        extra["conditioning_llama3"] = rn(batch, n_llama, L, uc["caption_channels"][1])
        ctx = rn(batch, L, uc["caption_channels"][0])
    elif fam == "cosmos_predict2":
        pass
    return [[ctx, extra]]


# --------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------


def sample(tiny: TinyModel, steps: int = 6, cfg: float = 2.5, sampler: str = "euler", scheduler: str = "simple",
           seed: int = 0, batch: int = 1, h: int = 16, w: int = 16, frames: Optional[int] = None,
           denoise: float = 1.0, model=None, positive=None, negative=None, latent: Optional[torch.Tensor] = None,
           callback: Optional[Callable] = None, noise_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sample with ComfyUI's real path (what ``nodes.common_ksampler`` does) and
    return the output latent.

    ``model``: a patched clone to use instead of ``tiny.patcher``; for
    two-expert models (Wan 2.2 14B) a ``(high_noise, low_noise)`` pair (a
    single patcher replaces only the high-noise expert).
    ``latent``/``noise_mask``: like a LATENT dict's ``samples``/``noise_mask``
    (e.g. Wan22ImageToVideoLatent: start-image latent in frame 0, mask 0 there).
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
        return c.sample.sample(models[0], noise, steps, cfg, sampler, scheduler, positive, negative, lat,
                               denoise=denoise, noise_mask=noise_mask, callback=callback, disable_pbar=True,
                               seed=seed)

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
