"""Guidance nodes that evaluate the model again inside a sampler step (issue 11, part 1).

Skip Layer Guidance, Perturbed-Attention Guidance and nodes like them evaluate a cond a second
time at the same sigma with other block patches; Self-Attention-Guidance-style nodes with another
input. Such a pass must neither read nor write the cache state of the cond it shares a uuid with:
it gets a stream of its own (``g1:<uuid>``) or, repeated within one sampler call, runs uncached.
The first two tests are the failing setup of the issue as written.
"""
from __future__ import annotations

import pytest
import torch

import issue_models as im
import tiny_models as tm
from helpers import holder_of, summary, teacache
from pack import sub

STEPS = 8
SETUP = dict(steps=STEPS, cfg=4.0, sampler="euler", scheduler="simple", seed=42)  # latent 1x16x16x16


@pytest.fixture(scope="module")
def flux(comfy):
    return im.flux_2x4()


@pytest.fixture(scope="module")
def sd3(comfy):
    return im.sd3_3()


def slg_dit(model, double="1", single="", scale=3.0, start=0.0, end=1.0):
    from comfy_extras.nodes_slg import SkipLayerGuidanceDiT
    return SkipLayerGuidanceDiT.execute(model, scale=scale, start_percent=start, end_percent=end,
                                        double_layers=double, single_layers=single).args[0]


def capturing(model):
    """A clone whose every model evaluation is recorded (sigma, cond_or_uncond, output) through an
    APPLY_MODEL wrapper, ComfyUI's own mechanism."""
    import comfy.patcher_extension
    m = model.clone()
    seen = []

    def wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kw):
        out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kw)
        seen.append(dict(sigma=float(t.flatten()[0]), cou=list(transformer_options["cond_or_uncond"]),
                         x=x.detach().clone(), out=out.detach().clone()))
        return out

    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test_capture", wrapper)
    return m, seen


def by_step(seen):
    """[(ordinary pass, [later passes at the same sigma])] per sampler step."""
    steps = []
    for e in seen:
        if steps and steps[-1][0]["sigma"] == e["sigma"]:
            steps[-1][1].append(e)
        else:
            steps.append((e, []))
    return steps


def cond_out(e):
    return e["out"].chunk(len(e["cou"]))[e["cou"].index(0)]


def decisions(model, stream_filter=lambda r: not r.kind):
    """Per ordinary stream, the run's decisions as a string: C computed, r reused."""
    out: dict = {}
    for r in holder_of(model).last_records:
        if stream_filter(r):
            out.setdefault(r.stream, []).append("C" if r.decision == "compute" else "r")
    return sorted("".join(v) for v in out.values())


def extra_pass(model, options=lambda mo: mo, cond="cond", shift=0.0, keep=None):
    """A clone with a post-CFG function that evaluates ``cond`` once more at the same sigma, with
    ``options(model_options)`` and input ``x + shift``, and throws the result away (or hands it
    to ``keep``)."""
    import comfy.samplers

    def post_cfg(args):
        x = args["input"] + shift
        (out,) = comfy.samplers.calc_cond_batch(args["model"], [args[cond]], x, args["sigma"],
                                                options(args["model_options"].copy()))
        if keep is not None:
            keep(args, x, out)
        return args["denoised"]

    m = model.clone()
    m.set_model_sampler_post_cfg_function(post_cfg)
    return m


def skip_block(block="double_block", index=1):
    import comfy.model_patcher

    def options(mo):
        return comfy.model_patcher.set_model_options_patch_replace(mo, lambda a, e: a, "dit", block, index)
    return options


# --------------------------------------------------------------------------
# the setup of the issue, as written
# --------------------------------------------------------------------------


def test_slg_pass_never_takes_the_conds_cache(flux):
    """Flux (hidden 128, 2 double + 4 single) -> TeaCache 10 -> SkipLayerGuidanceDiT (double "1",
    scale 3, 0..1) -> euler/simple, 8 steps, cfg 4, seed 42. Before: the SLG pass reused the
    cond's result at 7 of 8 steps, so the guidance did nothing."""
    m, seen = capturing(slg_dit(teacache(flux.patcher, 10.0)))
    out = tm.sample(flux, model=m, **SETUP)
    steps = by_step(seen)
    assert len(steps) == STEPS and all(len(extra) == 1 for _, extra in steps)
    same = [torch.equal(extra[0]["out"], cond_out(ordinary)) for ordinary, extra in steps]
    assert not any(same), same
    s = summary(m)
    assert s["guidance_passes"] == STEPS and s["guidance_computed"] == 2  # its own first and last step
    assert s["evaluations"] == 2 * STEPS and s["computed"] == 4           # cond, uncond: first and last
    assert any("guidance pass g1: dit double_block 1 replaced" in n for n in s["notes"])
    assert "guidance passes: 8, computed 2" in holder_of(m).last_report
    assert torch.isfinite(out).all()
    assert not torch.equal(out, tm.sample(flux, model=teacache(flux.patcher, 10.0), **SETUP))


def test_slg_pass_leaves_the_conds_decisions_alone(flux):
    """Same setup at threshold 0.8: the cond and uncond decide as without the SLG node, and a graph
    that runs the same extra call and throws its result away gives the image without it."""
    plain = teacache(flux.patcher, 0.8)
    ref = tm.sample(flux, model=plain, **SETUP)
    ref_decisions = decisions(plain)
    assert any("r" in d for d in ref_decisions), "the threshold must reuse some steps"
    slg = slg_dit(teacache(flux.patcher, 0.8))
    tm.sample(flux, model=slg, **SETUP)
    assert decisions(slg) == ref_decisions
    for options in (skip_block(), lambda mo: mo):  # another patch set; the very same options
        m = extra_pass(teacache(flux.patcher, 0.8), options)
        assert torch.equal(tm.sample(flux, model=m, **SETUP), ref)
        assert decisions(m) == ref_decisions


def test_threshold_zero_with_slg_is_bit_identical(flux):
    ref = tm.sample(flux, model=slg_dit(flux.patcher), **SETUP)
    assert torch.equal(tm.sample(flux, model=slg_dit(teacache(flux.patcher, 0.0)), **SETUP), ref)


def test_slg_pass_computes_what_the_plain_model_computes(flux):
    """At the first step (same input in both runs) the SLG pass, computed in its own stream, equals
    the plain model's SLG pass bit for bit."""
    plain, seen_plain = capturing(slg_dit(flux.patcher))
    tm.sample(flux, model=plain, **SETUP)
    cached, seen_cached = capturing(slg_dit(teacache(flux.patcher, 10.0)))
    tm.sample(flux, model=cached, **SETUP)
    (_, [a]), (_, [b]) = by_step(seen_plain)[0], by_step(seen_cached)[0]
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["out"], b["out"])


def test_sd3_slg_pass_never_takes_the_conds_cache(sd3):
    """A tiny SD3 with 3 joint blocks and SkipLayerGuidanceSD3 (layers "1") shows the same."""
    from comfy_extras.nodes_sd3 import SkipLayerGuidanceSD3
    assert len(sd3.diffusion_model.joint_blocks) == 3
    m, seen = capturing(SkipLayerGuidanceSD3.execute(teacache(sd3.patcher, 10.0), layers="1", scale=3.0,
                                                     start_percent=0.0, end_percent=1.0).args[0])
    tm.sample(sd3, model=m, **SETUP)
    steps = by_step(seen)
    assert len(steps) == STEPS and all(len(extra) == 1 for _, extra in steps)
    assert not any(torch.equal(extra[0]["out"], cond_out(o)) for o, extra in steps)
    assert summary(m)["guidance_passes"] == STEPS
    plain = teacache(sd3.patcher, 0.8)
    ref = tm.sample(sd3, model=plain, **SETUP)
    m = extra_pass(teacache(sd3.patcher, 0.8), skip_block("double_block", 1))
    assert torch.equal(tm.sample(sd3, model=m, **SETUP), ref)
    assert decisions(m) == decisions(plain)


# --------------------------------------------------------------------------
# the other kinds of extra pass
# --------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [dict(double="0"), dict(double="", single="3")], ids=["first", "last"])
def test_pass_that_replaces_the_first_or_last_block_runs_uncached(flux, layers):
    """The decision is made at the first hooked block and the residual restored at the last: a pass
    that replaces either cannot be cached, so it computes every time, as the plain model does."""
    m, seen = capturing(slg_dit(teacache(flux.patcher, 10.0), **layers))
    out = tm.sample(flux, model=m, **SETUP)
    s = summary(m)
    assert s["guidance_passes"] == s["guidance_computed"] == STEPS
    assert {r.reason for r in holder_of(m).last_records if r.kind} == {"uncached"}
    assert torch.isfinite(out).all()
    plain, seen_plain = capturing(slg_dit(flux.patcher, **layers))
    tm.sample(flux, model=plain, **SETUP)
    assert torch.equal(by_step(seen)[0][1][0]["out"], by_step(seen_plain)[0][1][0]["out"])


def test_repeat_with_the_same_patches_runs_uncached(flux):
    """Self-Attention-Guidance style: the uncond again, same patches, another input. It must not
    be taken for the uncond's next evaluation: it runs uncached and equals the plain model."""
    import comfy.samplers
    got = []

    def keep(args, x, out):
        (plain,) = comfy.samplers.calc_cond_batch(args["model"], [args["uncond"]], x, args["sigma"], {})
        got.append((out, plain))

    ref_model = teacache(flux.patcher, 0.8)
    ref = tm.sample(flux, model=ref_model, **SETUP)
    m = extra_pass(teacache(flux.patcher, 0.8), cond="uncond", shift=0.05, keep=keep)
    assert torch.equal(tm.sample(flux, model=m, **SETUP), ref)
    assert len(got) == STEPS and all(torch.equal(a, b) for a, b in got)
    assert decisions(m) == decisions(ref_model)
    recs = [r for r in holder_of(m).last_records if r.kind]
    assert len(recs) == STEPS and {(r.kind, r.reason, r.decision) for r in recs} == {("#2", "uncached", "compute")}


def test_slg_simple_uncond_keeps_its_own_state(flux):
    """SkipLayerGuidanceDiTSimple evaluates the uncond with skipped blocks inside its window: that
    stream starts fresh in the window instead of reusing the uncond's residual from before it."""
    from comfy_extras.nodes_slg import SkipLayerGuidanceDiTSimple

    def simple(model):
        return SkipLayerGuidanceDiTSimple.execute(model, start_percent=0.3, end_percent=0.7, double_layers="1",
                                                  single_layers="").args[0]
    assert torch.equal(tm.sample(flux, model=simple(teacache(flux.patcher, 0.0)), **SETUP),
                       tm.sample(flux, model=simple(flux.patcher), **SETUP))
    m = simple(teacache(flux.patcher, 10.0))
    tm.sample(flux, model=m, **SETUP)
    g = [r for r in holder_of(m).last_records if r.kind]
    assert 0 < len(g) < STEPS
    assert g[0].reason == "first" and g[0].decision == "compute"
    assert all(r.kind == "g1" and r.stream.startswith("g1:") for r in g)


def test_pag_pass_has_its_own_stream(flux):
    """Perturbed-Attention Guidance replaces an attention ("attn1" patch) in an extra cond pass."""
    from comfy_extras.nodes_pag import PerturbedAttentionGuidance
    plain = teacache(flux.patcher, 0.8)
    tm.sample(flux, model=plain, **SETUP)
    m = PerturbedAttentionGuidance.execute(teacache(flux.patcher, 0.8), scale=3.0).args[0]
    tm.sample(flux, model=m, **SETUP)
    s = summary(m)
    assert s["guidance_passes"] == STEPS
    assert decisions(m) == decisions(plain)
    assert any("attn1 middle 0 replaced" in n for n in s["notes"])
    zero = PerturbedAttentionGuidance.execute(teacache(flux.patcher, 0.0), scale=3.0).args[0]
    assert torch.equal(tm.sample(flux, model=zero, **SETUP),
                       tm.sample(flux, model=PerturbedAttentionGuidance.execute(flux.patcher, scale=3.0).args[0],
                                 **SETUP))


def _guider_sample(guider, tiny, steps=STEPS, seed=42):
    import comfy.sample
    import comfy.samplers
    lat = tiny.latent()
    noise = comfy.sample.prepare_noise(lat, seed)
    sigmas = comfy.samplers.calculate_sigmas(tiny.patcher.get_model_object("model_sampling"), "simple", steps)
    return guider.sample(noise, lat, comfy.samplers.sampler_object("euler"), sigmas, seed=seed, disable_pbar=True)


@pytest.mark.parametrize("kind", ["PerpNegGuider", "DualCFGGuider"])
def test_guiders_with_more_conds_cache_each_cond(flux, kind):
    """Guiders that evaluate three conds in their ordinary pass: three streams, no guidance pass."""
    empty = [[torch.zeros_like(flux.negative()[0][0]), dict(flux.negative()[0][1])]]

    def guider(model):
        if kind == "PerpNegGuider":
            from comfy_extras.nodes_perpneg import PerpNegGuider
            return PerpNegGuider.execute(model, flux.positive(), flux.negative(), empty, 4.0, 1.0).args[0]
        from comfy_extras.nodes_custom_sampler import Guider_DualCFG  # what the DualCFGGuider node builds
        g = Guider_DualCFG(model)
        g.set_conds(flux.positive(), empty, flux.negative())
        g.set_cfg(4.0, 2.0)
        return g

    ref = _guider_sample(guider(flux.patcher), flux)
    assert torch.equal(_guider_sample(guider(teacache(flux.patcher, 0.0)), flux), ref)
    m = teacache(flux.patcher, 0.8)
    out = _guider_sample(guider(m), flux)
    s = summary(m)
    assert len(s["streams"]) == 3 and s["evaluations"] == 3 * STEPS and s["guidance_passes"] == 0
    assert 0 < s["reused"] and torch.isfinite(out).all()


@pytest.mark.parametrize("node", ["APG", "CFGZeroStar", "TCFG", "Mahiro"])
def test_guidance_that_only_combines_outputs_adds_no_pass(flux, node):
    from comfy_extras import nodes_apg, nodes_cfg, nodes_mahiro, nodes_tcfg
    apply = {"APG": lambda m: nodes_apg.APG.execute(m, 2.0, 5.0, -0.5),
             "CFGZeroStar": lambda m: nodes_cfg.CFGZeroStar.execute(m),
             "TCFG": lambda m: nodes_tcfg.TCFG.execute(m),
             "Mahiro": lambda m: nodes_mahiro.Mahiro.execute(m)}[node]
    first = lambda out: out.args[0] if hasattr(out, "args") else out[0]  # noqa: E731
    ref = tm.sample(flux, model=first(apply(flux.patcher)), **SETUP)
    assert torch.equal(tm.sample(flux, model=first(apply(teacache(flux.patcher, 0.0))), **SETUP), ref)
    m = teacache(flux.patcher, 0.8)
    tm.sample(flux, model=first(apply(m)), **SETUP)
    assert summary(m)["guidance_passes"] == 0 and summary(m)["evaluations"] == 2 * STEPS


# --------------------------------------------------------------------------
# the classification itself
# --------------------------------------------------------------------------


def test_pass_classifier_on_hand_made_options(flux):
    passes = sub("nodes.passes")
    ours, theirs = object(), object()
    ordinary = {"patches_replace": {"dit": {("double_block", 0): ours, ("double_block", 1): ours}}}
    slg = {"patches_replace": {"dit": {("double_block", 0): ours, ("double_block", 1): theirs}}}
    pag = dict(ordinary, patches_replace=dict(ordinary["patches_replace"], attn1={("middle", 0): theirs}))
    c = passes.PassClassifier()
    assert c.classify(["a"], ordinary).streams == ["a"]  # outside a sampler call: as before
    prev = c.begin_call(ordinary)
    k = c.classify(["c", "u"], ordinary)
    assert (k.streams, k.guidance, k.cached) == (["c", "u"], "", True)
    k = c.classify(["c"], slg)
    assert (k.streams, k.guidance, k.cached) == (["g1:c"], "g1", True)
    assert passes.describe(k.difference) == "dit double_block 1 replaced"
    assert c.classify(["c"], pag).guidance == "g2"
    k = c.classify(["u"], ordinary)  # the uncond again in the same call
    assert (k.streams, k.guidance, k.cached) == (["#2:u"], "#2", False)
    k = c.classify(["c"], slg, stack_intact=lambda d: False)
    assert (k.guidance, k.cached) == ("g1#2", False)
    c.end_call(prev)
    c.begin_call(ordinary)  # the next step: the same difference keeps its id
    k = c.classify(["c"], slg, stack_intact=lambda d: False)
    assert (k.streams, k.guidance, k.cached) == (["g1:c"], "g1", False)
    adapter = sub("nodes.adapters").detect(flux.patcher)
    first, last = adapter.block_keys()[0], adapter.block_keys()[-1]
    assert not adapter.stack_intact((("replace", "dit", first),))
    assert not adapter.stack_intact((("replace", "dit", last),))
    assert adapter.stack_intact((("replace", "dit", ("double_block", 1)), ("replace", "attn1", ("middle", 0))))


def test_context_windows_after_the_first_run_uncached(tiny_models):
    """ComfyUI's context windows (tiny Wan 2.1, 4 latent frames, windows of 2) evaluate each cond
    once per window within one sampler step: the first window keeps the cond's stream, the other
    runs uncached (it never takes the first window's cache)."""
    import inspect
    from comfy_extras.nodes_context_windows import ContextWindowsManualNode as ContextWindowsManual
    wan = tiny_models("wan21")

    def windows(model):
        kw = dict(context_length=2, context_overlap=0, context_schedule="standard_static", context_stride=1,
                  closed_loop=False, fuse_method="pyramid", dim=2)
        if "freenoise" in inspect.signature(ContextWindowsManual.execute).parameters:
            kw["freenoise"] = False
        return ContextWindowsManual.execute(model, **kw).args[0]

    run = dict(SETUP, frames=4)
    ref = tm.sample(wan, model=windows(wan.patcher), **run)
    assert torch.equal(tm.sample(wan, model=windows(teacache(wan.patcher, 0.0)), **run), ref)
    m = teacache(wan.patcher, 10.0)
    out = tm.sample(wan, model=windows(m), **run)
    recs = holder_of(m).last_records
    first, later = [r for r in recs if not r.kind], [r for r in recs if r.kind]
    assert len(first) == len(later) == 2 * STEPS  # cond and uncond, per window
    assert {(r.kind, r.reason) for r in later} == {("#2", "uncached")}
    assert sum(r.decision == "reuse" for r in first) == 2 * (STEPS - 2)
    assert torch.isfinite(out).all()
