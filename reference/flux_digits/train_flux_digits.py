"""Train a small class-conditional model of ComfyUI's own Flux class on scikit-learn's 8x8 digits.

    <ComfyUI env python> reference/flux_digits/train_flux_digits.py [--comfyui PATH] [--threads 1]

Needs a ComfyUI source tree (``--comfyui``, else ``COMFYUI_PATH``, else
``shared/comfyui/comfyui-0.3.64`` beside this repository or a folder above it) and a Python with its requirements
(``python tests/hosts.py --setup-only`` prints one per tree). ComfyUI is only imported, never
modified; nothing is written outside this repository.

The network is ``comfy.ldm.flux.model.Flux`` built with ComfyUI's own layers
(``comfy.ops.disable_weight_init``) at the configuration below. Widths follow what ComfyUI's
model detection reads back from the tensors (0.29.0: hidden size from ``img_in``/``txt_in``,
``num_heads = hidden / sum(axes_dim)`` = hidden / 128, text and pooled widths from ``txt_in`` and
``vector_in``; guidance embedding when ``guidance_in`` exists), so the saved file loads as
``supported_models.Flux`` (FLUX.1-dev's config: ``ModelType.FLUX``, ``ModelSamplingFlux`` with
shift 1.15, ``latent_formats.Flux``).

Objective: ComfyUI's Flux sampling computes ``x_sigma = sigma * noise + (1 - sigma) * x0``
(``model_sampling.CONST.noise_scaling``), passes ``timestep = sigma`` (``ModelSamplingFlux.timestep``)
to the network and takes ``denoised = x_sigma - sigma * v`` (``CONST.calculate_denoised``). So the
network is trained on rectified flow matching with ``t = sigma ~ U(0, 1)`` and velocity target
``noise - x0``, in the space after ``process_latent_in`` (``dit_reference/flux_digits.py`` maps
pixels there). Labels are replaced by the unconditional class (zero embedding) with probability 0.1
for classifier-free guidance. ``guidance_in`` (FLUX.1-dev's distilled-guidance embedder) is kept
so that detection picks the dev config, with its output layer zero and frozen: the guidance value
(3.5 unless a FluxGuidance node sets it) adds exactly nothing; use KSampler's cfg.

Initialisation: PyTorch's default ``Linear`` init, then adaLN-zero (every modulation and the final
layer zero, so each block starts as the identity), as the reference DiT.

Writes ``dit_reference/data/diffusion_models/dit_cache_flux_digits.safetensors`` (EMA weights in
float16; metadata: config, seed, steps, loss), ``loss_curve.json`` / ``loss_curve.png`` and
``train.log`` beside this script. Accuracy through ComfyUI's sampler: ``python -m bench.comfy_peers
--accuracy`` (run in a ComfyUI environment).
"""
from __future__ import annotations

import argparse
import dataclasses
import copy
import json
import logging
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dit_reference import flux_digits as fd  # noqa: E402
from reference.train_reference import flow_matching_loop, load_digits_tensor, plot_curve  # noqa: E402

log = logging.getLogger("train_flux_digits")

CONFIG = dict(image_model="flux", in_channels=fd.LATENT_CHANNELS, out_channels=fd.LATENT_CHANNELS,
              vec_in_dim=fd.EMBED_DIM, context_in_dim=fd.EMBED_DIM, hidden_size=128, mlp_ratio=4.0,
              num_heads=1, depth=2, depth_single_blocks=4, axes_dim=[16, 56, 56], theta=10000,
              patch_size=2, qkv_bias=True, guidance_embed=True)
GUIDANCE = 3.5  # what ComfyUI's model_base.Flux passes when no FluxGuidance node is used


def import_comfy(path: Path):
    """Import ComfyUI's Flux class from ``path`` in CPU mode without parsing our argv."""
    if not (path / "comfy").is_dir():
        raise SystemExit(f"{path} is not a ComfyUI source tree (no comfy/ folder); pass --comfyui")
    sys.path.insert(0, str(path))
    import comfy.options
    comfy.options.enable_args_parsing(False)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    # the same attention as ComfyUI's default CPU choice (sub-quadratic), computed by PyTorch's SDPA:
    # its backward is much cheaper; the trained function is the same
    comfy.cli_args.args.use_pytorch_cross_attention = True
    import comfy.ldm.flux.model
    import comfy.ops
    return comfy


def default_comfyui() -> Path:
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return Path(env)
    for up in ROOT.parents:  # ../shared/comfyui beside this repository or one of its parents
        tree = up / "shared" / "comfyui" / "comfyui-0.3.64"
        if tree.is_dir():
            return tree
    raise SystemExit("no ComfyUI source tree found: pass --comfyui or set COMFYUI_PATH")


def build(comfy, config: dict, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = {k: v for k, v in config.items() if k != "image_model"}
    # releases from 2026 require txt_ids_dims (FLUX.1's value, as their detection gives it: [])
    if "txt_ids_dims" in {f.name for f in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}:
        cfg.setdefault("txt_ids_dims", [])
    model = comfy.ldm.flux.model.Flux(dtype=torch.float32, device="cpu", operations=comfy.ops.disable_weight_init,
                                      **cfg)
    # ComfyUI's layers skip weight init (weights are always loaded); give them PyTorch's default
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.Linear.reset_parameters(m)
        elif hasattr(m, "scale") and isinstance(m.scale, torch.nn.Parameter):  # RMSNorm (0.3.64)
            torch.nn.init.ones_(m.scale)
        elif isinstance(m, torch.nn.RMSNorm) and m.weight is not None:         # RMSNorm (0.29.0)
            torch.nn.init.ones_(m.weight)
    zero = [b.img_mod.lin for b in model.double_blocks] + [b.txt_mod.lin for b in model.double_blocks] \
        + [b.modulation.lin for b in model.single_blocks] \
        + [model.final_layer.adaLN_modulation[-1], model.final_layer.linear, model.guidance_in.out_layer]
    for lin in zero:
        torch.nn.init.zeros_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
    for p in model.guidance_in.parameters():
        p.requires_grad_(False)
    return model


def velocity(model, x, t, labels):
    emb = fd.digit_embedding(labels).to(x)
    g = torch.full((len(x),), GUIDANCE, dtype=x.dtype)
    return model(x, t, emb.unsqueeze(1), y=emb, guidance=g)


def train(comfy, args):
    model = build(comfy, CONFIG, args.seed)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in model.parameters())
    log.info("Flux config %s: %.2fM parameters (%d trained)", CONFIG, n_params / 1e6, sum(p.numel() for p in params))
    pix, y_all = load_digits_tensor()
    x_all = fd.pixels_to_model_space(pix)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    g = torch.Generator().manual_seed(args.seed)

    def pixel_loss(err):
        with torch.no_grad():  # the part of the error that decodes to pixels
            return {"loss_pixels": ("in pixels", float(fd.model_space_to_pixels(err).pow(2).mean()))}

    # ComfyUI's blocks add their residuals in place (inference code); autograd then finds tensors
    # it saved modified. Saving copies keeps the values each backward step needs.
    def save_copies():
        return torch.autograd.graph.saved_tensors_hooks(torch.clone, lambda saved: saved)

    return ema, flow_matching_loop(args, model, ema, opt, params, x_all, y_all, g, null_label=fd.NULL,
                                   predict=lambda xt, t, y: velocity(model, xt, t, y), n_params=n_params, log=log,
                                   autograd_context=save_copies, metrics=pixel_loss)


def save(model, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    # FLUX.1 checkpoints name the RMSNorm weights ".scale"; ComfyUI 0.29.0 renames them on load
    sd = {(k[:-len(".weight")] + ".scale" if k.endswith("_norm.weight") else k): v for k, v in sd.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path), metadata={k: str(v) for k, v in meta.items()})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfyui", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-min", type=float, default=2e-5)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--label-dropout", type=float, default=0.1)
    ap.add_argument("--depth", type=int, default=CONFIG["depth"])
    ap.add_argument("--single", type=int, default=CONFIG["depth_single_blocks"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=24.0)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--out", type=Path, default=fd.MODEL_PATH)
    ap.add_argument("--curve-dir", type=Path, default=HERE)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    CONFIG.update(depth=args.depth, depth_single_blocks=args.single)
    comfy = import_comfy((args.comfyui or default_comfyui()).resolve())
    log.info("ComfyUI from %s", comfy.__path__[0])
    model, info = train(comfy, args)
    curve = info.pop("curve")
    meta = {"config": json.dumps(CONFIG), "seed": args.seed, "steps": info["steps_done"],
            "final_loss": f"{info['final_loss_smoothed']:.5f}", "train_seconds": f"{info['train_seconds']:.1f}",
            "batch": args.batch, "lr": args.lr, "ema": args.ema, "label_dropout": args.label_dropout,
            "dataset": "sklearn.datasets.load_digits", "latent": "dit_reference/flux_digits.py",
            "objective": "rectified flow, x=sigma*noise+(1-sigma)*x0, v=noise-x0, sigma~U(0,1)",
            "made_by": "reference/flux_digits/train_flux_digits.py"}
    save(model, args.out, meta)
    args.curve_dir.mkdir(parents=True, exist_ok=True)
    (args.curve_dir / "loss_curve.json").write_text(json.dumps({"meta": meta, **info, "curve": curve}, indent=1))
    plot_curve(curve, args.curve_dir / "loss_curve.png", title="Flux digits flow-matching loss")
    log.info("saved %s (%.2f MB)", args.out, args.out.stat().st_size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
