"""Imports this repository as a ComfyUI custom-node package, the way ComfyUI's loader does
(``spec_from_file_location`` on the pack's ``__init__.py``), under a fixed module name."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NAME = "dit_cache_pack"


def load_pack():
    if NAME in sys.modules:
        return sys.modules[NAME]
    spec = importlib.util.spec_from_file_location(NAME, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = mod
    spec.loader.exec_module(mod)
    return mod


def sub(name: str):
    """A submodule of the pack, e.g. ``sub("nodes.runtime")``."""
    load_pack()
    return importlib.import_module(f"{NAME}.{name}")
