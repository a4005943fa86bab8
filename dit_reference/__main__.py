"""Command line on the reference DiT.

    python -m dit_reference calibrate --steps 20 --seeds 4 --out profile.json
    python -m dit_reference learn --lam 3e-3 --threshold 0.5 --out schedule.safetensors

Nothing is written anywhere but ``--out`` (through a temporary file in the same folder, renamed
into place, so an interrupted run leaves no partial file).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

from cache_core.fileio import atomic_write


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load(weights: str | None, device: str):
    from .model import WEIGHTS, ReferenceDiT
    path = Path(weights) if weights else WEIGHTS
    return ReferenceDiT.load(path, device=device), path


def cmd_calibrate(args) -> int:
    from cache_core.calibrate import prediction_error
    from cache_core.coefficients import get_profile

    from .calibrate import record_reference
    model, path = _load(args.weights, args.device)
    t0 = time.perf_counter()
    seeds = list(range(args.seed, args.seed + args.seeds))
    rec = record_reference(model, steps=args.steps, seeds=seeds, cfg=args.cfg, batch=args.batch)
    res = rec.fit(order=args.order)
    name = Path(args.out).stem
    flux = prediction_error(get_profile("flux"), rec.xs, rec.ys)
    doc = {"name": name, "family": "reference", "model_sha256": _sha256(path), "steps": args.steps,
           "sampler": "euler", "scheduler": "flow (linear sigmas)", "cfg": args.cfg, "seeds": seeds,
           "source": f"python -m dit_reference calibrate on {path.name}", **res.to_dict(),
           "flux_coefficients_rmse_on_same_data": flux["rmse"]}
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1) + "\n"))
    print(f"calibrated on {res.n} pairs ({len(seeds)} seeds x {args.steps} steps x 2 streams) in "
          f"{time.perf_counter() - t0:.1f}s")
    print(f"coefficients (highest power first): {', '.join(f'{c:.6g}' for c in res.coefficients)}")
    print(f"input range: [{res.input_range[0]:.4g}, {res.input_range[1]:.4g}]")
    print(f"fit RMSE {res.rmse:.4g} (relative error {res.rel_error:.3f}); unconstrained RMSE "
          f"{res.unconstrained_rmse:.4g}; published flux coefficients: RMSE {flux['rmse']:.4g}")
    print(f"wrote {args.out}")
    return 0


def cmd_learn(args) -> int:
    from .learn import learn_reference, learn_reference_branches
    model, path = _load(args.weights, args.device)
    t0 = time.perf_counter()
    last = [0.0]

    def progress(i, n):
        now = time.perf_counter()
        if now - last[0] > 5 or i == n:
            last[0] = now
            print(f"  {i}/{n}", file=sys.stderr)

    if args.level == "branch":
        sched, trainer = learn_reference_branches(model, steps=args.steps, lam=args.lam, theta=args.threshold,
                                                  iterations=args.iterations, lr=args.lr, cfg=args.cfg,
                                                  progress=progress)
        final = trainer.history[-1] if trainer.history else float("nan")
    else:
        sched, router = learn_reference(model, steps=args.steps, lam=args.lam, theta=args.threshold,
                                        iterations=max(1, args.iterations // max(1, args.steps - 1)),
                                        cfg=args.cfg, lr=args.lr, progress=progress)
        final = router.history[-1]["loss"] if router.history else float("nan")
    atomic_write(args.out, lambda tmp: sched.save(tmp))
    print(f"learned in {time.perf_counter() - t0:.1f}s, final loss {final:.4g}")
    print(sched.describe())
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dit_reference", description="dit-cache engine tools on the reference DiT")
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--weights", default=None, help="reference DiT safetensors (default: the shipped one)")
    common.add_argument("--device", default="cpu")
    common.add_argument("--steps", type=int, default=20, help="sampling steps")
    common.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance scale")
    common.add_argument("--out", required=True, help="file to write (nothing else is written)")

    c = sub.add_parser("calibrate", parents=[common], help="fit TeaCache coefficients, write a profile JSON")
    c.add_argument("--seeds", type=int, default=4, help="number of sampling runs (seeds)")
    c.add_argument("--seed", type=int, default=0, help="first seed")
    c.add_argument("--batch", type=int, default=8, help="images per run")
    c.add_argument("--order", type=int, default=4, help="polynomial order")
    c.set_defaults(func=cmd_calibrate)

    l = sub.add_parser("learn", parents=[common], help="learn an L2C schedule, write safetensors")  # noqa: E741
    l.add_argument("--lam", type=float, default=3e-3, help="lambda: weight of sum(beta); larger = more reuse")
    l.add_argument("--threshold", type=float, default=0.5,
                   help="theta: a branch computes where sigmoid(logit) > theta")
    l.add_argument("--iterations", type=int, default=300, help="router optimisation steps")
    l.add_argument("--lr", type=float, default=0.15)
    l.add_argument("--level", choices=["branch", "block"], default="branch",
                   help="branch = attn/mlp with cache_core.l2c's RouterTrainer (default); block = whole blocks")
    l.set_defaults(func=cmd_learn)

    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.steps < 2:
        ap.error("--steps must be at least 2")
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
