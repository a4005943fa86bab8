"""TeaCache Calibrate and L2C Learn Schedule on tiny real ComfyUI models (CPU, a few seconds)."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile

import pytest
import torch

import tiny_models as tm
from helpers import holder_of, l2c, schedule_folder
from pack import sub

STEPS = 8
SAMPLER, SCHED, CFG = "euler", "simple", 2.5


@contextlib.contextmanager
def profile_folder():
    """A temporary folder registered as ComfyUI's teacache_profiles model folder."""
    import folder_paths
    folders = sub("nodes.folders")
    folders.register()
    with tempfile.TemporaryDirectory() as d:
        old = folder_paths.folder_names_and_paths[folders.PROFILES]
        folder_paths.folder_names_and_paths[folders.PROFILES] = ([d], old[1])
        if hasattr(folder_paths, "filename_list_cache"):
            folder_paths.filename_list_cache.clear()
        try:
            yield d
        finally:
            folder_paths.folder_names_and_paths[folders.PROFILES] = old


def _default_folder(kind):
    import folder_paths
    return os.path.join(folder_paths.models_dir, kind)


def _listing(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def psnr(a, b):
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    rng = (b.max() - b.min()).item()
    return 10 * torch.log10(torch.tensor(rng * rng / max(mse, 1e-20))).item()


def test_calibrated_profile_beats_published_on_held_out_run(tiny_models):
    ln = sub("nodes.learn_nodes")
    calib = sub("cache_core.calibrate")
    coeffs = sub("cache_core.coefficients")
    folders = sub("nodes.folders")
    tiny = tiny_models("flux")
    adapter = sub("nodes.adapters").detect(tiny.patcher)
    latent = {"samples": tiny.latent()}
    default_before = _listing(_default_folder(folders.PROFILES))
    with profile_folder() as d:
        out = ln.TeaCacheCalibrate.execute(tiny.patcher, tiny.positive(), tiny.negative(), latent, 0, 2, STEPS,
                                           SAMPLER, SCHED, CFG, "tiny_flux").args
        model, report, plot = out
        assert _listing(d) == ["tiny_flux.json"]  # nothing else, no temporary leftovers
        doc = json.load(open(os.path.join(d, "tiny_flux.json")))
        for k in ("family", "model_sha256", "steps", "sampler", "scheduler", "coefficients", "input_range",
                  "fit_rmse", "fit_rel_error"):
            assert k in doc, k
        assert doc["family"] == "flux" and doc["steps"] == STEPS and doc["sampler"] == SAMPLER
        assert len(doc["model_sha256"]) == 64
        # TeaCache Patch reads it back, for this family only
        prof = sub("nodes.profiles").load_saved("tiny_flux.json", adapter)
        assert list(prof.coefficients) == pytest.approx(doc["coefficients"])
        h = holder_of(model)
        assert h.teacache.coefficients.coefficients == pytest.approx(tuple(doc["coefficients"]))
        assert h.teacache.rel_l1_thresh == adapter.recommended_threshold
        assert "tiny_flux.json" in report
        assert plot.ndim == 4 and plot.shape[0] == 1 and plot.shape[-1] == 3
    assert _listing(_default_folder(folders.PROFILES)) == default_before
    # held-out run: another seed
    held = ln.record_pairs(tiny.patcher, adapter, tiny.positive(), tiny.negative(), latent, [7], STEPS,
                           SAMPLER, SCHED, CFG).changes
    assert len(held) == 2 * (STEPS - 1)
    mine = calib.prediction_error(prof, held.xs, held.ys)
    flux = calib.prediction_error(coeffs.get_profile("flux"), held.xs, held.ys)
    print(f"held-out RMSE: calibrated {mine['rmse']:.4f}, published flux {flux['rmse']:.4f}")
    assert mine["rmse"] < flux["rmse"]
    # the patched model samples
    assert torch.isfinite(tm.sample(tiny, steps=STEPS, model=model)).all()


def test_learned_schedule_beats_random_schedule(tiny_models):
    ln = sub("nodes.learn_nodes")
    L2CSchedule = sub("cache_core.l2c").L2CSchedule
    folders = sub("nodes.folders")
    tiny = tiny_models("flux")
    latent = {"samples": tiny.latent()}
    default_before = _listing(_default_folder(folders.SCHEDULES))
    with schedule_folder() as d:
        model, report, heat = ln.L2CLearnSchedule.execute(
            tiny.patcher, tiny.positive(), tiny.negative(), latent, 0, STEPS, SAMPLER, SCHED, CFG,
            0.06, 0.5, 20, "tiny_flux_l2c").args
        assert _listing(d) == ["tiny_flux_l2c.safetensors"]
        sched = L2CSchedule.load(os.path.join(d, "tiny_flux_l2c.safetensors"))
        assert sched.family == "flux" and sched.branches == ("block",) and sched.steps == STEPS
        # the loader node accepts it for this model
        loaded, summary = l2c(tiny.patcher, "tiny_flux_l2c.safetensors")
        assert "flux" in summary
        assert heat.ndim == 4 and heat.shape[-1] == 3
        assert "tiny_flux_l2c.safetensors" in report
    assert _listing(_default_folder(folders.SCHEDULES)) == default_before
    compute = sched.compute[:, :, 0]
    cells = [(s, b) for s in sched.cache_steps for b in range(sched.layers)]
    reused = int(sum(1 for s, b in cells if not compute[s, b]))
    assert 0 < reused < len(cells), report
    seeds = [11, 12, 13]
    full = [tm.sample(tiny, steps=STEPS, seed=s) for s in seeds]
    learned = sum(psnr(tm.sample(tiny, steps=STEPS, seed=s, model=model), f) for s, f in zip(seeds, full)) / 3
    g = torch.Generator().manual_seed(0)
    rand_scores = []
    for _ in range(3):
        c = torch.ones_like(sched.compute)
        for i in torch.randperm(len(cells), generator=g)[:reused].tolist():
            s, b = cells[i]
            c[s, b, 0] = False
        rs = L2CSchedule(c, ("block",), "flux", cache_steps=sched.cache_steps)
        rm, _ = sub("nodes.runtime").patch_model(tiny.patcher, lambda m: sub("nodes.adapters").detect(m), l2c=rs)
        rand_scores.append(sum(psnr(tm.sample(tiny, steps=STEPS, seed=s, model=rm), f)
                               for s, f in zip(seeds, full)) / 3)
    rand = sum(rand_scores) / len(rand_scores)
    print(f"reused {reused}/{len(cells)} blocks; PSNR learned {learned:.2f} dB, random {rand:.2f} dB "
          f"({', '.join(f'{r:.2f}' for r in rand_scores)})")
    assert learned > rand


def test_learn_refuses_bad_settings_and_names(tiny_models):
    ln = sub("nodes.learn_nodes")
    tiny = tiny_models("flux")
    latent = {"samples": tiny.latent()}
    with schedule_folder() as d:
        with pytest.raises(ValueError, match="theta"):
            ln.L2CLearnSchedule.execute(tiny.patcher, tiny.positive(), tiny.negative(), latent, 0, STEPS,
                                        SAMPLER, SCHED, CFG, 0.03, 1.5, 1, "x")
        with pytest.raises(ValueError, match="plain file name"):
            ln.L2CLearnSchedule.execute(tiny.patcher, tiny.positive(), tiny.negative(), latent, 0, STEPS,
                                        SAMPLER, SCHED, CFG, 0.03, 0.5, 1, "../evil")
        assert _listing(d) == []


def test_atomic_save_leaves_nothing_on_failure(comfy):
    ln = sub("nodes.learn_nodes")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.safetensors")

        def boom(tmp):
            open(tmp, "wb").write(b"partial")
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            ln.atomic_write(path, boom)
        assert os.listdir(d) == []
        ln.atomic_write(path, lambda tmp: open(tmp, "wb").write(b"ok"))
        assert os.listdir(d) == ["s.safetensors"]


def test_nodes_registered_with_tooltips(comfy):
    ln = sub("nodes.learn_nodes")
    nodes = ln.extra_nodes()
    ids = {n.define_schema().node_id for n in nodes}
    assert ids == {"DitCache_TeaCacheCalibrate", "DitCache_L2CLearnSchedule"}
    for n in nodes:
        for inp in n.define_schema().inputs:
            assert inp.tooltip, (n.__name__, inp.id)
