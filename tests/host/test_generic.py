"""The generic route on the DiTs no family adapter knows (tiny models in ``tiny_generic.py``; the
family tests of ``test_families.py`` run on them too): which stack it finds and how it hooks it,
what Cache Stats and the run id say, and the refusals when a first-run check fails."""
from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from helpers import adapter_of, holder_of, summary, teacache
from pack import sub

GENERIC = [f for f in tm.family_ids() if (f.split(":")[0], None) in tm.GENERIC_SPECS
           or tuple(f.split(":")) in tm.GENERIC_SPECS]
# family -> (hooked stack, patches_replace kind or None for an object patch on each block's forward, streams)
ROUTES = {
    "aura_flow": ("single_layers", "single_block", ("img",)),
    "pixart:alpha": ("blocks", None, ("x",)),
    "pixart:sigma": ("blocks", None, ("x",)),
    "hunyuan_dit": ("blocks", "double_block", ("img",)),
    "mochi": ("blocks", "double_block", ("img", "txt")),
    "cogvideox": ("blocks", None, ("hidden_states", "encoder_hidden_states")),
    "wan_causal_ar": ("blocks", "double_block", ("img",)),
    "omnigen2": ("layers", None, ("hidden_states",)),
    "hidream_o1": ("language_model.layers", "double_block", ("x",)),
}


@pytest.mark.parametrize("fam", GENERIC)
def test_generic_route_finds_the_stack_and_says_generic(tiny_models, fam):
    """The stack is the family's main block list, hooked the way its forward allows; the run id and
    Cache Stats say "generic", and ``auto`` settings are raw coefficients at the route's threshold."""
    tiny = tiny_models(fam)
    ad = adapter_of(tiny.patcher)
    assert (ad.name, ad.stack.path, ad.stack.kind, ad.stack.streams) == ("generic",) + ROUTES[fam]
    m = teacache(tiny.patcher, -1.0, coefficients="auto")
    h = holder_of(m)
    assert (h.teacache.coefficients.name, h.teacache.rel_l1_thresh) == ("raw", ad.recommended_threshold)
    tm.sample(tiny, steps=4, model=m)
    s = summary(m)
    assert s["run_id"].startswith("generic") and "TC(" in s["run_id"], s["run_id"]
    assert any(n.startswith(f"generic route: {len(ad.stack.blocks)} blocks of {ad.stack.path}") for n in s["notes"])


def test_a_reuse_that_does_not_reproduce_the_output_is_refused(tiny_models):
    """Where restoring the residual does not give back the computed output (here: the restored
    stream is dropped, as if the blocks carried state the route cannot see), the first run stops
    with a message that says so instead of sampling a wrong image."""
    tiny = tiny_models("mochi")
    m = teacache(tiny.patcher, 0.1)
    hooks = holder_of(m).hooks
    hooks.final_outputs = lambda index, inputs, final: {k: inputs[k] for k in hooks.stack.streams}
    with pytest.raises(sub("nodes.adapters.generic").GenericRouteError,
                       match="failed the first-run check: reusing the cached residual of its block stack blocks"):
        tm.sample(tiny, steps=4, model=m)


def test_a_stack_whose_output_changes_shape_is_refused(tiny_models):
    tiny = tiny_models("aura_flow")
    m = teacache(tiny.patcher, 0.1)
    hooks = holder_of(m).hooks
    stack_input = hooks.stack_input
    hooks.stack_input = lambda inputs: tuple(t[:, 1:] for t in stack_input(inputs))  # one token fewer
    with pytest.raises(sub("nodes.adapters.generic").GenericRouteError,
                       match="needs a stack whose input and output have the same shape"):
        tm.sample(tiny, steps=4, model=m)


def test_threshold_zero_runs_no_check_and_l2c_alone_works(tiny_models):
    """Caching off: no extra evaluation, output bit-identical (the family test); L2C alone (no
    residual to check) reuses layers through the generic hooks."""
    tiny = tiny_models("hunyuan_dit")
    m = teacache(tiny.patcher, 0.0)
    base = tm.sample(tiny, steps=4)
    assert torch.equal(tm.sample(tiny, steps=4, model=m), base)
    assert not any("checked" in n for n in summary(m)["notes"])


if ("seedvr2", None) in tm.REFUSED:  # ComfyUI has SeedVR2 from 0.29.0
    def test_seedvr2_3b_is_refused_at_the_first_run(tiny_models):
        """SeedVR2 3B's output layer (``vid_out_ada``) takes its modulation from the forward's own
        memo (``Cache``) under the key the blocks' first ada layer fills: with every block reused
        nothing fills it, and the output layer builds one of twice the width and fails. The tiny
        model samples uncached; the generic route stops at its first-run check and says why."""
        tiny = tiny_models("seedvr2")
        ad = adapter_of(tiny.patcher)
        assert (ad.name, ad.stack.path, ad.stack.kind, ad.stack.streams) == (
            "generic", "blocks", "block", ("vid", "txt", "vid_shape", "txt_shape"))
        assert torch.isfinite(tm.sample(tiny, steps=4)).all()
        m = teacache(tiny.patcher, 0.1)
        with pytest.raises(sub("nodes.adapters.generic").GenericRouteError,
                           match=r"with every block of its stack blocks reused from the cached residual, its forward "
                                 r"failed \(RuntimeError: The size of tensor a \(64\) must match"):
            tm.sample(tiny, steps=4, model=m)
