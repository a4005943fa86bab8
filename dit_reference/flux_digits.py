"""The Flux digits model's fixed maps: 8x8 digit pixels <-> a Flux latent, and digit -> conditioning.

The model (``data/diffusion_models/dit_cache_flux_digits.safetensors``, trained by
``reference/flux_digits/train_flux_digits.py``) is ComfyUI's own ``comfy.ldm.flux.model.Flux`` at
a small width. It sees a 16-channel Flux latent of 4x4 positions (ComfyUI's
``EmptySD3LatentImage`` at 32x32 pixels); with Flux's 2x2 patches that is 4 image tokens, each
carrying a 4x4 block of the digit.

Pixel map (fixed, linear, with an exact left inverse). A digit ``p`` of shape ``[B, 1, 8, 8]`` with
values in [-1, 1] is cut into 2x2 blocks (``pixel_unshuffle``): latent position (i, j) holds pixels
(2i + a, 2j + b), a, b in {0, 1}. Pixel k = 2a + b is written, at half its value, into the four
channels 4k .. 4k+3 (a unit vector per pixel, the four orthogonal), in the space the model
computes in (after ComfyUI's ``process_latent_in``). So each pixel has the reference DiT's signal
scale (``reference/``) and 12 of the 16 channel directions hold no data. The latent ComfyUI stores
(``LATENT["samples"]``, what KSampler returns) is ``z / FLUX_SCALE + FLUX_SHIFT``
(ComfyUI's ``latent_formats.Flux``: ``process_latent_in(x) = (x - shift) * scale``). Back: each
pixel is the sum of its four channels times 1/2 (projecting away whatever a sampler left in the
empty directions), then ``pixel_shuffle``.

Conditioning (fixed, no text encoder): digit ``d`` is the one-hot vector ``e_d`` of
``EMBED_DIM`` = 16 entries, used both as the one text token (``context [B, 1, 16]``) and as the
pooled vector (``pooled_output [B, 16]``). The unconditional class (classifier-free guidance) is the
zero vector, which is also what ComfyUI's ``ConditioningZeroOut`` makes of any conditioning.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F

DATA = Path(__file__).resolve().parent / "data"
MODEL_DIR = DATA / "diffusion_models"
MODEL_FILE = "dit_cache_flux_digits.safetensors"
MODEL_PATH = MODEL_DIR / MODEL_FILE
CLASSIFIER = DATA / "reference_classifier.json"

LATENT_CHANNELS = 16
IMAGE_SIZE = 8                 # digit pixels per side
BLOCK = 2                      # pixels per latent position per side
LATENT_SIZE = IMAGE_SIZE // BLOCK
IMAGE_WIDTH = LATENT_SIZE * 8  # EmptySD3LatentImage width/height for this latent (ComfyUI's factor 8)
EMBED_DIM = 16
NULL = -1                      # label of the unconditional class
# comfy/latent_formats.py, class Flux (identical in ComfyUI 0.3.64 and 0.29.0; host-tested)
FLUX_SCALE = 0.3611
FLUX_SHIFT = 0.1159
_COPIES = LATENT_CHANNELS // (BLOCK * BLOCK)  # channels per pixel
_AMPLITUDE = _COPIES ** -0.5                  # each pixel's unit vector: _COPIES entries of this value


def pixels_to_model_space(pixels: torch.Tensor) -> torch.Tensor:
    """[B, 1, 8, 8] pixels in [-1, 1] -> [B, 16, 4, 4], the latent as the model sees it."""
    if pixels.ndim != 4 or pixels.shape[1] != 1 or pixels.shape[-1] % BLOCK or pixels.shape[-2] % BLOCK:
        raise ValueError(f"expected grey digits [B, 1, H, W] with even H and W, got {tuple(pixels.shape)}")
    return F.pixel_unshuffle(pixels, BLOCK).repeat_interleave(_COPIES, dim=1) * _AMPLITUDE


def model_space_to_pixels(z: torch.Tensor) -> torch.Tensor:
    """The left inverse of :func:`pixels_to_model_space`: [B, 16, h, w] -> [B, 1, 2h, 2w]."""
    b, c, h, w = z.shape
    return F.pixel_shuffle(z.reshape(b, BLOCK * BLOCK, _COPIES, h, w).sum(2) * _AMPLITUDE, BLOCK)


def pixels_to_latent(pixels: torch.Tensor) -> torch.Tensor:
    """[B, 1, 8, 8] pixels in [-1, 1] -> the [B, 16, 4, 4] LATENT["samples"] ComfyUI stores."""
    return pixels_to_model_space(pixels) / FLUX_SCALE + FLUX_SHIFT


def latent_to_pixels(latent: torch.Tensor) -> torch.Tensor:
    """[B, 16, h, w] LATENT["samples"] -> [B, 1, 2h, 2w] pixels (not clamped; data range [-1, 1]).

    Raises ValueError for a latent that is not 4-D with 16 channels (not a Flux latent)."""
    if latent.ndim != 4 or latent.shape[1] != LATENT_CHANNELS:
        raise ValueError(f"expected a Flux latent [B, 16, H, W], got {tuple(latent.shape)}: decode the "
                         "output of a sampler that ran the Flux digits model")
    return model_space_to_pixels((latent.float() - FLUX_SHIFT) * FLUX_SCALE)


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
