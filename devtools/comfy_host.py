"""Locate and import a real ComfyUI checkout: for the host tests (``tests/host/comfy_env.py`` is
this module under the tests' name), the workflow generator and the benchmarks. Never imported by
the pack itself.

``find_comfyui()`` looks for a ComfyUI checkout (a directory holding ``comfy/``
and ``folder_paths.py``) in this order:

1. the ``COMFYUI_PATH`` environment variable (if set, it is the only candidate),
2. the checkout that holds this pack, when it sits in ``<ComfyUI>/custom_nodes/<pack>`` (where
   users install it).

``tests/hosts.py`` runs the host suite against each ComfyUI source tree in ``../shared/comfyui``
by setting ``COMFYUI_PATH`` to a copy of it.

``import_comfy()`` puts the checkout on ``sys.path`` and imports the ComfyUI
modules the host tests use, in CPU mode, without letting ComfyUI parse
pytest's ``sys.argv``.

How CPU mode is forced: ``comfy.cli_args`` only calls ``parser.parse_args()``
on the real argv when ``comfy.options.args_parsing`` is True (ComfyUI's
``main.py`` turns it on; the default is False, so it parses ``[]``).  We call
``comfy.options.enable_args_parsing(False)`` to be explicit, import
``comfy.cli_args``, set ``args.cpu = True`` and only then import
``comfy.model_management`` (which reads ``args.cpu`` at import time to pick
its device).  Set ``DITCACHE_HOST_DEVICE=gpu`` to skip forcing CPU (for
running the host tests on a CUDA machine).
"""

from __future__ import annotations

import importlib
import os
import sys
import importlib.util
import types
from pathlib import Path
from typing import Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]

_COMFY: Optional[types.SimpleNamespace] = None


def is_comfyui(path: Path) -> bool:
    return (path / "comfy").is_dir() and (path / "folder_paths.py").is_file()


def enclosing_comfyui(repo: Path = REPO_ROOT) -> Optional[Path]:
    """The checkout holding this pack when it sits in ``<ComfyUI>/custom_nodes/<pack>``."""
    parent = repo.resolve().parent
    if parent.name == "custom_nodes" and is_comfyui(parent.parent):
        return parent.parent
    return None


def find_comfyui() -> Tuple[Optional[Path], str]:
    """Return ``(path, reason)``.

    ``path`` is the ComfyUI checkout or None; ``reason`` says where it was found
    or why nothing was found.
    """
    env = os.environ.get("COMFYUI_PATH")
    if env:
        p = Path(env).expanduser().resolve()
        if is_comfyui(p):
            return p, f"COMFYUI_PATH={env}"
        return None, f"COMFYUI_PATH={env} is not a ComfyUI checkout (needs comfy/ and folder_paths.py)"
    enc = enclosing_comfyui()
    if enc is not None:
        return enc, f"the checkout holding this pack ({enc})"
    return None, ("COMFYUI_PATH is not set and this pack is not in a ComfyUI/custom_nodes folder "
                  "(`python tests/hosts.py` runs against ../shared/comfyui trees)")


def force_cpu() -> bool:
    return os.environ.get("DITCACHE_HOST_DEVICE", "cpu").lower() != "gpu"


def import_comfy(path: Optional[Path] = None) -> types.SimpleNamespace:
    """Import ComfyUI (once per process) and return a namespace of its modules.

    Raises ``RuntimeError`` when no checkout can be found.
    """
    global _COMFY
    if _COMFY is not None:
        return _COMFY
    reason = ""
    if path is None:
        path, reason = find_comfyui()
    if path is None:
        raise RuntimeError(reason)
    path = Path(path).resolve()

    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    # Our pack is importable as a package from its parent directory, the way
    # ComfyUI loads custom nodes (custom_nodes/<pack>).  Append, do not prepend,
    # so the pack's sibling directories never shadow ComfyUI modules.
    parent = str(REPO_ROOT.parent)
    if parent not in sys.path:
        sys.path.append(parent)

    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    if force_cpu():
        comfy.cli_args.args.cpu = True
    if "comfy.model_management" in sys.modules and force_cpu():
        mm = sys.modules["comfy.model_management"]
        if mm.cpu_state != mm.CPUState.CPU:
            raise RuntimeError("comfy.model_management was imported before CPU mode could be set")

    mods = {}
    for name in (
        "comfy.model_management",
        "comfy.utils",
        "comfy.sd",
        "comfy.samplers",
        "comfy.sample",
        "comfy.model_patcher",
        "comfy.patcher_extension",
        "comfy.model_detection",
        "comfy.supported_models",
        "comfy.model_base",
        "comfy.clip_vision",
        "nodes",
        "folder_paths",
    ):
        mods[name.replace(".", "_")] = importlib.import_module(name)

    import comfy

    ns = types.SimpleNamespace(path=path, comfy=comfy, **mods)
    ns.model_management = mods["comfy_model_management"]
    ns.sd = mods["comfy_sd"]
    ns.samplers = mods["comfy_samplers"]
    ns.sample = mods["comfy_sample"]
    ns.model_patcher = mods["comfy_model_patcher"]
    ns.patcher_extension = mods["comfy_patcher_extension"]
    ns.nodes = mods["nodes"]
    ns.folder_paths = mods["folder_paths"]
    ns.version = comfy_version(path)
    _COMFY = ns
    return ns


def comfy_version(path: Path) -> str:
    try:
        txt = (path / "comfyui_version.py").read_text()
        for line in txt.splitlines():
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    except OSError:
        pass
    return "unknown"


PACK_NAME = "dit_cache_pack"


def load_pack():
    """This repository imported as a ComfyUI custom-node package, the way ComfyUI's loader does
    (``spec_from_file_location`` on the pack's ``__init__.py``), under the module name
    ``dit_cache_pack``."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, REPO_ROOT / "__init__.py",
                                                  submodule_search_locations=[str(REPO_ROOT)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = mod
    spec.loader.exec_module(mod)
    return mod


def pack_module(name: str):
    """A submodule of the pack, e.g. ``pack_module("nodes.runtime")``."""
    load_pack()
    return importlib.import_module(f"{PACK_NAME}.{name}")
