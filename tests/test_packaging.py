"""Packaging checks: pyproject.toml against the Comfy Registry's fields, requirements.txt,
.comfyignore, the pack entry point, and no dynamic code / runtime installs in the pack's code.

Needs no ComfyUI and no torch."""
from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
# semver 2.0.0 (https://semver.org), the form the Comfy Registry requires for versions
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
                    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")
REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
CODE_DIRS = ("nodes", "cache_core", "dit_reference")


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _req_lines(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def _req_name(req: str) -> str:
    m = REQ_NAME.match(req)
    assert m, f"unparseable requirement {req!r}"
    return m.group(1).lower().replace("_", "-")


# ---------------------------------------------------------------- pyproject [project]

def test_project_name(pyproject):
    name = pyproject["project"]["name"]
    assert name == "dit-cache"
    # registry: lowercase id, letters/digits/-/_ , and must not contain "comfyui"
    assert re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,99}", name)
    assert "comfyui" not in name.lower()


def test_project_version_is_semver(pyproject):
    v = pyproject["project"]["version"]
    assert SEMVER.match(v), f"version {v!r} is not semver (MAJOR.MINOR.PATCH)"


def test_project_required_fields(pyproject):
    p = pyproject["project"]
    for key in ("name", "version", "description", "license", "dependencies", "requires-python"):
        assert key in p, f"[project] lacks {key}"
    assert isinstance(p["description"], str) and 10 <= len(p["description"]) <= 500
    lic = p["license"]
    if isinstance(lic, dict):
        assert lic.get("file") or lic.get("text")
        if lic.get("file"):
            assert (REPO / lic["file"]).is_file(), f"license file {lic['file']} missing"
    else:
        assert isinstance(lic, str) and lic


def test_project_urls(pyproject):
    urls = pyproject["project"]["urls"]
    assert urls["Repository"].startswith("https://")
    for k, v in urls.items():
        assert re.match(r"^https?://\S+$", v), f"[project.urls] {k} = {v!r} is not a URL"


def test_classifiers(pyproject):
    cls = pyproject["project"].get("classifiers", [])
    assert cls, "add classifiers (the registry shows OS / accelerator ones)"
    for c in cls:
        assert isinstance(c, str) and " :: " in c, f"bad classifier {c!r}"
    assert any(c.startswith("Operating System ::") for c in cls)


def test_dependencies_have_floors_only(pyproject):
    deps = pyproject["project"]["dependencies"]
    assert deps
    for d in deps:
        spec = REQ_NAME.match(d).group(3).split(";")[0].replace(" ", "")
        assert spec.startswith(">="), f"dependency {d!r}: give a floor (>=), not a pin or nothing"
        assert "<" not in spec and "==" not in spec and "~=" not in spec, f"dependency {d!r} has a cap or pin"


def test_every_code_package_and_data_file_is_packaged(pyproject):
    """``pip install .`` ships every package of the pack's code (the engine and the reference
    package, whose weights the digits nodes, the demo and the tests load) with its data files."""
    st = pyproject["tool"]["setuptools"]
    packages = set(st["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for d in ("cache_core", "dit_reference")
             for p in (REPO / d).rglob("__init__.py")}
    assert found <= packages, f"packages missing from [tool.setuptools] packages: {sorted(found - packages)}"
    for pkg in ("cache_core", "dit_reference"):
        root = REPO / pkg
        data = {p for p in (root / "data").rglob("*") if p.is_file()}
        assert data, f"{pkg}/data holds no files"
        shipped = {p for pattern in st["package-data"].get(pkg, []) for p in root.glob(pattern)}
        assert data <= shipped, f"not in [tool.setuptools.package-data] {pkg}: " \
            f"{sorted(str(p.relative_to(root)) for p in data - shipped)}"


# ---------------------------------------------------------------- pyproject [tool.comfy]

def test_tool_comfy(pyproject):
    tc = pyproject["tool"]["comfy"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", tc["PublisherId"]), "PublisherId: lowercase letters, digits, -"
    assert isinstance(tc["DisplayName"], str) and tc["DisplayName"].strip()
    assert isinstance(tc["Icon"], str)
    if tc["Icon"]:
        assert tc["Icon"].startswith("https://")
    assert tc["includes"] == [] or all(isinstance(i, str) for i in tc["includes"])
    req = tc["requires-comfyui"]
    m = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)", req)
    assert m, f"requires-comfyui {req!r} should be a floor like '>=0.3.60'"
    assert tuple(map(int, m.group(1).split("."))) >= (0, 3, 60)  # V3 node API (comfy_api.latest)


def test_tool_comfy_does_not_duplicate_web_directory(pyproject):
    # ComfyUI registers [tool.comfy] web under the project name AND WEB_DIRECTORY under the module
    # name: both would load web/dit_cache.js twice and the second registerExtension would fail.
    assert "web" not in pyproject["tool"]["comfy"]


def test_icon_file_exists_when_pointing_into_repo(pyproject):
    icon = pyproject["tool"]["comfy"]["Icon"]
    m = re.search(r"/main/(.+)$", icon or "")
    if m:
        assert (REPO / m.group(1)).is_file(), f"Icon points to {m.group(1)}, which is not in the repo"


def test_comfy_config_parser_accepts_pyproject():
    """ComfyUI's own parser (comfy_config, pydantic) reads the file the same way, when available."""
    sys.path.insert(0, str(REPO / "tests" / "host"))
    try:
        import comfy_env
        path, _ = comfy_env.find_comfyui()
    finally:
        sys.path.pop(0)
    if path is None:
        pytest.skip("ComfyUI not found; its comfy_config parser is not available")
    pytest.importorskip("pydantic_settings")
    sys.path.insert(0, str(path))
    try:
        from comfy_config import config_parser
        cfg = config_parser.extract_node_configuration(str(REPO))
    finally:
        sys.path.remove(str(path))
    assert cfg is not None
    assert cfg.project.name == "dit-cache"
    assert cfg.tool_comfy.publisher_id
    assert cfg.tool_comfy.display_name
    assert cfg.project.urls.repository.startswith("https://")


# ---------------------------------------------------------------- requirements.txt / .comfyignore

def test_requirements_txt_has_no_torch():
    lines = _req_lines(REPO / "requirements.txt")
    names = {_req_name(l) for l in lines}
    assert {"numpy", "safetensors"} <= names
    for bad in ("torch", "torchvision", "torchaudio", "xformers", "triton"):
        assert bad not in names, f"requirements.txt must not list {bad}: ComfyUI Manager would reinstall it"
    for l in lines:
        assert not l.startswith(("-", "--", "git+", "http")), f"no pip options or URLs in requirements.txt: {l!r}"
        spec = REQ_NAME.match(l).group(3).replace(" ", "")
        assert "==" not in spec and "<" not in spec, f"floors only in requirements.txt: {l!r}"


def test_requirements_agree_with_pyproject(pyproject):
    req = {_req_name(l) for l in _req_lines(REPO / "requirements.txt")}
    deps = {_req_name(d) for d in pyproject["project"]["dependencies"]} - {"torch"}
    assert deps <= req, f"in pyproject dependencies but not requirements.txt: {sorted(deps - req)}"


def test_comfyignore_keeps_tests_and_outputs_out():
    lines = [l.strip() for l in (REPO / ".comfyignore").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    for needed in ("tests/", "bench/results/", "reference/"):
        assert needed in lines, f".comfyignore should exclude {needed}"
    for keep in ("nodes/", "cache_core/", "dit_reference/", "web/", "workflows/", "__init__.py", "pyproject.toml", "LICENSE"):
        assert keep not in lines, f".comfyignore must not exclude {keep}"


# ---------------------------------------------------------------- entry point

def test_init_exports_entrypoint_lazily():
    src = (REPO / "__init__.py").read_text(encoding="utf-8")
    tree = ast.parse(src)
    top_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    # nothing heavy (torch, comfy_api, our nodes) at module top level: the pack must import
    # without ComfyUI (tests, tools) and only build the extension when ComfyUI loads it
    for n in top_imports:
        mods = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
        for m in mods:
            assert not m.startswith(("torch", "comfy_api", "nodes")), f"top-level import of {m} in __init__.py"
    assert "comfy_entrypoint" in src
    assert re.search(r"from\s+\.nodes\.extension\s+import\s+comfy_entrypoint", src)
    assert "NODE_CLASS_MAPPINGS" not in src, "V3 pack: export comfy_entrypoint, not NODE_CLASS_MAPPINGS"


def test_web_directory_exists():
    src = (REPO / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r"""WEB_DIRECTORY\s*=\s*["']([^"']+)["']""", src)
    assert m, "__init__.py must set WEB_DIRECTORY"
    web = (REPO / m.group(1)).resolve()
    assert web.is_dir()
    assert list(web.glob("*.js")), "WEB_DIRECTORY holds no .js extension"


def test_init_imports_without_comfyui(tmp_path):
    """Importing the pack outside ComfyUI works and exposes WEB_DIRECTORY only."""
    import subprocess
    code = ("import importlib.util,sys;"
            f"s=importlib.util.spec_from_file_location('dc_pkg', r'{REPO / '__init__.py'}',"
            f"submodule_search_locations=[r'{REPO}']);m=importlib.util.module_from_spec(s);"
            "sys.modules['dc_pkg']=m;s.loader.exec_module(m);"
            "print(m.WEB_DIRECTORY, hasattr(m,'comfy_entrypoint'), 'comfy' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["./web", "False", "False"]


# ---------------------------------------------------------------- code hygiene

def _py_files():
    for d in CODE_DIRS:
        yield from sorted((REPO / d).rglob("*.py"))


def test_code_dirs_exist():
    assert list(_py_files())


def test_no_eval_exec_or_runtime_install():
    problems = []
    for f in _py_files():
        src = f.read_text(encoding="utf-8")
        rel = f.relative_to(REPO)
        for node in ast.walk(ast.parse(src, filename=str(f))):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            # builtin eval()/exec()/compile()/__import__(); torch's module.eval() is fine
            if isinstance(fn, ast.Name) and fn.id in ("eval", "exec", "compile", "__import__"):
                problems.append(f"{rel}:{node.lineno}: {fn.id}()")
            if (isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) and fn.value.id == "builtins"
                    and fn.attr in ("eval", "exec")):
                problems.append(f"{rel}:{node.lineno}: builtins.{fn.attr}()")
        if re.search(r"""["']pip["']\s*,\s*["']install["']""", src) or \
                re.search(r"\bpip\.main\s*\(|^\s*(from|import)\s+pip\b", src, re.M):
            problems.append(f"{rel}: runtime pip install")
        if re.search(r"(subprocess\.\w+|os\.system|os\.popen)\([^\n]*pip", src):
            problems.append(f"{rel}: runs pip")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- web extension (runs under node.js)

_JS_HARNESS = r"""
import { app } from "./scripts/app.js";
await import("./extensions/dit_cache/dit_cache.js");
const ext = app.exts[0];
const out = { name: ext.name, count: app.exts.length };
const calls = [];
function makeType(name) {
  function T() {}
  T.prototype.onExecuted = function (m) { calls.push(name + ":orig"); };
  T.prototype.onDrawForeground = function () { calls.push(name + ":draw-orig"); };
  return T;
}
const Stats = makeType("stats"), Patch = makeType("patch");
await ext.beforeRegisterNodeDef(Stats, { name: "DitCache_CacheStats" });
await ext.beforeRegisterNodeDef(Patch, { name: "DitCache_TeaCachePatch" });
const patch = new Patch(); Object.assign(patch, { id: 1, type: "DitCache_TeaCachePatch", size: [300, 100],
  inputs: [{ name: "model", type: "MODEL", link: 10 }], properties: {} });
const lora = { id: 3, type: "LoraLoaderModelOnly", inputs: [{ name: "model", type: "MODEL", link: 11 }], properties: {} };
const stats = new Stats(); Object.assign(stats, { id: 2, type: "DitCache_CacheStats", size: [300, 100],
  inputs: [{ name: "model", type: "MODEL", link: 12 }, { name: "passthrough", type: "*", link: 13 }],
  properties: {}, widgets: [] });
stats.addWidget = function (type, name, value) { const w = { type, name, value }; this.widgets.push(w); return w; };
const nodes = { 1: patch, 2: stats, 3: lora };
const links = new Map([[11, { origin_id: 1 }], [12, { origin_id: 3 }]]);
stats.graph = patch.graph = { links, getNodeById: (id) => nodes[id] };
stats.onExecuted({ text: ["REPORT TEXT"], images: [], dit_cache: [{ computed: 12, evaluations: 30,
  measured_speedup: 2.3456, estimated_speedup: 2.5 }] });
const ctx = { save() {}, restore() {}, measureText: (t) => ({ width: t.length * 6 }), beginPath() {},
  roundRect() {}, rect() {}, fill() {}, fillText(t) { out.drawn = t; } };
patch.onDrawForeground(ctx);
out.calls = calls;
out.report = stats.properties.dit_cache_report;
out.widget = stats.widgets.map((w) => [w.name, w.value, w.serialize, w.options && w.options.serialize]);
out.badge = patch.properties.dit_cache_badge;
// save / load: a fresh node configured from saved properties shows the report again
const s2 = new Stats(); Object.assign(s2, { properties: { dit_cache_report: "SAVED" }, widgets: [], size: [1, 1] });
s2.addWidget = stats.addWidget;
s2.onConfigure && s2.onConfigure({});
out.restored = s2.widgets.map((w) => w.value);
console.log(JSON.stringify(out));
"""


def test_web_extension_behaviour(tmp_path):
    import shutil
    import subprocess
    node = shutil.which("node")
    if node is None:
        pytest.skip("node.js not installed")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "extensions" / "dit_cache").mkdir(parents=True)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "scripts" / "app.js").write_text(
        "export const app = { exts: [], registerExtension(e) { this.exts.push(e); } };\n")
    shutil.copy(REPO / "web" / "dit_cache.js", tmp_path / "extensions" / "dit_cache" / "dit_cache.js")
    (tmp_path / "run.mjs").write_text(_JS_HARNESS)
    r = subprocess.run([node, "run.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["name"] == "dit_cache.stats" and out["count"] == 1
    assert "stats:orig" in out["calls"] and "patch:draw-orig" in out["calls"], "hooks must chain"
    assert out["report"] == "REPORT TEXT"
    assert out["widget"] == [["dit_cache_report", "REPORT TEXT", False, False]]
    assert out["badge"] == "computed 12/30 · 2.35×"
    assert out["drawn"] == out["badge"]
    assert out["restored"] == ["SAVED"]
