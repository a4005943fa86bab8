"""The Cache Stats plot, drawn with PIL so it works without any plotting library."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

COMPUTE = (66, 135, 245)
REUSE = (245, 166, 35)
BG = (24, 24, 28)
FG = (220, 220, 220)
GRID = (70, 70, 78)


def stats_plot(records: list, threshold: float | None, title: str, width: int = 768) -> torch.Tensor:
    """Per step and stream: computed/reused cells, relative L1 and the accumulator against the
    threshold, and layers reused. Returns a ComfyUI IMAGE tensor [1, H, W, 3]."""
    streams = sorted({r.stream for r in records}) or ["-"]
    row_h = 14
    top = 24
    cells_h = row_h * len(streams)
    chart_h = 150
    layers_h = 60
    height = top + cells_h + 20 + chart_h + 20 + layers_h + 24
    img = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(img)
    d.text((6, 6), title[:110], fill=FG)
    left = 90
    plot_w = width - left - 10
    # columns = evaluations of the first stream order; every record gets a column by its step per stream
    per_stream = {s: [r for r in records if r.stream == s] for s in streams}
    n_cols = max((len(v) for v in per_stream.values()), default=1) or 1
    cw = plot_w / n_cols
    for si, s in enumerate(streams):
        y = top + si * row_h
        d.text((4, y), s[:12], fill=FG)
        for ci, r in enumerate(per_stream[s]):
            x0 = left + ci * cw
            d.rectangle([x0, y + 1, x0 + max(1.0, cw - 1), y + row_h - 2],
                        fill=COMPUTE if r.decision == "compute" else REUSE)
    # chart of rel_l1 (line) and accumulator (dots) vs threshold
    cy = top + cells_h + 20
    d.text((4, cy), "rel L1", fill=FG)
    vals = [r.rel_l1 for r in records if r.rel_l1 is not None] + \
           [r.accumulated for r in records if r.accumulated is not None]
    vmax = max(vals + ([threshold] if threshold else []) + [1e-6]) * 1.1
    d.rectangle([left, cy, left + plot_w, cy + chart_h], outline=GRID)
    if threshold:
        ty = cy + chart_h - threshold / vmax * chart_h
        d.line([left, ty, left + plot_w, ty], fill=(200, 60, 60))
        d.text((left + plot_w - 90, ty - 12), f"thresh {threshold:g}", fill=(200, 60, 60))
    colors = [(120, 220, 120), (220, 120, 220), (120, 200, 220), (220, 220, 120)]
    for si, s in enumerate(streams):
        pts = []
        for ci, r in enumerate(per_stream[s]):
            if r.rel_l1 is None:
                continue
            pts.append((left + (ci + 0.5) * cw, cy + chart_h - r.rel_l1 / vmax * chart_h))
            if r.accumulated is not None:
                ay = cy + chart_h - r.accumulated / vmax * chart_h
                d.ellipse([left + (ci + 0.5) * cw - 2, ay - 2, left + (ci + 0.5) * cw + 2, ay + 2],
                          outline=colors[si % 4])
        if len(pts) > 1:
            d.line(pts, fill=colors[si % 4], width=2)
    # layers reused per evaluation (first stream)
    ly = cy + chart_h + 20
    d.text((4, ly), "layers", fill=FG)
    d.text((4, ly + 12), "reused", fill=FG)
    first = per_stream[streams[0]]
    for ci, r in enumerate(first):
        tot = r.layers_computed + r.layers_reused
        frac = r.layers_reused / tot if tot else 0.0
        x0 = left + ci * cw
        d.rectangle([x0, ly + layers_h - frac * layers_h, x0 + max(1.0, cw - 1), ly + layers_h], fill=REUSE)
    d.rectangle([left, ly, left + plot_w, ly + layers_h], outline=GRID)
    d.text((left, height - 16), "blue = computed, orange = reused", fill=FG)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr)[None]
