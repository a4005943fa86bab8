"""The pack's trained Flux digits model through ComfyUI's own code: listed by the stock "Load
Diffusion Model", loaded by it where the release reads Flux widths from the file (0.29.0) and by
the pack's Flux Digits Loader everywhere, its digit conditioning and decode nodes, and what it
samples through the KSampler path (classifier accuracy in the region reference/flux_digits states).
"""
from __future__ import annotations

import json

import pytest
import torch

from comfy_env import REPO_ROOT as REPO
from pack import sub

# reference/flux_digits/eval.json: full compute at 25 euler steps, cfg 3 (200 samples per release)
STEPS, CFG = 25, 3.0
MIN_ACCURACY = 0.95  # of 20 samples: the stated figure is 100% at cfg 3 (eval.json); one miss allowed


@pytest.fixture(scope="module")
def fd():
    return sub("dit_reference.flux_digits")


@pytest.fixture(scope="module")
def dn(comfy):
    sub("nodes.folders").register()
    return sub("nodes.digits_nodes")


@pytest.fixture(scope="module")
def model(dn, fd):
    return dn.FluxDigitsLoader.execute(fd.MODEL_FILE).args[0]


def _reads_flux_widths(comfy, fd) -> bool:
    import comfy.model_detection
    import comfy.utils
    sd = comfy.utils.load_torch_file(str(fd.MODEL_PATH), safe_load=True)
    return comfy.model_detection.detect_unet_config(sd, "")["hidden_size"] == sd["img_in.weight"].shape[0]


def test_latent_format_constants_are_comfyuis(comfy, fd):
    import comfy.latent_formats
    lf = comfy.latent_formats.Flux()
    assert (lf.scale_factor, lf.shift_factor, lf.latent_channels) == (fd.FLUX_SCALE, fd.FLUX_SHIFT, 16)


def test_listed_by_the_stock_loader(comfy, dn, fd):
    import nodes
    assert fd.MODEL_FILE in nodes.UNETLoader.INPUT_TYPES()["required"]["unet_name"][0]


def test_loader_builds_comfyuis_flux_dev_config(comfy, model, fd):
    import comfy.ldm.flux.model
    import comfy.model_sampling
    m = model.model
    assert type(m.diffusion_model) is comfy.ldm.flux.model.Flux
    assert type(m.model_config).__name__ == "Flux"  # supported_models.Flux: FLUX.1-dev's config
    assert isinstance(m.model_sampling, comfy.model_sampling.ModelSamplingFlux)
    assert m.model_sampling.shift == pytest.approx(1.15)
    assert m.diffusion_model.params.hidden_size == 128 and m.diffusion_model.params.num_heads == 1
    assert sub("nodes.adapters").detect(model).name == "flux"


def test_stock_loader_where_detection_reads_widths(comfy, dn, fd, model):
    """0.29.0 detects the widths from the tensors: "Load Diffusion Model" loads the file and the
    pack's loader is that same path. 0.3.64 detects FLUX.1's full widths (hidden 3072), so the
    stock loader cannot build it there (not run: it would allocate a 1.2-billion-weight model)."""
    import nodes
    if comfy.version == "0.3.64":
        assert not _reads_flux_widths(comfy, fd)
        return
    assert _reads_flux_widths(comfy, fd), f"ComfyUI {comfy.version} no longer reads Flux widths from the file"
    stock = nodes.UNETLoader().load_unet(fd.MODEL_FILE, "default")[0]
    a, b = stock.model.diffusion_model.state_dict(), model.model.diffusion_model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert type(stock.model.model_config) is type(model.model.model_config)


def test_loader_refuses_other_models(comfy, dn, tiny_models):
    sd = {k: v.clone() for k, v in tiny_models("sd3").state_dict.items()}
    with pytest.raises(ValueError, match="not a Flux diffusion model"):
        dn.load_flux_state_dict(sd, "tiny_sd3.safetensors")


def test_digit_conditioning_node(comfy, dn, fd):
    import nodes
    cond = dn.DigitConditioning.execute("0123456789").args[0]
    ctx, extra = cond[0]
    assert ctx.shape == (10, 1, 16) and extra["pooled_output"].shape == (10, 16)
    assert torch.equal(ctx[:, 0, :10], torch.eye(10))
    zero = nodes.ConditioningZeroOut().zero_out(cond)[0]
    null = dn.DigitConditioning.execute("-").args[0]
    assert torch.equal(zero[0][0][:1], null[0][0]) and torch.equal(zero[0][1]["pooled_output"][:1],
                                                                   null[0][1]["pooled_output"])
    with pytest.raises(ValueError, match="only 0-9"):
        dn.DigitConditioning.execute("seven")


def test_digit_decode_node_inverts_the_map(comfy, dn, fd):
    g = torch.Generator().manual_seed(1)
    pix = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1
    img = dn.DigitDecode.execute({"samples": fd.pixels_to_latent(pix)}, 1).args[0]
    assert img.shape == (3, 8, 8, 3)
    torch.testing.assert_close(img[..., 0], ((pix[:, 0] + 1) / 2), atol=1e-6, rtol=0)
    big = dn.DigitDecode.execute({"samples": fd.pixels_to_latent(pix)}, 8).args[0]
    assert big.shape == (3, 64, 64, 3) and torch.equal(big[:, ::8, ::8], img)


def test_samples_are_the_digits_asked_for(comfy, dn, fd, model):
    """Full compute through nodes.common_ksampler (the KSampler node's code)."""
    import nodes
    from dit_reference.classifier import DigitClassifier
    labels = list(range(10)) * 2
    pos = dn.DigitConditioning.execute("".join(map(str, labels))).args[0]
    neg = nodes.ConditioningZeroOut().zero_out(pos)[0]
    latent = nodes.EmptyLatentImage().generate(fd.IMAGE_WIDTH, fd.IMAGE_WIDTH, len(labels))[0]  # 4 channels: ComfyUI fixes to 16
    out = nodes.common_ksampler(model, 0, STEPS, CFG, "euler", "simple", pos, neg, latent)[0]["samples"]
    assert out.shape == (20, 16, 4, 4)
    pix = fd.latent_to_pixels(out).clamp(-1, 1)
    acc = DigitClassifier().accuracy(pix, torch.tensor(labels))
    stated = json.loads((REPO / "reference" / "flux_digits" / "eval.json").read_text())
    print(f"accuracy {acc:.2f} on ComfyUI {comfy.version}; stated: "
          f"{stated['releases'].get(comfy.version, {}).get('results', {}).get('cfg3')}")
    assert acc >= MIN_ACCURACY
