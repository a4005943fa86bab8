"""Samplers that add noise at every step (issue 11, part 4).

With ancestral and SDE samplers the injected noise makes TeaCache's indicator change a lot at
every step, so little is reused; Cache Stats' "why nothing was reused" names the sampler when that
is the case. (Measured skip counts per sampler on the reference model: README, Troubleshooting,
from ``bench/sampler_noise.py``.)
"""
from __future__ import annotations

import pytest

import tiny_models as tm
from helpers import holder_of, summary, teacache
from pack import sub

STEPS = 10


@pytest.fixture(scope="module")
def flux(tiny_models):
    return tiny_models("flux")


def noise_mod():
    return sub("nodes.sampler_noise")


@pytest.mark.parametrize("name,options,noisy", [
    ("euler", None, False), ("dpmpp_2m", None, False), ("heun", None, False), ("dpm_fast", None, False),
    ("euler_ancestral", None, True), ("dpmpp_2m_sde_gpu", None, True), ("er_sde", None, True),
    ("lcm", None, True), ("ddpm", {"eta": 0.0}, True), ("sa_solver", None, True),
    ("euler_ancestral", {"eta": 0.0, "s_noise": 1.0}, False), ("dpmpp_sde", {"eta": 1.0, "s_noise": 0.0}, False),
])
def test_which_samplers_add_noise(comfy, name, options, noisy):
    import comfy.samplers
    sampler = comfy.samplers.ksampler(name, options or {})
    got_name, got_noisy = noise_mod().describe_sampler(sampler)
    assert got_noisy is noisy
    if name != "dpm_fast":  # ComfyUI wraps that one in a closure of its own name
        assert got_name == name


def _changes(model):
    recs = holder_of(model).last_records
    first = recs[0].stream
    return [r.rel_l1 for r in recs if r.stream == first and r.rel_l1 is not None]


def test_nothing_reused_names_the_noisy_sampler(flux):
    """dpmpp_2m_sde on the tiny Flux: a threshold just under its smallest change between steps
    reuses nothing, and the report says the sampler's noise is why; euler, at the same threshold
    and with the same model and seed, reuses."""
    probe = teacache(flux.patcher, 1e-9)
    tm.sample(flux, steps=STEPS, sampler="dpmpp_2m_sde", model=probe)
    thresh = 0.9 * min(_changes(probe)[:-1])  # the last step computes anyway
    m = teacache(flux.patcher, thresh)
    tm.sample(flux, steps=STEPS, sampler="dpmpp_2m_sde", model=m)
    s = summary(m)
    assert s["reused"] == 0
    why = [n for n in s["notes"] if n.startswith("no reuse")]
    assert len(why) == 1 and "the sampler dpmpp_2m_sde adds fresh noise at every step" in why[0], why
    assert "deterministic sampler" in why[0]
    e = teacache(flux.patcher, thresh)
    tm.sample(flux, steps=STEPS, sampler="euler", model=e)
    assert summary(e)["reused"] > 0
    assert not any("sampler" in n for n in summary(e)["notes"])


def test_deterministic_sampler_is_not_blamed(flux):
    """euler reusing nothing (a tiny threshold) gets the threshold explanation, not the sampler."""
    m = teacache(flux.patcher, 1e-6)
    tm.sample(flux, steps=STEPS, sampler="euler", model=m)
    why = [n for n in summary(m)["notes"] if n.startswith("no reuse")]
    assert why and "sampler" not in why[0] and "raise rel_l1_thresh" in why[0]


def test_noisy_sampler_note_when_some_steps_reuse(flux):
    m = teacache(flux.patcher, 1000.0)
    tm.sample(flux, steps=STEPS, sampler="euler_ancestral", model=m)
    s = summary(m)
    assert s["reused"] > 0
    assert any("the sampler euler_ancestral adds noise at every step" in n for n in s["notes"])
    assert "euler_ancestral adds noise" in holder_of(m).last_report
