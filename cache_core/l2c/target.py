"""An L2C schedule at a target speed-up: the share of layer work computed is 1/s of the full stack.

L2C (arXiv 2406.01733) ranks the (step, layer, branch) entries of the cache steps by its router:
the lower an entry's router score, the safer its reuse. :func:`for_target` reuses entries in that
order until the computed share of layer work reaches ``1 / target`` (as closely as whole entries
allow), and computes the rest. Full steps (those outside ``cache_steps``, and the first step)
always compute, so a target beyond what the cache steps can give is reached as far as possible,
and :class:`TargetResult` says so.

Scores:
- router logits (official checkpoints, ``save_logits`` files): the logit itself, i.e. a threshold
  on the router chosen to meet the target;
- a finished schedule (what L2C Learn Schedule writes) has no scores left, only its decisions.
  The entries it reuses rank first (so its own choice is kept whenever the target allows it), then
  by how often the same layer and branch is reused over the schedule's cache steps, then by how
  often the same step reuses layers: the layers the router found most cacheable are cached further.

Layer work weighs branches by cost: attention 1/3 and MLP 2/3 of a transformer block's FLOPs at
short sequences for ("attn", "mlp") schedules (as ``bench.fidelity`` counts), one unit per block
otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .schedule import L2CSchedule

BRANCH_COST = {"attn": 1 / 3, "mlp": 2 / 3}


@dataclass(frozen=True)
class TargetResult:
    schedule: L2CSchedule
    target: float
    share: float        # share of the stack's layer work computed by the new schedule (all steps)
    floor: float        # the least share reachable: the full steps' work
    threshold: float | None  # the router threshold that gives it (router logits only)

    @property
    def reached(self) -> float:
        return 1.0 / self.share if self.share > 0 else math.inf

    def describe(self) -> str:
        out = (f"L2C target {self.target:g}x: the schedule computes {100 * self.share:.1f}% of the layer work "
               f"({self.reached:.2f}x of block work)")
        if self.threshold is not None:
            out += f" at router threshold {self.threshold:.4g}"
        if self.floor > 1.0 / self.target + 1e-9:
            out += (f"; the target is out of reach: the full steps alone compute {100 * self.floor:.1f}% "
                    f"(at most {1 / self.floor:.2f}x); combine with TeaCache Patch for more")
        return out


def _costs(branches) -> torch.Tensor:
    names = tuple(branches)
    if set(names) <= set(BRANCH_COST) and len(names) == len(BRANCH_COST):
        return torch.tensor([BRANCH_COST[b] for b in names], dtype=torch.float64)
    return torch.full((len(names),), 1.0 / len(names), dtype=torch.float64)


def share(schedule: L2CSchedule) -> float:
    """Share of the full stack's layer work that ``schedule`` computes, over all its steps."""
    w = _costs(schedule.branches)
    total = schedule.steps * schedule.layers * float(w.sum())
    return float((schedule.compute.double() * w).sum()) / total


def _finished_scores(schedule: L2CSchedule) -> torch.Tensor:
    """Lower = reuse first (see the module doc)."""
    c = schedule.compute.double()
    cs = list(schedule.cache_steps) or list(range(1, schedule.steps))
    layer_reuse = 1.0 - c[cs].mean(dim=0, keepdim=True)           # [1, layers, branches]
    step_reuse = 1.0 - c.mean(dim=(1, 2), keepdim=True)          # [steps, 1, 1]
    return c * 4.0 - layer_reuse * 2.0 - step_reuse * 0.5


def for_target(schedule: L2CSchedule, target: float, logits: torch.Tensor | None = None) -> TargetResult:
    """``schedule`` re-decided so that it computes about ``1 / target`` of the layer work.

    ``logits`` [steps, layers, branches]: the router logits the schedule came from (then the
    result is the router at the threshold that meets the target); None ranks the finished
    schedule's own entries (module doc). Raises ValueError for a target below 1, NaN or infinite."""
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) or target < 1:
        raise ValueError(f"target_speedup must be a finite number >= 1 (or 0 for the schedule as it is), "
                         f"got {target!r}; try 1.5 or 2")
    steps, layers, nb = schedule.compute.shape
    w = _costs(schedule.branches).expand(steps, layers, nb)
    full = torch.ones(steps, dtype=torch.bool)
    full[list(schedule.cache_steps)] = False
    full[0] = True
    score = logits.double().clone() if logits is not None else _finished_scores(schedule)
    score[full] = math.inf
    total = float(w.sum())
    floor = float(w[full].sum()) / total
    goal = 1.0 / target
    order = torch.argsort(score.flatten(), stable=True)
    cost = w.flatten()[order]
    computed_after = 1.0 - torch.cumsum(cost, 0) / total  # share computed after reusing the first k+1 entries
    free = int((~torch.isinf(score.flatten()[order])).sum())
    shares = torch.cat([torch.ones(1, dtype=torch.float64), computed_after[:free]])
    k = int(torch.argmin((shares - goal).abs()))  # reuse the k lowest-scored entries
    compute = torch.ones(steps * layers * nb, dtype=torch.bool)
    compute[order[:k]] = False
    compute = compute.view(steps, layers, nb)
    thr = None
    if logits is not None:
        flat = score.flatten()[order]
        lo = float(flat[k - 1]) if k > 0 else -math.inf
        hi = float(flat[k]) if k < free else math.inf
        z = (lo + hi) / 2 if math.isfinite(lo) and math.isfinite(hi) else (hi - 1 if math.isfinite(hi) else lo + 1)
        thr = float(torch.sigmoid(torch.tensor(z)))
    cache_steps = [s for s in range(steps) if not full[s]]
    out = L2CSchedule(compute, schedule.branches, schedule.family, positions=schedule.positions,
                      threshold=thr if thr is not None else schedule.threshold,
                      source=schedule.source, kind=(schedule.kind + "+" if schedule.kind else "") + f"target{target:g}",
                      cache_steps=cache_steps)
    return TargetResult(out, float(target), share(out), floor, thr)


def load_for_target(path, target: float, threshold: float | None = None) -> TargetResult:
    """Any schedule or router file (as :func:`cache_core.l2c.load_any` reads it), at ``target``:
    router files by their logits, finished schedules by their own ranking. ``threshold`` is
    ignored (the target chooses it) but still validated, as the node passes it."""
    from pathlib import Path

    from .routers import RouterFile, _check_threshold, _decode
    from .schedule import read_bounded
    if threshold is not None:
        _check_threshold(threshold)
    out = _decode(read_bounded(path), Path(path).name)
    if isinstance(out, RouterFile):
        return for_target(out.to_schedule(), target, out.logits)
    return for_target(out, target)
