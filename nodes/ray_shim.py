"""What travels to raylight's Ray workers: a function that installs dit-cache there.

raylight's graphs carry ``RAY_ACTORS``, not ``MODEL``; the only route onto a worker's model is
``RayWorker.model_function_runner(fn, *args)``, which sets ``self.model = fn(self.model, *args)``.
``fn`` and its arguments go through Ray's cloudpickle. ComfyUI registers a custom node pack in
``sys.modules`` under its file path, so a function of ours pickled by reference names a module the
worker cannot import. This module is therefore self-contained (no imports of the pack, only the
standard library) and pickled *by value* (:func:`remote_call`); in the worker, :func:`install`
imports the pack from its folder under a private name and calls ``nodes.raylight.install_in_worker``.
Settings travel as a dict of plain values, never as the pack's own classes.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

WORKER_PACKAGE = "dit_cache_worker"  # the pack's name inside a worker process


def load_pack(pack_dir: str) -> types.ModuleType:
    """The pack at ``pack_dir`` as package ``dit_cache_worker`` (its ``__init__`` is not run: that
    registers ComfyUI nodes, which a worker does not need). Idempotent."""
    pkg = sys.modules.get(WORKER_PACKAGE)
    if pkg is None:
        root = Path(pack_dir)
        if not (root / "nodes" / "raylight.py").is_file():
            raise FileNotFoundError(f"dit-cache is not at {root} on this Ray worker's machine; install the same "
                                    "dit-cache on every machine of the Ray cluster, in the same folder")
        pkg = types.ModuleType(WORKER_PACKAGE)
        pkg.__path__ = [str(root)]
        pkg.__file__ = str(root / "__init__.py")
        pkg.__spec__ = importlib.util.spec_from_loader(WORKER_PACKAGE, loader=None, is_package=True)
        pkg.__spec__.submodule_search_locations = [str(root)]
        sys.modules[WORKER_PACKAGE] = pkg
    return pkg


def install(model, pack_dir: str, settings: dict):
    """``model_function_runner``'s function: ``model`` with dit-cache installed (see
    ``nodes/raylight.py``)."""
    load_pack(pack_dir)
    worker = importlib.import_module(f"{WORKER_PACKAGE}.nodes.raylight")
    return worker.install_in_worker(model, settings)


def remote_call(pack_dir: str, settings: dict, pickler=None) -> tuple:
    """``(fn, pack_dir, settings)`` for ``actor.model_function_runner.remote(fn, *args)``, with this
    module registered to be pickled by value by ``pickler`` (a cloudpickle module; default Ray's)."""
    if pickler is None:
        from ray import cloudpickle as pickler
    pickler.register_pickle_by_value(sys.modules[__name__])
    return install, str(pack_dir), dict(settings)
