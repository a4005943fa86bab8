"""The Cache Compare picture: reference, cached result and a heat map of their difference side
by side, one picture per batch item, drawn with torch and PIL."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

BG = (24, 24, 28)
FG = (220, 220, 220)
HEADER = 20
GAP = 4
MIN_SIDE, MAX_SIDE = 256, 512  # displayed panel size (longest side), whatever the input size
# perceptually ordered ramp, black -> purple -> red -> orange -> pale yellow (like matplotlib's inferno)
HEAT_STOPS = torch.tensor([(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)],
                          dtype=torch.float32) / 255.0


def heat_colors(v: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] values in [0, 1] -> [N, 3, H, W] colours of the heat ramp."""
    v = v.clamp(0, 1)[:, 0] * (len(HEAT_STOPS) - 1)
    i = v.floor().long().clamp(max=len(HEAT_STOPS) - 2)
    t = (v - i).unsqueeze(-1)
    rgb = HEAT_STOPS[i] * (1 - t) + HEAT_STOPS[i + 1] * t
    return rgb.permute(0, 3, 1, 2)


def displayable(x: torch.Tensor, lo: torch.Tensor | None = None, hi: torch.Tensor | None = None) -> torch.Tensor:
    """[N, C, H, W] -> [N, 3, H, W] in [0, 1]. Images: the first three channels (grey repeated).
    Latents (``lo``/``hi`` given, per channel): channels 0-2 in false colour, scaled by the
    reference's range so both panels share one scale."""
    x = x[:, :3]
    if lo is not None:
        x = (x - lo[:3].view(1, -1, 1, 1)) / (hi[:3] - lo[:3]).clamp_min(1e-12).view(1, -1, 1, 1)
    if x.shape[1] < 3:
        x = x[:, :1].repeat(1, 3, 1, 1)
    return x.clamp(0, 1)


def _panel_size(h: int, w: int) -> tuple[int, int]:
    side = max(h, w)
    if side < MIN_SIDE:  # small (latents, tiny test images): whole-pixel upscale, crisp
        k = -(-MIN_SIDE // side)
        if side * k > MAX_SIDE:
            k = max(1, MAX_SIDE // side)
        return h * k, w * k
    if side > MAX_SIDE:
        s = MAX_SIDE / side
        return max(1, round(h * s)), max(1, round(w * s))
    return h, w


def _resize(x: torch.Tensor, size: tuple[int, int], peaks: bool) -> torch.Tensor:
    h, w = x.shape[-2:]
    if (h, w) == size:
        return x
    if size[0] > h:
        return F.interpolate(x, size=size, mode="nearest")
    # shrinking: keep the largest difference of each pixel block visible, average the pictures
    return F.adaptive_max_pool2d(x, size) if peaks else F.interpolate(x, size=size, mode="area")


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def compare_view(reference: torch.Tensor, cached: torch.Tensor, shown_ref: torch.Tensor, shown_cached: torch.Tensor,
                 titles: tuple[str, str]) -> torch.Tensor:
    """One picture per batch item: the two displayable batches ``shown_*`` ([N, 3, H, W] in
    [0, 1]) and a heat map of max over channels of |cached - reference| (the compared values),
    scaled to the largest difference of the batch. Returns a ComfyUI IMAGE [N, H', W', 3]."""
    diff = (cached.float() - reference.float()).abs().amax(1, keepdim=True)
    peak = float(diff.max()) if diff.numel() else 0.0
    heat = heat_colors(diff / peak if peak > 0 else diff)
    ph, pw = _panel_size(*reference.shape[-2:])
    panels = [_resize(shown_ref.float().cpu(), (ph, pw), False), _resize(shown_cached.float().cpu(), (ph, pw), False),
              _resize(heat.cpu(), (ph, pw), True)]
    labels = [titles[0], titles[1], f"|difference|, black 0 to yellow {peak:.3g}" if peak > 0 else "identical"]
    width = 3 * pw + 4 * GAP
    out = []
    for n in range(reference.shape[0]):
        img = Image.new("RGB", (width, HEADER + ph + GAP), BG)
        d = ImageDraw.Draw(img)
        for j, (p, label) in enumerate(zip(panels, labels)):
            x = GAP + j * (pw + GAP)
            img.paste(Image.fromarray(_to_uint8(p[n])), (x, HEADER))
            d.text((x + 2, 4), label[: max(8, pw // 6)], fill=FG)
        out.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0))
    return torch.stack(out)
