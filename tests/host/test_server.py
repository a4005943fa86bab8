"""End to end through ComfyUI's real server: ``main.py --cpu`` in a subprocess, with this pack
in a temporary ``custom_nodes`` and every write kept in a temporary base directory.

* ``/object_info`` lists our three nodes with their display names and inputs.
* A prompt through ``/prompt`` samples a tiny random-weight model with TeaCache Patch and
  reports through Cache Stats; ``/history`` shows success and the report in Cache Stats' UI.

The model is a tiny random-weight SD3 MMDiT (``tiny_models.build("sd3")``) saved as a
.safetensors in ``models/diffusion_models`` and loaded by the stock ``UNETLoader`` (SD3's
detection reads every size from the tensor shapes).  Text encoders cannot be loaded here (no
weights), and no stock node makes SD3 conditioning (context + pooled vector) without one, so a
TEST-ONLY node written into the temporary custom_nodes (never part of the pack) makes seeded
random conditioning of the tiny model's widths.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import uuid
from pathlib import Path

import pytest

import comfy_env
from pack import sub
from devtools.comfy_host import free_port as _free_port, http_get as _get, http_post as _post

REPO = Path(__file__).resolve().parents[2]
# hang guards: the waits poll for the state (the server answers, the prompt finished)
STARTUP_TIMEOUT = float(os.environ.get("DITCACHE_SERVER_STARTUP_S", "300"))
RUN_TIMEOUT = float(os.environ.get("DITCACHE_SERVER_RUN_S", "300"))
OUR_NODES = {
    "DitCache_TeaCachePatch": ("TeaCache Patch", ["model", "rel_l1_thresh", "start_percent", "end_percent",
                                                  "coefficients", "cache_device", "max_consecutive_skips",
                                                  "reuse", "compute_every", "target_speedup", "multigpu"]),
    "DitCache_L2CScheduleLoader": ("L2C Schedule Loader", ["model", "schedule", "threshold", "reuse",
                                                           "target_speedup"]),
    "DitCache_CacheStats": ("Cache Stats", ["model", "passthrough"]),
    "DitCache_CacheCompare": ("Cache Compare", ["reference", "cached", "vae", "model"]),
}
MODEL_FILE = "dit_cache_tiny_sd3.safetensors"


TEST_COND_NODE = '''
import torch


class DitCacheTestConditioning:
    """Test-only: seeded random conditioning [[context, {"pooled_output": pooled}]]."""
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"context_dim": ("INT", {"default": 64, "min": 1, "max": 8192}),
                             "tokens": ("INT", {"default": 8, "min": 1, "max": 512}),
                             "pooled_dim": ("INT", {"default": 64, "min": 0, "max": 8192}),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    def make(self, context_dim, tokens, pooled_dim, seed):
        g = torch.Generator().manual_seed(seed)
        extra = {}
        if pooled_dim:
            extra["pooled_output"] = torch.randn(1, pooled_dim, generator=g)
        return ([[torch.randn(1, tokens, context_dim, generator=g), extra]],)


NODE_CLASS_MAPPINGS = {"DitCacheTest_Conditioning": DitCacheTestConditioning}
'''


def _tiny_sd3(tiny_models):
    tiny = tiny_models("sd3")
    sd = {k: v.detach().clone().contiguous() for k, v in tiny.state_dict.items()}
    ctx = sd["context_embedder.weight"].shape[1]
    pooled = sd["y_embedder.mlp.0.weight"].shape[1]
    return sd, ctx, pooled


@pytest.fixture(scope="module")
def server(tmp_path_factory, comfy, tiny_models):
    path, reason = comfy_env.find_comfyui()
    if path is None:
        pytest.skip(f"ComfyUI not found: {reason}; set COMFYUI_PATH")
    from safetensors.torch import save_file

    base = tmp_path_factory.mktemp("comfy_base")
    for d in ("custom_nodes", "models/diffusion_models", "input", "output", "temp", "user"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / "dit_cache").symlink_to(REPO, target_is_directory=True)
    (base / "custom_nodes" / "dit_cache_test_cond.py").write_text(TEST_COND_NODE)
    sd, ctx, pooled = _tiny_sd3(tiny_models)
    save_file(sd, str(base / "models" / "diffusion_models" / MODEL_FILE))

    port = _free_port()
    log = open(base / "server.log", "w")
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--disable-api-nodes", "--dont-print-server",
           "--database-url", "sqlite:///:memory:", "--preview-method", "none"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=str(path), stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"

    def log_tail(n=4000):
        log.flush()
        return (base / "server.log").read_text(errors="replace")[-n:]

    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI exited with {proc.returncode}:\n{log_tail()}")
            try:
                _get(url + "/system_stats", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.time() - t0 > STARTUP_TIMEOUT:
                pytest.fail(f"ComfyUI did not answer within {STARTUP_TIMEOUT:.0f}s:\n{log_tail()}")
            time.sleep(0.5)
        yield {"url": url, "base": base, "log": log_tail, "proc": proc, "ctx": ctx, "pooled": pooled}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_pack_loaded_without_errors(server):
    text = server["log"](200_000)
    # our pack is custom_nodes/dit_cache (and the test node dit_cache_test_cond.py); ComfyUI names
    # the failing path or module in its "Cannot import" / "IMPORT FAILED" lines
    ours = ("custom_nodes/dit_cache", "IMPORT FAILED: dit_cache")
    bad = [l for l in text.splitlines() if ("IMPORT FAILED" in l or "Cannot import" in l) and any(o in l for o in ours)]
    assert not bad, server["log"]()
    # the frontend extension is served from WEB_DIRECTORY
    exts = _get(server["url"] + "/extensions")
    assert any(e.endswith("/dit_cache.js") for e in exts), exts


def test_object_info_lists_our_nodes(server):
    info = _get(server["url"] + "/object_info", timeout=60)
    for node_id, (display, inputs) in OUR_NODES.items():
        assert node_id in info, f"{node_id} missing from /object_info; server log:\n{server['log']()}"
        ni = info[node_id]
        assert ni["display_name"] == display
        order = ni["input_order"]["required"] + ni["input_order"].get("optional", [])
        assert order == inputs
        assert ni["category"] == "dit-cache"
    assert info["DitCache_CacheStats"]["output_node"] is True
    assert info["DitCache_CacheStats"]["output"] == ["*", "STRING", "IMAGE"]
    assert MODEL_FILE in info["UNETLoader"]["input"]["required"]["unet_name"][0]


def test_l2c_loader_without_schedules_says_what_to_do(server):
    """models/l2c_schedules/ is empty here: the schedule list holds one entry saying what to do (an
    empty list showed "schedule: undefined" in the page), and running it fails with how to make or
    where to put a schedule."""
    l2c_node = sub("nodes.l2c_node")
    info = _get(server["url"] + "/object_info/DitCache_L2CScheduleLoader")["DitCache_L2CScheduleLoader"]
    typ, opts = info["input"]["required"]["schedule"][:2]
    assert (opts.get("options") if typ == "COMBO" else typ) == [l2c_node.NO_SCHEDULE]
    prompt = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": MODEL_FILE, "weight_dtype": "default"}},
              "2": {"class_type": "DitCache_L2CScheduleLoader",
                    "inputs": {"model": ["1", 0], "schedule": l2c_node.NO_SCHEDULE, "threshold": 0.1}},
              "3": {"class_type": "DitCache_CacheStats", "inputs": {"model": ["2", 0], "passthrough": ["2", 1]}}}
    entry = _run_prompt(server, prompt, expect="error")
    error = next(m[1] for m in entry["status"]["messages"] if m[0] == "execution_error")
    assert error["node_type"] == "DitCache_L2CScheduleLoader", error
    text = error["exception_message"]
    assert "No L2C schedule to load" in text and "L2C Learn Schedule" in text, text
    assert str(server["base"] / "models" / "l2c_schedules") in text, text


def _prompt(ctx, pooled):
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": MODEL_FILE, "weight_dtype": "default"}},
        "2": {"class_type": "DitCache_TeaCachePatch",
              "inputs": {"model": ["1", 0], "rel_l1_thresh": -1.0, "start_percent": 0.0, "end_percent": 1.0,
                         "coefficients": "auto", "cache_device": "main", "max_consecutive_skips": 0}},
        "3": {"class_type": "DitCacheTest_Conditioning",
              "inputs": {"context_dim": ctx, "tokens": 8, "pooled_dim": pooled, "seed": 1}},
        "3n": {"class_type": "DitCacheTest_Conditioning",
               "inputs": {"context_dim": ctx, "tokens": 8, "pooled_dim": pooled, "seed": 2}},
        "4": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler",
              "inputs": {"model": ["2", 0], "seed": 0, "steps": 8, "cfg": 2.0, "sampler_name": "euler",
                         "scheduler": "simple", "positive": ["3", 0], "negative": ["3n", 0],
                         "latent_image": ["4", 0], "denoise": 1.0}},
        "6": {"class_type": "DitCache_CacheStats", "inputs": {"model": ["2", 0], "passthrough": ["5", 0]}},
    }


def _run_prompt(server, prompt, expect="success") -> dict:
    """Queues ``prompt`` and returns its /history entry once it finished with status ``expect``."""
    url = server["url"]
    status, resp = _post(url + "/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4())})
    assert status == 200, f"/prompt refused the graph: {json.dumps(resp)[:3000]}"
    pid = resp["prompt_id"]
    t0 = time.time()
    entry = None
    while time.time() - t0 < RUN_TIMEOUT:
        hist = _get(f"{url}/history/{pid}")
        if pid in hist and hist[pid].get("status", {}).get("completed") is not None:
            entry = hist[pid]
            if entry["status"].get("status_str") in ("success", "error"):
                break
        if server["proc"].poll() is not None:
            pytest.fail(f"ComfyUI died:\n{server['log']()}")
        time.sleep(0.5)
    assert entry is not None, f"prompt did not finish within {RUN_TIMEOUT:.0f}s:\n{server['log']()}"
    st = entry["status"]
    assert st["status_str"] == expect, f"{json.dumps(st['messages'])[:4000]}\n{server['log']()}"
    return entry


def test_prompt_runs_and_reports(server):
    entry = _run_prompt(server, _prompt(server["ctx"], server["pooled"]))
    out = entry["outputs"]["6"]
    report = out["text"][0]
    assert isinstance(report, str) and "computed" in report, report
    summary = out["dit_cache"][0]
    assert summary["evaluations"] > 0
    assert 0 < summary["computed"] <= summary["evaluations"]
    assert out["images"] and out["images"][0]["filename"].endswith(".png")
    # the plot preview went into the temporary base directory, not into the checkout
    img = out["images"][0]
    folder = server["base"] / img["type"] / img.get("subfolder", "")
    assert (folder / img["filename"]).is_file()


def test_compare_prompt_runs_and_reports(server):
    """The same seed sampled on the unpatched model and through TeaCache Patch; Cache Compare of
    the two LATENTs (LATENT into its LATENT,IMAGE inputs, validated by ComfyUI's executor)."""
    prompt = _prompt(server["ctx"], server["pooled"])
    prompt["5"]["inputs"]["seed"] = 7  # not the other test's cached run
    prompt["5r"] = {"class_type": "KSampler", "inputs": dict(prompt["5"]["inputs"], model=["1", 0])}
    prompt["7"] = {"class_type": "DitCache_CacheCompare",
                   "inputs": {"reference": ["5r", 0], "cached": ["6", 0], "model": ["2", 0]}}
    entry = _run_prompt(server, prompt)
    run_id = entry["outputs"]["6"]["dit_cache"][0]["run_id"]
    out = entry["outputs"]["7"]
    report = out["text"][0]
    # the verdict first (no VAE here: latent space), then the comparison (as test_browser.py reads it)
    verdict, second = report.splitlines()[:2]
    assert verdict.startswith(("No difference", "Latent difference, visibility not judged")), report
    assert second.startswith("Cache Compare: cached against reference, 1 latent") and "PSNR" in report, report
    assert f"cached run: {run_id} (computed" in report, report
    summary = out["dit_cache_compare"][0]
    assert summary["run_id"] == run_id and summary["space"] == "latent"
    assert 0 < summary["ssim"] <= 1 and summary["max_abs_diff"] >= 0
    img = out["images"][0]
    assert (server["base"] / img["type"] / img.get("subfolder", "") / img["filename"]).is_file()
