"""Shared pieces of the benchmarks: timing, baseline cache policies, Pareto interpolation.

The baseline policies (uniform step skipping, a First-Block-Cache-style indicator, an
EasyCache-style transformation-rate indicator) are implemented here, outside cache_core, as
small duck-typed controllers that :func:`dit_reference.sampling.sample` drives exactly like
a :class:`cache_core.stack.CacheController` (``begin``/``block``/``branch``/``end``/``recorder``).
They reuse the residual of the whole block stack (or of blocks 1.. for First-Block-Cache), the
same mechanism TeaCache uses, so only the *decision* differs. Decisions are joint over the batch
(cond and uncond together), as a batched forward computes all streams or none.
"""
from __future__ import annotations

import json
import logging
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from dit_reference.demo import CLOCKS
from cache_core.stats import RunRecorder

log = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"


def comfyui_hosts():
    """``tests/hosts.py`` (finds ComfyUI checkouts and makes each source tree's environment), with
    ``DITCACHE_COMFYUI_TREES`` pointed at ``shared/comfyui`` beside this repository or a folder
    above it when unset (a git worktree sits one level deeper than the main checkout)."""
    import os
    import sys
    repo = Path(__file__).resolve().parents[1]
    if str(repo / "tests") not in sys.path:
        sys.path.insert(0, str(repo / "tests"))
    import hosts
    if "DITCACHE_COMFYUI_TREES" not in os.environ and not hosts.shared_trees():
        for up in repo.parents:
            if (up / "shared" / "comfyui").is_dir():
                os.environ["DITCACHE_COMFYUI_TREES"] = str(up / "shared" / "comfyui")
                break
    return hosts


def setup(threads: int = 0, level=logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if threads > 0:
        torch.set_num_threads(threads)


def environment() -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    p = RESULTS / name
    p.write_text(json.dumps(data, indent=1, default=_json_default))
    log.info("wrote %s", p)
    return p


def _json_default(o):
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)




def timed(fn: Callable[[], object], repeats: int = 3, warmup: int = 0, sync: bool = False, clock: str = "wall"):
    """(last result, list of seconds) of ``repeats`` calls after ``warmup`` untimed ones, timed by
    ``clock`` (a key of CLOCKS; ``cpu`` only means something with one thread and no GPU)."""
    now = CLOCKS[clock]
    out = None
    for _ in range(warmup):
        out = fn()
    secs = []
    for _ in range(max(1, repeats)):
        if sync:
            torch.cuda.synchronize()
        t0 = now()
        out = fn()
        if sync:
            torch.cuda.synchronize()
        secs.append(now() - t0)
    return out, secs


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


# -- baseline policies --------------------------------------------------------------------------
class StackSkipController:
    """Whole-stack residual reuse with a pluggable decision (see the module doc).

    ``policy(ctl, info, h)`` -> True to compute, called at block 0 with the stack input ``h``;
    First-Block-Cache is special-cased through ``first_block`` (its decision needs block 0's output).
    """

    def __init__(self, n_blocks: int, policy=None, first_block: float | None = None, name: str = ""):
        self.n_blocks = n_blocks
        self.policy = policy
        self.fb_thresh = first_block
        self.recorder = RunRecorder(run_id=name)
        self.l2c = None
        self.reset()

    def reset(self) -> None:
        self.residual = None       # cached residual (stack output - stack input, or of blocks 1..)
        self.prev_fb = None        # First-Block-Cache: block-0 residual at the last computed step
        self.state: dict = {}      # policy scratch space
        self.info = None
        self.skip = False

    def begin(self, info, streams) -> None:
        self.info = info
        self.streams = list(streams)
        self.skip = False
        self.t0 = time.perf_counter()
        self.h_in = None
        self.n_computed = 0

    def end(self) -> None:
        wall = (time.perf_counter() - self.t0) / max(1, len(self.streams))
        for s in self.streams:
            self.recorder.add(self.info.step, self.info.sigma, s, not self.skip, "compute" if not self.skip else "reuse",
                              None, None, self.n_computed, self.n_blocks - self.n_computed, wall, 0)

    def branch(self, index, name, fn):
        return fn()

    def block(self, index: int, inputs: dict, run):
        info = self.info
        last = index == self.n_blocks - 1
        forced = info.step == 0 or info.step >= info.n_steps - 1
        if index == 0:
            h = inputs["img"]
            if self.fb_thresh is not None:
                out = run(inputs)
                self.n_computed += 1
                r0 = out["img"] - h
                compute = True
                if not forced and self.prev_fb is not None and self.residual is not None:
                    rel = float((r0 - self.prev_fb).abs().mean() / self.prev_fb.abs().mean().clamp_min(1e-12))
                    compute = rel >= self.fb_thresh
                if compute:
                    self.prev_fb = r0
                    self.h_in = out["img"].clone()
                    return out
                self.skip = True
                return {"img": out["img"] + self.residual}
            compute = forced or self.residual is None or bool(self.policy(self, info, h))
            if not compute:
                self.skip = True
                return {"img": h + self.residual}
            self.h_in = h.clone()
        if self.skip:
            return {"img": inputs["img"]}
        out = run(inputs)
        self.n_computed += 1
        if last:
            self.residual = out["img"] - self.h_in
            if self.policy is not None and hasattr(self.policy, "computed"):
                self.policy.computed(self, self.h_in, out["img"])
        return out


class UniformSkip:
    """Compute on a fixed pattern: ``compute_every=k`` computes every k-th step (reuse k-1 of k);
    ``reuse_every=k`` reuses every k-th step (compute k-1 of k). First and last steps compute."""

    def __init__(self, compute_every: int = 0, reuse_every: int = 0):
        self.ce, self.re = compute_every, reuse_every

    def __call__(self, ctl, info, h) -> bool:
        if self.ce:
            return info.step % self.ce == 0
        return info.step % self.re != 0


class EasyCacheRate:
    """EasyCache-style runtime-adaptive reuse (Zhou et al. 2025), at the block-stack level.

    At each computed step the transformation rate ``k = mean|out - out_prev| / mean|in - in_prev|``
    is measured between the last two computed steps (in/out: stack input/output). On a later step
    the relative output change is predicted as ``k * mean|in - in_last| / mean|out_last|``,
    accumulated since the last compute, and the step reuses the cached transformation
    (``in + (out_last - in_last)``) while the accumulation stays below ``thresh``. The first
    ``warmup`` steps compute."""

    def __init__(self, thresh: float, warmup: int = 2):
        self.thresh, self.warmup = thresh, warmup

    def __call__(self, ctl, info, h) -> bool:
        st = ctl.state
        if info.step < self.warmup or "k" not in st:
            return True
        pred = st["k"] * float((h - st["in_prev_step"]).abs().mean()) / max(1e-12, st["out_mean"])
        st["in_prev_step"] = h
        st["acc"] = st.get("acc", 0.0) + pred
        if st["acc"] < self.thresh:
            return False
        st["acc"] = 0.0
        return True

    def computed(self, ctl, h_in, out) -> None:
        st = ctl.state
        if "in_last" in st:
            di = float((h_in - st["in_last"]).abs().mean())
            do = float((out - st["out_last"]).abs().mean())
            if di > 0:
                st["k"] = do / di
        st["in_last"], st["out_last"] = h_in, out
        st["in_prev_step"] = h_in
        st["out_mean"] = float(out.abs().mean())
        st["acc"] = 0.0


# -- Pareto / interpolation ----------------------------------------------------------------------
def pareto(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Upper-right frontier of (speed-up, fidelity) points, sorted by speed-up."""
    pts = sorted((p for p in points if math.isfinite(p[0]) and math.isfinite(p[1])), key=lambda p: (-p[0], -p[1]))
    front, best = [], -math.inf
    for x, y in pts:
        if y > best:
            front.append((x, y))
            best = y
    return sorted(front)


def interpolate_at(points: Sequence[tuple[float, float]], x: float) -> tuple[float, str] | None:
    """Fidelity at speed-up ``x`` by linear interpolation on the Pareto frontier of the measured
    points, as (value, qualifier). Below the frontier's smallest speed-up the value is that of its
    first point with qualifier ">=" (a method that is faster at that fidelity is at least that good
    at x); above its largest speed-up: None."""
    f = pareto(points)
    if not f or x > f[-1][0] + 1e-9:
        return None
    if x < f[0][0] - 1e-9:
        return f[0][1], ">="
    for (x0, y0), (x1, y1) in zip(f, f[1:]):
        if x0 <= x <= x1:
            return (y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)), ""
    return (f[0][1] if abs(x - f[0][0]) < 1e-9 else f[-1][1]), ""
