"""Static Learning-to-Cache schedules.

An ``L2CSchedule`` is the static result of L2C router training: for every sampling step,
layer and branch (attention / MLP, or a whole block) a bool saying *compute* (True) or
*reuse the cached output of the last computed step* (False). It is stored as safetensors
with all metadata in one JSON string, because safetensors metadata is str -> str only.
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
from pathlib import Path
from typing import Any, Sequence

import torch

log = logging.getLogger(__name__)

#: Refuse schedule / router files above this size: real ones are a few KiB, so a huge file
#: is a mistake (wrong file picked) and reading it whole would only waste memory.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: The one safetensors metadata key holding our JSON.
META_KEY = "dit_cache.l2c"
SCHEDULE_FORMAT = "dit-cache.l2c-schedule"
FORMAT_VERSION = 1


class ScheduleError(ValueError):
    """A schedule or router file is unusable; the message says what is wrong and what to do."""


def default_positions(steps: int) -> list[float]:
    """Evenly spread schedule positions: 0 for the first step, 1 for the last."""
    if steps <= 1:
        return [0.0] * steps
    return [i / (steps - 1) for i in range(steps)]


def _check_positions(positions: Sequence[float], steps: int) -> list[float]:
    try:
        pos = [float(p) for p in positions]
    except (TypeError, ValueError) as exc:
        raise ScheduleError(f"schedule positions must be numbers in [0, 1]: {exc}") from None
    if len(pos) != steps:
        raise ScheduleError(f"schedule has {steps} steps but {len(pos)} positions; "
                            "there must be one position per step")
    if any(not math.isfinite(p) or p < 0.0 or p > 1.0 for p in pos):
        raise ScheduleError("schedule positions must lie in [0, 1] (fraction of the schedule)")
    if any(b < a for a, b in zip(pos, pos[1:])):
        raise ScheduleError("schedule positions must not decrease from one step to the next")
    return pos


class L2CSchedule:
    """compute[steps, layers, branches] (bool, True = compute) plus where it came from.

    ``cache_steps`` lists the steps that were allowed to reuse (the L2C "cache steps"); the
    others are full-compute steps. Statistics are reported over cache steps separately because
    that is how the paper states its removal ratios. Default: every step but the first.
    """

    def __init__(self, compute: torch.Tensor, branches: Sequence[str], family: str, *,
                 positions: Sequence[float] | None = None, threshold: float | None = None,
                 source: str = "", kind: str = "", cache_steps: Sequence[int] | None = None):
        if not isinstance(compute, torch.Tensor) or compute.dtype != torch.bool:
            raise ScheduleError("schedule 'compute' must be a bool tensor")
        if compute.dim() != 3:
            raise ScheduleError(f"schedule 'compute' must be [steps, layers, branches], "
                                f"got shape {tuple(compute.shape)}")
        steps, layers, n_br = compute.shape
        if steps < 1 or layers < 1:
            raise ScheduleError("schedule needs at least one step and one layer")
        branches = tuple(str(b) for b in branches)
        if len(branches) != n_br or n_br < 1 or len(set(branches)) != n_br:
            raise ScheduleError(f"schedule has {n_br} branches per layer but names {branches}; "
                                "give one distinct name per branch")
        if not isinstance(family, str) or not family:
            raise ScheduleError("schedule family must be a non-empty string (e.g. 'dit')")
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                    or not math.isfinite(threshold):
                raise ScheduleError(f"schedule threshold must be a finite number or None, "
                                    f"got {threshold!r}")
            threshold = float(threshold)
        if cache_steps is None:
            cache_steps = range(1, steps)
        try:
            cs = sorted({int(s) for s in cache_steps})
        except (TypeError, ValueError):
            raise ScheduleError("schedule cache_steps must be a list of step indices") from None
        if any(s < 0 or s >= steps for s in cs):
            raise ScheduleError(f"schedule cache_steps must be step indices in 0..{steps - 1}")
        # Reuse outside a cache step would contradict the metadata; refuse rather than guess.
        full = [s for s in range(steps) if s not in set(cs)]
        if full and not bool(compute[full].all()):
            raise ScheduleError("schedule reuses branches on steps not listed as cache steps")
        self.compute = compute.detach().to("cpu").clone()
        self.branches = branches
        self.family = family
        self.positions = (default_positions(steps) if positions is None
                          else _check_positions(positions, steps))
        self.threshold = threshold
        self.source = str(source)
        self.kind = str(kind)
        self.cache_steps = tuple(cs)
        self._resampled: dict[int, L2CSchedule] = {}

    # -- shape ---------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return int(self.compute.shape[0])

    @property
    def layers(self) -> int:
        return int(self.compute.shape[1])

    @classmethod
    def all_compute(cls, steps: int, layers: int, branches: Sequence[str] = ("attn", "mlp"),
                    family: str = "reference", **kw: Any) -> "L2CSchedule":
        """A schedule that computes everything (a no-op baseline)."""
        return cls(torch.ones(steps, layers, len(tuple(branches)), dtype=torch.bool),
                   branches, family, **kw)

    def validate_for(self, family: str, layers: int) -> None:
        """Refuse a schedule trained for another model family or depth."""
        if self.family != family:
            raise ScheduleError(f"schedule is for model family '{self.family}' but the model is "
                                f"'{family}'; use a schedule trained for '{family}'")
        if self.layers != layers:
            raise ScheduleError(f"schedule has {self.layers} layers but the model has {layers}; "
                                "use a schedule trained for this model")

    # -- resampling ----------------------------------------------------------------------
    def resample(self, n_steps: int) -> "L2CSchedule":
        """The schedule for a run of n_steps, by nearest schedule position.

        The first and last steps always map to the first and last source steps so a run never
        starts with a reuse step it has no cache for, nor ends on a middle row.
        """
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ScheduleError(f"number of steps must be a positive integer, got {n_steps!r}")
        if n_steps == self.steps:
            return self
        src = []
        targets = default_positions(n_steps)
        for j, p in enumerate(targets):
            if j == 0:
                src.append(0)
            elif j == n_steps - 1:
                src.append(self.steps - 1)
            else:  # nearest source position; ties go to the earlier step
                src.append(min(range(self.steps), key=lambda i: (abs(self.positions[i] - p), i)))
        compute = self.compute[src].clone()
        cache_set = set(self.cache_steps)
        cache = [j for j, i in enumerate(src) if i in cache_set and j > 0]
        compute[0] = True  # nothing is cached before the first step
        return L2CSchedule(compute, self.branches, self.family, positions=targets,
                           threshold=self.threshold, source=self.source, kind=self.kind,
                           cache_steps=cache)

    def for_step(self, step_index: int, n_steps: int) -> torch.Tensor:
        """The [layers, branches] bool row for step step_index of a run with n_steps."""
        sched = self._resampled.get(n_steps)
        if sched is None:
            sched = self.resample(n_steps)
            self._resampled[n_steps] = sched
        if not 0 <= step_index < n_steps:
            raise ScheduleError(f"step {step_index} is outside a run of {n_steps} steps")
        return sched.compute[step_index]

    # -- statistics ----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        per_step = self.compute.shape[1] * self.compute.shape[2]
        cs = list(self.cache_steps)
        computed_cache = int(self.compute[cs].sum()) if cs else 0
        total_cache = len(cs) * per_step
        total_all = self.steps * per_step
        removed = total_cache - computed_cache
        return {
            "family": self.family, "steps": self.steps, "layers": self.layers,
            "branches": list(self.branches), "threshold": self.threshold,
            "source": self.source, "kind": self.kind, "cache_steps": cs,
            "computed": computed_cache, "total": total_cache,
            "removed_cache_steps": removed / total_cache if total_cache else 0.0,
            "removed_all_steps": removed / total_all,
        }

    def describe(self) -> str:
        s = self.summary()
        return (f"L2C {self.family} schedule: {s['steps']} steps x {s['layers']} layers x "
                f"{len(self.branches)} branches; cache steps compute {s['computed']}/{s['total']} "
                f"({100 * s['removed_cache_steps']:.2f}% removed, "
                f"{100 * s['removed_all_steps']:.2f}% of all steps)")

    def run_id(self) -> str:
        """Compact id for run reports, e.g. ``L2C(reference,block,-31%)``."""
        s = self.summary()
        thr = f",t{self.threshold:g}" if self.threshold is not None else ""
        return f"L2C({self.family},{'+'.join(self.branches)}{thr},-{100 * s['removed_all_steps']:.0f}%)"

    def __repr__(self) -> str:
        return f"<{self.describe()}>"

    # -- persistence ---------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {"format": SCHEDULE_FORMAT, "version": FORMAT_VERSION, "family": self.family,
                "layers": self.layers, "steps": self.steps, "branches": list(self.branches),
                "positions": self.positions, "threshold": self.threshold,
                "source": self.source, "kind": self.kind, "cache_steps": list(self.cache_steps)}

    def save(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save_file
        save_file({"compute": self.compute.contiguous()}, str(path),
                  metadata={META_KEY: json.dumps(self.metadata())})
        log.debug("saved %s to %s", self.describe(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "L2CSchedule":
        tensors, meta = read_safetensors(path)
        return cls.from_tensors(tensors, meta, name=Path(path).name)

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str],
                     name: str = "schedule") -> "L2CSchedule":
        if META_KEY not in meta:
            raise ScheduleError(f"{name}: safetensors file has no '{META_KEY}' metadata; "
                                "it is not a dit-cache L2C schedule")
        try:
            m = json.loads(meta[META_KEY])
        except ValueError:
            raise ScheduleError(f"{name}: schedule metadata is not valid JSON; "
                                "the file is corrupt, re-create it") from None
        if not isinstance(m, dict) or m.get("format") != SCHEDULE_FORMAT:
            raise ScheduleError(f"{name}: metadata format is not '{SCHEDULE_FORMAT}'")
        if m.get("version") != FORMAT_VERSION:
            raise ScheduleError(f"{name}: schedule format version {m.get('version')!r} is not "
                                f"supported (expected {FORMAT_VERSION}); update dit-cache")
        missing = [k for k in ("family", "layers", "steps", "branches", "positions")
                   if k not in m]
        if missing:
            raise ScheduleError(f"{name}: schedule metadata lacks {', '.join(missing)}")
        if set(tensors) != {"compute"}:
            raise ScheduleError(f"{name}: expected exactly one tensor 'compute', found "
                                f"{sorted(tensors)}")
        compute = tensors["compute"]
        if compute.dtype != torch.bool:
            raise ScheduleError(f"{name}: 'compute' must be bool, found {compute.dtype}")
        if compute.dim() != 3:
            raise ScheduleError(f"{name}: 'compute' must be [steps, layers, branches], found "
                                f"shape {tuple(compute.shape)}")
        branches = m["branches"]
        if not isinstance(branches, list) or not all(isinstance(b, str) for b in branches):
            raise ScheduleError(f"{name}: metadata 'branches' must be a list of names")
        expect = (m["steps"], m["layers"], len(branches))
        if tuple(compute.shape) != expect:
            raise ScheduleError(f"{name}: 'compute' has shape {tuple(compute.shape)} but the "
                                f"metadata says {expect} (steps, layers, branches)")
        for key, typ in (("family", str), ("source", str), ("kind", str)):
            if key in m and not isinstance(m[key], typ):
                raise ScheduleError(f"{name}: metadata '{key}' must be a string")
        positions = m["positions"]
        if not isinstance(positions, list):
            raise ScheduleError(f"{name}: metadata 'positions' must be a list")
        cache_steps = m.get("cache_steps")
        if cache_steps is not None and (not isinstance(cache_steps, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in cache_steps)):
            raise ScheduleError(f"{name}: metadata 'cache_steps' must be a list of integers")
        try:
            return cls(compute, branches, m["family"], positions=positions,
                       threshold=m.get("threshold"), source=m.get("source", ""),
                       kind=m.get("kind", ""), cache_steps=cache_steps)
        except ScheduleError as exc:
            raise ScheduleError(f"{name}: {exc}") from None


def read_bounded(path: str | os.PathLike) -> bytes:
    """Read a whole file, refusing missing, non-regular and oversized files."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise ScheduleError(f"{p}: not a regular file")
        if size > MAX_FILE_BYTES:
            raise ScheduleError(f"{p.name}: file is {size} bytes, larger than the "
                                f"{MAX_FILE_BYTES >> 20} MiB limit for schedule/router files; "
                                "pick the router or schedule file, not a model checkpoint")
        with open(p, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScheduleError(f"{p}: cannot read file ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ScheduleError(f"{p.name}: file grew beyond the {MAX_FILE_BYTES >> 20} MiB limit")
    return data


def looks_like_safetensors(data: bytes) -> bool:
    """Cheap sniff: 8-byte little-endian header length followed by a JSON object."""
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def parse_safetensors(data: bytes, name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata from safetensors bytes; every failure becomes ScheduleError."""
    if not looks_like_safetensors(data):
        raise ScheduleError(f"{name}: not a safetensors file (bad or truncated header)")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ScheduleError(f"{name}: safetensors header is not valid JSON; "
                            "the file is truncated or corrupt") from None
    if not isinstance(header, dict):
        raise ScheduleError(f"{name}: safetensors header is not a JSON object")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ScheduleError(f"{name}: safetensors metadata must map strings to strings")
    try:
        from safetensors.torch import load
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types for bad offsets etc.
        raise ScheduleError(f"{name}: safetensors data is truncated or corrupt ({exc}); "
                            "re-download or re-create the file") from None
    return tensors, meta


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    return parse_safetensors(read_bounded(path), Path(path).name)
