"""Fidelity versus measured speed-up on the reference DiT (CPU).

    python -m bench.fidelity [--per-class 10] [--steps 25] [--cfg 3] [--repeats 3] [--threads 1] [--quick]

Every method samples the same classes and seeds; fidelity is PSNR / SSIM against the uncached
samples of the same run (dit_reference.demo.psnr / ssim) and the digits-classifier accuracy.
Speed-up is measured: time of the uncached sampler (median of the last three uncached runs;
one is timed next to every method, because a shared machine's speed drifts) divided by the median
of ``--repeats`` runs of the method, in this process; ``--clock cpu`` times by this process's CPU
time instead of wall-clock (with ``--threads 1``: on a busy shared machine it is the run's own cost). An *estimated* speed-up from the work done (attention ≈ 1/3
and MLP ≈ 2/3 of a block's FLOPs at 16 tokens, outside-block work ignored) is reported alongside,
because a shared CPU makes wall-clock noisy.

Methods, each in every reuse mode where it has one (``cached``: reuse the last computed residual;
``taylor1``/``taylor2``: forecast it, cache_core.forecast): TeaCache with published-style fixed
coefficients (``flux``: FLUX.1-dev's polynomial, reuse only; ``raw``: identity) and with
coefficients calibrated on this model (cache_core.calibrate: ``record_reference`` + constrained
``fit_coefficients``, on seeds disjoint from the evaluation seeds); the fixed-interval forecast
(``compute_every`` N, TaylorSeer's schedule); L2C schedules learned at several λ
(cache_core.l2c.RouterTrainer through cache_core.learn.ReferenceBranchModel, branch level
attn/mlp, alternate cache steps); TeaCache + L2C with reuse (a schedule learned alone, and
schedules learned under TeaCache; a plain L2C cache counts as missing after a TeaCache reuse);
the forecasting combination (a fixed-interval TeaCache forecast with an L2C schedule learned
under it on every other computed step, its layers forecast from caches several steps old); and
baselines: fewer sampling steps, uniform step skipping, a First-Block-Cache-style indicator and an
EasyCache-style transformation-rate indicator (bench/common.py).

Writes bench/results/<out>.json, <out>.md (the issue-12 goal check at measured 3x and 4x, PSNR and
SSIM at 1.5x / 2x / 3x / 4x measured and PSNR at estimated speed-ups, interpolated linearly on each
method's Pareto frontier), <out>.png (PSNR vs measured speed-up, the main families) and
<out>_estimated.png (PSNR vs estimated speed-up); ``--out`` defaults to ``fidelity``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from bench.common import (CLOCKS, RESULTS, EasyCacheRate, StackSkipController, UniformSkip, environment, interpolate_at,
                          log, median, pareto, setup, timed, write_json)
from dit_reference.classifier import DigitClassifier
from dit_reference.demo import learn_l2c_schedule, psnr, scatter_plot, ssim, track_branches
from dit_reference.model import ReferenceDiT
from dit_reference.sampling import make_controller, sample
from cache_core.teacache import TeaCacheConfig

BRANCH_COST = {"attn": 1 / 3, "mlp": 2 / 3}
TARGETS = (1.5, 2.0, 3.0, 4.0)


def work_done(model, ctl, steps: int) -> float:
    """Fraction of the block work of a full run that the last run did (per forward, not per stream)."""
    L = len(model.blocks)
    per_step: dict[int, tuple] = {}
    for r in ctl.recorder.records:
        per_step.setdefault(r.step, (r.decision, r.layers_computed))
    done = 0.0
    sched = getattr(ctl, "l2c", None)
    if sched is not None:  # the branches actually computed (see dit_reference.demo.track_branches)
        return sum(BRANCH_COST[name] for _, name, _ in ctl.branch_calls) / L / steps
    for step, (decision, layers) in per_step.items():
        if decision != "compute":
            if isinstance(ctl, StackSkipController):
                done += layers / L  # First-Block-Cache computes block 0 on a reuse
            continue
        done += layers / L if isinstance(ctl, StackSkipController) else 1.0
    return done / steps


def l2c_controller(model, **kw):  # kw: teacache, l2c, l2c_reuse
    """make_controller with L2C, logging the branches it computes (for :func:`work_done`)."""
    return track_branches(make_controller(model, **kw))


class Runner:
    def __init__(self, model, labels, steps, cfg, seed, repeats, clf, clock="wall"):
        self.model, self.labels, self.steps, self.cfg, self.seed = model, labels, steps, cfg, seed
        self.repeats, self.clf, self.clock = repeats, clf, clock
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
            _, rs = timed(lambda: sample(self.model, self.labels, steps=self.steps, cfg=self.cfg, seed=self.seed), 1,
                          clock=self.clock)
            self.ref_times += rs
        x, secs = timed(go, self.repeats, clock=self.clock)
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
    from dit_reference.calibrate import record_reference
    rec = record_reference(model, steps=steps, seeds=seeds, cfg=cfg, batch=20)
    res = rec.fit(order=4)
    log.info("calibrated TeaCache polynomial on %d pairs: %s, range %s, rel. error %.3f", res.n,
             [f"{c:.4g}" for c in res.coefficients], [f"{v:.4g}" for v in res.input_range], res.rel_error)
    return res.profile("reference-calibrated", source="bench.fidelity: cache_core.calibrate on the reference DiT"), \
        res.to_dict()


def get_schedule(model, lam, steps, cfg, iterations, relearn: bool, teacache=None, alternate: bool = False):
    from cache_core.l2c import L2CSchedule
    d = RESULTS / "l2c_schedules"
    d.mkdir(parents=True, exist_ok=True)
    tag = ""
    if teacache is not None:
        tag = (f"_under_every{teacache.compute_every}" if teacache.compute_every
               else f"_under_raw{teacache.rel_l1_thresh:g}") + ("_alt" if alternate else "")
    p = d / f"reference_lam{lam:g}_steps{steps}_cfg{cfg:g}{tag}.safetensors"
    if p.is_file() and not relearn:
        s = L2CSchedule.load(p)
        log.info("loaded %s", s.describe())
        return s, {"loaded": str(p), **s.summary()}
    log.info("learning an L2C schedule, lam=%g%s ...", lam, tag)
    s, info = learn_l2c_schedule(model, steps=steps, cfg=cfg, lam=lam, iterations=iterations, teacache=teacache,
                                 alternate=alternate)
    s.save(p)
    log.info("  %s (%.0fs)", s.describe(), info["seconds"])
    return s, info


def families(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r["family"] not in out and r["family"] != "reference":
            out.append(r["family"])
    return out


def at_targets(rows: list[dict], family: str, key: str, metric: str) -> list[tuple[float, str] | None]:
    pts = [(r[key], r[metric]) for r in rows if r["family"] == family and math.isfinite(r["psnr"])]
    return [interpolate_at(pts, t) for t in TARGETS]


def markdown(rows: list[dict], key: str, title: str, metric: str = "psnr") -> str:
    fmt = (lambda v: f"{v:.1f}") if metric == "psnr" else (lambda v: f"{v:.3f}")
    name = "PSNR" if metric == "psnr" else "SSIM"
    lines = [f"### {title}: {name}", "",
             "| method | " + " | ".join(f"{name} @ {t:g}x" for t in TARGETS) + f" | max speed-up ({name}) |",
             "|---|" + "---:|" * (len(TARGETS) + 1)]
    for f in families(rows):
        vals = ["—" if v is None else f"{v[1]}{fmt(v[0])}" for v in at_targets(rows, f, key, metric)]
        pts = [(r[key], r[metric]) for r in rows if r["family"] == f and math.isfinite(r["psnr"])]
        top = max(pts, key=lambda p: p[0], default=None)
        best = f"{top[0]:.2f}x ({fmt(top[1])})" if top else "—"
        lines.append(f"| {f} | " + " | ".join(vals) + f" | {best} |")
    return "\n".join(lines)


def goal(rows: list[dict], key: str = "speedup", targets=(3.0, 4.0)) -> tuple[str, dict]:
    """The issue-12 check: at each target speed-up, the best dit-cache family against the best
    baseline family (PSNR interpolated on each family's Pareto frontier)."""
    out, lines = {}, []
    for t in targets:
        best = {}
        for f in families(rows):
            pts = [(r[key], r["psnr"]) for r in rows if r["family"] == f and math.isfinite(r["psnr"])]
            v = interpolate_at(pts, t)
            if v is not None:
                best[f] = v[0]
        ours = {f: v for f, v in best.items() if f not in BASELINES}
        base = {f: v for f, v in best.items() if f in BASELINES}
        missing = [f for f in BASELINES if f not in base]
        if not ours or not base:
            lines.append(f"- {t:g}x: not reached (ours: {sorted(ours)}, baselines: {sorted(base)})")
            continue
        fo, fb = max(ours, key=ours.get), max(base, key=base.get)
        margin = ours[fo] - base[fb]
        out[f"{t:g}"] = {"ours": fo, "ours_psnr": ours[fo], "baseline": fb, "baseline_psnr": base[fb],
                         "margin_db": margin, "baselines_not_reaching": missing}
        miss = f"; not reaching {t:g}x: {', '.join(missing)}" if missing else ""
        lines.append(f"- {t:g}x: best dit-cache **{fo}** {ours[fo]:.1f} dB, best baseline {fb} {base[fb]:.1f} dB: "
                     f"**{margin:+.1f} dB** ({'goal of +1 dB met' if margin >= 1 else 'goal of +1 dB NOT met'}){miss}")
    return "\n".join(lines), out


BASELINES = ("fewer steps", "uniform skip", "First-Block-Cache-style", "EasyCache-style")


def run_teacache(R, model, args, meta) -> None:
    """TeaCache: fixed coefficients (flux: reuse only; raw: every reuse mode), calibrated
    coefficients (every reuse mode), and the fixed-interval forecast."""
    thresholds = {"flux": [0.3, 0.6, 0.8, 1.2], "raw": [0.07, 0.1, 0.15, 0.2, 0.3, 0.45]}
    modes = {"flux": ["cached"], "raw": ["cached", "taylor1", "taylor2"]}
    if args.quick:
        thresholds = {k: v[::3] for k, v in thresholds.items()}
    for prof, ts in thresholds.items():
        for mode in modes[prof]:
            fam = f"TeaCache {prof} (fixed)" + ("" if mode == "cached" else f" {mode}")
            for t in ts:
                R.run(fam, f"TeaCache {prof} {t:g} {mode}",
                      lambda t=t, prof=prof, mode=mode: make_controller(
                          model, teacache=TeaCacheConfig(t, coefficients=prof, reuse=mode)), param=t)
    try:
        prof, fit = calibrated_profile(model, args.steps, args.cfg, seeds=(101, 102) if args.quick else (101, 102, 103))
        meta["calibration"] = fit
        cal_ts = [0.05, 0.08, 0.1, 0.15, 0.22]
        for mode in ("cached", "taylor1", "taylor2"):
            for t in (cal_ts[::3] if args.quick else cal_ts):
                R.run("TeaCache calibrated" + ("" if mode == "cached" else f" {mode}"), f"TeaCache calibrated {t:g} {mode}",
                      lambda t=t, mode=mode: make_controller(
                          model, teacache=TeaCacheConfig(t, coefficients=prof, reuse=mode)), param=t)
    except ImportError as exc:  # cache_core.calibrate not present
        log.warning("no calibrated TeaCache: %s", exc)
    for mode in ("taylor1", "taylor2"):
        for n in ([2, 4] if args.quick else [2, 3, 4, 5, 6]):
            R.run(f"fixed interval {mode}", f"compute every {n}, {mode}",
                  lambda n=n, mode=mode: make_controller(
                      model, teacache=TeaCacheConfig(1000.0, "raw", reuse=mode, compute_every=n)), param=n)


def run_l2c(R, model, args, meta) -> None:
    """L2C at several lambdas in every reuse mode; TeaCache + L2C with plain reuse (a schedule
    learned alone, schedules learned under TeaCache); and the forecasting combination: a
    fixed-interval TeaCache forecast with an L2C schedule learned under it on every other
    computed step, forecasting its layers from caches several steps old."""
    schedules = {}
    lams = args.lams[1:3] if args.quick else args.lams
    for lam in lams:
        s, info = get_schedule(model, lam, args.steps, args.cfg, args.l2c_iterations, args.relearn)
        schedules[lam] = s
        meta.setdefault("l2c", {})[f"{lam:g}"] = info
        for mode in ("cached", "taylor1", "taylor2"):
            R.run("L2C (learned)" + ("" if mode == "cached" else f" {mode}"), f"L2C lam={lam:g} {mode}",
                  lambda s=s, mode=mode: l2c_controller(model, l2c=s, l2c_reuse=mode), param=lam)
    if not schedules:
        return
    lam = 3e-3 if 3e-3 in schedules else sorted(schedules)[len(schedules) // 2]
    s = schedules[lam]
    for t in ([0.06, 0.15] if args.quick else [0.06, 0.15, 0.3]):
        R.run(f"TC raw + L2C {lam:g}", f"TeaCache raw {t:g} + L2C {lam:g}",
              lambda t=t, s=s: l2c_controller(model, teacache=TeaCacheConfig(t, coefficients="raw"), l2c=s), param=t)
    for t, lam2 in ([(0.1, 1e-3)] if args.quick else [(0.1, 1e-3), (0.2, 3e-3)]):
        tc = TeaCacheConfig(t, coefficients="raw")
        s2, info = get_schedule(model, lam2, args.steps, args.cfg, args.l2c_iterations, args.relearn, teacache=tc)
        meta.setdefault("l2c_under_teacache", {})[f"raw{t:g}_lam{lam2:g}"] = info
        R.run("TC raw + L2C (learned under TC)", f"TeaCache raw {t:g} + L2C {lam2:g} (learned under it)",
              lambda tc=tc, s2=s2: l2c_controller(model, teacache=tc, l2c=s2), param=(t, lam2))
    combos = [(3, 3e-3)] if args.quick else [(2, 1e-2), (3, 1e-3), (3, 3e-3)]
    for n, lam2 in combos:
        learn_tc = TeaCacheConfig(1000.0, "raw", compute_every=n)
        s2, info = get_schedule(model, lam2, args.steps, args.cfg, args.l2c_iterations, args.relearn,
                                teacache=learn_tc, alternate=True)
        meta.setdefault("l2c_under_interval", {})[f"every{n}_lam{lam2:g}"] = info
        for mode in ("taylor1", "taylor2"):
            tc = TeaCacheConfig(1000.0, "raw", reuse=mode, compute_every=n)
            R.run(f"interval {mode} + L2C taylor1", f"every {n} {mode} + L2C {lam2:g} taylor1 (alt.)",
                  lambda tc=tc, s2=s2: l2c_controller(model, teacache=tc, l2c=s2, l2c_reuse="taylor1"),
                  param=(n, lam2))


def run_baselines(R, model, args) -> None:
    n_blocks = len(model.blocks)
    for n in ([17, 10, 6] if args.quick else [20, 17, 14, 12, 10, 8, 6, 5]):
        R.run("fewer steps", f"{n} steps", None, steps=n, param=n)
    uni = [("reuse every 3rd", UniformSkip(reuse_every=3)), ("compute every 2nd", UniformSkip(compute_every=2)),
           ("compute every 3rd", UniformSkip(compute_every=3)), ("compute every 4th", UniformSkip(compute_every=4)),
           ("compute every 5th", UniformSkip(compute_every=5)), ("compute every 6th", UniformSkip(compute_every=6))]
    for name, pol in (uni[::2] if args.quick else uni):
        R.run("uniform skip", name, lambda pol=pol, name=name: StackSkipController(n_blocks, pol, name=name), param=name)
    fb_ts = [0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 1.0]
    for t in (fb_ts[::3] if args.quick else fb_ts):
        R.run("First-Block-Cache-style", f"FBCache {t:g}",
              lambda t=t: StackSkipController(n_blocks, None, first_block=t, name=f"fb{t}"), param=t)
    ez_ts = [0.04, 0.06, 0.08, 0.1, 0.15, 0.22, 0.3, 0.45]
    for t in (ez_ts[::3] if args.quick else ez_ts):
        R.run("EasyCache-style", f"EasyCache {t:g}",
              lambda t=t: StackSkipController(n_blocks, EasyCacheRate(t), name=f"ez{t}"), param=t)


PLOT_OURS = ("TeaCache raw (fixed)", "TeaCache raw (fixed) taylor1", "TeaCache raw (fixed) taylor2",
             "TeaCache calibrated taylor1", "L2C (learned)", "L2C (learned) taylor1", "fixed interval taylor1",
             "fixed interval taylor2", "interval taylor2 + L2C taylor1")


def report(rows: list[dict], meta: dict) -> None:
    """<out>.md and the plots from the rows of a run (``--report`` redraws them from <out>.json)."""
    args = argparse.Namespace(**meta["args"])
    clock = "process CPU time" if getattr(args, "clock", "wall") == "cpu" else "wall-clock"
    goal_md, goal_data = goal(rows)
    meta["goal"] = goal_data
    md = "\n\n".join([
        f"## Reference DiT: fidelity vs uncached at matched speed-up\n\n{10 * args.per_class} samples "
        f"({args.per_class} per class), {args.steps} Euler steps, cfg {args.cfg:g}, median of {args.repeats} runs "
        f"timed by {clock}; threads {meta['environment']['threads']}; interpolated linearly on each method's Pareto "
        "frontier (— = not reached; ≥ = the method's slowest setting is already faster than that, with this value).",
        "### Goal (issue 12): best dit-cache setting vs best baseline at measured 3x and 4x\n\n" + goal_md,
        markdown(rows, "speedup", f"measured speed-up ({clock})"),
        markdown(rows, "speedup", f"measured speed-up ({clock})", metric="ssim"),
        markdown(rows, "estimated_speedup", "estimated speed-up (share of block work skipped)"),
    ])
    print("\n" + md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text(md + "\n")
    for key, fname in (("speedup", f"{args.out}.png"), ("estimated_speedup", f"{args.out}_estimated.png")):
        series: dict = {}
        for r in rows:
            if r["family"] in PLOT_OURS or r["family"] in BASELINES:
                series.setdefault(r["family"], []).append((r[key], float(r["psnr"])))
        scatter_plot({k: pareto(v) or v for k, v in series.items()}, RESULTS / fname,
                     f"reference DiT: PSNR vs {'measured' if key == 'speedup' else 'estimated'} speed-up (Pareto)",
                     xlabel=f"{'measured' if key == 'speedup' else 'estimated'} speed-up (x)", size=(900, 520))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fidelity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="time runs by wall-clock or by this process's CPU time (with --threads 1 on a busy machine)")
    ap.add_argument("--lams", type=float, nargs="*", default=[3e-4, 1e-3, 3e-3, 1e-2])
    ap.add_argument("--l2c-iterations", type=int, default=240)
    ap.add_argument("--relearn", action="store_true", help="learn L2C schedules even if cached in bench/results")
    ap.add_argument("--quick", action="store_true", help="fewer points, 1 repeat (a smoke run)")
    ap.add_argument("--out", default="fidelity", help="basename of the result files in bench/results")
    ap.add_argument("--report", action="store_true", help="only redraw <out>.md and the plots from <out>.json")
    args = ap.parse_args(argv)
    if args.report:
        data = json.loads((RESULTS / f"{args.out}.json").read_text())
        for r in data["rows"]:
            r["psnr"] = float(r["psnr"])  # inf is stored as a string
        report(data["rows"], data["meta"])
        write_json(f"{args.out}.json", data)
        return 0
    setup(args.threads)
    t_start = time.perf_counter()
    model = ReferenceDiT.load()
    clf = DigitClassifier()
    labels = torch.arange(10).repeat_interleave(args.per_class)
    if args.quick:
        args.repeats = 1
    if args.clock == "cpu" and torch.get_num_threads() != 1:
        ap.error("--clock cpu needs --threads 1 (CPU time sums over threads)")
    R = Runner(model, labels, args.steps, args.cfg, args.seed, args.repeats, clf, args.clock)
    sample(model, labels, steps=2, cfg=args.cfg, seed=args.seed)  # warm-up
    R.run("reference", "no cache")
    meta: dict = {"args": vars(args), "environment": environment()}
    run_teacache(R, model, args, meta)
    run_l2c(R, model, args, meta)
    run_baselines(R, model, args)

    report(R.rows, meta)
    write_json(f"{args.out}.json", {"meta": meta, "rows": R.rows, "seconds": time.perf_counter() - t_start})
    log.info("done in %.0fs", time.perf_counter() - t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
