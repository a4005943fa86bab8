"""Cache Compare against real ComfyUI: IMAGE and LATENT inputs, a tiny random-weight TAESD loaded
through ``comfy.sd.VAE`` for the decode path, tiny SD3 (16-channel latent, loaded by ComfyUI's
UNETLoader path on both releases) sampled with and without TeaCache Patch through ComfyUI's sampler. The expected numbers are kornia's, computed here from the inputs."""
from __future__ import annotations

import json
import math

import kornia.metrics
import pytest
import torch

import tiny_models as tm
from helpers import holder_of, teacache
from pack import sub

STEPS = 6
HEAT_ZERO = tuple(round(v * 255) for v in (0 / 255, 0 / 255, 4 / 255))  # first colour of the heat ramp


def node():
    return sub("nodes.compare_node").CacheCompare


def run(reference, cached, vae=None, model=None):
    out = node().execute(reference, cached, vae=vae, model=model)
    report, view = out.args
    return report, view, out.ui["dit_cache_compare"][0], out.ui


def nchw(images: torch.Tensor) -> torch.Tensor:
    return images.detach().movedim(-1, 1).float()


def kornia_ssim_map(ref, cached, data_range, window):
    return kornia.metrics.ssim(cached, ref, window, max_val=data_range, eps=0.0, padding="valid")


def kornia_numbers(ref: torch.Tensor, cached: torch.Tensor, data_range: float, window: int):
    """PSNR, mean SSIM (eps 0, valid windows, mean in float64) and max |diff| straight from
    kornia, float32 [N, C, H, W]."""
    p = float(kornia.metrics.psnr(cached, ref, data_range))
    s = float(kornia_ssim_map(ref, cached, data_range, window).mean(dtype=torch.float64))
    return p, s, float((cached - ref).abs().max())


@pytest.fixture(scope="module")
def sd3_runs(tiny_models):
    """Tiny SD3: the uncached latent, the TeaCache latent (every middle step reused) and its model."""
    tiny = tiny_models("sd3")
    ref = tm.sample(tiny, steps=STEPS, seed=3)
    patched = teacache(tiny.patcher, 1000.0)
    cached = tm.sample(tiny, steps=STEPS, seed=3, model=patched)
    assert not torch.equal(ref, cached)
    return tiny, {"samples": ref}, {"samples": cached}, patched


@pytest.fixture(scope="module")
def vae(comfy):
    return tm.build_vae(16)


def images(seed=0, n=1, h=48, w=40):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, h, w, 3, generator=g)


def test_schema_takes_latents_or_images(comfy):
    info = sub("nodes.compare_node").CacheCompare.GET_NODE_INFO_V1()
    req, opt = info["input"]["required"], info["input"]["optional"]
    assert req["reference"][0] == "LATENT,IMAGE" and req["cached"][0] == "LATENT,IMAGE"
    assert opt["vae"][0] == "VAE" and opt["model"][0] == "MODEL"
    assert info["output"] == ["STRING", "IMAGE"] and info["output_node"] is True


def test_identical_images_infinite_psnr_ssim_one(comfy):
    a = images(1, n=2)
    report, view, s, ui = run(a, a.clone())
    assert s["psnr"] == "inf" and all(p["psnr"] == "inf" for p in s["per_image"])
    assert s["ssim"] == 1.0 and s["max_abs_diff"] == 0.0
    assert "PSNR        inf dB (identical)" in report and "SSIM        1.0000" in report
    json.dumps(ui, allow_nan=False)  # the UI message must be plain JSON (no Infinity)
    # heat panel (the rightmost third) is the ramp's zero colour everywhere
    px = (view[0] * 255).round().to(torch.int64)
    width = view.shape[2]
    heat = px[24:view.shape[1] - 4, width - width // 3 + 8: width - 8]  # inside the panel, not the frame
    assert {tuple(v.tolist()) for v in heat.reshape(-1, 3)} == {HEAT_ZERO}


def test_different_images_give_kornias_numbers(comfy):
    a, b = images(1, n=3), images(2, n=3)
    b = (0.7 * a + 0.3 * b)
    report, view, s, _ = run(a, b)
    p, ss, m = kornia_numbers(nchw(a), nchw(b), 1.0, 11)
    assert s["psnr"] == p and s["ssim"] == ss and s["max_abs_diff"] == m
    assert s["data_range"] == 1.0 and s["ssim_window"] == 11
    smap = kornia_ssim_map(nchw(a), nchw(b), 1.0, 11)  # per image: its part of the batch's map
    for i, per in enumerate(s["per_image"]):
        pi = float(kornia.metrics.psnr(nchw(b[i:i + 1]), nchw(a[i:i + 1]), 1.0))
        si = float(smap[i].mean(dtype=torch.float64))
        assert (per["psnr"], per["ssim"], per["max_abs_diff"]) == (pi, si, float((b[i] - a[i]).abs().max()))
    assert len({per["psnr"] for per in s["per_image"]}) == 3
    assert f"PSNR        {p:.2f} dB" in report and f"SSIM        {ss:.4f}" in report
    assert f"max |diff|  {m:.4g}" in report and "#2:" in report
    assert "cached run: unknown (connect the patched model" in report
    assert view.shape[0] == 3 and view.shape[-1] == 3 and view.dtype == torch.float32


def test_heat_map_marks_the_changed_pixel(comfy):
    a = torch.full((1, 32, 32, 3), 0.5)
    b = a.clone()
    b[0, 10, 20, 1] = 0.9
    report, view, s, _ = run(a, b)
    assert s["max_abs_diff"] == pytest.approx(0.4)
    n_w = view.shape[2]
    third = (n_w - 4 * 4) // 3  # three panels and four 4-pixel gaps
    heat = view[0, 20:20 + third, n_w - 4 - third: n_w - 4]
    k = third // 32  # whole-pixel upscale
    hot = (heat * 255).round()
    assert tuple(hot[10 * k + k // 2, 20 * k + k // 2].tolist()) == (252.0, 255.0, 164.0)  # the ramp's top
    assert tuple(hot[2, 2].tolist()) == HEAT_ZERO


def test_latents_with_vae_are_decoded_and_name_the_run(comfy, sd3_runs, vae):
    import nodes as comfy_nodes
    tiny, ref, cached, patched = sd3_runs
    report, view, s, _ = run(ref, cached, vae=vae, model=patched)
    ref_img = comfy_nodes.VAEDecode().decode(vae, ref)[0]
    cac_img = comfy_nodes.VAEDecode().decode(vae, cached)[0]
    assert ref_img.shape == (1, 128, 128, 3)  # 16x16 latent, 8x TAESD
    p, ss, m = kornia_numbers(nchw(ref_img), nchw(cac_img), 1.0, 11)
    assert s["space"] == "image" and (s["psnr"], s["ssim"], s["max_abs_diff"]) == (p, ss, m)
    assert math.isfinite(p) and ss < 1.0
    run_id = holder_of(patched).last_summary["run_id"]
    assert s["run_id"] == run_id and f"cached run: {run_id} (computed" in report
    assert "note:" not in report  # the latent's shape is the run's
    # identical latents decode to identical images
    _, _, same, _ = run(ref, {"samples": ref["samples"].clone()}, vae=vae)
    assert same["psnr"] == "inf" and same["ssim"] == 1.0 and same["max_abs_diff"] == 0.0


def test_latent_and_image_with_vae(comfy, sd3_runs, vae):
    import nodes as comfy_nodes
    _, ref, cached, _ = sd3_runs
    cac_img = comfy_nodes.VAEDecode().decode(vae, cached)[0]
    _, _, mixed, _ = run(ref, cac_img, vae=vae)
    _, _, both, _ = run(ref, cached, vae=vae)
    assert (mixed["psnr"], mixed["ssim"]) == (both["psnr"], both["ssim"])


def test_latents_without_vae_compare_in_latent_space(comfy, sd3_runs):
    _, ref, cached, patched = sd3_runs
    report, view, s, _ = run(ref, cached, model=patched)
    r, c = ref["samples"].float(), cached["samples"].float()
    rng = float(ref["samples"].max() - ref["samples"].min())
    p, ss, m = kornia_numbers(r, c, rng, 11)
    assert s["space"] == "latent" and s["data_range"] == pytest.approx(rng)
    assert (s["psnr"], s["ssim"], s["max_abs_diff"]) == (p, ss, m)
    assert "compared in latent space" in report
    _, _, same, _ = run(ref, {"samples": ref["samples"].clone()})
    assert same["psnr"] == "inf" and same["ssim"] == 1.0


def test_small_latents_use_a_window_that_fits(comfy):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 16, 8, 8, generator=g)
    b = a + 0.1 * torch.randn(2, 16, 8, 8, generator=g)
    report, _, s, _ = run({"samples": a}, {"samples": b})
    rng = float(a.max() - a.min())
    assert s["ssim_window"] == 7 and "7x7 Gaussian window" in report
    assert (s["psnr"], s["ssim"], s["max_abs_diff"]) == kornia_numbers(a, b, rng, 7)


def test_video_latent_frames_count_as_images(comfy):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(1, 16, 3, 12, 12, generator=g)
    b = a + 0.05 * torch.randn(a.shape, generator=g)
    _, view, s, _ = run({"samples": a}, {"samples": b})
    assert len(s["per_image"]) == 3 and view.shape[0] == 3
    frames = lambda t: t.movedim(2, 1).reshape(3, 16, 12, 12)  # noqa: E731
    assert s["psnr"] == kornia_numbers(frames(a), frames(b), float(a.max() - a.min()), 11)[0]


def test_run_id_note_when_latent_is_not_the_runs(comfy, sd3_runs):
    _, ref, _, patched = sd3_runs
    other = {"samples": torch.zeros(1, 16, 8, 8)}
    report, _, _, _ = run(other, {"samples": torch.ones(1, 16, 8, 8)}, model=patched)
    assert "note: that run sampled a latent of shape (1, 16, 16, 16), not this one's (1, 16, 8, 8)" in report


def test_model_without_cache_node(comfy, tiny_models):
    a = images(3)
    report, _, s, _ = run(a, a, model=tiny_models("sd3").patcher)
    assert s["run_id"] is None and "has no TeaCache Patch or L2C Schedule Loader" in report


@pytest.mark.parametrize("case, message", [
    ("mixed", "one LATENT and one IMAGE: connect a VAE"),
    ("size", "differ in shape (1x48x40x3 vs 1x40x40x3)"),
    ("nan", "cached holds 1 NaN/inf values"),
    ("tiny", "too small for SSIM"),
    ("type", "expected a LATENT or an IMAGE, got str"),
])
def test_bad_input_says_what_to_do(comfy, case, message):
    a = images(4)
    if case == "mixed":
        ref, cac = {"samples": torch.zeros(1, 16, 6, 5)}, a
    elif case == "size":
        ref, cac = a, images(4, h=40)
    elif case == "nan":
        ref, cac = a, a.clone()
        cac[0, 0, 0, 0] = float("nan")
    elif case == "tiny":
        ref = cac = torch.zeros(1, 2, 2, 3)
    else:
        ref, cac = a, "an image"
    with pytest.raises(ValueError) as e:
        run(ref, cac)
    assert message in str(e.value)
