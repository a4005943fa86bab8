"""ComfyUI hosts for the host tests: find the checkouts, give each a Python environment, run the
host suite against each and say how many host tests ran against which release.

Which checkouts (all of them are used, each once):

1. ``COMFYUI_PATH`` (a user's own checkout), run in *this* Python environment: its
   requirements must already be installed here.
2. The ComfyUI checkout that holds this pack, when the pack sits in ``ComfyUI/custom_nodes/``
   (the way users install it), also in this environment.
3. Every source tree in ``DITCACHE_COMFYUI_TREES`` (``os.pathsep``-separated; each entry a
   checkout or a folder of checkouts), by default ``<repo>/../shared/comfyui/*``. These are
   treated as read-only: each run copies the tree to a temporary folder, and each tree gets its
   own virtual environment (``DITCACHE_HOSTS_DIR``, default ``~/.cache/dit-cache/hosts``) with the
   tree's ``requirements.txt``, so releases whose frontend and template packages differ never
   clash. That environment sees this one's packages (torch, pytest, ...) through a ``.pth``
   file, after its own, so the multi-GB torch is installed once.

Install facts (``../shared/comfyui/README.md``): ``torch``, ``torchvision``, ``torchaudio`` and
``spandrel`` are left out of the requirements; torchvision is installed to match this
environment's torch, torchaudio without dependencies (``DITCACHE_TORCHAUDIO``, default 2.11.1,
imports beside torch 2.14.1), and ``transformers<5`` is kept for releases that predate it.

Run as ``python tests/hosts.py [--setup-only] [pytest args...]``; ``tests/run_all.py`` (the
README's test command) calls :func:`run_hosts` after the core tests.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOST_TESTS = REPO / "tests" / "host"
LEFT_OUT = {"torch", "torchvision", "torchaudio", "spandrel"}
# bump to rebuild every cached host environment
ENV_FORMAT = "1"


sys.path.insert(0, str(REPO))
from devtools.comfy_host import comfy_version, enclosing_comfyui, is_comfyui as _is_comfyui  # noqa: E402


@dataclass
class Host:
    """One ComfyUI checkout to run the host suite against."""
    path: Path
    origin: str            # why it was chosen, for the report
    own_env: bool          # True: a tree given its own environment and copied before running
    version: str = ""
    python: str = sys.executable
    log: Path | None = None
    summary: dict = field(default_factory=dict)
    returncode: int | None = None

    def __post_init__(self):
        self.version = comfy_version(self.path)


def shared_trees() -> list[Path]:
    spec = os.environ.get("DITCACHE_COMFYUI_TREES")
    roots = [Path(p).expanduser() for p in spec.split(os.pathsep) if p] if spec is not None \
        else [REPO.parent / "shared" / "comfyui"]
    out = []
    for root in roots:
        if _is_comfyui(root):
            out.append(root.resolve())
        elif root.is_dir():
            out.extend(sorted(p.resolve() for p in root.iterdir() if p.is_dir() and _is_comfyui(p)))
    return out


def find_hosts() -> list[Host]:
    hosts: list[Host] = []
    seen: set[Path] = set()

    def add(path: Path, origin: str, own_env: bool):
        path = path.resolve()
        if path not in seen:
            seen.add(path)
            hosts.append(Host(path, origin, own_env))

    env = os.environ.get("COMFYUI_PATH")
    if env:
        p = Path(env).expanduser()
        if not _is_comfyui(p):
            raise SystemExit(f"COMFYUI_PATH={env} is not a ComfyUI checkout (it needs comfy/ and folder_paths.py)")
        add(p, "COMFYUI_PATH", False)
    enc = enclosing_comfyui()
    if enc is not None:
        add(enc, "the checkout holding this pack", False)
    for t in shared_trees():
        add(t, "source tree", True)
    return hosts


# --------------------------------------------------------------------------------------------
# environments
# --------------------------------------------------------------------------------------------

def _requirements(tree: Path) -> list[str]:
    reqs = []
    for line in (tree / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.split(";")[0]
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        if name.lower() in LEFT_OUT:
            continue
        if name.lower() == "transformers" and not _needs_new_transformers(line):
            line = f"{line},<5" if any(c in line for c in "<>=") else "transformers<5"
        reqs.append(line)
    return reqs


def _needs_new_transformers(line: str) -> bool:
    """A release that asks for transformers 5 or newer keeps its own pin."""
    return ">=5" in line.replace(" ", "")


def _torch_version() -> str:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("torch is not installed in this environment: run "
                         "`python -m pip install -e \".[test]\"` first (README, the test command)")
    return out.stdout.strip().split("+")[0]


def _env_key(tree: Path, torch_version: str) -> str:
    h = hashlib.sha256()
    for part in (ENV_FORMAT, sys.version, sys.executable, torch_version,
                 (tree / "requirements.txt").read_text(), os.environ.get("DITCACHE_TORCHAUDIO", "2.11.1")):
        h.update(part.encode())
    return h.hexdigest()[:12]


def hosts_dir() -> Path:
    return Path(os.environ.get("DITCACHE_HOSTS_DIR", "~/.cache/dit-cache/hosts")).expanduser()


@contextlib.contextmanager
def _lock(path: Path):
    import fcntl
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pip(python: str, *args: str, log) -> None:
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"pip failed ({r.returncode}): {' '.join(args)}")


def ensure_env(host: Host, log_dir: Path) -> str:
    """Create (once, cached by requirements and torch version) the tree's environment; returns
    its Python. A half-built environment is never reused: it is marked ready only at the end."""
    torch_version = _torch_version()
    root = hosts_dir() / f"comfyui-{host.version}-{_env_key(host.path, torch_version)}"
    py = root / "bin" / "python"
    ready = root / ".ready"
    with _lock(hosts_dir() / f"{root.name}.lock"):
        if ready.is_file():
            return str(py)
        if root.exists():
            shutil.rmtree(root)
        log_path = log_dir / f"setup-comfyui-{host.version}.log"
        t0 = time.time()
        print(f"setting up a Python environment for ComfyUI {host.version} in {root} (log: {log_path})", flush=True)
        with open(log_path, "w") as log:
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, stdout=log, stderr=subprocess.STDOUT)
            # this environment's packages, after the tree's own: torch is installed once
            site = Path(subprocess.check_output(
                [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
            parent = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
            (site / "_dit_cache_parent_env.pth").write_text("\n".join(sorted(parent)) + "\n")
            _pip(str(py), *_requirements(host.path), f"torch=={torch_version}", log=log)
            _pip(str(py), "torchvision", f"torch=={torch_version}", log=log)
            _pip(str(py), "--no-deps", f"torchaudio=={os.environ.get('DITCACHE_TORCHAUDIO', '2.11.1')}", log=log)
            check = subprocess.run([str(py), "-c", "import torch, torchvision, torchaudio, psutil, yaml, aiohttp"],
                                   stdout=log, stderr=subprocess.STDOUT)
            if check.returncode != 0:
                raise RuntimeError(f"the environment for ComfyUI {host.version} does not import; see {log_path}")
        ready.write_text(json.dumps({"tree": str(host.path), "torch": torch_version}) + "\n")
        print(f"  ready in {time.time() - t0:.0f} s", flush=True)
    return str(py)


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------

def _copy_tree(tree: Path, dest_root: Path) -> Path:
    dest = dest_root / "ComfyUI"
    shutil.copytree(tree, dest, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", ".git", "tests", "tests-unit"))
    return dest


def _start(host: Host, checkout: Path, pytest_args: list[str], work: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["COMFYUI_PATH"] = str(checkout)
    env["DITCACHE_HOST_SUMMARY"] = str(work / "summary.json")
    env["DITCACHE_HOST_VERSION_LABEL"] = host.version
    env.setdefault("DITCACHE_ARTIFACTS", str(work / "artifacts"))
    env["PYTHONUNBUFFERED"] = "1"
    host.log = work / "pytest.log"
    cmd = [host.python, "-m", "pytest", str(HOST_TESTS), "-p", "no:cacheprovider", *pytest_args]
    return subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=open(host.log, "w"), stderr=subprocess.STDOUT)


def summary_line(host: Host) -> str:
    s = host.summary
    if not s:
        return (f"host tests ran: 0 of ? against ComfyUI {host.version} at {host.path} "
                f"(no summary: pytest exited {host.returncode}; log {host.log})")
    return (f"host tests ran: {s.get('ran', 0)} of {s.get('collected', 0)} ({s.get('passed', 0)} passed, "
            f"{s.get('failed', 0)} failed, {s.get('error', 0)} errors, {s.get('skipped', 0)} skipped) "
            f"against ComfyUI {s.get('comfyui_version') or host.version} ({host.origin}, {host.path})")


def run_hosts(pytest_args: list[str] | None = None, parallel: int | None = None, setup_only: bool = False) -> int:
    """Run ``tests/host`` against every host found; returns a process exit code (0 = all passed).

    With no host found: exit 0 with a note, except under ``CI=true`` where that is a failure
    (a host test that never runs in CI is a host test that does not exist)."""
    pytest_args = list(pytest_args or [])
    hosts = find_hosts()
    if not hosts:
        msg = ("host tests: no ComfyUI found (set COMFYUI_PATH, put this pack in ComfyUI/custom_nodes/, "
               "or provide ../shared/comfyui/ trees)")
        print(msg, flush=True)
        return 1 if os.environ.get("CI", "").lower() == "true" else 0
    # no "dit_cache" in the name: the server test looks for that in ComfyUI's import errors
    base = Path(tempfile.mkdtemp(prefix="host-runs-"))
    # the environments build side by side (mostly downloads and unpacking), each under its own lock
    own = [h for h in hosts if h.own_env]
    if own:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(len(own)) as pool:
            for h, py in zip(own, pool.map(lambda h: ensure_env(h, base), own)):
                h.python = py
    if setup_only:
        for h in hosts:
            print(f"ComfyUI {h.version} ({h.origin}, {h.path}): {h.python}")
        return 0
    # one thread per run (conftest): every release at once keeps all cores busy to the end, where
    # two at a time left one core idle while the last release ran alone
    default = min(len(hosts), (os.cpu_count() or 1) + 1)
    parallel = parallel or int(os.environ.get("DITCACHE_HOST_PARALLEL", str(default)))
    pending = list(hosts)
    running: list[tuple[Host, subprocess.Popen, float]] = []
    t_all = time.time()
    while pending or running:
        while pending and len(running) < parallel:
            h = pending.pop(0)
            work = base / f"comfyui-{h.version}-{len(pending)}"
            work.mkdir()
            checkout = _copy_tree(h.path, work) if h.own_env else h.path
            print(f"host tests against ComfyUI {h.version} ({h.origin}) started", flush=True)
            running.append((h, _start(h, checkout, pytest_args, work), time.time()))
        time.sleep(1)
        for item in list(running):
            h, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            h.returncode = proc.returncode
            summ = h.log.parent / "summary.json"
            h.summary = json.loads(summ.read_text()) if summ.is_file() else {}
            print(f"\n===== host tests against ComfyUI {h.version} ({h.origin}): pytest exited "
                  f"{proc.returncode} after {time.time() - t0:.0f} s =====", flush=True)
            sys.stdout.write(h.log.read_text(errors="replace"))
            sys.stdout.flush()
    print(f"\nhost test runs took {time.time() - t_all:.0f} s in all", flush=True)
    worst = 0
    for h in hosts:
        print(summary_line(h))
        for r, n in sorted(h.summary.get("skip_reasons", {}).items()):
            print(f"  skipped x{n}: {r}")
        if h.returncode not in (0,):
            worst = h.returncode or 1
    return worst


def main(argv: list[str]) -> int:
    setup_only = "--setup-only" in argv
    args = [a for a in argv if a != "--setup-only"]
    return run_hosts(args, setup_only=setup_only)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
