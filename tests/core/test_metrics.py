"""cache_core.metrics: kornia's PSNR/SSIM with our conventions (float64, eps 0, pooled MSE), and
the demo's [-1, 1] wrappers over them."""
from __future__ import annotations

import math

import kornia.metrics
import pytest
import torch

from cache_core import metrics
from dit_reference.demo import psnr as demo_psnr, ssim as demo_ssim


def _pair(seed=0, shape=(3, 3, 24, 20), noise=0.1):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g)
    return a, (a + noise * torch.randn(shape, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (2, 16, 8, 8), (4, 1, 8, 8)])
def test_equal_inputs_inf_and_exactly_one(shape):
    a = torch.rand(shape)
    w = metrics.ssim_window(*shape[-2:])
    assert math.isinf(metrics.psnr(a, a.clone(), 1.0))
    assert metrics.ssim(a, a.clone(), 1.0, w) == 1.0
    assert metrics.ssim(a, a.clone(), 1.0, w, padding="same") == 1.0
    f = metrics.fidelity(a, a.clone(), 1.0)
    assert f.identical and f.max_abs_diff == 0.0 and f.window == w


def test_flat_equal_images_score_one():
    # kornia's default eps=1e-12 would score two black images 0.99998889; ours must say 1
    z = torch.zeros(1, 3, 16, 16)
    assert metrics.ssim(z, z, 1.0) == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numbers_are_kornias(dtype):
    a, b = (t.to(dtype) for t in _pair())
    smap = kornia.metrics.ssim(a, b, 11, 1.0, eps=0.0, padding="valid")
    assert metrics.psnr(a, b, 1.0) == float(kornia.metrics.psnr(a, b, 1.0))
    assert metrics.ssim(a, b, 1.0, 11) == float(smap.mean(dtype=torch.float64))
    assert metrics.max_abs_diff(a, b) == float((a - b).abs().max())
    f = metrics.fidelity(a, b, 1.0, per_image=True)
    assert (f.psnr, f.ssim, f.window) == (metrics.psnr(a, b, 1.0), metrics.ssim(a, b, 1.0, 11), 11)
    assert [p.ssim for p in f.per_image] == [float(smap[i].mean(dtype=torch.float64)) for i in range(3)]
    assert [p.psnr for p in f.per_image] == [float(kornia.metrics.psnr(a[i], b[i], 1.0)) for i in range(3)]
    # PSNR is 10 log10(L^2 / MSE) with one MSE over everything
    mse = float((a.double() - b.double()).pow(2).mean())
    assert metrics.psnr(a, b, 2.0) == pytest.approx(10 * math.log10(4.0 / mse), rel=1e-5)


def test_half_and_integer_inputs_are_compared_in_float32():
    a, b = _pair()
    assert metrics.psnr(a.half(), b.half(), 1.0) == metrics.psnr(a.half().float(), b.half().float(), 1.0)
    assert metrics.ssim((a * 255).round().to(torch.uint8), (b * 255).round().to(torch.uint8), 255.0) == \
        metrics.ssim((a * 255).round(), (b * 255).round(), 255.0)


def test_more_noise_scores_lower():
    a, b = _pair(noise=0.05)
    _, c = _pair(noise=0.2)
    assert metrics.psnr(a, c, 1.0) < metrics.psnr(a, b, 1.0)
    assert metrics.ssim(a, c, 1.0) < metrics.ssim(a, b, 1.0) < 1.0


def test_window_fits_small_images():
    assert metrics.ssim_window(64, 64) == 11
    assert metrics.ssim_window(8, 8) == 7
    assert metrics.ssim_window(10, 40) == 9
    assert metrics.ssim_window(3, 3) == 3
    with pytest.raises(ValueError, match="too small for SSIM"):
        metrics.ssim_window(2, 8)
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), 1.0, 11)


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"shapes \(1, 3, 8, 8\) and \(1, 3, 8, 9\)"):
        metrics.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9), 1.0)


def test_demo_metrics_clamp_to_the_sample_range():
    # the reference model's samples live in [-1, 1] (L = 2); values outside are clamped first
    g = torch.Generator().manual_seed(1)
    a = torch.rand(5, 1, 8, 8, generator=g) * 2 - 1
    b = a + 0.2 * torch.randn(a.shape, generator=g)
    # ... and compared in float64, as the demo's figures always were
    assert demo_psnr(a, b) == metrics.psnr(a.double(), b.double().clamp(-1, 1), 2.0)
    assert demo_ssim(a, b) == metrics.ssim(a.double(), b.double().clamp(-1, 1), 2.0, 3)
    assert math.isinf(demo_psnr(a, a)) and demo_ssim(a, a) == 1.0
