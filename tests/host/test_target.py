"""target_speedup (issue 16) on every family, through real ComfyUI samplers at cfg > 1: a run
computes its budget of ordinary evaluations per stream, within one, with `raw` and the family's
published (auto) coefficients, with euler and heun, and again on a second run at another
resolution; target 0 is today's node, bit for bit. Kept cheap: tiny models, one parametrised test
per family doing three runs on two patched models (each dimension covered once, not their product)."""
from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from helpers import holder_of, teacache

FAMILIES = tm.family_ids()
SINGLE = tm.single_model_ids()
STEPS = 20


def per_stream(model) -> dict:
    """{stream: (ordinary evaluations, computed)} of the model's last run."""
    out: dict = {}
    for r in holder_of(model).last_records:
        if r.kind:
            continue
        n, c = out.get(r.stream, (0, 0))
        out[r.stream] = (n + 1, c + (r.decision == "compute"))
    return out


def expected_evaluations(steps: int, sampler: str) -> int:
    return 2 * steps - 1 if sampler == "heun" else steps


@pytest.mark.parametrize("fam", FAMILIES)
def test_target_spends_its_budget(tiny_models, fam):
    tiny = tiny_models(fam)
    bases = tiny.experts or [tiny.patcher]
    two = tiny.experts
    runs = [  # (target, coefficients, [(sampler, h, w) of each run]): 79 evaluations in all
        (2.0, "raw", [("euler", 16, 16), ("heun", 16, 24)]),  # a second run, another size, heun: 2N - 1
        (3.0, "auto", [("euler", 16, 16)]),  # the family's published (or borrowed) coefficients
    ]
    for target, coefs, plan in runs:
        patched = [teacache(b, 0.4, coefs, target_speedup=target) for b in bases]
        for sampler, h, w in plan:
            out = tm.sample(tiny, steps=STEPS, sampler=sampler, h=h, w=w, cfg=2.5,
                            model=patched if two else patched[0])
            assert torch.isfinite(out).all()
            total = 0
            for p in patched:
                counts = per_stream(p)
                assert len(counts) >= 2, counts  # cond and uncond (cfg > 1)
                for stream, (n, c) in counts.items():
                    budget = max(1, round(n / target))
                    assert abs(c - budget) <= 1, (fam, target, coefs, sampler, h, w, stream, n, c, budget)
                total += next(iter(counts.values()))[0]
                s = holder_of(p).last_summary
                assert s["target_speedup"] == target and s["target_evaluations"] == next(iter(counts.values()))[0]
                assert any(n.startswith(f"target {target:g}x: computed") for n in s["notes"]), s["notes"]
            # the run evaluated what the plan expected (heun: 2N - 1, split runs too: the high-noise
            # half ends above sigma 0, so its last step evaluates twice, and the low-noise half once)
            assert total == expected_evaluations(STEPS, sampler), total


@pytest.mark.parametrize("fam", FAMILIES[:1] + [f for f in FAMILIES if f.startswith("wan22")][:1])
def test_target_off_is_bit_identical(tiny_models, fam):
    tiny = tiny_models(fam)
    bases = tiny.experts or [tiny.patcher]
    a = [teacache(b, 0.1, "raw") for b in bases]
    b = [teacache(b, 0.1, "raw", target_speedup=0.0) for b in bases]
    pick = (lambda m: m) if tiny.experts else (lambda m: m[0])
    assert torch.equal(tm.sample(tiny, steps=6, model=pick(a)), tm.sample(tiny, steps=6, model=pick(b)))
    assert holder_of(a[0]).last_summary["run_id"] == holder_of(b[0]).last_summary["run_id"]
    assert "target_speedup" not in holder_of(b[0]).last_summary


def test_l2c_target_reports_the_share(tiny_models):
    """L2C Schedule Loader at target 2: about half the layer work per run, said in its summary and
    in Cache Stats' notes; a target below 1 is refused with a working value."""
    from helpers import l2c, save_schedule, schedule_folder
    fam = SINGLE[0]
    tiny = tiny_models(fam)
    n = len(tm.block_modules(tiny.patcher.model.diffusion_model, tiny.family, tiny.variant))
    with schedule_folder() as d:
        save_schedule(d, "half.safetensors", torch.ones(6, n, 1, dtype=torch.bool), tiny.family)
        patched, text = l2c(tiny.patcher, "half.safetensors", target_speedup=2.0)
        assert "L2C target 2x: the schedule computes" in text
        tm.sample(tiny, steps=6, model=patched)
        s = holder_of(patched).last_summary
        assert any(x.startswith("L2C target 2x") for x in s["notes"])
        assert s["layers_reused"] > 0
        with pytest.raises(ValueError, match="try 2"):
            l2c(tiny.patcher, "half.safetensors", target_speedup=0.5)
