"""The pack in a real browser: ComfyUI's own frontend (the ``comfyui-frontend-package`` wheel)
served by ``main.py --cpu`` and driven by headless Chromium through playwright-core.

The server is ``test_server.py``'s fixture (temporary base directory, this pack symlinked into
a temporary ``custom_nodes``, a tiny random-weight SD3 model for ``UNETLoader`` and the
TEST-ONLY ``DitCacheTest_Conditioning`` node).  ``tests/host/browser/driver.mjs`` then:

1. opens the page and waits for the frontend, our node definitions and our extension;
2. for "TeaCache Patch", "L2C Schedule Loader", "Cache Stats" and "Cache Compare": double-clicks the empty
   canvas, types the display name in the node search box, checks the result is listed, and
   picks it (the node added must be ours);
3. loads a workflow built like ``workflows/*.json`` (``make_workflows.Graph`` fed with this
   server's ``/object_info``): UNETLoader -> TeaCache Patch -> KSampler -> Cache Stats, with
   the test conditioning node, plus a KSampler of the same seed on the unpatched model and
   Cache Compare of the two, through ``app.loadGraphData``;
4. queues it (``app.queuePrompt``), waits for ``execution_success`` on the API socket, then for
   Cache Stats' report (``node.properties.dit_cache_report``, its text box) and chart image,
   and the badge on TeaCache Patch (``node.properties.dit_cache_badge``, drawn on the canvas),
   then for Cache Compare's report (same text box and property) and side-by-side image;
5. saves a screenshot: ``$DITCACHE_ARTIFACTS/browser.png`` or ``<tmp>/browser.png``.

Skips (never installs anything) when ComfyUI, the frontend wheel, Chromium, node or
``tests/host/browser/node_modules/playwright-core`` is missing.  One-time setup::

    apt-get install -y chromium          # or set DITCACHE_CHROMIUM=/path/to/chrome
    (cd tests/host/browser && npm ci)
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pack import sub
from test_server import MODEL_FILE, _get, _run_prompt, server  # noqa: F401  (``server`` is the fixture)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DRIVER_DIR = HERE / "browser"
DRIVER = DRIVER_DIR / "driver.mjs"
# bounds the whole driver against a hang; every wait in it is for a state of the page
BROWSER_TIMEOUT = float(os.environ.get("DITCACHE_BROWSER_S", "300"))
SEARCHES = ["TeaCache Patch", "L2C Schedule Loader", "Cache Stats", "Cache Compare"]
SEARCH_TYPES = {"TeaCache Patch": "DitCache_TeaCachePatch", "L2C Schedule Loader": "DitCache_L2CScheduleLoader",
                "Cache Stats": "DitCache_CacheStats", "Cache Compare": "DitCache_CacheCompare"}
REFERENCE_TITLE = "KSampler (no cache)"
STEPS = 8
SAVE_VIDEO_FROM = "ltx2_av_teacache"  # the shipped workflow that saves its video (with sound) with SaveVideo
PLOT_FONT_PX = 18  # nodes/plot.py FONT: the plot's body text, in image pixels


def _chromium():
    env = os.environ.get("DITCACHE_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    return None


def _missing(reason: str):
    # in CI (CI=true) the browser test must run: a missing tool is a failure there, not a skip
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser_tools():
    """(node, chromium) or skip with the reason; checked before ComfyUI is started."""
    try:
        import comfyui_frontend_package  # noqa: F401
    except ImportError:
        _missing("comfyui-frontend-package is not installed (ComfyUI's frontend wheel)")
    node = shutil.which("node")
    if node is None:
        _missing("node.js not found (needed to run tests/host/browser/driver.mjs)")
    if not (DRIVER_DIR / "node_modules" / "playwright-core").is_dir():
        _missing("playwright-core not installed: run `npm ci` in tests/host/browser")
    chrome = _chromium()
    if chrome is None:
        _missing("Chromium not found: `apt-get install chromium` or set DITCACHE_CHROMIUM")
    return node, chrome


def _make_workflows():
    spec = importlib.util.spec_from_file_location("dit_cache_make_workflows", REPO / "workflows" / "make_workflows.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _workflow(server, mw, infos) -> dict:
    """UNETLoader -> TeaCache Patch -> KSampler -> Cache Stats, built like workflows/*.json from
    this server's /object_info (so widget orders are the live ones)."""
    g = mw.Graph(infos, "browser_test")
    unet = g.add("UNETLoader", unet_name=MODEL_FILE, weight_dtype="default")
    patch = mw.teacache(g, unet, rel_l1_thresh=0.6)  # reuses some steps of the tiny model: a telling screenshot
    pos = g.add("DitCacheTest_Conditioning", context_dim=server["ctx"], tokens=8, pooled_dim=server["pooled"], seed=1)
    neg = g.add("DitCacheTest_Conditioning", context_dim=server["ctx"], tokens=8, pooled_dim=server["pooled"], seed=2)
    lat = g.add("EmptySD3LatentImage", width=64, height=64, batch_size=1)
    ks = mw.ksampler(g, patch, pos.out(0), neg.out(0), lat.out(0), steps=STEPS, cfg=2.0, seed=0)
    stats = g.add("DitCache_CacheStats", model=patch.out(0), passthrough=ks.out(0))
    # Cache Compare: the same seed on the unpatched model against the TeaCache run
    ref = mw.ksampler(g, unet, pos.out(0), neg.out(0), lat.out(0), steps=STEPS, cfg=2.0, seed=0, title=REFERENCE_TITLE)
    g.add("DitCache_CacheCompare", reference=ref.out(0), cached=stats.out(0), model=patch.out(0))
    wf = g.to_json()
    # a compact layout that fits the screenshot: inputs on the left, Cache Stats on the right
    pos_by_type = {"UNETLoader": [20, 20], "DitCache_TeaCachePatch": [20, 200], "DitCacheTest_Conditioning": [380, 20],
                   "EmptySD3LatentImage": [380, 420], "KSampler": [740, 20], "DitCache_CacheStats": [1100, 20],
                   REFERENCE_TITLE: [740, 560], "DitCache_CacheCompare": [1100, 690]}
    seen = {}
    for n in wf["nodes"]:
        kind = n.get("title") or n["type"]
        x, y = pos_by_type[kind]
        k = seen[kind] = seen.get(kind, -1) + 1
        n["pos"] = [x, y + 200 * k]
        if n["type"] == "DitCacheTest_Conditioning":
            # the frontend gives any INT input named "seed" a control_after_generate widget
            # (its value follows the seed's in widgets_values); keep the seeds fixed
            n["widgets_values"].append("fixed")
        if n["type"] == "DitCache_CacheStats":
            n["size"] = [560, 640]  # room for the report and the chart in the screenshot
        if n["type"] == "DitCache_CacheCompare":
            n["size"] = [560, 470]
    return wf


def _interpreted(mw, info, values) -> bool:
    """Whether this release's page has to interpret a node's widgets_values: a V3 DynamicCombo
    (SaveVideo's format in 0.33.0) or widgets the values predate."""
    loaded, extra = mw.loaded_widgets(info, values)
    return extra > 0 or len(values) != len(loaded) or any(typ == mw.DYNAMIC_COMBO for _, _, typ, _, _ in loaded)


def _load_only(mw, infos, version) -> list[dict]:
    """Workflows the page only loads: every shipped one offered on this release with a node the page
    has to interpret, and, where the shipped LTX-2 workflow is offered, its SaveVideo node as shipped
    after a tiny video (EmptyImage -> CreateVideo), which the test then runs."""
    out = []
    for path in sorted((REPO / "workflows").glob("*.json")):
        wf = json.loads(path.read_text(encoding="utf-8"))
        if mw.available(path.stem, version) and any(
                _interpreted(mw, infos[n["type"]], n.get("widgets_values") or []) for n in wf["nodes"]):
            out.append({"name": path.stem, "workflow": wf})
    if mw.available(SAVE_VIDEO_FROM, version):
        shipped = json.loads((REPO / "workflows" / f"{SAVE_VIDEO_FROM}.json").read_text(encoding="utf-8"))
        save = next(n for n in shipped["nodes"] if n["type"] == "SaveVideo")
        g = mw.Graph(infos, "save_video_check")
        img = g.add("EmptyImage", width=32, height=32, batch_size=4, color=0x336699)
        video = g.add("CreateVideo", images=img.out(0), fps=8.0)
        g.add("SaveVideo", video=video.out(0), filename_prefix="x")
        wf = g.to_json()
        next(n for n in wf["nodes"] if n["type"] == "SaveVideo")["widgets_values"] = list(save["widgets_values"])
        out.append({"name": "save_video", "workflow": wf})
    return out


def _artifact_path(tmp_path) -> Path:
    d = os.environ.get("DITCACHE_ARTIFACTS")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
        return Path(d) / "browser.png"
    return tmp_path / "browser.png"


def test_nodes_in_the_browser(browser_tools, server, tmp_path):
    node, chrome = browser_tools
    # a new user would get the template browser on top of the canvas
    settings = server["base"] / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    if not settings.exists():
        settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))

    shot = _artifact_path(tmp_path)
    mw = _make_workflows()
    infos = _get(server["url"] + "/object_info", timeout=60)
    version = _get(server["url"] + "/system_stats")["system"]["comfyui_version"]
    load_only = _load_only(mw, infos, version)
    cfg = {"url": server["url"], "workflow": _workflow(server, mw, infos), "searches": SEARCHES, "screenshot": str(shot),
           "report_types": ["DitCache_CacheCompare"], "screenshot_reports": str(shot.with_name("browser_reports.png")),
           "load_only": load_only, "search_types": SEARCH_TYPES,
           "chromium": chrome, "timeout_s": BROWSER_TIMEOUT, "user_data_dir": str(tmp_path / "chromium-profile")}
    cfg_path = tmp_path / "driver.json"
    cfg_path.write_text(json.dumps(cfg))
    try:
        proc = subprocess.run([node, str(DRIVER), str(cfg_path)], cwd=str(DRIVER_DIR), capture_output=True,
                              text=True, timeout=BROWSER_TIMEOUT + 60)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"browser driver timed out:\n{e.stderr}\n{server['log']()}")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert lines, f"driver gave no result (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    res = json.loads(lines[-1])
    if shot.is_file():
        print(f"browser screenshot: {shot}")
    ctx = f"\ndriver log:\n{proc.stderr[-4000:]}\nserver log:\n{server['log']()}"
    assert "error" not in res, res["error"] + ctx
    assert "dit_cache.stats" in res["extensions"], res["extensions"]

    # the node search finds each node by its display name, and picking it adds our node
    for name in SEARCHES:
        found = res["searches"][name]
        assert name in found["options"], (name, found)
        assert found["added"] == [SEARCH_TYPES[name]], (name, found)
        assert not [w for w in found["widgets"][0] if w[1] == "<undefined>"], (name, found["widgets"])
    # models/l2c_schedules/ is empty here: the schedule list says what to do instead of "undefined"
    schedule = dict(res["searches"]["L2C Schedule Loader"]["widgets"][0])["schedule"]
    assert schedule == sub("nodes.l2c_node").NO_SCHEDULE, schedule

    # the loaded workflow becomes the prompt we meant (widget orders line up)
    prompt = res["api_prompt"]
    by_type = {v["class_type"]: v["inputs"] for v in prompt.values()}
    prompt_types = [v["class_type"] for v in prompt.values()]
    assert by_type["UNETLoader"]["unet_name"] == MODEL_FILE
    assert by_type["KSampler"]["steps"] == STEPS
    assert by_type["DitCache_TeaCachePatch"]["coefficients"] == "auto"
    assert "dit_cache_report" not in by_type["DitCache_CacheStats"]  # the text box is not an input
    seeds = sorted(v["inputs"]["seed"] for v in prompt.values() if v["class_type"] == "DitCacheTest_Conditioning")
    assert seeds == [1, 2], seeds

    assert res["final_event"]["type"] == "execution_success", json.dumps(res["final_event"])[:4000] + ctx
    ui = res["ui"]
    assert "wait_error" not in res, f"{res['wait_error']}\n{json.dumps(ui)[:3000]}"

    # Cache Stats: the report with real numbers, in its properties and in a visible text box
    report = ui["report"]
    m = re.search(r"computed\s+(\d+)\s*/\s*(\d+)", report)
    assert m, report
    computed, total = int(m.group(1)), int(m.group(2))
    assert 0 < computed <= total and total > 0, report
    assert ui["widget_value"] == report
    assert ui["widget_dom"] and ui["widget_dom"]["visible"] and ui["widget_dom"]["value"] == report, ui["widget_dom"]
    assert ui["serialized_stats_properties"].get("dit_cache_report") == report  # saved with the workflow

    # its first line is the summary, and the streams carry the names the user gave them
    first = report.splitlines()[0]
    assert first.startswith("speed-up ") and f"computed {computed}/{total} evaluations" in first, first
    assert "look at: " in first, first
    assert "streams: positive, negative" in report.splitlines()[1], report
    assert not re.search(r"\b[0-9a-f]{8}-[0-9a-f]", report), report  # no uuid prefixes

    # ... and its chart: an image ComfyUI fetched from /view and decoded
    assert ui["image"] and ui["image"]["width"] > 0 and ui["image"]["height"] > 0, ui["image"]
    assert "/view?" in ui["image"]["src"] and ".png" in ui["image"]["src"], ui["image"]
    # drawn at the node's size, its text stays readable: at 100% zoom the body text is >= 10 px
    shown = res["plot_drawn"]
    width = (shown["drawn"] or {}).get("w") or ((shown["dom"] or {}).get("w", 0) / shown["canvas_scale"])
    assert width and PLOT_FONT_PX * width / shown["natural_w"] >= 10, json.dumps(shown)

    # TeaCache Patch: the badge, with the same numbers, stored and drawn on the canvas
    badge = ui["badge"]
    assert badge and badge.startswith(f"computed {computed}/{total}"), (badge, report)
    px = ui["badge_pixels"]
    assert px.get("total") and px["green"] > px["total"] // 3, px

    # Cache Compare: its report (the TeaCache run against the uncached one) in a visible text box,
    # saved with the workflow, and its side-by-side picture
    assert "reports_wait_error" not in res, f"{res['reports_wait_error']}\n{json.dumps(res.get('reports'))[:3000]}"
    cmp = res["reports"]["DitCache_CacheCompare"]
    text = cmp["report"]
    verdict, second = text.splitlines()[:2]
    assert verdict.startswith(("No difference", "Latent difference, visibility not judged")), verdict  # no VAE here
    assert second.startswith("Cache Compare: cached against reference, 1 latent"), text
    assert re.search(r"PSNR\s+(\d+\.\d+ dB|inf dB \(identical\))", text) and re.search(r"SSIM\s+[-\d.]+", text), text
    assert f"(computed {computed}/{total} evaluations" in text, (text, report)  # the run Cache Stats reports
    assert cmp["widget_value"] == text and cmp["widget_visible"], cmp
    assert cmp["serialized_report"] == text
    assert cmp["image"] and cmp["image"]["width"] > cmp["image"]["height"] > 0, cmp["image"]  # three panels wide
    assert "/view?" in cmp["image"]["src"], cmp["image"]
    assert "DitCache_CacheCompare" in prompt_types and "dit_cache_report" not in by_type["DitCache_CacheCompare"]

    assert not [w for w in res["dit_cache_warnings"] if "hook failed" in w], res["dit_cache_warnings"]
    _check_loaded(server, mw, infos, version, load_only, res)

    # an error with our extension (extensions/dit_cache/dit_cache.js) in its message or stack. Frontend
    # 1.27 (ComfyUI 0.3.64) throws "Cannot read properties of undefined (reading 'id')" itself for a
    # new user: its Comfy.Canvas.NavigationMode setting's onChange, run as the settings are added,
    # sets Comfy.Canvas.LeftMouseClickBehavior before that setting exists (settingStore onChange)
    assert not [e for e in res["page_errors"] if "dit_cache" in e], res["page_errors"]


def _check_loaded(server, mw, infos, version, load_only, res):
    """The page loads each workflow's widget values as ``make_workflows.loaded_widgets`` says (the
    model tests/host/test_workflows.py checks every shipped file with), and the shipped SaveVideo node
    runs: the prompt the page makes of it saves a video."""
    assert set(res["loaded"]) == {w["name"] for w in load_only}, list(res["loaded"])
    for item in load_only:
        saved = {str(n["id"]): n for n in item["workflow"]["nodes"]}
        for n in res["loaded"][item["name"]]["nodes"]:
            loaded, extra = mw.loaded_widgets(infos[n["type"]], saved[str(n["id"])].get("widgets_values") or [])
            ours = {name: value for name, kind, _, _, value in loaded if kind == "value"}
            page = {name: value for name, value in n["widgets"] if name in ours}
            where = f"{item['name']}: {n['type']} (node {n['id']}) on ComfyUI {version}"
            assert page == ours and extra == 0, (where, n["widgets"], ours)
            assert len(n["widgets_values"]) == len(loaded), (where, n["widgets_values"], loaded)
    if mw.available(SAVE_VIDEO_FROM, version):
        prompt = res["loaded"]["save_video"]["api_prompt"]
        save_id = next(k for k, v in prompt.items() if v["class_type"] == "SaveVideo")
        entry = _run_prompt(server, prompt)
        files = entry["outputs"][save_id]["images"]
        path = server["base"] / "output" / files[0]["subfolder"] / files[0]["filename"]
        assert path.is_file() and path.stat().st_size > 0, (files, prompt[save_id])
