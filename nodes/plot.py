"""The Cache Stats plot, drawn with PIL and numpy (what ComfyUI installs), no plotting library.

Sized for the page: ComfyUI shows a node's image scaled into the node (about 540 px wide for the
Cache Stats node the pack enlarges to, see web/dit_cache.js), so the picture is WIDTH px wide with
FONT px text, about 12 px on screen at that size; the browser test checks it (tests/host/test_browser.py).

Panels, all on one x axis (step; sigma under the step numbers):
1. one band per named stream: each evaluation computed, reused or forecast;
2. TeaCache: per stream, the change each evaluation adds (rel. L1 through the coefficient
   polynomial) as a line and the accumulator it reaches as dots (filled: it computed), against
   the threshold (dashed);
3. L2C: the share of layers reused per evaluation (first stream), when any layer was reused.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..cache_core import report

WIDTH = 900
FONT, SMALL, TITLE = 18, 15, 22
BG = (24, 24, 28)
FG = (225, 225, 225)
DIM = (160, 160, 168)
GRID = (62, 62, 70)
COMPUTE = (66, 135, 245)
REUSE = (245, 166, 35)
FORECAST = (250, 210, 90)
THRESH = (235, 80, 80)
STREAM_COLORS = [(120, 220, 120), (230, 120, 230), (110, 200, 235), (235, 225, 110), (240, 150, 110),
                 (170, 150, 255)]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def _text_w(d: ImageDraw.ImageDraw, text: str, font) -> float:
    return d.textlength(text, font=font)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    span = max(hi - lo, 1e-12)
    raw = span / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def band_rows(records: list, names: dict | None = None) -> list[tuple[str, str]]:
    """(stream key, name) per band, in the order the user thinks of them (positive first)."""
    keys = report.stream_order({r.stream for r in records}, names)
    return [(k, report.stream_name(k, names)) for k in keys]


def _positions(records: list) -> dict:
    """id(record) -> (x0, x1) in step units: the k-th of m evaluations of a stream in one step
    spans [step + k/m, step + (k+1)/m]."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r.stream, r.step), []).append(r)
    out = {}
    for (_, step), rs in groups.items():
        m = len(rs)
        for k, r in enumerate(rs):
            out[id(r)] = (step + k / m, step + (k + 1) / m)
    return out


def stats_plot(records: list, threshold: float | None, summary: dict | str | None = None,
               width: int = WIDTH) -> torch.Tensor:
    """The plot of one run's ``records`` (``cache_core.stats.EvalRecord``) with the TeaCache
    ``threshold`` (None without TeaCache) and the run's ``summary`` dict (its ``stream_names``,
    speed-up and counts title the plot; a string is used as the title). Returns a ComfyUI IMAGE
    tensor [1, H, width, 3] in [0, 1]."""
    s = summary if isinstance(summary, dict) else {}
    names = s.get("stream_names") or {}
    f, fs, ft = _font(FONT), _font(SMALL), _font(TITLE)
    probe = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    rows = band_rows(records, names) or [("-", "no evaluations")]
    n_steps = max([s.get("steps") or 0] + [r.step + 1 for r in records] + [1])
    pos = _positions(records)
    trace = dict(zip(map(id, records), report.accumulator_trace(records)))
    has_tc = any(v is not None for v in trace.values()) and threshold is not None
    has_l2c = any(r.layers_reused and r.decision == "compute" for r in records)

    label_w = int(min(width * 0.3, max(_text_w(probe, n, f) for _, n in rows) + 16))
    left, right = max(label_w, 70), width - 24
    plot_w = right - left
    X = lambda v: left + plot_w * v / n_steps  # noqa: E731  (v in step units)

    row_h, chart_h, layers_h = 26, 240, 90
    height = 70 + 30 + row_h * len(rows) + 20
    height += (40 + chart_h) if has_tc else 0
    height += (30 + layers_h) if has_l2c else 0
    height += 62 + (90 if has_tc else 0)  # room for the legend's lines; cropped below
    img = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(img)

    # title: the numbers of the first line of the report
    if s:
        ms = s.get("measured_speedup")
        speed = f"{ms:.2f}x measured" if ms else f"~{s.get('estimated_speedup') or 1:.2f}x estimated"
        title = f"speed-up {speed} · computed {s.get('computed', 0)}/{s.get('evaluations', 0)} evaluations"
        sub = s.get("run_id", "")
    else:
        title, sub = (summary if isinstance(summary, str) else "dit-cache"), ""
    d.text((12, 10), title, fill=FG, font=ft)
    d.text((12, 40), sub[:110], fill=DIM, font=fs)
    y = 70

    # bands: one per named stream
    present = {r.reason.startswith("forecast") for r in records if r.decision == "reuse"}
    legend = [("computed", COMPUTE), ("reused", REUSE)] + ([("forecast", FORECAST)] if True in present else [])
    d.text((left, y), "each evaluation, per stream:", fill=DIM, font=fs)
    lx = left + _text_w(d, "each evaluation, per stream:", fs) + 16
    for text, col in legend:
        d.rectangle([lx, y + 3, lx + 14, y + 15], fill=col)
        d.text((lx + 20, y), text, fill=FG, font=fs)
        lx += 20 + _text_w(d, text, fs) + 18
    y += 30
    bands_top = y
    for key, name in rows:
        d.text((left - 10 - _text_w(d, name, f), y + 3), name, fill=FG, font=f)
        for r in records:
            if r.stream != key:
                continue
            x0, x1 = pos[id(r)]
            col = COMPUTE if r.decision == "compute" else (FORECAST if r.reason.startswith("forecast") else REUSE)
            d.rectangle([X(x0) + 1, y + 2, max(X(x0) + 2, X(x1) - 1), y + row_h - 3], fill=col)
        y += row_h
    d.rectangle([left, bands_top, right, y], outline=GRID)
    y += 20

    if has_tc:
        d.text((left, y), "accumulated change (rescaled rel. L1, no unit) against the threshold", fill=DIM, font=fs)
        y += 30
        top, bottom = y, y + chart_h
        vals = [v for v in trace.values() if v is not None]
        ymax = max(threshold * 1.25, min(max(vals), 3 * threshold) * 1.08) if threshold > 0 else max(vals) * 1.08
        Y = lambda v: bottom - chart_h * min(v, ymax) / ymax  # noqa: E731
        for t in nice_ticks(0, ymax):
            d.line([left, Y(t), right, Y(t)], fill=GRID)
            label = _fmt(t)
            d.text((left - 8 - _text_w(d, label, fs), Y(t) - 9), label, fill=FG, font=fs)
        if threshold > 0:
            for x in range(left, right, 14):
                d.line([x, Y(threshold), min(x + 8, right), Y(threshold)], fill=THRESH, width=2)
        for si, (key, _) in enumerate(rows):
            col = STREAM_COLORS[si % len(STREAM_COLORS)]
            pts = []
            for r in records:
                v = trace.get(id(r))
                if r.stream != key or v is None:
                    continue
                x0, x1 = pos[id(r)]
                cx = X((x0 + x1) / 2)
                pts.append((cx, Y(r.rescaled)))
                cy = Y(v)
                if v > ymax:  # off the scale: a triangle at the top
                    d.polygon([(cx - 6, top + 8), (cx + 6, top + 8), (cx, top)], fill=col)
                elif r.decision == "compute":
                    d.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], fill=col)
                else:
                    d.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], outline=col, width=2)
            if len(pts) > 1:
                d.line(pts, fill=col, width=2)
        d.rectangle([left, top, right, bottom], outline=GRID)
        y = bottom + 10

    if has_l2c:
        d.text((left, y), "layers reused (L2C), % of the blocks", fill=DIM, font=fs)
        y += 28
        top, bottom = y, y + layers_h
        first = rows[0][0]
        for t in (0, 50, 100):
            yy = bottom - layers_h * t / 100
            d.line([left, yy, right, yy], fill=GRID)
            d.text((left - 8 - _text_w(d, f"{t}%", fs), yy - 9), f"{t}%", fill=FG, font=fs)
        for r in records:
            if r.stream != first:
                continue
            tot = r.layers_computed + r.layers_reused
            frac = r.layers_reused / tot if tot else 0.0
            x0, x1 = pos[id(r)]
            d.rectangle([X(x0) + 1, bottom - frac * layers_h, max(X(x0) + 2, X(x1) - 1), bottom], fill=REUSE)
        d.rectangle([left, top, right, bottom], outline=GRID)
        y = bottom + 10

    # x axis: steps, with the sigma of each labelled step under it
    sigma_at = {}
    for r in records:
        sigma_at.setdefault(r.step, r.sigma)
    every = max(1, math.ceil(n_steps / 12))
    for step in range(0, n_steps, every):
        cx = X(step + 0.5)
        d.line([cx, bands_top - 4, cx, bands_top], fill=FG)
        label = str(step)
        d.text((cx - _text_w(d, label, f) / 2, y), label, fill=FG, font=f)
        if step in sigma_at:
            sl = f"{sigma_at[step]:.2g}"
            d.text((cx - _text_w(d, sl, fs) / 2, y + 22), sl, fill=DIM, font=fs)
    d.text((12, y), "step", fill=FG, font=f)
    d.text((12, y + 22), "sigma", fill=DIM, font=fs)
    y += 50

    if has_tc:  # the chart's legend
        lx = left
        for si, (_, name) in enumerate(rows):
            col = STREAM_COLORS[si % len(STREAM_COLORS)]
            d.line([lx, y + 9, lx + 22, y + 9], fill=col, width=3)
            d.text((lx + 28, y), name, fill=FG, font=fs)
            lx += 28 + _text_w(d, name, fs) + 18
        for text, mark in (("change", "line"), ("accumulated: computed", "dot"), ("reused", "ring"),
                           (f"threshold {threshold:g}", "dash")):
            if lx + 24 + _text_w(d, text, fs) > width:
                lx, y = left, y + 22
            if mark in ("line", "dash"):
                d.line([lx, y + 9, lx + 18, y + 9], fill=FG if mark == "line" else THRESH, width=2)
            else:
                d.ellipse([lx + 4, y + 4, lx + 14, y + 14], fill=FG if mark == "dot" else None,
                          outline=None if mark == "dot" else FG, width=2)
            d.text((lx + 24, y), text, fill=FG, font=fs)
            lx += 24 + _text_w(d, text, fs) + 16
        y += 26
    img = img.crop((0, 0, width, min(height, y + 8)))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr)[None]
