"""Overhead of the cache machinery on the reference DiT (CPU).

    python -m bench.overhead [--batch 64] [--steps 25] [--repeats 7]

1. Patched with caching off (TeaCache threshold 0, through the CacheController) versus the
   unpatched sampler: wall-clock ratio (median of interleaved repeats) and whether the output is
   bit-identical.
2. Cost of a reused evaluation as a fraction of a computed one, from the controller's per-evaluation
   wall times (TeaCache whole-stack reuse, and an L2C step with every branch reused).
3. Measured end-to-end speed-up versus the bound 1 / (1 - skipped share) for TeaCache at several
   thresholds and fixed uniform skipping (bench.common.StackSkipController).

Writes bench/results/overhead.json and overhead.png (measured speed-up vs the bound).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from bench.common import (RESULTS, StackSkipController, UniformSkip, environment, log, median, setup, write_json)
from dit_reference.demo import scatter_plot
from cache_core.l2c import L2CSchedule
from dit_reference.model import ReferenceDiT
from dit_reference.sampling import make_controller, sample
from cache_core.teacache import TeaCacheConfig


def interleaved(fns: dict, repeats: int) -> dict:
    """Runs each fn once per round, rounds ``repeats`` times; returns name -> (last output, seconds)."""
    out = {k: (None, []) for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            x = fn()
            out[k][1].append(time.perf_counter() - t0)
            out[k] = (x, out[k][1])
    return out


def per_eval_costs(ctl) -> tuple[float | None, float | None]:
    """Median wall time of computed and of reused evaluations (per forward) from the recorder."""
    comp, reuse = {}, {}
    for r in ctl.recorder.records:
        d = comp if r.decision == "compute" and r.layers_reused == 0 else reuse
        d[r.step] = r.wall_s * 2  # the recorder splits a batched forward's time over its 2 streams
    return (median(list(comp.values())) if comp else None, median(list(reuse.values())) if reuse else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64, help="images per run (the forward batch is twice that, CFG)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    setup(args.threads)
    t_start = time.perf_counter()
    model = ReferenceDiT.load()
    labels = torch.arange(args.batch) % 10
    kw = dict(steps=args.steps, cfg=args.cfg, seed=0)
    sample(model, labels, steps=2, cfg=args.cfg, seed=0)  # warm-up
    res: dict = {"args": vars(args), "environment": environment()}

    # 1. caching off through the controller vs unpatched
    runs = interleaved({
        "unpatched": lambda: sample(model, labels, **kw),
        "controller, threshold 0": lambda: sample(model, labels, controller=make_controller(
            model, teacache=TeaCacheConfig(0.0)), **kw),
        "controller, TeaCache object absent": lambda: sample(model, labels, controller=make_controller(model), **kw),
    }, args.repeats)
    base_x, base_s = runs["unpatched"]
    off = {}
    for k, (x, s) in runs.items():
        off[k] = {"median_s": median(s), "seconds": s, "ratio_to_unpatched": median(s) / median(base_s),
                  "bit_identical": bool(torch.equal(x, base_x))}
        log.info("%-36s median %.3fs  ratio %.3f  bit-identical %s", k, median(s), off[k]["ratio_to_unpatched"],
                 off[k]["bit_identical"])
    res["caching_off"] = off

    # 2. reused vs computed evaluation cost
    costs = {}
    ctl = make_controller(model, teacache=TeaCacheConfig(0.3, coefficients="raw"))
    for _ in range(3):
        sample(model, labels, controller=ctl, **kw)
        c, r = per_eval_costs(ctl)
        costs.setdefault("teacache", []).append((c, r))
    L = len(model.blocks)
    comp = torch.ones(args.steps, L, 2, dtype=torch.bool)
    comp[1::2] = False  # every odd step reuses every branch
    sched = L2CSchedule(comp, ("attn", "mlp"), "reference", cache_steps=list(range(1, args.steps, 2)))
    ctl2 = make_controller(model, l2c=sched)
    for _ in range(3):
        sample(model, labels, controller=ctl2, **kw)
        c, r = per_eval_costs(ctl2)
        costs.setdefault("l2c_all_branches", []).append((c, r))
    res["reuse_cost"] = {}
    for k, v in costs.items():
        c = median([a for a, _ in v if a])
        r = median([b for _, b in v if b])
        res["reuse_cost"][k] = {"computed_s": c, "reused_s": r, "fraction": r / c}
        log.info("%-20s computed eval %.2f ms, reused eval %.2f ms -> reuse costs %.1f%% of a compute", k,
                 c * 1e3, r * 1e3, 100 * r / c)

    # 3. measured speed-up vs the bound 1/(1 - skipped share)
    gap = []
    configs = [(f"TeaCache raw {t:g}", lambda t=t: make_controller(model, teacache=TeaCacheConfig(t, coefficients="raw")))
               for t in (0.05, 0.1, 0.2, 0.3, 0.5)]
    configs += [(f"uniform compute every {k}", lambda k=k: StackSkipController(L, UniformSkip(compute_every=k)))
                for k in (2, 3, 4)]
    configs += [("L2C all branches, odd steps", lambda: make_controller(model, l2c=sched))]
    for name, mk in configs:
        secs, ref_secs, ctl = [], [], None
        for _ in range(max(3, args.repeats // 2)):  # interleaved with uncached runs: the machine's speed drifts
            t0 = time.perf_counter()
            sample(model, labels, **kw)
            ref_secs.append(time.perf_counter() - t0)
            ctl = mk()
            t0 = time.perf_counter()
            sample(model, labels, controller=ctl, **kw)
            secs.append(time.perf_counter() - t0)
        recs = ctl.recorder.records
        if name.startswith("L2C"):
            skipped = sum(1 for s in range(args.steps) if not bool(sched.for_step(s, args.steps).any())) / args.steps
        else:
            steps_reused = {r.step for r in recs if r.decision == "reuse"}
            skipped = len(steps_reused) / args.steps
        bound = 1 / (1 - skipped) if skipped < 1 else float("inf")
        measured = median(ref_secs) / median(secs)
        gap.append({"method": name, "skipped_share": skipped, "bound": bound, "measured": measured,
                    "efficiency": measured / bound, "seconds": secs, "uncached_seconds": ref_secs})
        log.info("%-30s skipped %.2f  bound %.2fx  measured %.2fx  (%.0f%% of the bound)", name, skipped, bound,
                 measured, 100 * measured / bound)
    res["bound_gap"] = gap
    res["seconds"] = time.perf_counter() - t_start
    write_json("overhead.json", res)
    scatter_plot({"measured": [(g["bound"], g["measured"]) for g in gap],
                  "bound (y = x)": [(g["bound"], g["bound"]) for g in gap]},
                 RESULTS / "overhead.png", "reference DiT: measured speed-up vs the bound 1/(1 - skipped share)",
                 xlabel="bound (x)", ylabel="speed-up (x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
