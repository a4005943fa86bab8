"""Command line: ``python -m cache_core.l2c inspect FILE [--threshold T] [--json]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .routers import _check_threshold, _decode
from .schedule import L2CSchedule, ScheduleError, read_bounded


def inspect(path: str, threshold: float | None) -> tuple[dict, L2CSchedule]:
    """The figures `inspect` prints, as a dict with the --json keys."""
    if threshold is not None:
        _check_threshold(threshold)
    out = _decode(read_bounded(path), Path(path).name)
    fmt = "schedule" if isinstance(out, L2CSchedule) else out.format
    sched = out if isinstance(out, L2CSchedule) else out.to_schedule(threshold)
    s = sched.summary()
    return {"format": fmt, "steps": s["steps"], "layers": s["layers"],
            "computed": s["computed"], "total": s["total"],
            "removed_cache_steps": s["removed_cache_steps"],
            "removed_all_steps": s["removed_all_steps"]}, sched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cache_core.l2c",
                                     description="Learning-to-Cache schedule tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="summarise a router checkpoint or L2C schedule")
    p.add_argument("file")
    p.add_argument("--threshold", type=float, default=None,
                   help="router threshold (default: the format's own, 0.1 DiT / 0.9 U-ViT)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        info, sched = inspect(args.file, args.threshold)
    except ScheduleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info))
    else:
        print(f"format:   {info['format']} (family {sched.family}, threshold {sched.threshold})")
        print(f"steps:    {info['steps']} ({len(sched.cache_steps)} cache steps)")
        print(f"layers:   {info['layers']} x {len(sched.branches)} branches "
              f"({', '.join(sched.branches)})")
        print(f"computed: {info['computed']} / {info['total']} branches in cache steps")
        print(f"removed:  {100 * info['removed_cache_steps']:.2f}% of cache steps, "
              f"{100 * info['removed_all_steps']:.2f}% of all steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
