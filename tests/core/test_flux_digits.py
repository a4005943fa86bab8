"""The Flux digits model's fixed maps and shipped file, without ComfyUI."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from dit_reference import flux_digits as fd


def test_pixel_map_round_trip_is_exact_up_to_rounding():
    g = torch.Generator().manual_seed(0)
    pix = torch.rand(5, 1, 8, 8, generator=g) * 2 - 1
    lat = fd.pixels_to_latent(pix)
    assert lat.shape == (5, 16, 4, 4)
    torch.testing.assert_close(fd.latent_to_pixels(lat), pix, atol=1e-6, rtol=0)


def test_decode_ignores_the_directions_without_data():
    pix = torch.zeros(1, 1, 8, 8)
    lat = fd.pixels_to_latent(pix)
    other = torch.zeros(16)
    other[0], other[1] = 1.0, -1.0  # orthogonal to pixel 0's direction (1/2, 1/2, 1/2, 1/2, 0, ...)
    noisy = lat + other.view(1, 16, 1, 1) * 3.0
    torch.testing.assert_close(fd.latent_to_pixels(noisy), pix, atol=1e-6, rtol=0)


def test_model_space_is_comfyui_process_in_of_the_latent():
    pix = torch.linspace(-1, 1, 64).view(1, 1, 8, 8)
    lat = fd.pixels_to_latent(pix)
    torch.testing.assert_close((lat - fd.FLUX_SHIFT) * fd.FLUX_SCALE, fd.pixels_to_model_space(pix))


def test_each_pixel_is_a_unit_vector_and_pixels_are_orthogonal():
    basis = torch.eye(64).view(64, 1, 8, 8)
    z = fd.pixels_to_model_space(basis).reshape(64, -1)
    torch.testing.assert_close(z @ z.T, torch.eye(64))
    # pixel (2i + a, 2j + b) lives at latent position (i, j): the 4x4 pixel block of a Flux token
    e = torch.zeros(1, 1, 8, 8)
    e[0, 0, 5, 2] = 1.0
    nz = fd.pixels_to_model_space(e)[0].abs().sum(0).nonzero().tolist()
    assert nz == [[2, 1]]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="Flux latent"):
        fd.latent_to_pixels(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="grey digits"):
        fd.pixels_to_model_space(torch.zeros(1, 3, 8, 8))


def test_digit_parsing_and_embedding():
    assert fd.parse_digits("0 1,2") == [0, 1, 2]
    assert fd.parse_digits("-7") == [fd.NULL, 7]
    for bad, msg in (("", "empty"), ("1a", "only 0-9"), ("  ", "empty")):
        with pytest.raises(ValueError, match=msg):
            fd.parse_digits(bad)
    emb = fd.digit_embedding([3, fd.NULL, 9])
    assert emb.shape == (3, fd.EMBED_DIM)
    assert emb[0].tolist() == [1.0 if i == 3 else 0.0 for i in range(16)]
    assert not emb[1].any()
    assert emb.sum().item() == 2.0
    with pytest.raises(ValueError):
        fd.digit_embedding([10])
    ctx, extra = fd.conditioning([1, 2])[0]
    assert ctx.shape == (2, 1, 16) and extra["pooled_output"].shape == (2, 16)
    assert torch.equal(ctx[:, 0], extra["pooled_output"])


def test_shipped_weights():
    path = fd.MODEL_PATH
    assert path.is_file(), "run reference/flux_digits/train_flux_digits.py"
    assert path.stat().st_size <= 20 * 2 ** 20
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        meta = f.metadata()
        dtypes = {f.get_slice(k).get_dtype() for k in keys}
        hidden = f.get_slice("img_in.weight").get_shape()[0]
        txt = f.get_slice("txt_in.weight").get_shape()
    assert dtypes == {"F16"}
    cfg = json.loads(meta["config"])
    assert cfg["image_model"] == "flux" and cfg["guidance_embed"] is True
    assert hidden == cfg["hidden_size"] and hidden % sum(cfg["axes_dim"]) == 0
    assert txt == [cfg["hidden_size"], fd.EMBED_DIM]
    assert "double_blocks.0.img_attn.norm.key_norm.scale" in keys  # FLUX.1 key names
    assert not any(k.startswith("model.") for k in keys)
