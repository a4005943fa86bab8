"""The Flux digits model in a graph (a CPU-sized Flux to try the pack on without downloads): a
loader for small Flux files, text-free digit conditioning and the fixed decode to pixels.

The model, its latent layout and its conditioning are described in ``dit_reference/flux_digits.py``
and ``reference/flux_digits/README.md``."""
from __future__ import annotations

import logging

import torch

import comfy.model_detection
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..dit_reference import flux_digits as fd

log = logging.getLogger("dit_cache")


def flux_widths(sd: dict) -> dict:
    """The widths a Flux state dict really has: hidden size (``img_in``), text width (``txt_in``)
    and heads (hidden / rope width, as ComfyUI 0.29.0's detection computes them)."""
    hidden = sd["img_in.weight"].shape[0]
    return {"hidden_size": hidden, "context_in_dim": sd["txt_in.weight"].shape[1]}


def load_flux_state_dict(sd: dict, name: str = "state dict"):
    """A ModelPatcher for a Flux (dev/schnell layout) state dict of any width.

    Where ComfyUI's detection reads the widths back correctly (0.29.0) this is exactly the stock
    ``comfy.sd.load_diffusion_model_state_dict`` (what "Load Diffusion Model" runs). Releases whose
    detection hardcodes FLUX.1's widths (0.3.64: hidden 3072, 24 heads, text 4096) would build a
    full-size model and fail on the first weight; for those the detected config gets the widths
    read from the tensors and the same ComfyUI steps follow (config class from
    ``model_config_from_unet_config``, inference dtype, ``get_model``, ``load_model_weights``,
    ``ModelPatcher``). Raises ValueError for a file that is not a Flux diffusion model."""
    prefix = comfy.model_detection.unet_prefix_from_state_dict(sd)
    stripped = comfy.utils.state_dict_prefix_replace(sd, {prefix: ""}, filter_keys=True)
    if stripped:
        sd = stripped
    cfg = comfy.model_detection.detect_unet_config(sd, "")
    if not cfg or cfg.get("image_model") != "flux" or "img_in.weight" not in sd or "txt_in.weight" not in sd:
        raise ValueError(f"{name} is not a Flux diffusion model (ComfyUI detects {cfg and cfg.get('image_model')!r}); "
                         "load it with the stock Load Diffusion Model node")
    widths = flux_widths(sd)
    rope = sum(cfg["axes_dim"])
    if widths["hidden_size"] % rope:
        raise ValueError(f"{name}: hidden size {widths['hidden_size']} is not a multiple of Flux's rope width {rope}")
    widths["num_heads"] = widths["hidden_size"] // rope
    if all(cfg.get(k) == v for k, v in widths.items()):
        model = comfy.sd.load_diffusion_model_state_dict(sd)
        if model is None:
            raise ValueError(f"ComfyUI could not load {name} as a Flux model")
        return model
    log.info("%s: this ComfyUI's detection assumes Flux widths %s, the file has %s; building it at the file's widths",
             name, {k: cfg.get(k) for k in widths}, widths)
    cfg.update(widths)
    model_config = comfy.model_detection.model_config_from_unet_config(cfg, sd)
    if model_config is None:
        raise ValueError(f"ComfyUI has no model config for {name} ({cfg})")
    load_device = comfy.model_management.get_torch_device()
    offload_device = comfy.model_management.unet_offload_device()
    dtype = comfy.model_management.unet_dtype(model_params=comfy.utils.calculate_parameters(sd),
                                              supported_dtypes=list(model_config.supported_inference_dtypes),
                                              weight_dtype=comfy.utils.weight_dtype(sd))
    manual_cast = comfy.model_management.unet_manual_cast(dtype, load_device, model_config.supported_inference_dtypes)
    model_config.set_inference_dtype(dtype, manual_cast)
    model = model_config.get_model(sd, "").to(offload_device)
    model.load_model_weights(sd, "")
    if sd:
        raise ValueError(f"{name}: weights the Flux model did not take: {sorted(sd)[:8]}")
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def model_choices() -> list[str]:
    try:
        names = list(folder_paths.get_filename_list("diffusion_models"))
    except Exception:
        names = []
    return [fd.MODEL_FILE] + [n for n in names if n != fd.MODEL_FILE]


class FluxDigitsLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DitCache_FluxDigitsLoader",
            display_name="Flux Digits Loader",
            category="dit-cache/digits",
            description="Loads the pack's small trained Flux model of 8x8 digits (ComfyUI's own Flux class, "
                        "4.7 MB) or another small Flux file from models/diffusion_models. On ComfyUI releases "
                        "that read Flux widths from the file (0.29.0) this is the stock Load Diffusion Model; "
                        "older ones (0.3.64) assume FLUX.1's full widths, and this node builds the file's own.",
            inputs=[io.Combo.Input("unet_name", options=model_choices(), default=fd.MODEL_FILE,
                                   tooltip="A Flux file in models/diffusion_models; the pack's digits model is "
                                           f"{fd.MODEL_FILE}.")],
            outputs=[io.Model.Output(tooltip="The Flux model (FLUX.1-dev config: shift 1.15, 16-channel latent).")],
        )

    @classmethod
    def execute(cls, unet_name) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise("diffusion_models", unet_name)
        return io.NodeOutput(load_flux_file(path, unet_name))


def load_flux_file(path: str, name: str):
    """:func:`load_flux_state_dict` of a file, registered as the model's reload factory
    (``cached_patcher_init``, as ComfyUI's own loaders do), so MultiGPU CFG Split can load a copy
    on every device."""
    patcher = load_flux_state_dict(comfy.utils.load_torch_file(path, safe_load=True), name)
    patcher.cached_patcher_init = (load_flux_file, (path, name))
    return patcher


class DigitConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DitCache_DigitConditioning",
            display_name="Digit Conditioning",
            category="dit-cache/digits",
            description="Conditioning for the Flux digits model without a text encoder: each digit is a fixed "
                        "one-hot embedding (one text token and the pooled vector). One conditioning per "
                        "character, as a batch; '-' is the unconditional class (for the negative).",
            inputs=[io.String.Input("digits", default="7",
                                    tooltip="Digits 0-9, one sample each, e.g. '7' or '0123456789' (the latent "
                                            "batch must then be 1 or the same length). '-' = unconditional, the "
                                            "same as Conditioning Zero Out.")],
            outputs=[io.Conditioning.Output(tooltip="[[context [B, 1, 16], {pooled_output [B, 16]}]]")],
        )

    @classmethod
    def execute(cls, digits) -> io.NodeOutput:
        return io.NodeOutput(fd.conditioning(fd.parse_digits(digits)))


class DigitDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DitCache_DigitDecode",
            display_name="Digit Decode",
            category="dit-cache/digits",
            description="The fixed inverse map of the Flux digits model's latent to its 8x8 grey digit (no VAE), "
                        "enlarged for viewing.",
            inputs=[io.Latent.Input("samples", tooltip="A latent sampled with the Flux digits model."),
                    io.Int.Input("scale", default=8, min=1, max=64,
                                 tooltip="Nearest-neighbour enlargement: 8 gives 64x64 images; 1 gives the 8x8 "
                                         "pixels the digits classifier sees.")],
            outputs=[io.Image.Output(tooltip="[B, 8*scale, 8*scale, 3] in [0, 1].")],
        )

    @classmethod
    def execute(cls, samples, scale) -> io.NodeOutput:
        pix = fd.latent_to_pixels(samples["samples"]).clamp(-1, 1)
        if scale > 1:
            pix = torch.nn.functional.interpolate(pix, scale_factor=int(scale), mode="nearest")
        img = ((pix + 1) / 2).movedim(1, -1).expand(-1, -1, -1, 3).contiguous()
        return io.NodeOutput(img)


def digits_nodes() -> list:
    return [FluxDigitsLoader, DigitConditioning, DigitDecode]
