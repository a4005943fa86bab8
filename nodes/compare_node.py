"""Cache Compare node: what caching cost, as PSNR, SSIM and the largest absolute difference of a
cached result against its reference, with both shown side by side and a difference heat map.

Metrics come from kornia through :mod:`cache_core.metrics` (conventions there)."""
from __future__ import annotations

import math

import torch
from comfy_api.latest import io, ui

from ..cache_core import metrics
from .compare_view import compare_view, displayable
from .runtime import get_holder

MAX_LISTED = 8  # per-image lines in the report for a batch


class Compared:
    """One input as compared: ``values`` [N, C, H, W] on the CPU, ``space`` "image" (ComfyUI
    pixels in [0, 1]) or "latent", and the latent's own shape when it came as a LATENT."""

    def __init__(self, values: torch.Tensor, space: str, latent_shape: tuple | None):
        self.values, self.space, self.latent_shape = values, space, latent_shape
        self.video = latent_shape is not None and len(latent_shape) == 5


def _decode(vae, latent: dict) -> torch.Tensor:
    import nodes as comfy_nodes  # ComfyUI's own nodes.py: decode exactly as its VAE Decode node does
    return comfy_nodes.VAEDecode().decode(vae, latent)[0]


def _latent_tensor(latent: dict, name: str) -> torch.Tensor:
    t = latent["samples"]
    if getattr(t, "is_nested", False):  # ComfyUI 0.29 audio+video latents: the first is the picture
        t = t.unbind()[0]
    if t.ndim == 5:  # video [B, C, T, H, W]: every frame is one picture
        t = t.movedim(2, 1).reshape(-1, t.shape[1], t.shape[3], t.shape[4])
    if t.ndim != 4:
        raise ValueError(f"{name}: a LATENT of shape {tuple(t.shape)} is not an image or video latent")
    return t


def prepare(value, name: str, vae) -> Compared:
    """An input as [N, C, H, W]: IMAGEs as they are, LATENTs decoded by ``vae`` when given."""
    if isinstance(value, dict) and "samples" in value:
        shape = tuple(value["samples"].shape) if not getattr(value["samples"], "is_nested", False) else None
        if vae is not None:
            value = _decode(vae, value)
        else:
            return Compared(_latent_tensor(value, name).detach().float().cpu(), "latent", shape)
    else:
        shape = None
    if not isinstance(value, torch.Tensor) or value.ndim != 4:
        got = type(value).__name__ if not isinstance(value, torch.Tensor) else f"a tensor of shape {tuple(value.shape)}"
        raise ValueError(f"{name}: expected a LATENT or an IMAGE, got {got}")
    return Compared(value.detach().float().cpu().movedim(-1, 1), "image", shape)


def check_pair(ref: Compared, cached: Compared) -> None:
    if ref.space != cached.space:
        raise ValueError("reference and cached are one LATENT and one IMAGE: connect a VAE to decode the latent, "
                         "or compare two IMAGEs or two LATENTs")
    if ref.values.shape != cached.values.shape:
        what = "images" if ref.space == "image" else "latents"
        raise ValueError(f"reference and cached {what} differ in shape ({_shape(ref)} vs {_shape(cached)}): compare "
                         "outputs of the same size and batch (same seed and empty latent, one with caching)")
    for c, name in ((ref, "reference"), (cached, "cached")):
        bad = int((~torch.isfinite(c.values)).sum())
        if bad:
            raise ValueError(f"{name} holds {bad} NaN/inf values: that sampling run diverged, so there is nothing "
                             "to measure; check its model, steps and cfg")


def _shape(c: Compared) -> str:
    n, ch, h, w = c.values.shape
    return f"{n}x{h}x{w}x{ch}" if c.space == "image" else f"{n}x{ch}x{h}x{w}"


def data_range(ref: Compared) -> float:
    """L of PSNR/SSIM: 1 for ComfyUI images; for latents (no fixed range), the reference's."""
    if ref.space == "image":
        return 1.0
    r = float(ref.values.max() - ref.values.min())
    return r if r > 0 else 1.0


def run_line(model, cached: Compared) -> tuple[str, str | None]:
    """The report line naming the cached run, and its run id when the ``model`` input knows it."""
    if model is None:
        return "cached run: unknown (connect the patched model that made it to `model`)", None
    holder = get_holder(model.model_options)
    if holder is None:
        return "cached run: unknown (the model on `model` has no TeaCache Patch or L2C Schedule Loader)", None
    s = holder.last_summary
    if s is None:
        return "cached run: unknown (no sampling run of the model on `model` has finished)", None
    speed = (f"{s['measured_speedup']:.2f}x measured" if s.get("measured_speedup")
             else f"~{s['estimated_speedup']:.2f}x estimated")
    line = f"cached run: {s['run_id']} (computed {s['computed']}/{s['evaluations']} evaluations, {speed})"
    if cached.latent_shape is not None and holder.last_latent_shape is not None \
            and tuple(cached.latent_shape) != tuple(holder.last_latent_shape):
        line += (f"\n  note: that run sampled a latent of shape {tuple(holder.last_latent_shape)}, not this one's "
                 f"{tuple(cached.latent_shape)}; the id may belong to another run of that model")
    return line, s["run_id"]


def _db(v: float) -> str:
    return "inf dB (identical)" if math.isinf(v) else f"{v:.2f} dB"


#: "no visible difference" needs both: PSNR >= NO_VISIBLE_PSNR dB and SSIM >= NO_VISIBLE_SSIM
NO_VISIBLE_PSNR, NO_VISIBLE_SSIM = 40.0, 0.98
#: below either of these the difference is called visible
VISIBLE_PSNR, VISIBLE_SSIM = 30.0, 0.92


def visibility(space: str, per_image: list[metrics.Fidelity]) -> str:
    """The first line of the report: whether the difference is visible, from the worst image.

    The figures, for images in [0, 1] (both measures must agree, since PSNR alone does not decide):

    * SSIM: in a just-noticeable-difference test on compressed greyscale images, the point where at
      least half of the participants could no longer tell the compressed from the original image was
      SSIM 0.96 for four images and 0.92 for two, 0.95 on average (Flynn, Ward, Abich and Poole,
      "Image Quality Assessment Using the SSIM and the Just Noticeable Difference Paradigm",
      HCI International 2013, LNCS 8019, pp. 23-30). So SSIM >= 0.98, above every one of those
      thresholds, reads as not visible, and SSIM < 0.92, below all of them, as visible.
    * PSNR: on the 1,008 images of KonJND-1k the boundary between visually lossless and visibly
      lossy JPEG compression falls anywhere in a range about 20 dB wide (15 dB for BPG)
      (Bondžulić, Stojanović, Lukin and Kryvenko, "JPEG and BPG visually lossless image compression
      via KonJND-1k database", Vojnotehnički glasnik 72(3), 2024, doi:10.5937/vojtehg72-50300), and
      lossy codecs typically land at 30-50 dB. 40 dB, the upper half of that range, is required for
      "no visible difference" together with the SSIM figure; under 30 dB reads as visible.
    * In between: "near the threshold of visibility": look at the heat map.

    Latents (no VAE) have no visibility: the line says to connect a VAE."""
    worst = min(per_image, key=lambda f: (f.ssim, f.psnr))
    which = "" if len(per_image) == 1 else f" (worst image #{per_image.index(worst)})"
    figures = f"PSNR {_db(worst.psnr)}, SSIM {worst.ssim:.3f}{which}"
    if space != "image":
        return (f"Latent difference, visibility not judged: {figures} in latent space; connect a VAE to compare "
                "decoded images")
    if math.isinf(worst.psnr):
        return "No difference: the cached result is identical to the reference"
    if worst.psnr >= NO_VISIBLE_PSNR and worst.ssim >= NO_VISIBLE_SSIM:
        return (f"No visible difference: {figures} (at or above {NO_VISIBLE_PSNR:g} dB and SSIM "
                f"{NO_VISIBLE_SSIM:g})")
    if worst.psnr < VISIBLE_PSNR or worst.ssim < VISIBLE_SSIM:
        return (f"Visible difference: {figures} (below {VISIBLE_PSNR:g} dB or SSIM {VISIBLE_SSIM:g}); "
                "lower the cache's threshold")
    return (f"Difference near the threshold of visibility: {figures}; look at the heat map, or lower the "
            "cache's threshold")


def build_report(ref: Compared, fid: metrics.Fidelity, per_image: list[metrics.Fidelity], run: str) -> str:
    n, ch, h, w = ref.values.shape
    if ref.space == "image":
        what = f"{n} image{'s' if n > 1 else ''}, {w}x{h}, pixel values 0-1"
    else:
        what = (f"{n} latent{'s' if n > 1 else ''}{' (video frames)' if ref.video else ''}, {ch} channels, {w}x{h}, "
                f"no VAE: "
                f"compared in latent space, data range {fid.data_range:.4g} (the reference's)")
    lines = [visibility(ref.space, per_image),
             f"Cache Compare: cached against reference, {what}",
             f"PSNR        {_db(fid.psnr)}",
             f"SSIM        {fid.ssim:.4f}  ({fid.window}x{fid.window} Gaussian window, sigma 1.5)",
             f"max |diff|  {fid.max_abs_diff:.4g}  (of a data range of {fid.data_range:.4g})",
             run]
    if len(per_image) > 1:
        for i, f in enumerate(per_image[:MAX_LISTED]):
            lines.append(f"  #{i}: PSNR {_db(f.psnr)}, SSIM {f.ssim:.4f}, max |diff| {f.max_abs_diff:.4g}")
        if len(per_image) > MAX_LISTED:
            lines.append(f"  ... {len(per_image) - MAX_LISTED} more")
    return "\n".join(lines)


def _json_number(v: float):
    return v if math.isfinite(v) else "inf"  # the UI message is JSON, which has no Infinity


class CacheCompare(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DitCache_CacheCompare",
            display_name="Cache Compare",
            category="dit-cache",
            description="Measures what caching cost: PSNR, SSIM and the largest absolute difference of a cached "
                        "result against the uncached reference (same seed and settings), with both side by side "
                        "and a heat map of where they differ.",
            inputs=[
                io.MultiType.Input("reference", types=[io.Latent, io.Image],
                                   tooltip="The uncached result (LATENT or IMAGE): the same seed and settings "
                                           "sampled without caching."),
                io.MultiType.Input("cached", types=[io.Latent, io.Image],
                                   tooltip="The result with caching, the same type and size as reference."),
                io.Vae.Input("vae", optional=True,
                             tooltip="Decodes LATENT inputs so they are compared as images (recommended). "
                                     "Without it, latents are compared in latent space."),
                io.Model.Input("model", optional=True,
                               tooltip="The patched model that made cached (TeaCache Patch / L2C Schedule Loader "
                                       "output): names its last run in the report."),
            ],
            outputs=[io.String.Output(display_name="report", tooltip="PSNR, SSIM, largest difference, run id."),
                     io.Image.Output(display_name="comparison",
                                     tooltip="Reference, cached and difference heat map, side by side.")],
            is_output_node=True,
        )

    @classmethod
    def fingerprint_inputs(cls, reference, cached, vae=None, model=None):
        holder = get_holder(model.model_options) if model is not None else None
        return holder.runs_finished if holder is not None else 0

    @classmethod
    def execute(cls, reference, cached, vae=None, model=None) -> io.NodeOutput:
        ref = prepare(reference, "reference", vae)
        cac = prepare(cached, "cached", vae)
        check_pair(ref, cac)
        rng = data_range(ref)
        window = metrics.ssim_window(*ref.values.shape[-2:])
        fid = metrics.fidelity(cac.values, ref.values, rng, window, per_image=ref.values.shape[0] > 1)
        per_image = list(fid.per_image) or [fid]
        run, run_id = run_line(model, cac)
        report = build_report(ref, fid, per_image, run)
        if ref.space == "image":
            shown = displayable(ref.values), displayable(cac.values)
        else:
            lo, hi = ref.values.amin((0, 2, 3)), ref.values.amax((0, 2, 3))
            shown = displayable(ref.values, lo, hi), displayable(cac.values, lo, hi)
        view = compare_view(ref.values, cac.values, *shown,
                            titles=("reference" + (" (latent ch 0-2)" if ref.space == "latent" else ""), "cached"))
        preview = ui.PreviewImage(view, cls=cls).as_dict()
        summary = {"psnr": _json_number(fid.psnr), "ssim": fid.ssim, "max_abs_diff": fid.max_abs_diff,
                   "data_range": fid.data_range, "ssim_window": fid.window, "space": ref.space, "run_id": run_id,
                   "per_image": [{"psnr": _json_number(f.psnr), "ssim": f.ssim, "max_abs_diff": f.max_abs_diff}
                                 for f in per_image]}
        return io.NodeOutput(report, view, ui={"text": (report,), "images": preview["images"],
                                               "dit_cache_compare": [summary]})
