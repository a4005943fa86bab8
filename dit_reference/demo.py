"""Demo on the shipped reference DiT: no cache, TeaCache, Learning-to-Cache and both together,
and TeaCache and L2C forecasting the skipped work (``reuse="taylor1"``, cache_core.forecast).

    python -m dit_reference.demo [--out ./out] [--per-class 5] [--steps 25] [--cfg 3] [--repeats 3]

Samples the same seeds and classes with every method, and prints one row per method:
evaluations computed (per stream: cond and uncond count separately), attention/MLP branches
computed, the estimated speed-up (total / computed branches), the measured wall-clock speed-up
(median of ``--repeats`` runs against the median of the last three uncached runs in this process;
one uncached run is timed next to every method because a shared machine's speed drifts), PSNR and
SSIM against the uncached samples, and the accuracy of a digits classifier on the samples.
TeaCache + L2C runs through the plain CacheController, which treats L2C's cached branch outputs as
missing on the first step after a TeaCache reuse (that step computes every branch); the branch
column counts the branches actually computed. Writes
``<out>/demo_grid.png`` (one image grid per method), ``<out>/demo_fidelity.png`` (PSNR versus
speed-up), ``<out>/demo_results.json`` and the learned ``<out>/l2c_schedule.safetensors``.

The L2C schedule is learned at demo time with :class:`cache_core.l2c.RouterTrainer` on
full-compute trajectories of the reference model (a few hundred router iterations, seconds on a
CPU). ``--schedule FILE`` loads one instead.

Metrics (images clamped to [-1, 1], data range L = 2), computed by kornia through
``cache_core.metrics``:
  PSNR  10 log10(L^2 / MSE), MSE over all pixels of all samples (inf when identical).
  SSIM  C1 = (0.01 L)^2, C2 = (0.03 L)^2, local statistics from kornia's 3x3 Gaussian window
        (sigma 1.5) without padding (a 6x6 map per 8x8 image), averaged over the map and the
        samples. Until this switch the demo used its own SSIM with sigma 1.0: on the demo's
        samples the two differ by at most 0.0019 (bench/README.md); PSNR is the same formula.
  classifier  multinomial logistic regression on the [-1, 1]-scaled digits, trained by
        reference/train_reference.py and shipped as data/reference_classifier.json (numpy only;
        dit_reference.classifier).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from cache_core import metrics
from cache_core.teacache import TeaCacheConfig

from .classifier import DigitClassifier
from .learn import ReferenceBranchModel
from .model import WEIGHTS, Block, ReferenceDiT
from .sampling import flow_sigmas, make_controller, sample

log = logging.getLogger(__name__)

#: ``--clock`` choices: wall-clock, or this process's CPU time. With one torch thread on a CPU
#: shared with other jobs, CPU time is the cost of the run itself: on a 2-core machine at load 7,
#: wall-clock of one uncached 100-sample run swung 20-25 s (4 s unloaded) while CPU time stayed
#: 4.4-5.3 s. CPU time sums over threads, so it needs one thread.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


# -- metrics -------------------------------------------------------------------------------
def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> float:
    """PSNR in dB of two sample batches clamped to [-1, 1]: one MSE over all pixels of all
    samples, ``inf`` when identical (:func:`cache_core.metrics.psnr`, kornia, in float64)."""
    return metrics.psnr(a.double().clamp(-1, 1), b.double().clamp(-1, 1), data_range)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0, window: int = 3) -> float:
    """Mean SSIM of two [N, C, H, W] batches clamped to [-1, 1]: a 3x3 Gaussian window
    (sigma 1.5) without padding, i.e. a 6x6 map per 8x8 image (:func:`cache_core.metrics.ssim`,
    kornia, in float64)."""
    return metrics.ssim(a.double().clamp(-1, 1), b.double().clamp(-1, 1), data_range, window)


# -- L2C on the reference model ---------------------------------------------------------------
@torch.no_grad()
def trajectory(model: ReferenceDiT, labels: torch.Tensor, steps: int, cfg: float, seed: int) -> list[torch.Tensor]:
    """x at the start of every step of the full-compute Euler run (steps + 1 tensors)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((len(labels), model.cfg.channels, model.cfg.image_size, model.cfg.image_size), generator=g)
    sig = flow_sigmas(steps)
    ad = ReferenceBranchModel(model)
    xs = [x]
    for i in range(steps):
        v, _ = ad.forward_with_mix(x, sig[i], (labels, cfg), None, None)
        x = x + (sig[i + 1] - sig[i]) * v
        xs.append(x)
    return xs


def teacache_pattern(model: ReferenceDiT, labels: torch.Tensor, steps: int, cfg: float, seed: int,
                     teacache: TeaCacheConfig) -> list[int]:
    """Steps TeaCache computes (any stream) on one sampling run."""
    ctl = make_controller(model, teacache=teacache)
    sample(model, labels, steps=steps, cfg=cfg, seed=seed, controller=ctl)
    return sorted({r.step for r in ctl.recorder.records if r.decision == "compute"})


def learn_l2c_schedule(model: ReferenceDiT, steps: int = 25, cfg: float = 3.0, lam: float = 3e-3,
                       iterations: int = 240, per_class: int = 2, seed: int = 10_000, lr: float = 0.15,
                       threshold: float = 0.5, cache_steps: Sequence[int] | None = None,
                       teacache: TeaCacheConfig | None = None, alternate: bool = False,
                       progress: Callable[[int, int], None] | None = None):
    """Learns an L2C schedule for the reference model (router trained on its own full-compute
    trajectories, on seeds other than the evaluation seeds). Returns (schedule, info).

    Default: the paper's alternating cache steps (1, 3, 5, ...), each reusing from the step before.
    With ``teacache``: a schedule *for running under that TeaCache setting*. The cache steps are the
    steps TeaCache computes (found by one TeaCache run on the training seeds), and each reuses from
    the previous TeaCache-computed step, which is where the controller's branch cache comes from
    when TeaCache skipped the steps in between. ``alternate``: only every other TeaCache-computed
    step is a cache step (the paper's alternation, over the computed steps), so every layer
    computes at least every other computed step and its forecast history stays fresh."""
    from cache_core.l2c import RouterBatch, RouterTrainer
    labels = torch.arange(model.cfg.classes).repeat_interleave(per_class)
    xs = trajectory(model, labels, steps, cfg, seed)
    sig = flow_sigmas(steps)
    prev = {s: s - 1 for s in range(1, steps)}
    if teacache is not None:
        computed = teacache_pattern(model, labels, steps, cfg, seed, teacache)
        cache_steps = [s for s in computed[1::2 if alternate else 1] if s < steps - 1]
        prev = {b: a for a, b in zip(computed, computed[1:])}
        if not cache_steps:
            raise ValueError(f"TeaCache {teacache.run_id()} computes no middle step to learn a schedule for")
    trainer = RouterTrainer(ReferenceBranchModel(model), steps, family="reference", lam=lam, lr=lr,
                            cache_steps=cache_steps)

    def batch(step: int) -> RouterBatch:
        p = prev[step]
        return RouterBatch(x_prev=xs[p], t_prev=sig[p], x=xs[step], t=sig[step], cond=(labels, cfg))

    t0 = time.perf_counter()
    losses = trainer.fit(batch, iterations, progress=progress)
    how = f" under {teacache.run_id()}" if teacache is not None else ""
    sched = trainer.to_schedule(threshold, source=f"dit_reference.demo lam={lam:g} it={iterations}{how}")
    info = {"lam": lam, "iterations": iterations, "seconds": time.perf_counter() - t0,
            "final_loss": losses[-1] if losses else None, "teacache": teacache.run_id() if teacache else None,
            **sched.summary()}
    return sched, info


# -- running methods ---------------------------------------------------------------------------
@dataclass
class Method:
    name: str
    teacache: TeaCacheConfig | None = None
    l2c: object | None = None
    note: str = ""
    l2c_reuse: str = "cached"


@dataclass
class MethodResult:
    name: str
    images: torch.Tensor
    seconds: list[float]
    summary: dict = field(default_factory=dict)
    psnr: float = math.inf
    ssim: float = 1.0
    accuracy: float = 0.0
    speedup: float = 1.0
    ref_s: float | None = None  # uncached time this method is compared with

    def row(self) -> dict:
        s = self.summary
        return {"method": self.name, "evaluations": s.get("evaluations"), "computed": s.get("computed"),
                "branches_computed": s.get("branches_computed"), "branches_total": s.get("branches_total"),
                "median_s": statistics.median(self.seconds), "speedup": self.speedup, "psnr": self.psnr,
                "ssim": self.ssim, "accuracy": self.accuracy,
                "estimated_speedup": s.get("estimated_speedup")}


def track_branches(controller):
    """Makes ``controller`` log every attention/MLP branch it actually computes in
    ``controller.branch_calls`` as (step, branch name, streams in the forward). The schedule alone
    undercounts: the first step after a TeaCache reuse computes every branch (its L2C caches count
    as missing)."""
    calls: list[tuple[int, str, int]] = []
    plain = controller.branch

    def branch(index, name, fn):
        ctx = controller.ctx

        def run():
            calls.append((ctx.info.step if ctx is not None else -1, name, len(ctx.streams) if ctx is not None else 1))
            return fn()
        return plain(index, name, run)

    controller.branch = branch
    controller.branch_calls = calls
    return controller


def count_branches(model: ReferenceDiT, controller) -> tuple[int, int]:
    """(computed, total) attention/MLP branch evaluations of the last run, per evaluation of a
    stream (a batched CFG forward counts twice, like the evaluation counts). With L2C the
    controller must have been set up with :func:`track_branches`."""
    nb = len(Block.branches)
    n_layers = len(model.blocks)
    total = n_layers * nb * len(controller.recorder.records)
    if controller.l2c is not None:
        return sum(n for _, _, n in controller.branch_calls), total
    computed = sum(n_layers * nb for r in controller.recorder.records if r.decision == "compute")
    return computed, total


def run_method(model: ReferenceDiT, method: Method, labels: torch.Tensor, steps: int, cfg: float, seed: int,
               repeats: int, clock: str = "wall") -> MethodResult:
    now = CLOCKS[clock]
    seconds = []
    images = None
    summary: dict = {}
    for _ in range(max(1, repeats)):
        if method.teacache is not None or method.l2c is not None:
            ctl = make_controller(model, teacache=method.teacache, l2c=method.l2c, l2c_reuse=method.l2c_reuse)
            if method.l2c is not None:
                track_branches(ctl)
        else:
            ctl = None
        t0 = now()
        x = sample(model, labels, steps=steps, cfg=cfg, seed=seed, controller=ctl)
        seconds.append(now() - t0)
        if images is not None and not torch.equal(images, x):
            log.warning("%s: repeated runs differ", method.name)
        images = x
        if ctl is not None:
            summary = ctl.recorder.summary()
            bc, bt = count_branches(model, ctl)
        else:
            n = steps * (2 if cfg != 1.0 else 1)
            summary = {"evaluations": n, "computed": n}
            bc = bt = n * len(model.blocks) * len(Block.branches)
        summary["branches_computed"], summary["branches_total"] = bc, bt
        summary["estimated_speedup"] = bt / max(1, bc)  # share of attention/MLP branch work done
    return MethodResult(method.name, images, seconds, summary)


def evaluate(results: list[MethodResult], labels: torch.Tensor, clf: DigitClassifier | None) -> None:
    base = results[0]
    t_base = statistics.median(base.seconds)
    for r in results:
        r.speedup = (r.ref_s or t_base) / statistics.median(r.seconds)
        r.psnr = psnr(r.images, base.images)
        r.ssim = ssim(r.images, base.images)
        r.accuracy = clf.accuracy(r.images, labels) if clf is not None else float("nan")


def format_table(rows: list[dict]) -> str:
    head = (f"{'method':<24} {'evals':>9} {'branches':>11} {'est.':>6} {'speed-up':>8} {'PSNR dB':>8} "
            f"{'SSIM':>6} {'acc':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ev = f"{r['computed']}/{r['evaluations']}"
        br = f"{r['branches_computed']}/{r['branches_total']}"
        ps = "inf" if math.isinf(r["psnr"]) else f"{r['psnr']:.1f}"
        est = r.get("estimated_speedup") or 1.0
        lines.append(f"{r['method']:<24} {ev:>9} {br:>11} {est:>5.2f}x {r['speedup']:>7.2f}x {ps:>8} "
                     f"{r['ssim']:>6.3f} {r['accuracy']:>5.2f}")
    return "\n".join(lines)


# -- pictures (PIL only) -----------------------------------------------------------------------
def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return ((img.detach().float().clamp(-1, 1).cpu().numpy() + 1) * 127.5).round().astype(np.uint8)


def image_grid(images: torch.Tensor, cols: int, scale: int = 4, pad: int = 1):
    from PIL import Image
    n, _, h, w = images.shape
    rows = math.ceil(n / cols)
    canvas = Image.new("L", (cols * (w * scale + pad) + pad, rows * (h * scale + pad) + pad), 255)
    for k in range(n):
        tile = Image.fromarray(_to_uint8(images[k, 0])).resize((w * scale, h * scale), Image.NEAREST)
        canvas.paste(tile, (pad + (k % cols) * (w * scale + pad), pad + (k // cols) * (h * scale + pad)))
    return canvas


def save_grids(results: list[MethodResult], labels: torch.Tensor, path: Path, per_class: int) -> None:
    """One grid per method side by side: rows are classes 0-9, columns the samples of that class."""
    from PIL import Image, ImageDraw
    grids = []
    for r in results:
        order = torch.argsort(labels, stable=True)
        grids.append(image_grid(r.images[order], cols=per_class))
    gw, gh = grids[0].size
    gw_img, gw = gw, max(gw, 150)
    label_h = 28
    cols = min(len(grids), 4)
    rows = math.ceil(len(grids) / cols)
    canvas = Image.new("RGB", (cols * (gw + 12) + 12, rows * (gh + label_h + 8) + 8), "white")
    d = ImageDraw.Draw(canvas)
    for k, (r, g) in enumerate(zip(results, grids)):
        x0 = 12 + (k % cols) * (gw + 12)
        y0 = 8 + (k // cols) * (gh + label_h + 8)
        d.text((x0, y0), r.name[:28], fill="black")
        ps = "ref" if math.isinf(r.psnr) else f"{r.psnr:.1f}dB"
        d.text((x0, y0 + 12), f"{r.speedup:.2f}x {ps}", fill=(60, 60, 60))
        canvas.paste(g.convert("RGB"), (x0 + (gw - gw_img) // 2, y0 + label_h))
    canvas.save(path)


PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 0), (255, 215, 0),
           (0, 90, 50), (170, 0, 90), (90, 60, 0), (0, 60, 140)]


def _nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k apart) inside [lo, hi]."""
    raw = max(hi - lo, 1e-12) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def scatter_plot(series: dict[str, list[tuple]], path: Path, title: str,
                 xlabel: str = "measured speed-up (x)", ylabel: str = "PSNR vs uncached (dB)",
                 lines: bool = True, size=(900, 560)) -> None:
    """A PIL line/scatter plot with round ticks, a grid and a legend: ``series`` maps a name to
    points ``(x, y)`` or ``(x, y, label)``; a label is written next to its point (e.g. the
    threshold). Infinite y (identical to uncached) is drawn at the top edge, labelled "inf"."""
    from PIL import Image, ImageDraw, ImageFont
    try:
        font, small = ImageFont.load_default(size=16), ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: the bitmap font
        font = small = ImageFont.load_default()
    W, H = size
    ml, mr, mt, mb = 70, 250, 44, 58
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    pts = [(p[0], p[1]) for s in series.values() for p in s if math.isfinite(p[0]) and math.isfinite(p[1])]
    if not pts:
        pts = [(1.0, 0.0), (2.0, 1.0)]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x_lo, x_hi = min(1.0, min(xs)), max(xs) * 1.05
    y_lo, y_hi = min(ys), max(ys)
    pad = 0.08 * max(1e-6, y_hi - y_lo)
    y_lo, y_hi = y_lo - pad, y_hi + 2 * pad
    if x_hi <= x_lo:
        x_hi = x_lo + 1
    sx = lambda v: ml + (W - ml - mr) * (v - x_lo) / (x_hi - x_lo)  # noqa: E731
    sy = lambda v: H - mb - (H - mt - mb) * ((min(v, y_hi) if math.isfinite(v) else y_hi) - y_lo) / (y_hi - y_lo)  # noqa: E731
    for xv in _nice_ticks(x_lo, x_hi):
        d.line([(sx(xv), mt), (sx(xv), H - mb)], fill=(225, 225, 225))
        d.line([(sx(xv), H - mb), (sx(xv), H - mb + 5)], fill="black")
        label = f"{xv:g}"
        d.text((sx(xv) - d.textlength(label, font=font) / 2, H - mb + 8), label, fill="black", font=font)
    for yv in _nice_ticks(y_lo, y_hi):
        d.line([(ml, sy(yv)), (W - mr, sy(yv))], fill=(225, 225, 225))
        d.line([(ml - 5, sy(yv)), (ml, sy(yv))], fill="black")
        label = f"{yv:g}"
        d.text((ml - 8 - d.textlength(label, font=font), sy(yv) - 9), label, fill="black", font=font)
    d.rectangle([ml, mt, W - mr, H - mb], outline="black")
    d.text((ml, 10), title, fill="black", font=font)
    d.text(((W - mr + ml) / 2 - d.textlength(xlabel, font=font) / 2, H - 26), xlabel, fill="black", font=font)
    d.text((ml + 6, mt + 4), ylabel, fill=(80, 80, 80), font=font)
    for k, (name, s) in enumerate(series.items()):
        col = PALETTE[k % len(PALETTE)]
        p = sorted((sx(q[0]), sy(q[1]), q[2] if len(q) > 2 else ("inf" if not math.isfinite(q[1]) else ""))
                   for q in s if math.isfinite(q[0]))
        if lines and len(p) > 1:
            d.line([(a, b) for a, b, _ in p], fill=col, width=2)
        for px, py, label in p:
            d.ellipse([px - 4, py - 4, px + 4, py + 4], fill=col)
            if label:
                d.text((px + 6, py - 18), str(label), fill=col, font=small)
        ly = mt + 20 * k
        d.rectangle([W - mr + 12, ly + 3, W - mr + 24, ly + 15], fill=col)
        d.text((W - mr + 30, ly), name[:30], fill="black", font=small)
    img.save(path)


# -- main ------------------------------------------------------------------------------------
def build_methods(model: ReferenceDiT, args, schedule) -> list[Method]:
    methods = [Method("no cache")]
    for t in args.thresholds:
        methods.append(Method(f"TeaCache {args.coefficients} {t:g}",
                              TeaCacheConfig(rel_l1_thresh=t, coefficients=args.coefficients)))
    t = max(args.thresholds)
    methods.append(Method(f"TeaCache {args.coefficients} {t:g} taylor1",
                          TeaCacheConfig(rel_l1_thresh=t, coefficients=args.coefficients, reuse="taylor1")))
    methods.append(Method(f"L2C lam={args.lam:g}", l2c=schedule))
    methods.append(Method(f"L2C lam={args.lam:g} taylor1", l2c=schedule, l2c_reuse="taylor1"))
    methods.append(Method(f"TeaCache {args.coefficients} {args.combo_threshold:g} + L2C",
                          TeaCacheConfig(rel_l1_thresh=args.combo_threshold, coefficients=args.coefficients),
                          l2c=schedule))
    return methods


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dit_reference.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("out"))
    ap.add_argument("--weights", type=Path, default=WEIGHTS)
    ap.add_argument("--per-class", type=int, default=5, help="samples per digit class")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per method (median)")
    ap.add_argument("--coefficients", default="raw", help="TeaCache coefficient profile (default: raw)")
    ap.add_argument("--thresholds", type=float, nargs=3, default=[0.1, 0.2, 0.3])
    ap.add_argument("--combo-threshold", type=float, default=0.1)
    ap.add_argument("--lam", type=float, default=3e-3, help="L2C sparsity weight")
    ap.add_argument("--l2c-iterations", type=int, default=240)
    ap.add_argument("--schedule", type=Path, default=None, help="load an L2C schedule instead of learning one")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="time runs by wall-clock or by this process's CPU time (needs --threads 1)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and torch.get_num_threads() != 1:
        ap.error("--clock cpu needs --threads 1 (CPU time sums over threads)")
    now = CLOCKS[args.clock]
    t_start = time.perf_counter()
    model = ReferenceDiT.load(args.weights)
    try:
        clf = DigitClassifier()
    except FileNotFoundError as exc:
        log.warning("%s; accuracy column will be nan", exc)
        clf = None
    args.out.mkdir(parents=True, exist_ok=True)
    labels = torch.arange(model.cfg.classes).repeat_interleave(args.per_class)

    if args.schedule is not None:
        from cache_core.l2c import L2CSchedule
        schedule = L2CSchedule.load(args.schedule)
        l2c_info = {"loaded": str(args.schedule), **schedule.summary()}
        log.info("loaded %s", schedule.describe())
    else:
        log.info("learning an L2C schedule (lam=%g, %d router iterations) ...", args.lam, args.l2c_iterations)
        last = [0.0]

        def progress(i, n):
            if time.perf_counter() - last[0] > 5 or i == n:
                last[0] = time.perf_counter()
                log.info("  router iteration %d/%d", i, n)
        schedule, l2c_info = learn_l2c_schedule(model, steps=args.steps, cfg=args.cfg, lam=args.lam,
                                                iterations=args.l2c_iterations, progress=progress)
        log.info("learned in %.1fs: %s", l2c_info["seconds"], schedule.describe())
        schedule.save(args.out / "l2c_schedule.safetensors")

    # warm-up run (first calls allocate and pick kernels)
    sample(model, labels, steps=2, cfg=args.cfg, seed=args.seed)
    results = []
    uncached_times: list[float] = []
    for m in build_methods(model, args, schedule):
        if results:  # one uncached run next to every method: a shared machine's speed drifts
            t0 = now()
            sample(model, labels, steps=args.steps, cfg=args.cfg, seed=args.seed)
            uncached_times.append(now() - t0)
        log.info("sampling: %s (%d x %d images, %d steps, cfg %g)", m.name, args.repeats, len(labels), args.steps,
                 args.cfg)
        r = run_method(model, m, labels, args.steps, args.cfg, args.seed, args.repeats, args.clock)
        if not results:
            uncached_times += r.seconds
        else:
            r.ref_s = statistics.median(uncached_times[-3:])
        results.append(r)
        log.info("  %s: computed %s/%s evaluations, median %.3fs", m.name, r.summary.get("computed"),
                 r.summary.get("evaluations"), statistics.median(r.seconds))
    evaluate(results, labels, clf)
    rows = [r.row() for r in results]
    table = format_table(rows)
    print(f"\nreference DiT, {len(labels)} samples ({args.per_class} per class), {args.steps} Euler steps, "
          f"cfg {args.cfg:g}, {torch.get_num_threads()} thread(s); speed-up = median "
          f"{'CPU time' if args.clock == 'cpu' else 'wall-clock'} of {args.repeats} runs "
          "vs the last 3 uncached runs (one is timed next to each method)")
    print(table)
    try:
        save_grids(results, labels, args.out / "demo_grid.png", args.per_class)
        series = {r["method"]: [(r["speedup"], r["psnr"])] for r in rows[1:]}
        tc = [(r["speedup"], r["psnr"], f"t{r['method'].split()[-1]}") for r in rows
              if r["method"].startswith("TeaCache") and "L2C" not in r["method"] and "taylor" not in r["method"]]
        series = {"TeaCache": tc, **{k: v for k, v in series.items()
                                     if not k.startswith("TeaCache") or "L2C" in k or "taylor" in k}}
        scatter_plot(series, args.out / "demo_fidelity.png", "reference DiT: fidelity vs measured speed-up")
    except ImportError:
        log.warning("pillow is not installed: no PNGs written (pip install pillow)")
    (args.out / "demo_results.json").write_text(json.dumps(
        {"rows": rows, "l2c": l2c_info, "args": {k: str(v) for k, v in vars(args).items()},
         "threads": torch.get_num_threads(), "total_seconds": time.perf_counter() - t_start}, indent=1, default=str))
    print(f"\nwrote {args.out / 'demo_grid.png'}, {args.out / 'demo_fidelity.png'}, {args.out / 'demo_results.json'} "
          f"({time.perf_counter() - t_start:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
