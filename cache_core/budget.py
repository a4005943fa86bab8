"""Ask for a speed-up, get it: TeaCache's compute-or-reuse decision under a budget of evaluations.

With ``target_speedup`` s, a sampling run computes ``B = round(E / s)`` of its ``E`` ordinary model
evaluations per cond stream (E = N for N steps of a one-evaluation sampler, 2N - 1 for heun and
the other two-evaluation samplers whose last step is Euler). Forced evaluations (the first one,
the last step, steps outside ``start_percent``/``end_percent``, warm-up) compute and count; when
they alone exceed B, the run computes those and the target is missed (:attr:`BudgetPlan.missed`
says why).

The rule is TeaCache's own (compute when the accumulated rescaled change reaches a threshold), with
the threshold chosen online so that the accumulated-change curve of the rest of the run is split
into as many equal parts as there are computes left (the "equal parts of the accumulated-change
curve" of BudCache / LeMiCa, online instead of from a calibration run). At evaluation ``j`` of a
stream, with ``acc`` the change accumulated since its last compute and ``R`` the free computes left
(budget minus computes so far minus forced evaluations still to come):

    threshold = (acc + D) / (R + F)

where ``F`` is the number of forced evaluations still to come and ``D`` the change expected over
the remaining evaluations: the observed change per unit of prior weight so far, times the prior
weight still to come. The prior weight of an evaluation is the distance in sigma to the previous
evaluation (the model's input moves by about ``dsigma * velocity``), so on a schedule with uneven
sigma steps (a shifted flow schedule takes small ones at high noise and big ones at the end) the
expected change follows the steps still to come. The rate is a running mean that forgets (the
rest of the run is expected to move like its latest part), so a trend in the indicator is
followed with a lag; a jump always computes. The count is guaranteed whatever the indicator
does: when ``R`` reaches 0 the stream only reuses, when ``R`` equals the free evaluations left it
only computes. So the number of computes is exactly ``max(B, forced)`` for the layouts this module
knows (one evaluation per step, heun's layout, the midpoint layout of dpm_2 and friends); an
unknown sampler that evaluates more often than planned computes its extra evaluations only when
forced.

Everything here is pure (host floats, no tensors, no ComfyUI); ``cache_core.stack`` calls
:func:`decide` per stream and evaluation, ``nodes.runtime`` builds the :class:`BudgetPlan` from the
run's sigmas and sampler name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

#: samplers that evaluate the model twice per step, and where the second evaluation lands:
#: "next" = at the next schedule sigma (heun: located as the next step), "mid" = between the two
#: schedule sigmas (located in the same step). ComfyUI's KSAMPLER_NAMES, 0.3.64 - 0.33.0.
TWO_EVALUATION_SAMPLERS: dict[str, str] = {
    "heun": "next", "heunpp2": "next", "dpm_2": "mid", "dpm_2_ancestral": "mid",
    "dpmpp_2s_ancestral": "mid", "dpmpp_2s_ancestral_cfg_pp": "mid", "dpmpp_sde": "mid", "dpmpp_sde_gpu": "mid",
    "seeds_2": "mid", "exp_heun_2_x0": "next", "exp_heun_2_x0_sde": "next",
}


def check_target(value) -> float:
    """``target_speedup`` validated: 0 (off) or a finite number >= 1. Raises ValueError with a working value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value) \
            or (value != 0 and value < 1):
        raise ValueError(f"target_speedup must be 0 (off) or a finite number >= 1, got {value!r}; "
                         "try 2 (compute about half of the model evaluations) or 0 to use rel_l1_thresh")
    return float(value)


def evaluation_steps(sigmas: Sequence[float], sampler: str = "") -> list[int]:
    """The step (as :class:`cache_core.steps.StepLocator` locates it) of every model evaluation of
    one stream in a run of ``sampler`` over ``sigmas`` (N+1 values, N steps).

    One-evaluation samplers: ``[0, 1, ..., N-1]``. Two-evaluation samplers skip the second
    evaluation where the next sigma is 0 (their last step is an Euler step): heun's layout
    ``[0, 1, 1, 2, 2, ..., N-1, N-1]`` (2N - 1 evaluations), the midpoint layout
    ``[0, 0, 1, 1, ..., N-2, N-2, N-1]``."""
    n = len(sigmas) - 1
    if n < 1:
        raise ValueError("a sampling schedule needs at least two sigmas (one step)")
    layout = TWO_EVALUATION_SAMPLERS.get(sampler or "", "")
    out: list[int] = []
    for i in range(n):
        out.append(i)
        if layout and float(sigmas[i + 1]) != 0.0:
            out.append(min(i + 1, n - 1) if layout == "next" else i)
    return out


def _weights(sigmas: Sequence[float], steps: Sequence[int], sampler: str) -> list[float]:
    """Prior change of every evaluation: |sigma - sigma of the previous evaluation|, floored so
    that evaluations at a repeated sigma (heun's corrector and the next step) still count a little."""
    layout = TWO_EVALUATION_SAMPLERS.get(sampler or "", "")
    sig = []
    for j, s in enumerate(steps):
        if layout == "mid" and j > 0 and steps[j - 1] == s:
            a, b = float(sigmas[s]), float(sigmas[s + 1])
            sig.append(math.sqrt(abs(a * b)) if a * b > 0 else (a + b) / 2)  # dpm_2's midpoint (log-space)
        else:
            sig.append(float(sigmas[s]))
    d = [0.0] + [abs(sig[j] - sig[j - 1]) for j in range(1, len(sig))]
    mean = sum(d) / max(1, len(d) - 1)
    floor = 0.05 * mean if mean > 0 else 1.0
    return [0.0] + [max(v, floor) for v in d[1:]]


@dataclass(frozen=True)
class BudgetPlan:
    """The budget of one run, per stream: which evaluations are forced, how many compute.

    ``forced[j]``: evaluation j computes whatever the indicator says (first, last step, window,
    warm-up). ``weights[j]``: its prior change (see the module doc). ``budget``: computes per
    stream, ``max(round(E / target), forced count)`` capped at E."""
    target: float
    steps: tuple[int, ...]
    forced: tuple[bool, ...]
    weights: tuple[float, ...]
    budget: int
    requested: int  # round(E / target) before the forced evaluations raised it

    @property
    def evaluations(self) -> int:
        return len(self.steps)

    @property
    def bound(self) -> float:
        """The speed-up the plan reaches if every stream spends exactly its budget: E / budget."""
        return self.evaluations / self.budget if self.budget else math.inf

    @property
    def missed(self) -> str:
        """Why the target cannot be met, or ""."""
        n_forced = sum(self.forced)
        if self.budget > self.requested:
            return (f"target {self.target:g}x asks for {self.requested} of {self.evaluations} evaluations per stream, "
                    f"but {n_forced} are forced (first evaluation, last step, outside start/end_percent, warm-up), so "
                    f"at most {self.evaluations / n_forced:.2f}x; use more steps or widen start/end_percent")
        return ""

    def describe(self) -> str:
        return (f"target {self.target:g}x: compute {self.budget} of {self.evaluations} evaluations per stream "
                f"({self.bound:.2f}x), {sum(self.forced)} of them forced")


def plan(target: float, sigmas: Sequence[float], sampler: str = "",
         forced: Callable[[int, int, float], bool] | None = None) -> BudgetPlan:
    """The :class:`BudgetPlan` of a run of ``sampler`` over ``sigmas`` at ``target_speedup`` ``target``.

    ``forced(step, n_steps, position)``: whether an evaluation of that step computes regardless
    (``cache_core.teacache.forced_reason``); the first evaluation is always forced."""
    target = check_target(target)
    if target == 0:
        raise ValueError("plan() needs a target_speedup >= 1 (0 means no target)")
    steps = evaluation_steps(sigmas, sampler)
    n = len(sigmas) - 1
    f = [j == 0 or bool(forced and forced(s, n, s / (n - 1) if n > 1 else 0.0)) for j, s in enumerate(steps)]
    e = len(steps)
    requested = max(1, min(e, int(math.floor(e / target + 0.5))))
    budget = min(e, max(requested, sum(f)))
    return BudgetPlan(target, tuple(steps), tuple(f), tuple(_weights(sigmas, steps, sampler)), budget, requested)


RECENT = 0.25  # weight of the latest evaluation in the running rate (see decide)


@dataclass(frozen=True)
class BudgetState:
    """Per stream: evaluations seen, computes so far, and running means of the observed change and
    of the prior weight (their ratio is the rate that extrapolates the rest of the run)."""
    evaluations: int = 0
    computed: int = 0
    change: float = 0.0
    weight: float = 0.0


def decide(p: BudgetPlan, state: BudgetState, rescaled: float | None, accumulated: float,
           forced: bool) -> tuple[bool, float, BudgetState]:
    """Whether evaluation ``state.evaluations`` of a stream computes under the plan.

    ``rescaled``: this evaluation's rescaled indicator change (None on the first); ``accumulated``:
    the change accumulated since the stream's last compute, this one included; ``forced``: it
    computes anyway. Returns (compute, threshold, the state after it): compute is
    ``accumulated >= threshold`` (-inf when the budget must be spent, +inf when it is spent). The
    caller passes the state through :func:`computed` whenever the stream computed, whatever the
    reason (this decision, a forced step, a batch partner, a missing cache)."""
    j = state.evaluations
    w = p.weights[j] if j < len(p.weights) else 0.0
    ch = max(0.0, rescaled or 0.0)
    # the change per unit of prior weight, averaged over the recent evaluations (a running mean
    # that forgets at RECENT): the rest of the run is expected to move like its latest part
    a = max(RECENT, 1.0 / j) if j > 0 else 0.0
    seen = BudgetState(j + 1, state.computed, (1 - a) * state.change + a * ch, (1 - a) * state.weight + a * w)
    if forced or rescaled is None:
        return True, -math.inf, seen
    left_forced = sum(p.forced[j + 1:])
    left_free = max(0, len(p.steps) - j - 1 - left_forced)
    free_computes = p.budget - state.computed - left_forced  # computes available from here on, this one included
    if free_computes <= 0:
        return False, math.inf, seen
    if free_computes > left_free:  # the budget must be spent: every free evaluation left computes
        return True, -math.inf, seen
    # the rate so far, without this evaluation: a jump here is this segment's change, not a
    # forecast. With nothing observed before (the evaluation after the first) there is no
    # forecast yet: reuse, unless the budget must be spent (above)
    if state.weight <= 0:
        return False, math.inf, seen
    rate = state.change / state.weight
    expected = rate * sum(p.weights[j + 1:])
    part = (accumulated + expected) / (free_computes + left_forced)
    # round, not ceil: compute where the segment ends closest to an equal part. Computing only once
    # the part is exceeded makes every segment longer than a part, so a flat run would underspend
    # and dump its leftover budget on the last evaluations
    nxt = rate * (p.weights[j + 1] if j + 1 < len(p.weights) else 0.0)
    threshold = part - nxt / 2
    return accumulated >= threshold, threshold, seen


def computed(state: BudgetState) -> BudgetState:
    """``state`` after its latest evaluation computed (by :func:`decide` or for another reason)."""
    return BudgetState(state.evaluations, state.computed + 1, state.change, state.weight)


def target_summary(p: BudgetPlan, records: Sequence, estimated: float, measured: float | None) -> dict:
    """What Cache Stats says of a target-mode run: ``fields`` (data for the summary) and ``note``
    (one line: the target beside what was reached, and why they differ where they do).
    ``records``: the run's :class:`cache_core.stats.EvalRecord` of the ordinary passes."""
    per: dict[str, list[int]] = {}
    why_extra: dict[str, int] = {}
    for r in records:
        c = per.setdefault(r.stream, [0, 0])
        c[0] += 1
        if r.decision == "compute":
            c[1] += 1
            if r.reason in ("batch", "cap", "no_cache", "nonfinite"):
                why_extra[r.reason] = why_extra.get(r.reason, 0) + 1
    evals = max((c[0] for c in per.values()), default=0)
    done = max((c[1] for c in per.values()), default=0)
    reached = min((c[0] / c[1] for c in per.values() if c[1]), default=1.0)
    fields = {"target_speedup": p.target, "target_budget": p.budget, "target_evaluations": p.evaluations,
              "target_bound": p.bound, "target_computed": done, "target_reached": reached,
              "target_met": p.budget == p.requested and abs(done - p.budget) <= 1 and evals == p.evaluations}
    ms = f", measured {measured:.2f}x" if measured else ""
    note = (f"target {p.target:g}x: computed {done} of {evals} evaluations per stream ({reached:.2f}x by count; "
            f"budget {p.budget} of {p.evaluations}; estimated {estimated:.2f}x{ms})")
    why = []
    if p.missed:
        why.append(p.missed)
    if evals != p.evaluations:
        why.append(f"the sampler evaluated the model {evals} times per stream where {p.evaluations} were planned "
                   "(a sampler with another number of evaluations per step); evaluations beyond the plan "
                   "reuse unless forced")
    labels = {"batch": "a stream computed with its batch partner", "cap": "max_consecutive_skips forced a compute",
              "no_cache": "no cache of the right shape yet", "nonfinite": "a reused residual was not finite"}
    if done > p.budget and why_extra:
        why.append("over budget: " + ", ".join(f"{labels[k]} ({n}x)" for k, n in why_extra.items()))
    if measured and measured < 0.8 * reached:
        why.append("measured below the count: the embeddings, the indicator, the final layer and the sampler "
                   "still run on every evaluation")
    if why:
        note += "; " + "; ".join(why)
    return {"fields": fields, "note": note}
