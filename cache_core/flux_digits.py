"""The Flux digits model's fixed maps: 8x8 digit pixels <-> a Flux latent, and digit -> conditioning.

The model (``data/diffusion_models/dit_cache_flux_digits.safetensors``, trained by
``reference/flux_digits/train_flux_digits.py``) is ComfyUI's own ``comfy.ldm.flux.model.Flux`` at
a small width. It sees a 16-channel Flux latent of 8x8 positions (ComfyUI's
``EmptySD3LatentImage`` at 64x64 pixels); with Flux's 2x2 patches that is 16 image tokens.

Pixel map (fixed, linear, with an exact left inverse). A digit ``p`` of shape ``[B, 1, 8, 8]`` with
values in [-1, 1] becomes, in the space the model computes in (after ComfyUI's
``process_latent_in``), ``z[:, c] = U[c] * p`` with the unit vector ``U = (1/4, ..., 1/4)`` over the
16 channels: each latent position carries its pixel along one fixed direction, so the signal has
exactly the reference DiT's scale (``reference/``) and the other 15 directions hold no data. The
latent ComfyUI stores (``LATENT["samples"]``, what KSampler returns) is
``z / FLUX_SCALE + FLUX_SHIFT`` (ComfyUI's ``latent_formats.Flux``: ``process_latent_in(x) =
(x - shift) * scale``). Back: ``p = sum_c U[c] * (x[:, c] - FLUX_SHIFT) * FLUX_SCALE``, which
projects away whatever a sampler left in the 15 empty directions.

Conditioning (fixed, no text encoder): digit ``d`` is the one-hot vector ``e_d`` of
``EMBED_DIM`` = 16 entries, used both as the one text token (``context [B, 1, 16]``) and as the
pooled vector (``pooled_output [B, 16]``). The unconditional class (classifier-free guidance) is the
zero vector, which is also what ComfyUI's ``ConditioningZeroOut`` makes of any conditioning.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

DATA = Path(__file__).resolve().parent / "data"
MODEL_DIR = DATA / "diffusion_models"
MODEL_FILE = "dit_cache_flux_digits.safetensors"
MODEL_PATH = MODEL_DIR / MODEL_FILE
CLASSIFIER = DATA / "reference_classifier.json"

LATENT_CHANNELS = 16
IMAGE_SIZE = 8                 # digit pixels per side = latent positions per side
PIXELS_PER_LATENT = 8          # ComfyUI's latent-to-image factor: EmptySD3LatentImage width 64 -> 8
EMBED_DIM = 16
NULL = -1                      # label of the unconditional class
# comfy/latent_formats.py, class Flux (identical in ComfyUI 0.3.64 and 0.29.0; host-tested)
FLUX_SCALE = 0.3611
FLUX_SHIFT = 0.1159


def direction(dtype=torch.float32, device=None) -> torch.Tensor:
    """The unit vector U [16] along which every latent position carries its pixel."""
    return torch.full((LATENT_CHANNELS,), LATENT_CHANNELS ** -0.5, dtype=dtype, device=device)


def pixels_to_model_space(pixels: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] pixels in [-1, 1] -> [B, 16, H, W], the latent as the model sees it."""
    if pixels.ndim != 4 or pixels.shape[1] != 1:
        raise ValueError(f"expected grey digits [B, 1, H, W], got {tuple(pixels.shape)}")
    return pixels * direction(pixels.dtype, pixels.device).view(1, -1, 1, 1)


def pixels_to_latent(pixels: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] pixels in [-1, 1] -> the [B, 16, H, W] LATENT["samples"] ComfyUI stores."""
    return pixels_to_model_space(pixels) / FLUX_SCALE + FLUX_SHIFT


def latent_to_pixels(latent: torch.Tensor) -> torch.Tensor:
    """[B, 16, H, W] LATENT["samples"] -> [B, 1, H, W] pixels (not clamped; data range [-1, 1]).

    Raises ValueError for a latent that is not 4-D with 16 channels (not a Flux latent)."""
    if latent.ndim != 4 or latent.shape[1] != LATENT_CHANNELS:
        raise ValueError(f"expected a Flux latent [B, 16, H, W], got {tuple(latent.shape)}: decode the "
                         "output of a sampler that ran the Flux digits model")
    z = (latent.float() - FLUX_SHIFT) * FLUX_SCALE
    return (z * direction(z.dtype, z.device).view(1, -1, 1, 1)).sum(1, keepdim=True)


def parse_digits(text: str) -> list[int]:
    """``"0123"`` -> [0, 1, 2, 3]; ``"-"`` is the unconditional class. Spaces and commas are ignored.

    Raises ValueError for any other character or an empty string."""
    out = []
    for ch in text:
        if ch in " ,":
            continue
        if ch.isdigit():
            out.append(int(ch))
        elif ch == "-":
            out.append(NULL)
        else:
            raise ValueError(f"digits may hold only 0-9 and '-' (unconditional), got {ch!r} in {text!r}")
    if not out:
        raise ValueError("digits is empty: give one character per sample, e.g. '7' or '0123456789' ('-' for "
                         "the unconditional class)")
    return out


def digit_embedding(labels: Iterable[int] | torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """[B] labels (0-9, or ``NULL`` = -1 for unconditional) -> [B, 16] one-hot rows (zeros for NULL)."""
    labels = torch.as_tensor(list(labels) if not isinstance(labels, torch.Tensor) else labels, dtype=torch.long)
    if labels.ndim != 1 or ((labels < NULL) | (labels > 9)).any():
        raise ValueError(f"labels must be a 1-D list of digits 0-9 or {NULL} (unconditional), got {labels.tolist()}")
    emb = torch.zeros(len(labels), EMBED_DIM, dtype=dtype)
    keep = labels >= 0
    emb[keep, labels[keep]] = 1.0
    return emb


def conditioning(labels: Iterable[int] | torch.Tensor) -> list:
    """ComfyUI CONDITIONING for a batch of labels: ``[[context [B, 1, 16], {"pooled_output": [B, 16]}]]``."""
    emb = digit_embedding(labels)
    return [[emb.unsqueeze(1), {"pooled_output": emb.clone()}]]
