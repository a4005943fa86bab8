"""The engine holds only the engine: no module of ``cache_core`` imports the reference package
(``dit_reference``: the reference DiT, its sampler, the classifier, the Flux digits maps, the demo),
nor anything else of the pack outside ``cache_core``.

Static (the imports as written, parsed with ast, including function-level and
``importlib.import_module("...")`` imports) and at run time (importing every engine module loads
no module of the reference package)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINE = "cache_core"
REFERENCE = "dit_reference"


def _package(path: Path) -> list[str]:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return parts[:-1]  # a module's package; for __init__.py, the package itself


def engine_boundary_violations(source: str, path: Path) -> list[str]:
    """Imports in ``source`` (the text of ``path``, a file of the engine) that leave the engine:
    ``dit_reference`` by any spelling, or a relative import that climbs out of ``cache_core``."""
    out = []
    pkg = _package(path)
    for node in ast.walk(ast.parse(source, filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                keep = len(pkg) - node.level + 1  # level 1 is the module's own package
                base = pkg[:keep] if keep > 0 else []
                if not base or base[0] != ENGINE:
                    out.append(f"line {node.lineno}: relative import leaves {ENGINE} "
                               f"({'.' * node.level}{node.module or ''})")
                    continue
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call):
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if called in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        for n in names:
            if n == REFERENCE or n.startswith(REFERENCE + "."):
                out.append(f"line {node.lineno}: imports {n}")
                break
    return out


def test_no_engine_module_imports_the_reference_package():
    files = sorted((REPO / ENGINE).rglob("*.py"))
    assert len(files) > 10
    problems = [f"{f.relative_to(REPO)}: {p}" for f in files
                for p in engine_boundary_violations(f.read_text(encoding="utf-8"), f)]
    assert not problems, "cache_core must not import the reference package:\n" + "\n".join(problems)


@pytest.mark.parametrize("where, source", [
    ("cache_core/stack.py", "from dit_reference import model"),
    ("cache_core/stack.py", "import dit_reference.demo as demo"),
    ("cache_core/stack.py", "def f():\n    from dit_reference.sampling import sample\n"),
    ("cache_core/stack.py", "from ..dit_reference.flux_digits import MODEL_DIR"),
    ("cache_core/stack.py", "from .. import dit_reference"),
    ("cache_core/l2c/train.py", "from ...dit_reference import model"),
    ("cache_core/l2c/train.py", "from .... import anything"),
    ("cache_core/stack.py", "import importlib\nm = importlib.import_module('dit_reference.model')"),
    ("cache_core/__init__.py", "from .. import nodes"),
])
def test_the_check_catches_each_spelling(where, source):
    assert engine_boundary_violations(source, REPO / where)


@pytest.mark.parametrize("where, source", [
    ("cache_core/learn.py", "from .l2c.schedule import L2CSchedule\nfrom .steps import StepLocator"),
    ("cache_core/l2c/train.py", "from ..stats import RunRecorder\nfrom . import schedule"),
    ("cache_core/__init__.py", "from .stack import CacheController\nimport torch"),
    ("cache_core/stack.py", "import dit_references_elsewhere"),
])
def test_the_check_lets_engine_imports_pass(where, source):
    assert engine_boundary_violations(source, REPO / where) == []


def test_importing_the_engine_loads_nothing_of_the_reference_package():
    code = ("import sys, importlib, pkgutil, cache_core\n"
            "for m in pkgutil.walk_packages(cache_core.__path__, 'cache_core.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            f"print(','.join(n for n in sys.modules if n == {REFERENCE!r} or n.startswith({REFERENCE + '.'!r})))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
