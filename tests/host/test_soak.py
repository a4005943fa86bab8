"""Soak: 200 consecutive sampling runs in one process, varying family, shape, batch, seed,
threshold and method. Every run equals a fresh run of the same inputs, caches are empty after
every run, and resident memory stays flat after warm-up."""
from __future__ import annotations

import gc
import itertools
import json
import os


import pytest
import torch

import tiny_models as tm
from helpers import adapter_of, holder_of, l2c, save_schedule, schedule_folder, teacache

RUNS = int(os.environ.get("DITCACHE_SOAK_RUNS", "200"))
STEPS = 5
RSS_BOUND_MB = 64  # growth allowed between the end of warm-up and the last run


def _configs(families):
    shapes = [(16, 16, 1), (24, 16, 1), (16, 16, 2)]
    methods = [("tc", 0.3), ("tc", 1000.0), ("l2c", None), ("both", 0.5)]
    for fam, (h, w, b), (meth, thr), seed in itertools.product(families, shapes, methods, (0, 1)):
        yield dict(fam=fam, h=h, w=w, batch=b, method=meth, thresh=thr, seed=seed)


def _patch(tiny, cfg, sched_name):
    p = tiny.patcher
    if cfg["method"] in ("l2c", "both"):
        p = l2c(p, sched_name)[0]
    if cfg["method"] in ("tc", "both"):
        p = teacache(p, cfg["thresh"])
    return p


def test_soak(tiny_models, tmp_path):
    psutil = pytest.importorskip("psutil", reason="psutil (a ComfyUI requirement) measures resident memory")
    families = ["flux", "wan21"]
    tinies = {f: tiny_models(f) for f in families}
    configs = list(_configs(families))
    proc = psutil.Process()
    with schedule_folder() as d:
        for f, t in tinies.items():
            ad = adapter_of(t.patcher)
            comp = torch.ones(STEPS, ad.n_blocks, 1, dtype=torch.bool)
            comp[1:STEPS - 1, ::2, 0] = False
            save_schedule(d, f"{f}.safetensors", comp, ad.name)
        # one patched model per (family, method, threshold), reused across runs like a long session
        patched = {}
        fresh = {}
        rss = []
        peaks = {}
        for i in range(RUNS):
            cfg = configs[i % len(configs)]
            tiny = tinies[cfg["fam"]]
            key = (cfg["fam"], cfg["method"], cfg["thresh"])
            if key not in patched:
                patched[key] = _patch(tiny, cfg, f"{cfg['fam']}.safetensors")
            m = patched[key]
            kw = dict(steps=STEPS, h=cfg["h"], w=cfg["w"], batch=cfg["batch"], seed=cfg["seed"])
            out = tm.sample(tiny, model=m, **kw)
            ckey = tuple(sorted(cfg.items()))
            if ckey not in fresh:  # a newly patched model, never used before
                fresh[ckey] = tm.sample(tiny, model=_patch(tiny, cfg, f"{cfg['fam']}.safetensors"), **kw)
            assert torch.equal(out, fresh[ckey]), (i, cfg)
            h = holder_of(m)
            assert h._active is None
            s = h.last_summary
            assert peaks.setdefault(ckey, s["peak_cache_bytes"]) == s["peak_cache_bytes"]
            gc.collect()
            rss.append(proc.memory_info().rss / 2**20)
    warm = len(configs)  # every configuration has been seen once
    growth = max(rss[warm:]) - rss[warm] if RUNS > warm else 0.0
    report = {"runs": RUNS, "configs": len(configs), "rss_start_mb": round(rss[0], 1),
              "rss_after_warmup_mb": round(rss[min(warm, RUNS - 1)], 1), "rss_end_mb": round(rss[-1], 1),
              "growth_after_warmup_mb": round(growth, 1)}
    out = os.environ.get("DITCACHE_SOAK_REPORT")
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=1)
    print("soak:", report)
    assert growth < RSS_BOUND_MB, report
