"""Fidelity versus measured speed-up on the reference DiT (CPU).

    python -m bench.fidelity [--per-class 10] [--steps 25] [--cfg 3] [--repeats 3] [--quick]

Every method samples the same classes and seeds; fidelity is PSNR / SSIM against the uncached
samples of the same run (cache_core.demo.psnr / ssim) and the digits-classifier accuracy.
Speed-up is measured: wall-clock of the uncached sampler (median of the last three uncached runs;
one is timed next to every method, because a shared machine's speed drifts) divided by the median
of ``--repeats`` runs of the method, in this process. An *estimated* speed-up from the work done (attention ≈ 1/3
and MLP ≈ 2/3 of a block's FLOPs at 16 tokens, outside-block work ignored) is reported alongside,
because a shared CPU makes wall-clock noisy.

Methods: TeaCache with published-style fixed coefficients (``flux``: FLUX.1-dev's polynomial;
``raw``: identity) and with coefficients calibrated on this model (cache_core.calibrate:
``record_reference`` + constrained ``fit_coefficients``, on seeds disjoint from the evaluation
seeds), L2C schedules learned at several λ (cache_core.l2c.RouterTrainer through
cache_core.learn.ReferenceBranchModel, branch level attn/mlp, alternate cache steps), TeaCache +
L2C (the plain CacheController: the first step after a TeaCache reuse computes every branch), and baselines: fewer sampling steps, uniform step skipping, a First-Block-Cache-style
indicator and an EasyCache-style transformation-rate indicator (bench/common.py).

Writes bench/results/fidelity.json, fidelity.md (PSNR at 1.5x / 2x / 3x, interpolated linearly on
each method's Pareto frontier), fidelity.png (PSNR vs measured speed-up) and
fidelity_estimated.png (PSNR vs estimated speed-up).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from bench.common import (RESULTS, EasyCacheRate, StackSkipController, UniformSkip, environment, interpolate_at,
                          log, median, pareto, setup, timed, write_json)
from cache_core.demo import DigitClassifier, learn_l2c_schedule, psnr, scatter_plot, ssim, track_branches
from cache_core.reference_dit import ReferenceDiT
from cache_core.reference_sampling import make_controller, sample
from cache_core.teacache import TeaCacheConfig

BRANCH_COST = {"attn": 1 / 3, "mlp": 2 / 3}
TARGETS = (1.5, 2.0, 3.0)


def work_done(model, ctl, steps: int) -> float:
    """Fraction of the block work of a full run that the last run did (per forward, not per stream)."""
    L = len(model.blocks)
    per_step: dict[int, tuple] = {}
    for r in ctl.recorder.records:
        per_step.setdefault(r.step, (r.decision, r.layers_computed))
    done = 0.0
    sched = getattr(ctl, "l2c", None)
    if sched is not None:  # the branches actually computed (see cache_core.demo.track_branches)
        return sum(BRANCH_COST[name] for _, name, _ in ctl.branch_calls) / L / steps
    for step, (decision, layers) in per_step.items():
        if decision != "compute":
            if isinstance(ctl, StackSkipController):
                done += layers / L  # First-Block-Cache computes block 0 on a reuse
            continue
        done += layers / L if isinstance(ctl, StackSkipController) else 1.0
    return done / steps


def l2c_controller(model, **kw):
    """make_controller with L2C, logging the branches it computes (for :func:`work_done`)."""
    return track_branches(make_controller(model, **kw))


class Runner:
    def __init__(self, model, labels, steps, cfg, seed, repeats, clf):
        self.model, self.labels, self.steps, self.cfg, self.seed = model, labels, steps, cfg, seed
        self.repeats, self.clf = repeats, clf
        self.rows: list[dict] = []
        self.ref = None
        self.ref_times: list[float] = []

    def run(self, family: str, label: str, make_ctl=None, steps: int | None = None, param=None) -> dict:
        steps = steps or self.steps
        holder = {}

        def go():
            ctl = make_ctl() if make_ctl is not None else None
            holder["ctl"] = ctl
            return sample(self.model, self.labels, steps=steps, cfg=self.cfg, seed=self.seed, controller=ctl)

        if self.ref is not None:
            # the machine's speed drifts (shared CPU): time one uncached run next to every method and
            # compare against the median of the last three uncached runs
            _, rs = timed(lambda: sample(self.model, self.labels, steps=self.steps, cfg=self.cfg, seed=self.seed), 1)
            self.ref_times += rs
        x, secs = timed(go, self.repeats)
        ctl = holder["ctl"]
        if ctl is None:
            work = steps / self.steps
            computed = evals = steps
        else:
            work = work_done(self.model, ctl, steps) * steps / self.steps
            recs = ctl.recorder.records
            evals = len({r.step for r in recs})
            computed = len({r.step for r in recs if r.decision == "compute"})
        if self.ref is None:
            self.ref = x
            self.ref_times = list(secs)
        t_ref = median(self.ref_times[-3:])
        row = {"family": family, "method": label, "param": param, "steps": steps,
               "forwards_computed": computed, "forwards": evals, "work": work,
               "estimated_speedup": 1.0 / work if work > 0 else math.inf,
               "seconds": secs, "median_s": median(secs), "uncached_s": t_ref, "speedup": t_ref / median(secs),
               "psnr": psnr(x, self.ref), "ssim": ssim(x, self.ref),
               "accuracy": self.clf.accuracy(x, self.labels) if self.clf else None}
        self.rows.append(row)
        ps = "inf" if math.isinf(row["psnr"]) else f"{row['psnr']:.1f}"
        log.info("%-34s computed %2d/%2d  est %.2fx  measured %.2fx  PSNR %5s dB  SSIM %.3f  acc %.2f",
                 label, computed, evals, row["estimated_speedup"], row["speedup"], ps, row["ssim"],
                 row["accuracy"] or float("nan"))
        return row


def calibrated_profile(model, steps, cfg, seeds):
    from cache_core.calibrate import record_reference
    rec = record_reference(model, steps=steps, seeds=seeds, cfg=cfg, batch=20)
    res = rec.fit(order=4)
    log.info("calibrated TeaCache polynomial on %d pairs: %s, range %s, rel. error %.3f", res.n,
             [f"{c:.4g}" for c in res.coefficients], [f"{v:.4g}" for v in res.input_range], res.rel_error)
    return res.profile("reference-calibrated", source="bench.fidelity: cache_core.calibrate on the reference DiT"), \
        res.to_dict()


def get_schedule(model, lam, steps, cfg, iterations, relearn: bool, teacache=None):
    from cache_core.l2c import L2CSchedule
    d = RESULTS / "l2c_schedules"
    d.mkdir(parents=True, exist_ok=True)
    tag = f"_under_raw{teacache.rel_l1_thresh:g}" if teacache is not None else ""
    p = d / f"reference_lam{lam:g}_steps{steps}_cfg{cfg:g}{tag}.safetensors"
    if p.is_file() and not relearn:
        s = L2CSchedule.load(p)
        log.info("loaded %s", s.describe())
        return s, {"loaded": str(p), **s.summary()}
    log.info("learning an L2C schedule, lam=%g ...", lam)
    s, info = learn_l2c_schedule(model, steps=steps, cfg=cfg, lam=lam, iterations=iterations, teacache=teacache)
    s.save(p)
    log.info("  %s (%.0fs)", s.describe(), info["seconds"])
    return s, info


def markdown(rows: list[dict], key: str, title: str) -> str:
    fams = []
    for r in rows:
        if r["family"] not in fams and r["family"] != "reference":
            fams.append(r["family"])
    lines = [f"### {title}", "",
             "| method | " + " | ".join(f"PSNR @ {t:g}x" for t in TARGETS) + " | max speed-up (PSNR) |",
             "|---|" + "---:|" * (len(TARGETS) + 1)]
    for f in fams:
        pts = [(r[key], r["psnr"]) for r in rows if r["family"] == f and math.isfinite(r["psnr"])]
        vals = []
        for t in TARGETS:
            v = interpolate_at(pts, t)
            vals.append("—" if v is None else f"{v[1]}{v[0]:.1f}")
        top = max(pts, key=lambda p: p[0], default=None)
        best = f"{top[0]:.2f}x ({top[1]:.1f})" if top else "—"
        lines.append(f"| {f} | " + " | ".join(vals) + f" | {best} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fidelity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--lams", type=float, nargs="*", default=[3e-4, 1e-3, 3e-3, 1e-2])
    ap.add_argument("--l2c-iterations", type=int, default=240)
    ap.add_argument("--relearn", action="store_true", help="learn L2C schedules even if cached in bench/results")
    ap.add_argument("--quick", action="store_true", help="fewer points, 1 repeat (a smoke run)")
    args = ap.parse_args(argv)
    setup(args.threads)
    t_start = time.perf_counter()
    model = ReferenceDiT.load()
    clf = DigitClassifier()
    labels = torch.arange(10).repeat_interleave(args.per_class)
    if args.quick:
        args.repeats = 1
    R = Runner(model, labels, args.steps, args.cfg, args.seed, args.repeats, clf)
    sample(model, labels, steps=2, cfg=args.cfg, seed=args.seed)  # warm-up
    R.run("reference", "no cache")
    n_blocks = len(model.blocks)
    thresholds = {
        "flux": [0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.2],
        "raw": [0.07, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.45],
    }
    if args.quick:
        thresholds = {k: v[::3] for k, v in thresholds.items()}
    meta: dict = {"args": vars(args), "environment": environment()}

    # TeaCache, fixed coefficients
    for prof, ts in thresholds.items():
        fam = f"TeaCache {prof} (fixed)"
        for t in ts:
            R.run(fam, f"TeaCache {prof} {t:g}",
                  lambda t=t, prof=prof: make_controller(model, teacache=TeaCacheConfig(t, coefficients=prof)), param=t)
    # TeaCache, calibrated coefficients
    try:
        prof, fit = calibrated_profile(model, args.steps, args.cfg, seeds=(101, 102) if args.quick else (101, 102, 103))
        meta["calibration"] = fit
        cal_ts = [0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.22, 0.3]
        ts = cal_ts[::3] if args.quick else cal_ts
        for t in ts:
            R.run("TeaCache calibrated", f"TeaCache calibrated {t:g}",
                  lambda t=t: make_controller(model, teacache=TeaCacheConfig(t, coefficients=prof)), param=t)
    except ImportError as exc:  # cache_core.calibrate not present
        log.warning("no calibrated TeaCache: %s", exc)
    # L2C at several lambdas, and TeaCache + L2C
    schedules = {}
    lams = args.lams[1:3] if args.quick else args.lams
    for lam in lams:
        s, info = get_schedule(model, lam, args.steps, args.cfg, args.l2c_iterations, args.relearn)
        schedules[lam] = s
        meta.setdefault("l2c", {})[f"{lam:g}"] = info
        R.run("L2C (learned)", f"L2C lam={lam:g}", lambda s=s: l2c_controller(model, l2c=s), param=lam)
    if schedules:
        lam = 3e-3 if 3e-3 in schedules else sorted(schedules)[len(schedules) // 2]
        s = schedules[lam]
        combo_ts = [0.06, 0.15] if args.quick else [0.06, 0.1, 0.15, 0.2, 0.3]
        for t in combo_ts:
            R.run(f"TC raw + L2C {lam:g}", f"TeaCache raw {t:g} + L2C {lam:g}",
                  lambda t=t, s=s: l2c_controller(model, teacache=TeaCacheConfig(t, coefficients="raw"), l2c=s),
                  param=t)
        for t in ([0.1] if args.quick else [0.1, 0.2]):
            tc = TeaCacheConfig(t, coefficients="raw")
            for lam2 in ([1e-3] if args.quick else [1e-3, 3e-3]):
                s2, info = get_schedule(model, lam2, args.steps, args.cfg, args.l2c_iterations, args.relearn,
                                        teacache=tc)
                meta.setdefault("l2c_under_teacache", {})[f"raw{t:g}_lam{lam2:g}"] = info
                R.run("TC raw + L2C (learned under TC)", f"TeaCache raw {t:g} + L2C {lam2:g} (learned under it)",
                      lambda tc=tc, s2=s2: l2c_controller(model, teacache=tc, l2c=s2), param=(t, lam2))
    # baselines
    for n in ([17, 10] if args.quick else [20, 17, 14, 12, 10, 8, 6]):
        R.run("fewer steps", f"{n} steps", None, steps=n, param=n)
    uni = [("reuse every 3rd", UniformSkip(reuse_every=3)), ("compute every 2nd", UniformSkip(compute_every=2)),
           ("compute every 3rd", UniformSkip(compute_every=3)), ("compute every 4th", UniformSkip(compute_every=4))]
    for name, pol in (uni[::2] if args.quick else uni):
        R.run("uniform skip", name, lambda pol=pol: StackSkipController(n_blocks, pol, name=name), param=name)
    fb_ts = [0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4]
    for t in (fb_ts[::3] if args.quick else fb_ts):
        R.run("First-Block-Cache-style", f"FBCache {t:g}",
              lambda t=t: StackSkipController(n_blocks, None, first_block=t, name=f"fb{t}"), param=t)
    ez_ts = [0.04, 0.06, 0.08, 0.1, 0.15, 0.22, 0.3, 0.45]
    for t in (ez_ts[::3] if args.quick else ez_ts):
        R.run("EasyCache-style", f"EasyCache {t:g}",
              lambda t=t: StackSkipController(n_blocks, EasyCacheRate(t), name=f"ez{t}"), param=t)

    rows = R.rows
    md = "\n\n".join([
        f"## Reference DiT: PSNR (dB) vs uncached at matched speed-up\n\n{len(labels)} samples "
        f"({args.per_class} per class), {args.steps} Euler steps, cfg {args.cfg:g}, median of {args.repeats} runs; "
        f"threads {torch.get_num_threads()}; interpolated linearly on each method's Pareto frontier "
        "(— = not reached; ≥ = the method's slowest setting is already faster than that, with this PSNR).",
        markdown(rows, "speedup", "measured wall-clock speed-up"),
        markdown(rows, "estimated_speedup", "estimated speed-up (share of block work skipped)"),
    ])
    print("\n" + md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fidelity.md").write_text(md + "\n")
    write_json("fidelity.json", {"meta": meta, "rows": [{k: v for k, v in r.items()} for r in rows],
                                 "seconds": time.perf_counter() - t_start})
    for key, fname in (("speedup", "fidelity.png"), ("estimated_speedup", "fidelity_estimated.png")):
        series: dict = {}
        for r in rows:
            if r["family"] != "reference":
                series.setdefault(r["family"], []).append((r[key], r["psnr"]))
        scatter_plot({k: pareto(v) or v for k, v in series.items()}, RESULTS / fname,
                     f"reference DiT: PSNR vs {'measured' if key == 'speedup' else 'estimated'} speed-up (Pareto)",
                     xlabel=f"{'measured' if key == 'speedup' else 'estimated'} speed-up (x)")
    log.info("done in %.0fs", time.perf_counter() - t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
