"""Cond streams named as the user knows them, for Cache Stats.

The cache keys its state by ComfyUI's cond uuid (``transformer_options["uuids"]``), which tells
the user nothing. The guider knows the names: ``guider.conds`` maps each of its inputs
(``positive``, ``negative``; ``middle`` for DualCFGGuider, ``empty_negative_prompt`` for
PerpNegGuider) to its list of cond dicts, each holding the ``uuid`` the sampler later passes on.
The uuid is the reliable link: ``cond_or_uncond`` only gives the position in the list a guider
hands to ``calc_cond_batch`` (DualCFGGuider passes ``[negative, middle, positive]``, so its 0 is the
negative), which is used only for a cond the guider did not list.

A list of several conds (ConditioningCombine, an area or a timestep range) names each by its
index and what sets it apart (``positive 2 (area)``, ``positive 1 (0-50%)``). A guidance pass
(``passes.py``) is named after the node that added it, found from the patch function it installs
(a closure defined in that node's class) or, for a repeat without other patches, from the
sampler cfg functions of the model options.
"""
from __future__ import annotations

import sys

ORDINARY = {0: "positive", 1: "negative"}


def _detail(c: dict) -> str:
    if c.get("area") is not None:
        return "area"
    if c.get("mask") is not None:
        return "mask"
    start, end = c.get("start_percent"), c.get("end_percent")
    if start is not None or end is not None:
        return f"{100 * (start or 0.0):g}-{100 * (end if end is not None else 1.0):g}%"
    return ""


def cond_names(conds: dict | None) -> dict:
    """{str(uuid): name} for a guider's ``conds`` (name -> list of cond dicts)."""
    out = {}
    for name, items in (conds or {}).items():
        items = [c for c in (items or []) if isinstance(c, dict) and c.get("uuid") is not None]
        for i, c in enumerate(items):
            detail = _detail(c)
            label = name if len(items) == 1 else f"{name} {i + 1}"
            out[str(c["uuid"])] = f"{label} ({detail})" if detail else label
    return out


def _node_of(fn) -> str:
    """The display name of the ComfyUI node whose code defined ``fn`` (a closure in a node
    class's method, as Skip Layer Guidance's and PAG's patches are), else ""."""
    fn = getattr(fn, "__func__", fn)
    qual, module = getattr(fn, "__qualname__", ""), getattr(fn, "__module__", "")
    if "<locals>" not in qual:
        return ""
    cls = qual.split(".")[0]
    comfy_nodes = sys.modules.get("nodes")
    mapping = getattr(comfy_nodes, "NODE_CLASS_MAPPINGS", {}) or {}
    display = getattr(comfy_nodes, "NODE_DISPLAY_NAME_MAPPINGS", {}) or {}
    for node_id, node_cls in mapping.items():
        if getattr(node_cls, "__name__", "") == cls and getattr(node_cls, "__module__", "") == module:
            return display.get(node_id) or node_id
    return cls


def pass_source(transformer_options: dict | None, difference: tuple, model_options: dict | None = None) -> str:
    """What added a guidance pass: the node of the patch functions in ``difference`` (keys of
    ``passes.patch_signature``), else of the sampler cfg functions in ``model_options``; "" when
    none says."""
    topts = transformer_options or {}
    fns = []
    for k in difference:
        if k[0] == "replace":
            fns.append(((topts.get("patches_replace") or {}).get(k[1]) or {}).get(k[2]))
        else:
            fns.extend((topts.get("patches") or {}).get(k[1]) or ())
    for key in ("sampler_post_cfg_function", "sampler_pre_cfg_function", "sampler_cfg_function"):
        v = (model_options or {}).get(key)
        fns.extend(v if isinstance(v, (list, tuple)) else ([v] if v is not None else []))
    for fn in fns:
        name = _node_of(fn) if fn is not None else ""
        if name:
            return name
    return ""


def observe(names: dict, streams: list, transformer_options: dict | None, guidance: str = "",
            difference: tuple = (), model_options: dict | None = None) -> None:
    """Names the streams of one evaluation not named yet (in place): an ordinary stream by its
    ``cond_or_uncond`` entry (positive/negative), a guidance pass by its cond and its source."""
    topts = transformer_options or {}
    cou = topts.get("cond_or_uncond") or []
    for i, key in enumerate(streams):
        if key in names:
            continue
        if guidance and ":" in key:
            base = key.split(":", 1)[1]
            if base not in names and i < len(cou):
                names[base] = _unique(names, ORDINARY.get(cou[i], f"cond {cou[i]}"))
            src = pass_source(topts, difference, model_options) or f"guidance pass {guidance.split('#')[0]}"
            again = " again" if "#" in guidance else ""
            names[key] = f"{names.get(base, base[:8])} · {src}{again}"
        elif i < len(cou):
            names[key] = _unique(names, ORDINARY.get(cou[i], f"cond {cou[i]}"))


def _unique(names: dict, name: str) -> str:
    taken = set(names.values())
    if name not in taken:
        return name
    n = 2
    while f"{name} {n}" in taken:
        n += 1
    return f"{name} {n}"
