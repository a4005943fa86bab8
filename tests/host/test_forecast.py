"""Forecasting (``reuse`` taylor1/taylor2, ``compute_every``) through real ComfyUI on every
supported family: threshold 0 stays bit-identical to no node, a forecast really replaces the
reused residual at counted steps, L2C layers forecast, the mode shows in the run id and Cache
Stats, memory is counted, and bad values are refused."""
from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from helpers import adapter_of, count_block_runs, l2c, save_schedule, schedule_folder, summary, teacache
from pack import sub

FAMILIES = tm.family_ids()
STEPS = 6


def _models(tiny):
    return tiny.experts or [tiny.patcher]


def _sample(tiny, patched, steps=STEPS):
    return tm.sample(tiny, steps=steps, model=patched if tiny.experts else patched[0])


def _steps(tiny):
    """Sampling steps so that every sampling run has STEPS steps: the two experts of Wan 2.2 14B
    split the steps between two runs (two KSamplerAdvanced nodes)."""
    return 2 * STEPS if tiny.experts else STEPS


def _every2_reasons(n: int, k: int) -> dict:
    """Reasons of a run of n steps with compute_every=2, taylor1, k streams."""
    out: dict = {}
    for s in range(n):
        r = "first" if s == 0 else "last" if s == n - 1 else "interval" if s % 2 == 0 else \
            "reuse" if s == 1 else "forecast1"  # step 1 has one computed step behind it
        out[r] = out.get(r, 0) + k
    return out


@pytest.mark.parametrize("fam", FAMILIES)
@pytest.mark.parametrize("reuse,every", [("taylor1", 0), ("taylor2", 2)])
def test_threshold_zero_is_bit_identical_whatever_the_reuse(tiny_models, fam, reuse, every):
    tiny = tiny_models(fam)
    base = tm.sample(tiny, steps=STEPS)
    patched = [teacache(p, 0.0, reuse=reuse, compute_every=every) for p in _models(tiny)]
    assert torch.equal(_sample(tiny, patched), base)


@pytest.mark.parametrize("fam", FAMILIES)
def test_fixed_interval_forecast_counts_and_changes_the_output(tiny_models, fam):
    """compute_every=2 over 6 steps computes steps 0, 2, 4 and the last (5) of each sampling run;
    step 1 has one computed step behind it (its forecast is the cached residual), step 3 a
    first-order forecast. Cached and taylor1 run the blocks equally often, and the forecast
    changes the output."""
    tiny = tiny_models(fam)
    steps = _steps(tiny)
    models = _models(tiny)
    per_model = [tm.block_modules(m.model.diffusion_model, tiny.family, tiny.variant) for m in models]
    blocks = [b for bl in per_model for b in bl]
    outs, counts, sums = {}, {}, {}
    for reuse in ("cached", "taylor1"):
        patched = [teacache(p, 1000.0, reuse=reuse, compute_every=2) for p in models]
        with count_block_runs(blocks) as c:
            outs[reuse] = _sample(tiny, patched, steps)
        counts[reuse] = c
        sums[reuse] = [summary(p) for p in patched]
    assert torch.isfinite(outs["taylor1"]).all()
    assert not torch.equal(outs["taylor1"], outs["cached"])
    assert counts["taylor1"] == counts["cached"]
    for s_c, s_t in zip(sums["cached"], sums["taylor1"]):
        assert s_t["computed"] == s_c["computed"] and s_t["reused"] == s_c["reused"] > 0
        assert "taylor1" in s_t["run_id"] and "every2" in s_t["run_id"] and "taylor1" not in s_c["run_id"]
        k = len(s_t["streams"])
        assert s_t["steps"] == STEPS
        assert s_t["reasons"] == _every2_reasons(STEPS, k)
        assert s_c["reasons"] == {"first": k, "reuse": 2 * k, "interval": 2 * k, "last": k}


@pytest.mark.parametrize("fam", FAMILIES)
def test_l2c_forecast_all_compute_identical_and_sparse_forecast(tiny_models, fam):
    """Odd layers reuse from step 2 on: forecasts from steps 0 and 1. With two experts the
    high-noise one gets the schedule (its run has STEPS steps)."""
    tiny = tiny_models(fam)
    steps = _steps(tiny)
    model = tiny.patcher
    ad = adapter_of(model)
    n = ad.n_blocks
    base = tm.sample(tiny, steps=steps)
    sparse = torch.ones(STEPS, n, 1, dtype=torch.bool)
    sparse[2:STEPS - 1, 1::2, 0] = False  # odd layers compute at steps 0 and 1, then are forecast
    outs, counts = {}, {}
    with schedule_folder() as d:
        save_schedule(d, "all.safetensors", torch.ones(STEPS, n, 1, dtype=torch.bool), ad.name)
        save_schedule(d, "sparse.safetensors", sparse, ad.name)
        m_all, _ = l2c(model, "all.safetensors", reuse="taylor2")
        assert torch.equal(tm.sample(tiny, steps=steps, model=m_all), base)
        for reuse in ("cached", "taylor1"):
            m_sp, _ = l2c(model, "sparse.safetensors", reuse=reuse)
            with count_block_runs(tiny.block_modules()) as c:
                outs[reuse] = tm.sample(tiny, steps=steps, model=m_sp)
            counts[reuse] = c
            s = summary(m_sp)
            assert s["layers_reused"] == int((~sparse).sum()) * len(s["streams"])
    assert counts["taylor1"] == counts["cached"]
    assert torch.isfinite(outs["taylor1"]).all()
    assert not torch.equal(outs["taylor1"], outs["cached"])
    assert "taylor1" in s["run_id"] and "L2C taylor1 forecast" in s["reuse"]


def test_teacache_and_l2c_forecast_together_and_cache_stats_shows_the_mode(tiny_models):
    tiny = tiny_models("flux")
    n = adapter_of(tiny.patcher).n_blocks
    sched = torch.ones(STEPS, n, 1, dtype=torch.bool)
    sched[1:STEPS - 1, 1::2, 0] = False
    with schedule_folder() as d:
        save_schedule(d, "odd.safetensors", sched, adapter_of(tiny.patcher).name)
        m, _ = l2c(tiny.patcher, "odd.safetensors", reuse="taylor1")
        m = teacache(m, 1000.0, reuse="taylor2", compute_every=2)
        out = tm.sample(tiny, steps=STEPS, model=m)
    assert torch.isfinite(out).all()
    s = summary(m)
    assert "taylor2" in s["run_id"] and "taylor1" in s["run_id"]
    # steps 2 and 4 compute after a TeaCache forecast: their L2C layers forecast from older caches
    assert s["layers_reused"] > s["reused"] * n
    stats = sub("nodes.stats_node").CacheStats.execute(m, out)
    report = stats.args[1]
    assert "TeaCache taylor2 forecast" in report and "L2C taylor1 forecast" in report
    assert "forecast2" in report or "forecast1" in report
    assert stats.ui["dit_cache"][0]["reuse"] == s["reuse"]


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2s_ancestral"])
def test_two_evaluation_samplers_forecast(tiny_models, sampler):
    """Samplers that evaluate the model twice per step (the second at the next sigma, or between
    two sigmas) forecast along the fractional step coordinate; a sigma evaluated twice replaces
    its residual instead of dropping the older computed steps."""
    tiny = tiny_models("flux")
    outs, sums = {}, {}
    for reuse in ("cached", "taylor2"):
        m = teacache(tiny.patcher, 1000.0, reuse=reuse, compute_every=2)
        outs[reuse] = tm.sample(tiny, steps=8, model=m, sampler=sampler)
        sums[reuse] = summary(m)
    assert torch.isfinite(outs["taylor2"]).all() and not torch.equal(outs["taylor2"], outs["cached"])
    assert sums["taylor2"]["computed"] == sums["cached"]["computed"] < sums["cached"]["evaluations"]
    assert sums["taylor2"]["reasons"].get("forecast2", 0) > 0, sums["taylor2"]["reasons"]


def test_offload_forecast_counts_k_plus_1_residuals(tiny_models):
    tiny = tiny_models("flux")
    peaks, outs = {}, {}
    for reuse, dev in (("cached", "main"), ("taylor2", "main"), ("taylor2", "offload")):
        m = teacache(tiny.patcher, 1000.0, reuse=reuse, compute_every=2, device=dev)
        outs[(reuse, dev)] = tm.sample(tiny, steps=STEPS, model=m)
        peaks[(reuse, dev)] = summary(m)["peak_cache_bytes"]
    assert peaks[("taylor2", "main")] == peaks[("taylor2", "offload")] == 3 * peaks[("cached", "main")] > 0
    assert torch.equal(outs[("taylor2", "main")], outs[("taylor2", "offload")])


def test_bad_reuse_and_interval_are_refused(tiny_models):
    tiny = tiny_models("flux")
    with pytest.raises(ValueError, match="reuse must be one of cached, taylor1, taylor2"):
        teacache(tiny.patcher, 0.3, reuse="taylor3")
    with pytest.raises(ValueError, match="compute_every must be a whole number >= 0"):
        teacache(tiny.patcher, 0.3, compute_every=-2)
    with pytest.raises(ValueError, match="reuse must be one of"):
        sub("nodes.l2c_node").L2CScheduleLoader.execute(tiny.patcher, "none.safetensors", 0.1, reuse="quadratic")


def test_node_inputs_are_optional_with_backward_compatible_defaults(comfy):
    """Saved workflows and API prompts without the new inputs keep today's behaviour."""
    for cls, names in ((sub("nodes.teacache_node").TeaCachePatch, ("reuse", "compute_every")),
                       (sub("nodes.l2c_node").L2CScheduleLoader, ("reuse",))):
        schema = cls.define_schema()
        by_id = {i.id: i for i in schema.inputs}
        for name in names:
            assert by_id[name].optional, name
        assert by_id["reuse"].default == "cached"
        assert list(by_id["reuse"].options) == ["cached", "taylor1", "taylor2"]
