"""Compatibility with other ComfyUI features that touch the same forward: a Flux ControlNet and
ComfyUI's low-VRAM (partial / per-layer cast) weight loading.

ControlNet
----------
A tiny random-weight ControlNet of ComfyUI's real class (``comfy.ldm.flux.controlnet.ControlNetFlux``,
XLabs layout: double blocks, ``controlnet_blocks``, ``pos_embed_input``, ``input_hint_block``) is
loaded by ComfyUI's own loader, ``comfy.controlnet.load_controlnet_state_dict``, which recognises
the keys and calls ``load_controlnet_flux_xlabs_mistoline``.  One thing is replaced: that loader
takes the config from ``comfy.model_detection.model_config_from_unet``, and Flux detection
hardcodes the full-size widths (hidden 3072, 24 heads, T5 4096, axes 16/56/56).  For the loading
we wrap detection so that it still runs on the state dict (class, depth, in_channels, vec_in_dim
and guidance_embed come from the keys) and only those four hardcoded widths are set to the tiny
Flux's values, the same substitution ``tiny_models`` makes for the tiny Flux itself.  It is
applied to the positive and negative conditioning with ComfyUI's ``ControlNetApplyAdvanced`` node
(a pixel-space hint; XLabs ControlNets need no VAE).

ComfyUI's Flux forward adds each double block's ControlNet residual into ``img`` in place between
blocks.  Our TeaCache reuse replaces the whole block stack, so on a reused step those in-stack
residuals are not applied (the cached residual of the last computed step is, as in the reference
TeaCache, which skips the block loop together with its ControlNet additions).

Low VRAM
--------
``comfy.model_management.load_models_gpu`` only loads partially when the load device is not the
CPU, so the real ``--lowvram`` / ``--novram`` paths need CUDA (run with ``DITCACHE_HOST_DEVICE=gpu``).
The per-layer weight path they set up (``ModelPatcher.load(lowvram_model_memory=...)``: layers that
do not fit get ``comfy_cast_weights`` and have their weights, plus any LoRA-style weight patch,
cast/applied by ``comfy.ops`` at every call) is device-independent: on the CPU it is forced here by
giving ``LoadedModel.model_load`` a weight budget of half the model, which is what
``load_models_gpu`` computes when free VRAM is short.
"""
from __future__ import annotations

import contextlib
import os

import pytest
import torch

import tiny_models as tm
from helpers import summary, teacache

STEPS = 6
BIG = 1000.0  # reuses every step that is not forced to compute (the first and the last)


# --------------------------------------------------------------------------
# a tiny Flux ControlNet, loaded by ComfyUI
# --------------------------------------------------------------------------

# widths that comfy.model_detection hardcodes for Flux state dicts
_HARDCODED = ("hidden_size", "num_heads", "context_in_dim", "axes_dim")


def _controlnet_state_dict(tiny, seed=0):
    """A random state dict with the key layout of an XLabs Flux ControlNet (2 double blocks, no
    single blocks) sized like the tiny Flux."""
    import comfy.ops
    from comfy.ldm.flux.controlnet import ControlNetFlux

    cfg = dict(tm.release_unet_config(tiny.family, tm.SPECS[(tiny.family, tiny.variant)].unet_config),
               depth_single_blocks=0)
    with torch.random.fork_rng(devices=[]):
        template = ControlNetFlux(operations=comfy.ops.disable_weight_init, dtype=torch.float32,
                                  device="cpu", **cfg)
    params = {k for k, _ in template.named_parameters()}
    sd = tm.random_state_dict(template.state_dict(), params, tm._seed_for("flux-controlnet", seed))
    # XLabs files name the q/k RMSNorm gains ``*_norm.scale`` (ComfyUI's loader keys on that);
    # releases whose RMSNorm holds ``weight`` rename them back when loading
    return {(k[:-len(".weight")] + ".scale" if k.endswith("_norm.weight") else k): v for k, v in sd.items()}


def load_tiny_controlnet(tiny, seed=0):
    import comfy.controlnet
    import comfy.model_detection as md

    sd = _controlnet_state_dict(tiny, seed)
    orig = md.model_config_from_unet
    detected = {}

    def detect(state_dict, prefix, *a, **k):
        mc = orig(state_dict, prefix, *a, **k)
        detected["class"] = type(mc).__name__ if mc is not None else None
        detected["config"] = dict(mc.unet_config) if mc is not None else None
        if mc is not None and mc.unet_config.get("image_model") == "flux":
            for key in _HARDCODED:
                mc.unet_config[key] = tiny.unet_config[key]
        return mc

    md.model_config_from_unet = detect
    try:
        cn = comfy.controlnet.load_controlnet_state_dict(dict(sd), model_options={"dtype": tiny.dtype})
    finally:
        md.model_config_from_unet = orig
    return cn, detected


@pytest.fixture(scope="module")
def flux(tiny_models):
    return tiny_models("flux")


@pytest.fixture(scope="module")
def controlnet(flux):
    cn, _ = load_tiny_controlnet(flux)
    return cn


def hint(batch=1, h=16, w=16, seed=0):
    """An IMAGE (B, H, W, 3) in [0, 1] at the pixel size of an h x w latent."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand([batch, h * 8, w * 8, 3], generator=g)


def apply(flux, control_net, strength=1.0, start=0.0, end=1.0):
    """(positive, negative) with the ControlNet applied as the ControlNetApplyAdvanced node does."""
    import nodes
    return nodes.ControlNetApplyAdvanced().apply_controlnet(
        flux.positive(), flux.negative(), control_net, hint(), strength, start, end)


def with_hint_direct(flux, control_net, strength):
    """The node returns the conditioning unchanged for strength 0; this applies it anyway (the
    ControlNet runs and its residuals are multiplied by 0)."""
    # one copy for both, as the node makes (so that ComfyUI still batches cond and uncond)
    c = control_net.copy().set_cond_hint(hint().movedim(-1, 1), strength, (0.0, 1.0), vae=None)
    out = []
    for cond in (flux.positive(), flux.negative()):
        out.append([[t[0], dict(t[1], control=c, control_apply_to_uncond=False)] for t in cond])
    return out


@contextlib.contextmanager
def count_calls(module):
    n = [0]
    h = module.register_forward_hook(lambda *a: n.__setitem__(0, n[0] + 1))
    try:
        yield n
    finally:
        h.remove()


def test_comfy_loads_a_tiny_flux_controlnet(flux):
    from comfy.controlnet import ControlNet
    from comfy.ldm.flux.controlnet import ControlNetFlux

    cn, detected = load_tiny_controlnet(flux)
    assert isinstance(cn, ControlNet)
    assert type(cn.control_model) is ControlNetFlux
    # ComfyUI's detection on our keys: the Flux class and the depths/channels of the state dict
    assert detected["class"] == "Flux"
    cfg = detected["config"]
    assert (cfg["depth"], cfg["depth_single_blocks"]) == (flux.unet_config["depth"], 0)
    assert cfg["in_channels"] == flux.unet_config["in_channels"]
    assert cfg["vec_in_dim"] == flux.unet_config["vec_in_dim"]
    assert cfg["guidance_embed"] is True
    assert cn.control_model.hidden_size == flux.unet_config["hidden_size"]
    assert len(cn.control_model.controlnet_blocks) == flux.unet_config["depth"]
    assert cn.extra_conds[-2:] == ["y", "guidance"]


def test_controlnet_changes_the_unpatched_output(flux, controlnet):
    pos, neg = apply(flux, controlnet)
    with count_calls(controlnet.control_model) as n:
        a = tm.sample(flux, steps=STEPS, positive=pos, negative=neg)
    assert n[0] == STEPS  # cond and uncond batched: one ControlNet call per step
    b = tm.sample(flux, steps=STEPS)
    assert torch.isfinite(a).all()
    assert not torch.equal(a, b)


def test_controlnet_threshold_zero_is_bit_identical(flux, controlnet):
    pos, neg = apply(flux, controlnet)
    plain = tm.sample(flux, steps=STEPS, positive=pos, negative=neg)
    m = teacache(flux.patcher, 0.0)
    out = tm.sample(flux, steps=STEPS, model=m, positive=pos, negative=neg)
    assert torch.equal(out, plain)
    s = summary(m)
    assert s["reused"] == 0 and s["steps"] == STEPS


def test_controlnet_large_threshold_reuses(flux, controlnet):
    pos, neg = apply(flux, controlnet)
    exact = tm.sample(flux, steps=STEPS, model=teacache(flux.patcher, 0.0), positive=pos, negative=neg)
    m = teacache(flux.patcher, BIG)
    out = tm.sample(flux, steps=STEPS, model=m, positive=pos, negative=neg)
    assert torch.isfinite(out).all()
    s = summary(m)
    assert s["reused"] > 0
    assert s["computed"] == 2 * len(s["streams"])  # first and last step
    assert not torch.equal(out, exact)
    # the run is repeatable: nothing of the ControlNet's in-place additions stays in the cache
    assert torch.equal(tm.sample(flux, steps=STEPS, model=m, positive=pos, negative=neg), out)


def test_controlnet_strength_zero_equals_no_controlnet(flux, controlnet):
    """Residuals multiplied by 0 and added in place change nothing, computed or reused."""
    pos, neg = with_hint_direct(flux, controlnet, 0.0)
    assert torch.equal(tm.sample(flux, steps=STEPS, positive=pos, negative=neg), tm.sample(flux, steps=STEPS))
    with count_calls(controlnet.control_model) as n:
        out = tm.sample(flux, steps=STEPS, model=teacache(flux.patcher, BIG), positive=pos, negative=neg)
    assert n[0] == STEPS  # the ControlNet did run
    assert torch.equal(out, tm.sample(flux, steps=STEPS, model=teacache(flux.patcher, BIG)))


def test_controlnet_only_on_reused_steps_leaves_the_reuse_unchanged(flux, controlnet):
    """A ControlNet active only on steps that TeaCache reuses: the reused output is stack input +
    cached residual, computed at the first block, so the in-place ControlNet additions between
    the passed-through blocks neither reach the output nor the cache, and the whole run equals
    the run without the ControlNet.  (Guards the stack input against aliasing the ``img`` that
    ComfyUI adds into.)"""
    pos, neg = apply(flux, controlnet, start=0.2, end=0.7)
    m = teacache(flux.patcher, BIG)
    with count_calls(controlnet.control_model) as n:
        out = tm.sample(flux, steps=STEPS, model=m, positive=pos, negative=neg)
    assert 0 < n[0] < STEPS - 2, "the ControlNet must run on some, not all, of the reused steps"
    s = summary(m)
    assert s["reused"] > 0
    assert torch.equal(out, tm.sample(flux, steps=STEPS, model=teacache(flux.patcher, BIG)))
    # while the same ControlNet does change an exact run
    exact = tm.sample(flux, steps=STEPS, model=teacache(flux.patcher, 0.0), positive=pos, negative=neg)
    assert not torch.equal(exact, tm.sample(flux, steps=STEPS))


# --------------------------------------------------------------------------
# low-VRAM weight loading
# --------------------------------------------------------------------------


def _unload(target):
    """Detach every loaded copy of the BaseModel ``target`` (the way free_memory unloads)."""
    import comfy.model_management as mm
    for i in range(len(mm.current_loaded_models) - 1, -1, -1):
        lm = mm.current_loaded_models[i]
        if lm.model is not None and lm.model.model is target:
            lm.model_unload()
            mm.current_loaded_models.pop(i)


@contextlib.contextmanager
def weight_budget(tiny, budget):
    """Loads ``tiny``'s model with at most ``budget`` bytes of weights on its load device, through
    ComfyUI's own ``LoadedModel.model_load`` -> ``ModelPatcher.partially_load`` -> ``load``."""
    import comfy.model_management as mm
    target = tiny.model
    orig = mm.LoadedModel.model_load

    def model_load(self, lowvram_model_memory=0, force_patch_weights=False):
        if self.model is not None and self.model.model is target:
            lowvram_model_memory = budget
        return orig(self, lowvram_model_memory, force_patch_weights=force_patch_weights)

    _unload(target)
    mm.LoadedModel.model_load = model_load
    try:
        yield
    finally:
        mm.LoadedModel.model_load = orig
        _unload(target)


@contextlib.contextmanager
def vram_state(state):
    """ComfyUI's --lowvram / --novram switch, for the duration."""
    import comfy.model_management as mm
    old = mm.vram_state
    mm.vram_state = state
    try:
        yield
    finally:
        mm.vram_state = old


@pytest.fixture(scope="module")
def flux_lowvram(tiny_models):
    # its own model (another seed): the loading state of the shared tiny Flux is left alone
    return tiny_models("flux", seed=1)


def _with_weight_patch(tiny):
    """A clone carrying a LoRA-style ("diff") weight patch on some Linear layers, so that the
    low-VRAM path has to apply patches per call (comfy.model_patcher.LowVramPatch)."""
    m = tiny.patcher.clone()
    g = torch.Generator().manual_seed(7)
    patches = {}
    for k, v in tiny.model.state_dict().items():
        if k.startswith("diffusion_model.double_blocks.") and k.endswith(".weight") and v.ndim == 2:
            patches[k] = ("diff", (0.01 * torch.randn(v.shape, generator=g),))
    assert patches
    m.add_patches(patches, 1.0)
    return m


def _lowvram_checks(tiny, base, load_ctx):
    """Samples unpatched, TeaCache at 0 and TeaCache at BIG under the same loading."""
    seen = []

    def probe(*a, **k):
        # comfy.ops layers that hold weights (Flux's affine-free LayerNorms hold none)
        mods = [m for m in tiny.diffusion_model.modules()
                if hasattr(m, "comfy_cast_weights") and any(True for _ in m.parameters(recurse=False))]
        seen.append(dict(lowvram=tiny.model.model_lowvram, patches=tiny.model.lowvram_patch_counter,
                         cast=sum(bool(m.comfy_cast_weights) for m in mods), castable=len(mods),
                         devices={p.device.type for p in tiny.diffusion_model.parameters()}))

    with load_ctx():
        plain = tm.sample(tiny, steps=STEPS, model=base, callback=probe)
    with load_ctx():
        exact = tm.sample(tiny, steps=STEPS, model=teacache(base, 0.0), callback=probe)
    with load_ctx():
        m = teacache(base, BIG)
        fast = tm.sample(tiny, steps=STEPS, model=m, callback=probe)
    assert seen and all(x["lowvram"] for x in seen), "the model was not loaded in low-VRAM mode"
    assert all(x["cast"] > 0 for x in seen), "no layer had its weights cast per call"
    assert torch.equal(exact, plain)
    assert torch.isfinite(fast).all()
    assert summary(m)["reused"] > 0
    assert not torch.equal(fast, exact)
    return plain, seen


def test_lowvram_weight_path_on_this_device(flux_lowvram):
    """Half the weights on the load device, the rest cast per call by comfy.ops with the weight
    patches applied per call; works wherever the model runs, the CPU included."""
    tiny = flux_lowvram
    base = _with_weight_patch(tiny)
    budget = tiny.patcher.model_size() // 2
    casts = [0]
    import comfy.ops
    orig_cast = comfy.ops.cast_bias_weight

    def counting_cast(*a, **k):
        casts[0] += 1
        return orig_cast(*a, **k)

    comfy.ops.cast_bias_weight = counting_cast
    try:
        plain, seen = _lowvram_checks(tiny, base, lambda: weight_budget(tiny, budget))
    finally:
        comfy.ops.cast_bias_weight = orig_cast
    assert casts[0] > 0, "no layer went through comfy.ops' per-call weight cast"
    assert all(x["patches"] > 0 for x in seen), "no weight patch was left to LowVramPatch"
    assert all(x["cast"] < x["castable"] for x in seen), "the load was not partial"
    # per-call patching gives the weights a full load patches in place (same math, fp32)
    _unload(tiny.model)
    full = tm.sample(tiny, steps=STEPS, model=base)
    assert torch.allclose(full, plain, rtol=1e-4, atol=1e-5)


def _cuda_host():
    import comfy.model_management as mm
    return (torch.cuda.is_available() and os.environ.get("DITCACHE_HOST_DEVICE", "cpu").lower() == "gpu"
            and mm.get_torch_device().type == "cuda")


@pytest.mark.parametrize("mode", ["lowvram", "novram"])
def test_comfy_lowvram_modes_on_cuda(flux_lowvram, mode):
    """ComfyUI's own --lowvram (partial loading when free VRAM is short) and --novram (nothing
    resident, every layer streamed) under load_models_gpu."""
    if not _cuda_host():
        pytest.skip("low-VRAM partial loading needs a CUDA device (run with DITCACHE_HOST_DEVICE=gpu)")
    import comfy.model_management as mm
    tiny = flux_lowvram
    base = _with_weight_patch(tiny)
    target = tiny.model
    if mode == "novram":
        @contextlib.contextmanager
        def ctx():
            _unload(target)
            with vram_state(mm.VRAMState.NO_VRAM):
                yield
            _unload(target)
    else:
        # --lowvram; load_models_gpu never budgets less than 128 MiB, far above the tiny model,
        # so free VRAM is reported as short: a budget of half the model's weights
        budget = tiny.patcher.model_size() // 2

        @contextlib.contextmanager
        def ctx():
            with vram_state(mm.VRAMState.LOW_VRAM), weight_budget(tiny, budget):
                yield
    _, seen = _lowvram_checks(tiny, base, ctx)
    for x in seen:
        # weights left on the offload device (CPU) while the model runs on the GPU
        assert "cpu" in x["devices"], x
        assert x["patches"] > 0, x
        if mode == "novram":
            assert x["cast"] == x["castable"], x
        else:
            assert "cuda" in x["devices"] and 0 < x["cast"] < x["castable"], x
