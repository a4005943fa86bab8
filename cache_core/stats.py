"""Run statistics: one record per model evaluation and stream, and a summary per sampling run."""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Hashable

from . import report


@dataclass
class EvalRecord:
    eval_index: int
    step: int
    sigma: float
    stream: str
    decision: str          # "compute" or "reuse"
    reason: str            # why (first, last, window, threshold, reuse, l2c, nonfinite, ...)
    rel_l1: float | None
    accumulated: float | None
    layers_computed: int
    layers_reused: int
    wall_s: float
    cache_bytes: int
    kind: str = ""         # "" for the sampler's ordinary pass, else a guidance pass id ("g1", ...)
    rescaled: float | None = None  # rel_l1 through the coefficient polynomial: what the accumulator adds
    device: str = ""       # the device whose model copy ran it (ComfyUI's MultiGPU CFG Split); "" on one device


@dataclass
class RunRecorder:
    """Collects the records of one sampling run; `summary()` condenses them."""
    run_id: str = ""
    records: list[EvalRecord] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    peak_cache_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    n_steps: int = 0
    threshold: float | None = None
    reuse: str = ""  # what skipped work gets (cache_core.forecast.describe)
    sampler: str = ""            # the sampler's name, when the caller knows it
    noisy_sampler: bool = False  # the sampler adds fresh noise at every step (ancestral, SDE)
    target: object = None        # the run's cache_core.budget.BudgetPlan in target mode
    stream_names: dict = field(default_factory=dict)  # stream key -> name the user knows (report.stream_name)
    # the devices of a MultiGPU CFG Split record from their own threads
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _peaks: dict = field(default_factory=dict, repr=False, compare=False)  # device -> peak cache bytes

    def start(self, n_steps: int = 0) -> None:
        self.records.clear()
        self.notes.clear()
        self.peak_cache_bytes = 0
        self._peaks.clear()
        self.n_steps = n_steps
        self.started = time.perf_counter()
        self.finished = None

    def finish(self) -> None:
        self.finished = time.perf_counter()

    def add(self, step: int, sigma: float, stream: Hashable, compute: bool, reason: str,
            rel_l1: float | None, accumulated: float | None, layers_computed: int,
            layers_reused: int, wall_s: float, cache_bytes: int, kind: str = "",
            rescaled: float | None = None, device: str = "") -> None:
        """One evaluation of one stream; ``cache_bytes``: what ``device``'s caches hold after it
        (the run's peak is the sum of the devices' peaks)."""
        with self._lock:
            self._peaks[device] = max(self._peaks.get(device, 0), cache_bytes)
            self.peak_cache_bytes = sum(self._peaks.values())
            self.records.append(EvalRecord(len(self.records), step, float(sigma), str(stream),
                                           "compute" if compute else "reuse", reason, rel_l1, accumulated,
                                           layers_computed, layers_reused, wall_s, cache_bytes, kind, rescaled,
                                           device))

    def note(self, text: str) -> None:
        with self._lock:
            if text not in self.notes:
                self.notes.append(text)

    # -- summary ---------------------------------------------------------------------------
    def summary(self) -> dict:
        """Counts of the sampler's ordinary passes (``evaluations``, ``computed``, ...), guidance
        passes apart (``guidance_passes``, ``guidance_computed``); layer counts and speed-ups
        over all block work of the run."""
        everything = self.records
        recs = [r for r in everything if not r.kind]
        guidance = [r for r in everything if r.kind]
        total = len(recs)
        computed = sum(r.decision == "compute" for r in recs)
        layers_c = sum(r.layers_computed for r in everything)
        layers_r = sum(r.layers_reused for r in everything)
        layer_total = layers_c + layers_r
        # estimated: the share of block work done, ignoring what runs outside the blocks
        est = (layer_total / layers_c) if layers_c else (1.0 if layer_total == 0 else float("inf"))
        full = [r for r in recs if r.decision == "compute" and r.layers_reused == 0]
        measured = None
        wall_total = sum(r.wall_s for r in everything)
        if full:
            # full-compute evaluations count at their median, so a slow first (warm-up) evaluation
            # does not read as a slowdown; every other evaluation counts at its measured time
            median_full = sorted(r.wall_s for r in full)[len(full) // 2]
            full_ids = {id(r) for r in full}
            cost = median_full * len(full) + sum(r.wall_s for r in everything if id(r) not in full_ids)
            if cost > 0:
                measured = median_full * len(everything) / cost
        reasons: dict[str, int] = {}
        for r in recs:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        out = {
            "run_id": self.run_id,
            "reuse": self.reuse,
            "steps": self.n_steps,
            "evaluations": total,
            "computed": computed,
            "reused": total - computed,
            "hit_rate": (total - computed) / total if total else 0.0,
            "layers_computed": layers_c,
            "layers_reused": layers_r,
            "estimated_speedup": est,
            "measured_speedup": measured,
            "peak_cache_bytes": self.peak_cache_bytes,
            "wall_s": (self.finished - self.started) if (self.started and self.finished) else wall_total,
            "streams": sorted({r.stream for r in recs}),
            "stream_names": {k: report.stream_name(k, self.stream_names)
                             for k in report.stream_order({r.stream for r in everything}, self.stream_names)},
            "reasons": reasons,
            "guidance_passes": len(guidance),
            "guidance_computed": sum(r.decision == "compute" for r in guidance),
            "notes": list(self.notes),
            **_breakdown(recs, self._peaks),
        }
        if self.target is not None:
            from .budget import target_summary
            t = target_summary(self.target, recs, est, measured)
            out.update(t["fields"])
            out["notes"].append(t["note"])
        if total and computed == total and layers_r == 0:
            out["notes"].append(self._why_no_reuse())
        elif self.noisy_sampler and self.threshold:
            out["notes"].append(f"the sampler {self.sampler} adds noise at every step, which raises the measured "
                                "change: ancestral and SDE samplers reuse less than deterministic ones (README, "
                                "Troubleshooting)")
        return out

    def _why_no_reuse(self) -> str:
        return report.why_no_reuse([r for r in self.records if not r.kind], self.threshold, self.n_steps,
                                   self.sampler, self.noisy_sampler)

    def to_json(self, with_records: bool = True) -> str:
        d = {"summary": self.summary()}
        if with_records:
            d["records"] = [asdict(r) for r in self.records]
        return json.dumps(d, indent=1)

    def table(self) -> str:
        """Human-readable report: the one-line summary (``report.headline``), the details, then one
        row per evaluation with its stream named as the user knows it."""
        s = self.summary()
        ms = f"{s['measured_speedup']:.2f}x" if s["measured_speedup"] else "n/a"
        names = s["stream_names"]
        width = max([6] + [len(n) for n in names.values()])
        width = min(width, 28)
        lines = [
            report.headline(s),
            f"run {s['run_id']}; streams: " + ", ".join(names.values()),
            *([s["reuse"]] if s["reuse"] else []),
            f"evaluations computed {s['computed']}/{s['evaluations']} (hit rate {s['hit_rate']:.0%}), "
            f"layers computed {s['layers_computed']}/{s['layers_computed'] + s['layers_reused']}",
            f"speed-up estimated {s['estimated_speedup']:.2f}x, measured {ms}; "
            f"peak cache {s['peak_cache_bytes'] / 2**20:.1f} MiB",
        ]
        if s["devices"]:
            lines.append("devices: " + "; ".join(
                f"{d} computed {v['computed']}/{v['evaluations']} ({', '.join(v['streams'])})"
                for d, v in s["devices"].items()) +
                f"; every device reused on {len(s['steps_all_reused'])} of {s['steps']} steps (only those "
                "steps save wall time: the sampler waits for the slowest device)")
        if s["guidance_passes"]:
            lines.append(f"guidance passes: {s['guidance_passes']}, computed {s['guidance_computed']} "
                         "(evaluations a guidance node adds, e.g. Skip Layer Guidance; each keeps its own "
                         "cache, never the cond's)")
        lines += s["notes"]
        lines.append(f"{'#':>4} {'step':>4} {'sigma':>8} {'stream':<{width}} {'decision':>8} {'reason':>9} "
                     f"{'rel_l1':>8} {'acc':>7} {'layers':>7} {'ms':>7}")
        for r, reached in zip(self.records, report.accumulator_trace(self.records)):
            rl = f"{r.rel_l1:.4f}" if r.rel_l1 is not None else "-"
            reached = reached if reached is not None else r.accumulated  # acc: the value held against the threshold
            acc = f"{reached:.3f}" if reached is not None else "-"
            name = names.get(r.stream, r.stream)
            name = (f"{r.device}:{name}" if r.device else name)[:width]
            lines.append(f"{r.eval_index:>4} {r.step:>4} {r.sigma:>8.4f} {name:<{width}} {r.decision:>8} "
                         f"{r.reason[:9]:>9} {rl:>8} {acc:>7} {r.layers_computed:>3}/{r.layers_computed + r.layers_reused:<3} "
                         f"{r.wall_s * 1000:>7.1f}")
        return "\n".join(lines)


def _breakdown(recs: list[EvalRecord], peaks: dict) -> dict:
    """Per stream and per device counts of the ordinary passes ``recs``, and the steps on which
    every evaluation reused (under MultiGPU CFG Split, the steps that save wall time). ``devices``
    is empty unless the records name devices."""
    streams: dict = {}
    devices: dict = {}
    computed_steps, steps = set(), set()
    for r in recs:
        c = r.decision == "compute"
        s = streams.setdefault(r.stream, {"evaluations": 0, "computed": 0})
        s["evaluations"] += 1
        s["computed"] += c
        steps.add(r.step)
        if c:
            computed_steps.add(r.step)
        if r.device:
            d = devices.setdefault(r.device, {"evaluations": 0, "computed": 0, "streams": [],
                                              "peak_cache_bytes": peaks.get(r.device, 0)})
            d["evaluations"] += 1
            d["computed"] += c
            if r.stream not in d["streams"]:
                d["streams"].append(r.stream)
    return {"per_stream": streams, "devices": dict(sorted(devices.items())),
            "steps_all_reused": sorted(steps - computed_steps)}


def short_hash(text: str, n: int = 6) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:n]


def make_run_id(*parts: str) -> str:
    """Compact id of the cache settings, e.g. ``TC(t0.4,flux)+L2C(...)#a1b2c3``."""
    body = "+".join(p for p in parts if p) or "none"
    return f"{body}#{short_hash(body)}"
