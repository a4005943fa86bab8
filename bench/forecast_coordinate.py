"""Which coordinate should a forecast extrapolate along: the step index or sigma?

    python -m bench.forecast_coordinate [--per-class 3] [--threads 1]

``cache_core.forecast`` extrapolates each cache along a position. The controller uses the step
coordinate (``StepInfo.x``: the step index, fractional between schedule sigmas), as TaylorSeer
does. The alternative is sigma itself (rescaled to a mean spacing of one step, so the divided
differences keep their size). On the reference model's linear schedule the two are the same up to
an affine map, which a polynomial forecast does not see, so this compares them on shifted
flow schedules (``shift`` 3, as Flux/SD3 use, and 0.5), with the fixed-interval forecast of
TeaCache (compute every N-th step), PSNR against full compute on the same schedule.

Writes bench/results/forecast_coordinate.json and .md.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from bench.common import RESULTS, environment, log, setup, write_json
from dit_reference.demo import psnr
from dit_reference.model import ReferenceDiT, ReferenceHooks
from dit_reference.sampling import flow_sigmas, sample
from cache_core.stack import CacheController
from cache_core.teacache import TeaCacheConfig


class SigmaCoordinate(CacheController):
    """The controller with forecasts along sigma (scaled to steps) instead of the step index."""

    def __init__(self, *a, sigmas, **kw):
        super().__init__(*a, **kw)
        sig = [float(s) for s in sigmas]
        self._first = sig[0]
        self._scale = (len(sig) - 1) / abs(sig[0] - sig[-1])

    def begin(self, info, streams):
        super().begin(dataclasses.replace(info, coordinate=(self._first - info.sigma) * self._scale), streams)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.forecast_coordinate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=3)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    setup(args.threads)
    model = ReferenceDiT.load()
    labels = torch.arange(10).repeat_interleave(args.per_class)
    rows = []
    for shift in (3.0, 0.5):
        sig = flow_sigmas(args.steps, shift=shift)
        ref = sample(model, labels, cfg=args.cfg, sigmas=sig)
        for n in (3, 4, 5):
            for mode in ("cached", "taylor1", "taylor2"):
                tc = TeaCacheConfig(1000.0, "raw", reuse=mode, compute_every=n)
                kinds = [("step", CacheController(ReferenceHooks(model), tc))]
                if mode != "cached":  # reuse does not depend on the coordinate
                    kinds.append(("sigma", SigmaCoordinate(ReferenceHooks(model), tc, sigmas=sig)))
                for kind, ctl in kinds:
                    p = psnr(sample(model, labels, cfg=args.cfg, sigmas=sig, controller=ctl), ref)
                    rows.append({"shift": shift, "compute_every": n, "reuse": mode, "coordinate": kind, "psnr": p})
                    log.info("shift %g every %d %-8s %-5s %.1f dB", shift, n, mode, kind, p)
    lines = [f"## Forecast coordinate: step index vs sigma\n\n{len(labels)} samples, {args.steps} Euler steps, "
             f"cfg {args.cfg:g}, TeaCache compute_every N; PSNR (dB) against full compute on the same shifted "
             "schedule.\n",
             "| shift | N | cached | taylor1 step | taylor1 sigma | taylor2 step | taylor2 sigma |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for shift in (3.0, 0.5):
        for n in (3, 4, 5):
            get = {(r["reuse"], r["coordinate"]): r["psnr"] for r in rows
                   if r["shift"] == shift and r["compute_every"] == n}
            cells = [get[("cached", "step")]] + [get[(m, k)] for m in ("taylor1", "taylor2") for k in ("step", "sigma")]
            lines.append(f"| {shift:g} | {n} | " + " | ".join(f"{v:.1f}" for v in cells) + " |")
    md = "\n".join(lines)
    print(md)
    (RESULTS / "forecast_coordinate.md").write_text(md + "\n")
    write_json("forecast_coordinate.json", {"args": vars(args), "environment": environment(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
