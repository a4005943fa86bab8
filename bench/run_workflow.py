"""Run a workflow of ``workflows/`` headless through ComfyUI's own server and API.

    python -m bench.run_workflow [--workflow workflows/flux_digits_teacache_compare.json] [--out ./out/workflow]

Starts ComfyUI's ``main.py --cpu`` with every write in a temporary base directory (this pack
linked into its ``custom_nodes``), converts the UI workflow to an API prompt with the live
``/object_info`` (widget values in ``input_order``, links as ``[node, slot]``), queues it on
``/prompt``, waits for ``/history`` and copies the images it saved or previewed to ``--out``; the
text reports of Cache Stats (and any other node that shows text) are printed and written to
``<out>/reports.txt``. The default workflow samples the same seed on the Flux digits model with and
without TeaCache, so it runs on a CPU with nothing to download.

Which ComfyUI: ``--comfyui PATH`` (run with this Python, which must have its requirements), else
the first one ``tests/hosts.py`` finds: ``COMFYUI_PATH``, the checkout holding this pack, or a
source tree in ``DITCACHE_COMFYUI_TREES`` / ``shared/comfyui`` (copied to the temporary folder and
run with the environment ``tests/hosts.py`` makes for it). Exits 1 when the prompt fails, with
ComfyUI's error and the end of its log.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from devtools.comfy_host import free_port as _free_port, http_get as _get, http_post as _post  # noqa: E402

DEFAULT_WORKFLOW = REPO / "workflows" / "flux_digits_teacache_compare.json"
log = logging.getLogger("bench")


def _workflow_tools():
    spec = importlib.util.spec_from_file_location("dit_cache_make_workflows", REPO / "workflows" / "make_workflows.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def to_api(workflow: dict, object_info: dict) -> dict:
    """A UI (litegraph) workflow as an API prompt ``{id: {class_type, inputs}}``.

    Raises ValueError naming a node type the server does not know or a node whose widget values
    do not match its inputs."""
    tools = _workflow_tools()
    links = {l[0]: l for l in workflow["links"]}
    prompt = {}
    for n in workflow["nodes"]:
        if n.get("mode", 0) != 0:  # muted or bypassed
            continue
        info = object_info.get(n["type"])
        if info is None:
            raise ValueError(f"node {n['id']} is a {n['type']}, which this ComfyUI does not have")
        info = dict(info, input_order=info.get("input_order") or
                    {k: list(v.keys()) for k, v in info["input"].items()})
        values = list(n.get("widgets_values") or [])
        # as the page assigns them (a widget this release added keeps its default)
        loaded, extra = tools.loaded_widgets(info, values)
        if extra:
            raise ValueError(f"node {n['id']} ({n['type']}): {len(values)} widget values for {len(loaded)} widgets")
        inputs = {name: v for name, kind, _, _, v in loaded if kind == "value"}
        for slot in n["inputs"]:
            if slot.get("link") is not None:
                _, origin, origin_slot, *_ = links[slot["link"]]
                inputs[slot["name"]] = [str(origin), origin_slot]
        prompt[str(n["id"])] = {"class_type": n["type"], "inputs": inputs}
    return prompt


class Server:
    """ComfyUI's ``main.py --cpu`` in a subprocess; every write goes to ``base``."""

    def __init__(self, comfyui: Path, python: str, base: Path, startup_s: float = 120):
        for d in ("custom_nodes", "models/diffusion_models", "input", "output", "temp", "user"):
            (base / d).mkdir(parents=True, exist_ok=True)
        (base / "custom_nodes" / "dit_cache").symlink_to(REPO, target_is_directory=True)
        self.base, self.port = base, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        self._log = open(self.log_path, "w")
        cmd = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--base-directory",
               str(base), "--disable-api-nodes", "--dont-print-server", "--database-url", "sqlite:///:memory:",
               "--preview-method", "none"]
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen(cmd, cwd=str(comfyui), stdout=self._log, stderr=subprocess.STDOUT, env=env)
        t0 = time.time()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                _get(self.url + "/system_stats", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.time() - t0 > startup_s:
                self.close()
                raise RuntimeError(f"ComfyUI did not answer within {startup_s:.0f}s:\n{self.log_tail()}")
            time.sleep(0.5)

    def log_tail(self, n: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def run(self, prompt: dict, timeout_s: float) -> dict:
        status, resp = _post(self.url + "/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4())})
        if status != 200:
            raise RuntimeError(f"ComfyUI refused the prompt: {json.dumps(resp)[:3000]}")
        pid = resp["prompt_id"]
        t0 = time.time()
        while time.time() - t0 < timeout_s:
            hist = _get(f"{self.url}/history/{pid}")
            entry = hist.get(pid)
            if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
                return entry
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died:\n{self.log_tail()}")
            time.sleep(0.5)
        raise RuntimeError(f"the prompt did not finish within {timeout_s:.0f}s:\n{self.log_tail()}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def choose_comfyui(arg: Path | None, work: Path) -> tuple[Path, str, str]:
    """(checkout to run, its Python, how it was found)."""
    if arg is not None:
        return arg.resolve(), sys.executable, "--comfyui"
    from bench.common import comfyui_hosts
    hosts = comfyui_hosts()
    found = hosts.find_hosts()
    if not found:
        raise SystemExit("no ComfyUI checkout found: pass --comfyui PATH or set COMFYUI_PATH")
    h = found[0]
    if not h.own_env:
        return h.path, sys.executable, h.origin
    return hosts._copy_tree(h.path, work), hosts.ensure_env(h, work), f"source tree {h.path} (a copy)"


def collect(entry: dict, prompt: dict, base: Path, out: Path) -> list[str]:
    """Copies every image the prompt saved or previewed to ``out``; returns the text reports."""
    out.mkdir(parents=True, exist_ok=True)
    texts = []
    for nid, res in sorted(entry.get("outputs", {}).items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0):
        title = f"{prompt.get(nid, {}).get('class_type', '?')} (node {nid})"
        for img in res.get("images", []):
            src = base / img.get("type", "output") / img.get("subfolder", "") / img["filename"]
            if src.is_file():
                dst = out / f"node{nid}_{img['filename']}"
                shutil.copyfile(src, dst)
                log.info("%s: %s", title, dst)
        for t in res.get("text", []):
            texts.append(f"== {title}\n{t}")
    return texts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run_workflow", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workflow", type=Path, default=DEFAULT_WORKFLOW)
    ap.add_argument("--out", type=Path, default=Path("out") / "workflow")
    ap.add_argument("--comfyui", type=Path, default=None, help="a ComfyUI checkout to run with this Python")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds the prompt may take")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    workflow = json.loads(args.workflow.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="dit_cache_workflow_") as d:
        work = Path(d)
        comfyui, python, origin = choose_comfyui(args.comfyui, work / "checkout")
        log.info("ComfyUI at %s (%s), Python %s", comfyui, origin, python)
        server = Server(comfyui, python, work / "base")
        try:
            prompt = to_api(workflow, _get(server.url + "/object_info", timeout=120))
            t0 = time.time()
            entry = server.run(prompt, args.timeout)
            status = entry["status"]
            if status.get("status_str") != "success":
                print(json.dumps(status.get("messages", []), indent=1)[:6000])
                print(server.log_tail())
                return 1
            log.info("%s ran in %.1fs", args.workflow.name, time.time() - t0)
            texts = collect(entry, prompt, server.base, args.out)
        finally:
            server.close()
    report = "\n\n".join(texts)
    (args.out / "reports.txt").write_text(report + "\n")
    print(report)
    print(f"\nimages and reports in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
