"""Steps from sigmas, run statistics, and the engine's independence from ComfyUI."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cache_core.stats import RunRecorder, make_run_id
from cache_core.steps import StepLocator

REPO = Path(__file__).resolve().parents[2]


def test_steps_from_sigmas_with_intermediate_evaluations():
    loc = StepLocator([1.0, 0.75, 0.5, 0.25, 0.0])
    assert loc.n_steps == 4
    assert [loc.locate(s).step for s in (1.0, 0.75, 0.5, 0.25)] == [0, 1, 2, 3]
    mid = loc.locate(0.6)  # heun / dpm_2 evaluate between schedule entries
    assert mid.step == 1 and not mid.on_schedule
    assert loc.locate(0.0).step == 3
    assert loc.locate(0.5).position == pytest.approx(2 / 3)


def test_one_step_schedule_does_not_divide_by_zero():
    info = StepLocator([1.0, 0.0]).locate(1.0)
    assert info.step == 0 and info.position == 0.0


def test_recorder_summary_and_json():
    r = RunRecorder(run_id=make_run_id("TC(t0.4,flux)"))
    r.start(3)
    for step, comp in [(0, True), (1, False), (2, True)]:
        r.add(step, 1.0 - step / 3, "cond", comp, "x", 0.1, 0.1, 4 if comp else 0, 0 if comp else 4, 0.01, 100)
    r.finish()
    s = r.summary()
    assert s["computed"] == 2 and s["evaluations"] == 3 and s["hit_rate"] == pytest.approx(1 / 3)
    assert s["estimated_speedup"] == pytest.approx(12 / 8)
    assert s["run_id"].startswith("TC(t0.4,flux)#")
    d = json.loads(r.to_json())
    assert len(d["records"]) == 3
    assert "evaluations computed 2/3" in r.table()


def test_cache_core_never_imports_comfyui():
    code = ("import sys, importlib, pkgutil, cache_core\n"
            "for m in pkgutil.walk_packages(cache_core.__path__, 'cache_core.'):\n"
            "    if m.name.endswith('__main__'): continue\n"
            "    importlib.import_module(m.name)\n"
            "bad = [n for n in sys.modules if n == 'comfy' or n.startswith('comfy.') or n in ('folder_paths', 'comfy_api')]\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
    src = "\n".join(p.read_text() for p in (REPO / "cache_core").rglob("*.py"))
    assert "import comfy" not in src and "from comfy" not in src and "folder_paths" not in src
