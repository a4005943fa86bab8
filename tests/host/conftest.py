"""Shared setup for the host tests (tests that drive a real ComfyUI checkout).

* Every test collected under ``tests/host`` gets the ``host`` marker.
* ``comfy`` (session fixture): imports ComfyUI in CPU mode (see
  ``comfy_env.py``) and returns a namespace of its modules, or skips the test
  with ``ComfyUI not found: <reason>; set COMFYUI_PATH``.
  It also sets ``torch.set_num_threads(DITCACHE_HOST_THREADS or 1)``.
* ``tiny_models`` (session fixture): a cached builder,
  ``tiny_models(family, variant=None, seed=0, dtype=torch.float32)`` ->
  ``tiny_models.TinyModel`` (built once per session; clone
  ``tiny.patcher`` before patching it).
* If ``DITCACHE_HOST_SUMMARY`` is set, a JSON summary of the host tests
  (counts of passed / failed / skipped / errors, skip reasons, ComfyUI path and
  version) is written there at the end of the session, for CI scripts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

HOST_DIR = Path(__file__).resolve().parent
if str(HOST_DIR) not in sys.path:
    sys.path.insert(0, str(HOST_DIR))

import comfy_env  # noqa: E402

_HOST_NODEIDS_KEY = pytest.StashKey[set]()
_RESULTS_KEY = pytest.StashKey[dict]()
_START_KEY = pytest.StashKey[float]()
_CONFIG: dict = {}


def _is_host_item(item) -> bool:
    try:
        p = Path(str(item.fspath)).resolve()
    except Exception:
        return False
    return p == HOST_DIR or HOST_DIR in p.parents


def pytest_configure(config):
    # pytest_configure is replayed for a conftest found during collection (a plain `pytest` run
    # loads this file late, after pytest_sessionstart has already fired), so keep the config here
    _CONFIG["config"] = config
    config.addinivalue_line("markers", "host: needs a ComfyUI checkout")
    config.stash[_HOST_NODEIDS_KEY] = set()
    config.stash[_RESULTS_KEY] = {}
    config.stash[_START_KEY] = time.time()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # tryfirst: mark before ``-m`` deselection runs
    for item in items:
        if _is_host_item(item):
            item.add_marker(pytest.mark.host)


def pytest_collection_finish(session):
    # count only the items that will run (after -m / -k deselection)
    host_ids = session.config.stash[_HOST_NODEIDS_KEY]
    for item in session.items:
        if item.get_closest_marker("host") is not None:
            host_ids.add(item.nodeid)


def pytest_runtest_logreport(report):
    # called for setup / call / teardown of every test; keep the worst outcome
    config = _CONFIG.get("config")
    if config is None or report.nodeid not in config.stash[_HOST_NODEIDS_KEY]:
        return
    results = config.stash[_RESULTS_KEY]
    entry = results.setdefault(report.nodeid, {"outcome": None, "reason": None, "seconds": 0.0})
    entry["seconds"] += report.duration  # setup + call + teardown: where the suite's time goes
    if hasattr(report, "wasxfail"):
        entry["outcome"] = "xfailed" if report.skipped else "xpassed"
        entry["reason"] = report.wasxfail or None
        return
    if report.failed:
        entry["outcome"] = "failed" if report.when == "call" else "error"
    elif report.skipped:
        if entry["outcome"] is None:
            entry["outcome"] = "skipped"
            lr = report.longrepr
            if isinstance(lr, tuple) and len(lr) == 3:
                entry["reason"] = str(lr[2])
            else:
                entry["reason"] = str(lr)
    elif report.when == "call" and entry["outcome"] is None:
        entry["outcome"] = "passed"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    _CONFIG["config"] = session.config


def _summary(config) -> dict:
    results = config.stash[_RESULTS_KEY]
    counts = {k: 0 for k in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")}
    reasons: dict = {}
    for entry in results.values():
        o = entry["outcome"] or "error"
        counts[o] = counts.get(o, 0) + 1
        if o == "skipped":
            r = entry["reason"] or ""
            if r.startswith("Skipped: "):
                r = r[len("Skipped: "):]
            reasons[r] = reasons.get(r, 0) + 1
    path, where = comfy_env.find_comfyui()
    ns = comfy_env._COMFY
    return {
        "collected": len(config.stash[_HOST_NODEIDS_KEY]),
        "ran": counts["passed"] + counts["failed"] + counts["error"] + counts["xfailed"] + counts["xpassed"],
        **counts,
        "skip_reasons": reasons,
        "comfyui_path": str(path) if path else None,
        "comfyui_found": where,
        "comfyui_version": ns.version if ns is not None else None,
        "comfyui_imported": ns is not None,
        "duration_s": round(time.time() - config.stash[_START_KEY], 2),
        "seconds_by_file": _seconds_by_file(results),
    }


def _seconds_by_file(results: dict) -> dict:
    by: dict = {}
    for nodeid, entry in results.items():
        f = nodeid.split("::")[0]
        by[f] = by.get(f, 0.0) + entry.get("seconds", 0.0)
    return {f: round(t, 1) for f, t in sorted(by.items(), key=lambda kv: -kv[1])}


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("DITCACHE_HOST_SUMMARY")
    if not out:
        return
    data = _summary(session.config)
    data["exitstatus"] = int(exitstatus)
    p = Path(out)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not config.stash[_HOST_NODEIDS_KEY]:
        return
    s = _summary(config)
    line = (f"host tests: {s['collected']} collected, {s['passed']} passed, {s['failed']} failed, "
            f"{s['error']} errors, {s['skipped']} skipped")
    if s["comfyui_imported"]:
        line += f" (ComfyUI {s['comfyui_version']} at {s['comfyui_path']})"
    terminalreporter.write_line(line)
    for r, n in sorted(s["skip_reasons"].items()):
        terminalreporter.write_line(f"  skipped x{n}: {r}")
    slow = list(s["seconds_by_file"].items())[:10]
    if slow:
        terminalreporter.write_line("  slowest files (s): " + ", ".join(f"{f.split('/')[-1]} {t:.0f}" for f, t in slow))


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def comfy():
    path, reason = comfy_env.find_comfyui()
    if path is None:
        pytest.skip(f"ComfyUI not found: {reason}; set COMFYUI_PATH")
    # Tiny models gain nothing from intra-op threads, and on a small shared CI
    # box OpenMP threads waiting on each other make every op ~100x slower.
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("DITCACHE_HOST_THREADS", "1"))))
    # A checkout whose Python dependencies are not installed in this environment skips and says
    # which one is missing; any other import failure is an error, not a skip.
    try:
        return comfy_env.import_comfy(path)
    except ModuleNotFoundError as e:
        pytest.skip(f"ComfyUI at {path} cannot be imported here: no module named {e.name!r}; "
                    "install its requirements.txt (see README, host tests)")


@pytest.fixture(scope="session")
def tiny_models(comfy):
    import torch
    import tiny_models as tm

    cache: dict = {}

    def get(family, variant=None, seed=0, dtype=torch.float32):
        fam, var = tm._resolve(family, variant)
        key = (fam, var, seed, dtype)
        if key not in cache:
            cache[key] = tm.build(fam, var, dtype=dtype, seed=seed)
        return cache[key]

    return get
