"""Safe readers for Learning-to-Cache router checkpoints (arXiv 2406.01733).

The authors publish routers as torch pickles. Unpickling can run arbitrary code, so we only
use torch's weights-only unpickler, with ``argparse.Namespace`` (the training ``args`` in the
DiT files) as the one extra class allowed. Anything else in the pickle is refused unrun.

Semantics, from the official sampling code:

* DiT (``{"routers": {"i.prob": logits[2*depth]}, "opt": ..., "args": Namespace}``): router i
  belongs to respaced timestep index i; sampling runs i = N-1 .. 0, so sampling step k uses
  router N-1-k. Caches are refreshed on odd router indices (full steps) and reused on even
  ones (cache steps). Default threshold 0.1: compute a branch where sigmoid(logit) > 0.1.
* U-ViT (plain ``{"i.prob": logits[2*depth]}``): with DPM-Solver order 2 each solver step has
  two model evaluations; evaluation 2k (k >= 1) is a cache step using router k, every other
  evaluation refreshes the cache. Routers 1 .. NFE/2-1 are used; default threshold 0.9.

Logit entry 2i is block i's attention branch, 2i+1 its MLP.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .schedule import (META_KEY, L2CSchedule, ScheduleError, looks_like_safetensors,
                       parse_safetensors, read_bounded)

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = {"dit": 0.1, "uvit": 0.9}
BRANCHES = ("attn", "mlp")
#: safetensors metadata key of router logits written by our trainer.
LOGITS_META_KEY = "dit_cache.l2c_logits"
LOGITS_FORMAT = "dit-cache.l2c-logits"
_PROB_KEY = re.compile(r"^(\d+)\.prob$")
#: Depth of the official DiT variants, to catch a router paired with the wrong model.
_DIT_DEPTH = {"DiT-XL": 28, "DiT-L": 24, "DiT-B": 12, "DiT-S": 12}


@dataclass
class RouterFile:
    """Router logits laid out per sampling step.

    logits[steps, layers, branches]: the router logits on cache steps, +inf on full steps
    (so they compute at any threshold).
    """
    format: str  # "dit", "uvit" or "l2c-logits"
    family: str
    logits: torch.Tensor
    cache_steps: tuple[int, ...]
    default_threshold: float
    source: str
    branches: tuple[str, ...] = BRANCHES
    positions: list[float] | None = None
    args: dict[str, Any] | None = field(default=None)

    @property
    def steps(self) -> int:
        return int(self.logits.shape[0])

    @property
    def layers(self) -> int:
        return int(self.logits.shape[1])

    def to_schedule(self, threshold: float | None = None) -> L2CSchedule:
        thr = self.default_threshold if threshold is None else _check_threshold(threshold)
        compute = torch.sigmoid(self.logits) > thr
        full = [s for s in range(self.steps) if s not in set(self.cache_steps)]
        compute[full] = True
        return L2CSchedule(compute, self.branches, self.family, positions=self.positions,
                           threshold=thr, source=self.source, kind=f"router:{self.format}",
                           cache_steps=self.cache_steps)


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not math.isfinite(threshold) or not 0.0 <= threshold < 1.0:
        raise ScheduleError(f"threshold must be a number in [0, 1), got {threshold!r}")
    return float(threshold)


def _safe_torch_load(data: bytes, name: str) -> Any:
    """torch.load restricted to tensors + argparse.Namespace; never runs pickle code."""
    try:
        # torch warns about odd pickle protocols etc. on junk input; the outcome is reported
        # through ScheduleError instead, so keep those warnings out of the user's console.
        with warnings.catch_warnings(), \
                torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError/EOFError/... here
        msg = str(exc)
        # torch names the blocked callable ("GLOBAL posix.system"): code the pickle wanted
        # to run. Other weights-only failures are just malformed bytes.
        found = re.search(r"GLOBAL\s+([\w.]+)", msg)
        if found:
            raise ScheduleError(
                f"{name}: refused: the pickle asks for GLOBAL {found.group(1)}, which a safe "
                "reader does not allow; it is not a plain router checkpoint and was not "
                "executed. Only load router files from a source you trust.") from None
        if data[:4] == b"PK\x03\x04":  # a zip archive: torch's own format, but damaged
            raise ScheduleError(f"{name}: torch archive is truncated or corrupt "
                                f"({type(exc).__name__}); re-download the router file") from None
        raise ScheduleError(f"{name}: not a torch checkpoint or safetensors file "
                            f"({type(exc).__name__}); pick a router .pt/.pth or an L2C "
                            ".safetensors schedule") from None


def _prob_tensors(state: Any, name: str, where: str) -> list[torch.Tensor]:
    """Validate a {'i.prob': 1-D logits} state dict; return logits ordered by i."""
    if not isinstance(state, dict) or not state:
        raise ScheduleError(f"{name}: {where} must be a non-empty state dict of 'i.prob' logits")
    idx: dict[int, torch.Tensor] = {}
    for k, v in state.items():
        m = _PROB_KEY.match(k) if isinstance(k, str) else None
        if m is None:
            raise ScheduleError(f"{name}: unexpected key {k!r} in {where}; router state dicts "
                                "hold only 'i.prob' entries")
        if not isinstance(v, torch.Tensor) or not v.is_floating_point() or v.dim() != 1:
            raise ScheduleError(f"{name}: {where}[{k!r}] must be a 1-D float tensor of logits")
        idx[int(m.group(1))] = v
    n = len(idx)
    if sorted(idx) != list(range(n)):
        raise ScheduleError(f"{name}: router indices in {where} must be 0..{n - 1} without gaps")
    probs = [idx[i].detach().to("cpu", torch.float32) for i in range(n)]
    width = probs[0].numel()
    if any(p.numel() != width for p in probs):
        raise ScheduleError(f"{name}: routers have different lengths "
                            f"{sorted({p.numel() for p in probs})}; all must be 2 x depth")
    if width < 2 or width % 2:
        raise ScheduleError(f"{name}: router length {width} is not 2 x depth "
                            "(one attention and one MLP logit per block)")
    if any(not bool(torch.isfinite(p).all()) for p in probs):
        raise ScheduleError(f"{name}: router logits contain NaN or infinity")
    return probs


def _namespace_dict(args: Any) -> dict[str, Any] | None:
    if isinstance(args, argparse.Namespace):
        return {k: v for k, v in vars(args).items()
                if isinstance(v, (str, int, float, bool, type(None)))}
    return None


def _from_dit(obj: dict, name: str) -> RouterFile:
    probs = _prob_tensors(obj["routers"], name, "'routers'")
    n, depth = len(probs), probs[0].numel() // 2
    args = _namespace_dict(obj.get("args"))
    if args:
        steps = args.get("num_sampling_steps")
        if isinstance(steps, int) and steps != n:
            raise ScheduleError(f"{name}: {n} routers but args.num_sampling_steps={steps}; "
                                "the file is inconsistent")
        model = str(args.get("model", "")).split("/")[0]
        if model in _DIT_DEPTH and _DIT_DEPTH[model] != depth:
            raise ScheduleError(f"{name}: routers have {depth} layers but {model} has "
                                f"{_DIT_DEPTH[model]}; wrong layer count")
    logits = torch.full((n, depth, 2), math.inf)
    cache = []
    for k in range(n):  # sampling step k uses router N-1-k; even router index = cache step
        r = n - 1 - k
        if r % 2 == 0 and k > 0:
            logits[k] = probs[r].view(depth, 2)
            cache.append(k)
    return RouterFile("dit", "dit", logits, tuple(cache), DEFAULT_THRESHOLD["dit"], name,
                      args=args)


def _from_uvit(obj: dict, name: str) -> RouterFile:
    probs = _prob_tensors(obj, name, "the state dict")
    nfe, depth = len(probs), probs[0].numel() // 2
    logits = torch.full((nfe, depth, 2), math.inf)
    cache = []
    for k in range(1, nfe // 2):  # evaluation 2k is the first evaluation of solver step k
        logits[2 * k] = probs[k].view(depth, 2)
        cache.append(2 * k)
    return RouterFile("uvit", "uvit", logits, tuple(cache), DEFAULT_THRESHOLD["uvit"], name)


def _from_logits_safetensors(tensors: dict, meta: dict, name: str) -> RouterFile:
    try:
        m = json.loads(meta[LOGITS_META_KEY])
    except ValueError:
        raise ScheduleError(f"{name}: router logits metadata is not valid JSON") from None
    if not isinstance(m, dict) or m.get("format") != LOGITS_FORMAT:
        raise ScheduleError(f"{name}: metadata format is not '{LOGITS_FORMAT}'")
    t = tensors.get("logits")
    if set(tensors) != {"logits"} or t is None or t.dtype != torch.float32 or t.dim() != 3:
        raise ScheduleError(f"{name}: expected one float32 tensor 'logits' "
                            "[steps, layers, branches]")
    branches = m.get("branches")
    family = m.get("family")
    cache = m.get("cache_steps")
    thr = m.get("threshold", 0.5)
    if not isinstance(branches, list) or len(branches) != t.shape[2] \
            or not all(isinstance(b, str) for b in branches):
        raise ScheduleError(f"{name}: metadata 'branches' does not match the logits shape")
    if not isinstance(family, str) or not family:
        raise ScheduleError(f"{name}: metadata 'family' missing")
    if not isinstance(cache, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s < t.shape[0]
            for s in cache):
        raise ScheduleError(f"{name}: metadata 'cache_steps' must list step indices")
    if torch.isnan(t).any():
        raise ScheduleError(f"{name}: router logits contain NaN")
    pos = m.get("positions")
    if pos is not None and not isinstance(pos, list):
        raise ScheduleError(f"{name}: metadata 'positions' must be a list")
    return RouterFile("l2c-logits", family, t.clone(), tuple(sorted(set(cache))),
                      _check_threshold(thr), str(m.get("source") or name),
                      branches=tuple(branches), positions=pos)


def _decode(data: bytes, name: str) -> RouterFile | L2CSchedule:
    """Router file or ready schedule from file bytes."""
    if looks_like_safetensors(data):
        tensors, meta = parse_safetensors(data, name)
        if LOGITS_META_KEY in meta:
            return _from_logits_safetensors(tensors, meta, name)
        return L2CSchedule.from_tensors(tensors, meta, name)
    obj = _safe_torch_load(data, name)
    if isinstance(obj, dict) and "routers" in obj:
        return _from_dit(obj, name)
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and _PROB_KEY.match(k)
                                             for k in obj):
        return _from_uvit(obj, name)
    keys = sorted(map(str, obj))[:6] if isinstance(obj, dict) else type(obj).__name__
    raise ScheduleError(f"{name}: not a Learning-to-Cache router checkpoint (found {keys}); "
                        "expected a DiT file with 'routers' or a U-ViT state dict of 'i.prob'")


def _check_layers(layers: int | None, found: int, name: str) -> None:
    if layers is not None and layers != found:
        raise ScheduleError(f"{name}: file has {found} layers but {layers} were expected; "
                            "wrong layer count for this model")


def read_router_file(path: str | os.PathLike, threshold: float | None = None, *,
                     layers: int | None = None) -> RouterFile:
    """Read an official DiT / U-ViT router checkpoint or our trainer's logits file.

    threshold is only validated here (it is applied by RouterFile.to_schedule).
    """
    if threshold is not None:
        _check_threshold(threshold)
    name = Path(path).name
    out = _decode(read_bounded(path), name)
    if isinstance(out, L2CSchedule):
        raise ScheduleError(f"{name}: this is a finished schedule, not router logits; "
                            "use load_any() or L2CSchedule.load()")
    _check_layers(layers, out.layers, name)
    log.debug("read %s router file %s: %d steps, %d layers", out.format, name, out.steps,
              out.layers)
    return out


def load_any(path: str | os.PathLike, threshold: float | None = None, *,
             layers: int | None = None) -> L2CSchedule:
    """A schedule from any supported file: our safetensors schedule, an official router
    checkpoint (.pt/.pth) or router logits saved by our trainer."""
    name = Path(path).name
    if threshold is not None:
        _check_threshold(threshold)
    out = _decode(read_bounded(path), name)
    if isinstance(out, L2CSchedule):
        if threshold is not None:
            log.warning("%s is a finished schedule; threshold %s ignored", name, threshold)
        sched = out
    else:
        sched = out.to_schedule(threshold)
    _check_layers(layers, sched.layers, name)
    return sched


def save_logits(path: str | os.PathLike, logits: torch.Tensor, *, family: str,
                branches: tuple[str, ...], cache_steps: list[int],
                positions: list[float] | None = None, threshold: float = 0.5,
                source: str = "") -> None:
    """Write router logits [steps, layers, branches] so load_any can threshold them later."""
    from safetensors.torch import save_file
    meta = {"format": LOGITS_FORMAT, "version": 1, "family": family,
            "branches": list(branches), "cache_steps": [int(s) for s in cache_steps],
            "positions": positions, "threshold": float(threshold), "source": source}
    # +inf marks full steps; safetensors stores it fine, and a clamp keeps it exact.
    save_file({"logits": logits.detach().to("cpu", torch.float32).contiguous()}, str(path),
              metadata={LOGITS_META_KEY: json.dumps(meta)})


__all__ = ["RouterFile", "read_router_file", "load_any", "save_logits", "DEFAULT_THRESHOLD",
           "META_KEY"]
