"""Learned L2C schedules against uniform layer dropping with the same number of reused branches.

For every learned schedule in ``bench/results/l2c_schedules/`` (made by ``bench.fidelity``), a
uniform schedule reuses exactly as many branches at the same cache steps, spread evenly over the
(layer, branch) grid. Both are sampled on the same labels and seeds; PSNR is against full compute.

    python -m bench.l2c_uniform --threads 1
"""
from __future__ import annotations

import argparse
import logging

import torch

from bench.common import RESULTS, environment, setup, write_json
from dit_reference.demo import psnr
from cache_core.l2c import L2CSchedule
from dit_reference.model import ReferenceDiT
from dit_reference.sampling import make_controller, sample

log = logging.getLogger("bench")


def uniform_like(learned: L2CSchedule) -> L2CSchedule:
    comp = torch.ones_like(learned.compute)
    _, layers, branches = comp.shape
    cells = layers * branches
    for s in range(learned.steps):
        k = int((~learned.compute[s]).sum())
        if k == 0:
            continue
        # k indices spread evenly over the flattened grid, the same count the learned step reuses
        idx = torch.linspace(0, cells - 1, k).round().long().unique()
        j = 0
        while idx.numel() < k:  # rounding collisions: fill from the start
            if j not in idx:
                idx = torch.cat([idx, torch.tensor([j])])
            j += 1
        flat = comp[s].reshape(-1)
        flat[idx[:k]] = False
        comp[s] = flat.reshape(layers, branches)
    return L2CSchedule(comp, learned.branches, learned.family, positions=learned.positions,
                       source="uniform layer dropping", cache_steps=learned.cache_steps)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--cfg", type=float, default=3.0)
    args = ap.parse_args(argv)
    setup(args.threads)
    model = ReferenceDiT.load()
    labels = torch.arange(10).repeat_interleave(args.per_class)
    rows = []
    files = sorted((RESULTS / "l2c_schedules").glob("reference_lam*_steps*_cfg3.safetensors"))
    if not files:
        log.error("no learned schedules in %s; run python -m bench.fidelity first", RESULTS / "l2c_schedules")
        return 1
    for f in files:
        learned = L2CSchedule.load(f)
        uni = uniform_like(learned)
        assert int((~uni.compute).sum()) == int((~learned.compute).sum())
        res = {"schedule": f.name, "reused_branches": int((~learned.compute).sum()),
               "total_branches": int(learned.compute.numel())}
        for name, sched in (("learned", learned), ("uniform", uni)):
            vals = []
            for seed in range(args.seeds):
                ref = sample(model, labels, steps=learned.steps, cfg=args.cfg, seed=seed)
                out = sample(model, labels, steps=learned.steps, cfg=args.cfg, seed=seed,
                             controller=make_controller(model, l2c=sched))
                vals.append(psnr(out, ref))
            res[f"psnr_{name}"] = sum(vals) / len(vals)
        res["estimated_speedup"] = res["total_branches"] / (res["total_branches"] - res["reused_branches"])
        log.info("%s: reused %d/%d, PSNR learned %.2f dB vs uniform %.2f dB", f.name, res["reused_branches"],
                 res["total_branches"], res["psnr_learned"], res["psnr_uniform"])
        rows.append(res)
    write_json("l2c_uniform.json", {"environment": environment(), "args": vars(args), "rows": rows})
    lines = ["| schedule | branches reused | est. speed-up | PSNR learned | PSNR uniform |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['schedule']} | {r['reused_branches']}/{r['total_branches']} | "
                     f"{r['estimated_speedup']:.2f}x | {r['psnr_learned']:.1f} | {r['psnr_uniform']:.1f} |")
    (RESULTS / "l2c_uniform.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
