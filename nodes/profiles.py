"""TeaCache coefficient choice: published sets and calibrated profiles saved by TeaCache Calibrate."""
from __future__ import annotations

import json
import logging
import os

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


def resolve_profile(choice: str, adapter) -> CoefficientProfile:
    if choice == "auto":
        return get_profile(adapter.profile_for_variant())
    if choice.endswith(".json"):
        return load_saved(choice, adapter)
    return get_profile(choice)
