"""TeaCache coefficient choice: published sets and calibrated profiles saved by TeaCache Calibrate."""
from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np
import torch

from ..cache_core.coefficients import CoefficientProfile, get_profile
from . import folders

log = logging.getLogger("dit_cache")


def saved_profile_names() -> list[str]:
    return [n for n in folders.listing(folders.PROFILES) if n.endswith(".json")]


def load_saved(name: str, adapter=None) -> CoefficientProfile:
    path = folders.resolve(folders.PROFILES, name)
    try:
        with open(path, "r", encoding="utf-8") as f:
            d = json.load(f)
        prof = CoefficientProfile(name=os.path.splitext(name)[0],
                                  coefficients=tuple(float(c) for c in d["coefficients"]),
                                  input_range=tuple(float(v) for v in d["input_range"]),
                                  source=f"calibrated: {name}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"TeaCache profile {name!r} is not a valid profile file ({e}); "
                         "recreate it with TeaCache Calibrate") from e
    fam = d.get("family")
    if adapter is not None and fam and fam != adapter.name:
        raise ValueError(f"TeaCache profile {name!r} was calibrated for {fam}, but this model is "
                         f"{adapter.display}; calibrate a profile for this model")
    return prof


def model_fingerprint(model, samples: int = 8) -> str:
    """sha256 over every weight's name, shape and dtype plus the leading values of a few evenly
    spaced tensors: cheap even for a 12B model, and different for different checkpoints."""
    sd = model.model.diffusion_model.state_dict()
    h = hashlib.sha256()
    names = sorted(sd)
    for k in names:
        t = sd[k]
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype};".encode())
    if names:
        for i in np.linspace(0, len(names) - 1, min(samples, len(names))).astype(int):
            t = sd[names[int(i)]]
            h.update(t.detach().flatten()[:4096].to("cpu", torch.float32).numpy().tobytes())
    return h.hexdigest()


def calibrated_for(model, adapter) -> list[tuple[int, CoefficientProfile]]:
    """(steps, profile) of every saved profile calibrated on exactly this model's weights."""
    docs = []
    for name in saved_profile_names():
        try:
            with open(folders.resolve(folders.PROFILES, name), "r", encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, ValueError):
            continue  # a broken file is reported when it is chosen by name, not here
        if isinstance(d, dict) and d.get("family") == adapter.name and d.get("model_sha256"):
            docs.append((name, d))
    if not docs:
        return []
    fp = model_fingerprint(model)  # only hashed when a candidate exists
    out = []
    for name, d in docs:
        if d["model_sha256"] == fp:
            try:
                out.append((int(d.get("steps", 0)), load_saved(name, adapter)))
            except ValueError as e:
                log.warning("dit-cache: skipping profile %s: %s", name, e)
    return out


def resolve_profile(choice: str, adapter, model=None) -> tuple[CoefficientProfile, list]:
    """The profile to use, and for ``auto`` the calibrated candidates (steps, profile) that a run
    picks from by its step count."""
    if choice == "auto":
        cands = calibrated_for(model, adapter) if model is not None else []
        if cands:
            return cands[0][1], cands
        return get_profile(adapter.profile_for_variant()), []
    if choice.endswith(".json"):
        return load_saved(choice, adapter), []
    return get_profile(choice), []

