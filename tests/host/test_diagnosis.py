"""What the TeaCache node says about a model it cannot patch: an unsupported model names itself
(ComfyUI's config class and network class) and every supported family; a supported family whose
model is not as its adapter expects says whether that is a variant dit-cache does not know yet or
a change in ComfyUI's code, naming the releases the family was tested with."""
from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from helpers import teacache
from pack import sub


def _unet(comfy):
    """A tiny real SD 1.5 UNet: a model ComfyUI runs that neither a family adapter nor the generic
    route takes (its block lists change width block to block), on every release."""
    cfg = comfy.comfy_supported_models.SD15(dict(
        context_dim=32, model_channels=32, use_linear_in_transformer=False, adm_in_channels=None,
        use_temporal_attention=False, image_size=32, in_channels=4, out_channels=4, num_res_blocks=[1, 1],
        channel_mult=[1, 2], transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1],
        transformer_depth_middle=1, use_spatial_transformer=True, legacy=False, use_checkpoint=False))
    cfg.set_inference_dtype(torch.float32, None)
    model = cfg.get_model({}, "")
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def test_unsupported_model_names_itself_and_the_supported_families(comfy):
    adapters = sub("nodes.adapters")
    with pytest.raises(adapters.UnsupportedModelError) as e:
        teacache(_unet(comfy), 0.4)
    msg = str(e.value)
    assert "does not support this model: SD15 (comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel)" in msg
    assert "Supported families: " in msg
    for name in adapters.supported_names():
        assert name in msg
    if "Flux2" in dir(comfy.comfy_supported_models):
        assert "Flux.2 (dev, klein)" in msg and "Z-Image" in msg
    # and why the generic route does not take it, with what it needs
    assert "generic route, which this model cannot use: the blocks of UNetModel.output_blocks change width" in msg
    assert "blocks of one class and width that take and return the same hidden states" in msg


@pytest.fixture
def flux_without_img_mod(tiny_models):
    """A tiny Flux whose first double block lacks the modulation the adapter reads, as if ComfyUI had
    moved it (its own seed: the model is changed for this test only)."""
    tiny = tiny_models("flux", seed=7)
    block = tiny.diffusion_model.double_blocks[0]
    img_mod = block.img_mod
    del block.img_mod
    try:
        yield tiny
    finally:
        block.img_mod = img_mod


def test_mismatch_on_a_tested_release_is_an_unknown_variant(comfy, flux_without_img_mod):
    base = sub("nodes.adapters.base")
    assert comfy.version in base.TESTED_RELEASES
    with pytest.raises(base.AdapterMismatchError) as e:
        teacache(flux_without_img_mod.patcher, 0.4)
    msg = str(e.value)
    assert "dit-cache flux adapter: DoubleStreamBlock has no img_mod" in msg
    assert f"Flux (dev, schnell, Fill, Kontext) variant dit-cache does not support yet (ComfyUI {comfy.version}" in msg
    assert "changed" not in msg


def test_mismatch_on_another_release_names_the_tested_ones(comfy, flux_without_img_mod, monkeypatch):
    base = sub("nodes.adapters.base")
    monkeypatch.setattr(base, "comfyui_version", lambda: "0.99.0")
    with pytest.raises(base.AdapterMismatchError) as e:
        teacache(flux_without_img_mod.patcher, 0.4)
    msg = str(e.value)
    assert ("ComfyUI 0.99.0 changed the Flux (dev, schnell, Fill, Kontext) model code (dit-cache tested this "
            "family with ComfyUI 0.3.64, 0.29.0 and 0.33.0)") in msg
    assert "Update dit-cache" in msg


if "flux2:dev" in tm.family_ids():  # collected only on releases that have Flux.2
    def test_flux2_is_its_own_family_tested_on_its_release(tiny_models, monkeypatch):
        """Flux.2 runs on the Flux class but shares one modulation: it is detected as Flux.2 (once it
        was misread as Flux whose code had changed), and its messages name the release it was tested on."""
        tiny = tiny_models("flux2")
        adapters, base = sub("nodes.adapters"), sub("nodes.adapters.base")
        ad = adapters.detect(tiny.patcher)
        assert (ad.name, ad.variant(), ad.profile_for_variant()) == ("flux2", "dev", "flux2_dev")
        monkeypatch.setattr(base, "comfyui_version", lambda: "0.31.0")
        msg = base.mismatch_message("flux2", "Flux has no double_stream_modulation_img")
        assert ("ComfyUI 0.31.0 changed the Flux.2 (dev, klein) model code (dit-cache tested this family with "
                "ComfyUI 0.29.0 and 0.33.0)") in msg
