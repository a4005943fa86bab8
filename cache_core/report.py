"""What Cache Stats says first: stream names as the user knows them, the one-line summary, the
value the TeaCache accumulator reached at each evaluation, and the true reason a run reused nothing.

Pure functions of :class:`cache_core.stats.EvalRecord` lists and summary dicts, so they are
unit-tested with hand-made records (tests/core/test_report.py).
"""
from __future__ import annotations

import math
from typing import Sequence

#: evaluations that compute whatever the accumulator says (cache_core.teacache.forced_reason, "first")
FORCED = {"first": "first step", "last": "last step", "window": "outside start/end percent",
          "warmup": "warm-up", "interval": "compute_every"}
#: stream keys made without cond uuids (nodes.runtime.stream_keys) and what the user calls them
PLAIN_NAMES = {"cond": "positive", "uncond": "negative"}


def stream_name(key: str, names: dict | None = None) -> str:
    """The name of stream ``key`` in reports: ``names[key]`` when the caller named it (positive,
    negative, ``positive 2 (area)``, ``positive · Skip Layer Guidance DiT``), else a readable
    fallback (``cond`` -> positive, a guidance key ``g1:<key>`` -> ``<name> · pass g1``, a bare
    uuid -> ``cond <first 8 hex>``)."""
    names = names or {}
    if key in names:
        return names[key]
    if ":" in key:
        gid, base = key.split(":", 1)
        return f"{stream_name(base, names)} · pass {gid}"
    for plain, name in PLAIN_NAMES.items():
        if key == plain or (key.startswith(plain) and key[len(plain):].isdigit()):
            return name + (f" {int(key[len(plain):]) + 1}" if key != plain else "")
    return f"cond {key[:8]}" if len(key) > 12 else key


def stream_order(keys, names: dict | None = None) -> list:
    """Streams in the order the user thinks of them: named ordinary streams in the order they were
    named (positive before negative), then the rest, guidance passes last."""
    names = names or {}
    rank = {k: i for i, k in enumerate(names)}
    plain = {k: i for i, k in enumerate(PLAIN_NAMES)}
    return sorted(set(keys), key=lambda k: (":" in k, rank.get(k, len(rank)), plain.get(k, len(plain)),
                                            stream_name(k, names)))


def accumulator_trace(records: Sequence) -> list:
    """Per record (same order), the value the TeaCache accumulator reached at that evaluation,
    before a compute resets it: the previous reuse's accumulator (0 after a compute) plus this
    evaluation's rescaled change. None where the record has no rescaled change (the first
    evaluation, L2C alone, guidance passes run uncached)."""
    last: dict = {}
    out = []
    for r in records:
        rescaled = getattr(r, "rescaled", None)
        if rescaled is None:
            out.append(None)
        else:
            prev = last.get(r.stream)
            carried = prev.accumulated if (prev is not None and prev.decision == "reuse"
                                           and prev.accumulated is not None) else 0.0
            out.append(carried + rescaled)
        last[r.stream] = r
    return out


def _steps(steps: Sequence[int]) -> str:
    """[1, 2, 3, 7] -> "steps 1-3, 7" (0-based, as the table's step column)."""
    s = sorted(set(steps))
    if not s:
        return "no steps"
    runs, start = [], s[0]
    for a, b in zip(s, s[1:] + [None]):
        if b != a + 1:
            runs.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ("step " if len(s) == 1 else "steps ") + ", ".join(runs)


def _round_up(v: float) -> str:
    """``v`` to 3 significant digits, rounded up, so "a threshold above it" stays true."""
    if v <= 0:
        return "0"
    unit = 10.0 ** (math.floor(math.log10(v)) - 2)
    return f"{math.ceil(v / unit - 1e-9) * unit:.3g}"


def why_no_reuse(records: Sequence, threshold: float | None, n_steps: int = 0, sampler: str = "",
                 noisy_sampler: bool = False) -> str:
    """Why a run reused nothing, naming the real cause: the threshold (with the threshold that
    would have reused a step), the forced steps, or both. ``records``: the run's ordinary
    evaluations (``EvalRecord`` with ``kind == ""``). Every message starts with ``no reuse:``."""
    if threshold == 0:
        return "no reuse: the threshold is 0, which turns caching off"
    if threshold is None:
        return ("no reuse: the L2C schedule computes every layer at the steps of this run; use a schedule that "
                "reuses layers (L2C Learn Schedule with a larger λ, or a lower L2C threshold)")
    forced = [r for r in records if r.reason in FORCED]
    decided = [r for r in records if r.reason in ("threshold", "batch")]
    other = [r for r in records if r not in forced and r not in decided]
    extra_forced = [r for r in forced if r.reason not in ("first", "last")]
    few = f"; a {n_steps}-step run leaves few steps between the first and the last" if 0 < n_steps <= 4 else ""
    if not decided:
        if other and not extra_forced:
            kinds = sorted({r.reason for r in other})
            return (f"no reuse: every step that could reuse computed instead ({', '.join(kinds)}: no cached residual "
                    "of the right shape, or a reused one was not finite; see the notes)")
        why = sorted({FORCED[r.reason] for r in forced})
        fix = " (widen start_percent/end_percent)" if extra_forced else ""
        return (f"no reuse: every evaluation fell on a forced step ({', '.join(why)}){fix}: the threshold "
                f"decided none of them{few}")
    trace = dict(zip(map(id, records), accumulator_trace(records)))
    # a step reuses only when every stream of its batch stays under the threshold
    need: dict = {}
    for r in decided:
        v = trace.get(id(r))
        if v is not None:
            key = (r.step, r.sigma)
            need[key] = max(need.get(key, 0.0), v)
    figure = ""
    if need:
        (step, _), low = min(need.items(), key=lambda kv: (kv[1], kv[0]))
        figure = f"; a threshold above {_round_up(low)} reuses step {step}"
    cause = (f"the accumulated change reached rel_l1_thresh {threshold:g} at {_steps([r.step for r in decided])}"
             f"{figure}")
    if extra_forced:
        why = sorted({FORCED[r.reason] for r in extra_forced})
        cause = (f"both: {_steps([r.step for r in extra_forced])} were forced ({', '.join(why)}), and {cause}")
    if noisy_sampler:
        changes = sorted(r.rel_l1 for r in records if r.rel_l1 is not None and r.reason == "threshold")
        typical = f" (median relative change {changes[len(changes) // 2]:.3g} per evaluation)" if changes else ""
        return (f"no reuse: the sampler {sampler} adds fresh noise at every step, so the model's input changes a lot "
                f"between evaluations{typical}: {cause}; use a deterministic sampler (euler, dpmpp_2m, heun, ...) "
                "to cache, or raise rel_l1_thresh")
    return f"no reuse: {cause}; raise rel_l1_thresh or calibrate coefficients for this model"


def _speed(s: dict) -> str:
    if s.get("measured_speedup"):
        text = f"speed-up {s['measured_speedup']:.2f}x (measured)"
    else:
        text = f"speed-up ~{s.get('estimated_speedup') or 1.0:.2f}x (estimated)"
    if s.get("target_speedup"):  # target mode (TeaCache Patch / L2C Schedule Loader target_speedup)
        met = s.get("target_met")
        text += f", target {s['target_speedup']:g}x" + ("" if met is None else (" met" if met else " not met"))
    return text


def look_at(s: dict) -> str:
    """What to look at first when the result looks wrong, from a summary dict."""
    notes = s.get("notes") or []
    first = next((n for n in notes if n.startswith("the run was interrupted")), None)
    if first:
        return "the run was interrupted: these numbers cover only the steps before"
    why = next((n for n in notes if n.startswith("no reuse:")), None)
    if why:
        return "nothing was reused, " + why[len("no reuse: "):].split(";")[0]
    if any("not finite" in n for n in notes):
        return "some reused residuals were not finite and those steps computed (see notes)"
    if s.get("target_speedup") and s.get("target_met") is False:
        return "the target was not reached (see the target note below)"
    if any("adds noise at every step" in n for n in notes):
        return "the sampler adds noise at every step, so little is reused (see notes)"
    run = s.get("run_id", "")
    if "TC(" in run:
        return ("if the image differs from uncached, lower rel_l1_thresh or set start_percent 0.1-0.2, and measure "
                "with Cache Compare")
    return ("if the image differs from uncached, reuse fewer layers (a lower L2C threshold or a schedule learned "
            "with a smaller λ), and measure with Cache Compare")


def headline(s: dict) -> str:
    """The first line of Cache Stats: speed-up (and target), evaluations computed, reuse mode, and
    what to look at if the result looks wrong."""
    streams = len(s.get("streams") or [])
    per = f" ({streams} streams)" if streams > 1 else ""
    reuse = (s.get("reuse") or "reuse: none").replace("reuse: ", "reuse ", 1)
    return (f"{_speed(s)}; computed {s.get('computed', 0)}/{s.get('evaluations', 0)} evaluations{per}; {reuse}; "
            f"look at: {look_at(s)}")
