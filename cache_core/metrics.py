"""Fidelity of a cached result against its reference: PSNR, SSIM and the largest absolute
difference, computed by kornia (``kornia.metrics.psnr`` / ``kornia.metrics.ssim``).

kornia is not a dependency of the engine: ComfyUI's requirements bring it (``kornia>=0.7.1`` in
0.3.64 and 0.29.0), and this package's ``demo`` and ``test`` extras install it. This module only
fixes the conventions around kornia's functions:

* both tensors are compared on the CPU in float32, or float64 when either is float64 (kornia's
  float32 SSIM takes its fast channels-last path, ~9x faster than float64 on 1024x1024 RGB);
  means are taken in float64;
* PSNR = 10 log10(L^2 / MSE) with one MSE pooled over every element (batch and channels
  included), ``inf`` when the tensors are equal;
* SSIM (Wang et al. 2004, "Image quality assessment: from error visibility to structural
  similarity") with C1 = (0.01 L)^2, C2 = (0.03 L)^2, kornia's Gaussian window (sigma 1.5) of
  ``window`` taps, ``eps = 0`` so that equal images score exactly 1, averaged over the map,
  the channels and the batch.

L is the data range: 1 for ComfyUI IMAGEs in [0, 1], 2 for the reference model's [-1, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SSIM_WINDOW = 11  # Wang et al. 2004: an 11x11 Gaussian window, sigma 1.5


def _kornia_metrics():
    try:
        import kornia.metrics
    except ImportError as e:  # ComfyUI installs kornia; a bare engine install does not
        raise ModuleNotFoundError(
            "PSNR/SSIM need kornia: `pip install kornia` (ComfyUI's requirements include it; "
            "`pip install -e .[demo]` installs it for the demo)") from e
    return kornia.metrics


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"cannot compare tensors of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    return a.detach().to("cpu", dtype), b.detach().to("cpu", dtype)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float) -> float:
    """PSNR in dB of ``a`` against ``b`` (same shape, any layout), ``inf`` when equal.

    One MSE over all elements (``kornia.metrics.psnr``); ``data_range`` is L, e.g. 1.0 for
    [0, 1] images. Raises ValueError on different shapes."""
    a, b = _pair(a, b)
    return float(_kornia_metrics().psnr(a, b, float(data_range)))


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float, window: int = SSIM_WINDOW,
         padding: str = "valid") -> float:
    """Mean SSIM of two [N, C, H, W] batches (each channel on its own), 1.0 when equal.

    ``kornia.metrics.ssim`` with a ``window``-tap Gaussian window (sigma 1.5), ``eps=0`` and
    ``padding`` "valid" (the map covers only windows inside the image, as the paper's MATLAB
    code) or "same" (reflect padding). "valid" needs H and W >= ``window``.
    Raises ValueError on different shapes or images smaller than the window."""
    return float(ssim_map(a, b, data_range, window, padding).mean(dtype=torch.float64))


def ssim_map(a: torch.Tensor, b: torch.Tensor, data_range: float, window: int = SSIM_WINDOW,
             padding: str = "valid") -> torch.Tensor:
    """kornia's SSIM map of two [N, C, H, W] batches ([N, C, H - window + 1, W - window + 1]
    with "valid" padding); :func:`ssim` is its mean."""
    a, b = _pair(a, b)
    if a.ndim != 4:
        raise ValueError(f"SSIM needs [N, C, H, W] tensors, got shape {tuple(a.shape)}")
    if padding == "valid" and min(a.shape[-2:]) < window:
        raise ValueError(f"SSIM with a {window}x{window} window needs images of at least {window}x{window} "
                         f"pixels, got {a.shape[-2]}x{a.shape[-1]}")
    return _kornia_metrics().ssim(a, b, window, max_val=float(data_range), eps=0.0, padding=padding)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest |a - b| over all elements (in the compared dtype)."""
    a, b = _pair(a, b)
    return float((a - b).abs().max()) if a.numel() else 0.0


def ssim_window(height: int, width: int, preferred: int = SSIM_WINDOW) -> int:
    """The SSIM window for images of this size: ``preferred`` taps, or the largest odd size that
    fits when the image is smaller (a latent of 8x8, say). Raises ValueError below 3x3."""
    side = min(height, width, preferred)
    side = side if side % 2 else side - 1
    if side < 3:
        raise ValueError(f"images of {height}x{width} pixels are too small for SSIM (3x3 at least)")
    return side


@dataclass(frozen=True)
class Fidelity:
    """Fidelity of one tensor pair: PSNR (dB, inf when equal), mean SSIM, largest |difference|,
    with the data range and SSIM window they were computed with; ``per_image`` holds the same
    for each batch item when asked for."""
    psnr: float
    ssim: float
    max_abs_diff: float
    data_range: float
    window: int
    per_image: tuple["Fidelity", ...] = ()

    @property
    def identical(self) -> bool:
        return math.isinf(self.psnr) and self.max_abs_diff == 0.0


def fidelity(a: torch.Tensor, b: torch.Tensor, data_range: float, window: int | None = None,
             per_image: bool = False) -> Fidelity:
    """PSNR, SSIM ("valid" padding) and largest |a - b| of two [N, C, H, W] batches; the window
    defaults to :func:`ssim_window` of their size. With ``per_image``, each item's figures too:
    its PSNR from kornia, its SSIM the mean of its part of the one SSIM map."""
    if window is None:
        window = ssim_window(a.shape[-2], a.shape[-1])
    a, b = _pair(a, b)
    m = ssim_map(a, b, data_range, window)
    diff = (a - b).abs()
    psnr_of = _kornia_metrics().psnr
    items = tuple(Fidelity(float(psnr_of(a[i], b[i], float(data_range))), float(m[i].mean(dtype=torch.float64)),
                           float(diff[i].max()), float(data_range), window)
                  for i in range(a.shape[0])) if per_image else ()
    return Fidelity(psnr=float(psnr_of(a, b, float(data_range))), ssim=float(m.mean(dtype=torch.float64)),
                    max_abs_diff=float(diff.max()) if diff.numel() else 0.0, data_range=float(data_range),
                    window=window, per_image=items)
