"""The tiny ComfyUI models themselves: they build through ComfyUI's loading
code and sample with ComfyUI's real samplers at cfg > 1, deterministically."""

from __future__ import annotations

import pytest
import torch

import comfy_env
import tiny_models as tm
from helpers import count_block_runs

FAMILY_IDS = tm.family_ids()
STEPS = 4


def _skip_unavailable(fid):
    fam, var = tm._resolve(fid, None)
    if (fam, var) in tm.UNAVAILABLE:
        pytest.skip(tm.UNAVAILABLE[(fam, var)])
    return fam, var


# ---------------------------------------------------------------------------
# comfy_env (no ComfyUI needed)
# ---------------------------------------------------------------------------


def test_find_comfyui_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path))
    path, reason = comfy_env.find_comfyui()
    assert path is None and "not a ComfyUI checkout" in reason
    (tmp_path / "comfy").mkdir()
    (tmp_path / "folder_paths.py").write_text("")
    path, reason = comfy_env.find_comfyui()
    assert path == tmp_path.resolve()


def test_comfy_in_cpu_mode(comfy):
    assert comfy.model_management.get_torch_device().type == "cpu" or not comfy_env.force_cpu()
    for name in ("sd", "samplers", "sample", "model_patcher", "patcher_extension", "nodes", "folder_paths"):
        assert getattr(comfy, name) is not None


# ---------------------------------------------------------------------------
# per family
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_builds_through_comfy(fid, comfy, tiny_models):
    fam, var = _skip_unavailable(fid)
    tiny = tiny_models(fam, var)
    assert isinstance(tiny.patcher, comfy.model_patcher.ModelPatcher)
    assert type(tiny.model.model_config).__name__ == tiny.config_class
    assert tiny.loaded_via in ("load_diffusion_model_state_dict", "model_config")
    # the random state dict has the real checkpoint key layout: ComfyUI's own
    # key-based detection maps it to the same config class (or, where only the full-size width
    # tells two classes apart, to the one the spec names)
    spec = tm.SPECS[(fam, var)]
    sd = dict(tiny.state_dict)
    det = comfy.comfy_model_detection.model_config_from_unet(sd, "")
    assert (type(det).__name__ if det is not None else tm.NOT_DETECTED) == (spec.detected_as or tiny.config_class)
    # tiny: a few million parameters at most, besides what ComfyUI builds at a fixed full size
    n = sum(p.numel() for name, p in tiny.diffusion_model.named_parameters()
            if name.split(".")[0] not in spec.fixed_size + spec.idle)
    assert n < 4_000_000, n
    for e in tiny.experts:
        assert isinstance(e, comfy.model_patcher.ModelPatcher)


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_block_modules(fid, tiny_models):
    fam, var = _skip_unavailable(fid)
    tiny = tiny_models(fam, var)
    blocks = tiny.block_modules()
    assert 2 <= len(blocks) <= 6
    assert all(isinstance(b, torch.nn.Module) for b in blocks)
    assert tm.block_modules(tiny.diffusion_model) == blocks  # auto-detected order is the same

    # counted at a leaf that runs once per block run: Animate 2's blocks run through forward_gen
    with count_block_runs(blocks) as calls:
        tm.sample(tiny, steps=2, cfg=2.5, model=(tiny.patcher, tiny.patcher) if tiny.experts else None)
    # every block runs at least once per step (cond and uncond may be batched)
    assert all(c >= 2 for c in calls), calls
    assert len(set(calls)) == 1, calls


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_sample_cfg_deterministic(fid, tiny_models):
    fam, var = _skip_unavailable(fid)
    tiny = tiny_models(fam, var)
    lat = tm.packed(tiny.latent())
    a = tm.sample(tiny, steps=STEPS, cfg=2.5, seed=0)
    assert a.shape == lat.shape
    if getattr(tiny.latent(), "is_nested", False):  # audio-video: packed (batch, 1, video + audio elements)
        video, audio = tm.unpacked(tiny, a)
        assert [video.shape, audio.shape] == [t.shape for t in tiny.latent().unbind()]
        assert video.ndim == 5
    else:
        assert a.ndim == lat.ndim and (a.ndim == 5 if tiny.video else a.ndim in (4, 5))
        assert a.shape[1] == tiny.latent_channels
    assert torch.isfinite(a).all()
    assert a.abs().max() > 0
    b = tm.sample(tiny, steps=STEPS, cfg=2.5, seed=0)
    assert torch.equal(a, b), "same seed must give bit-identical output"
    c = tm.sample(tiny, steps=STEPS, cfg=2.5, seed=1)
    assert not torch.allclose(a, c), "different seed must give a different output"
    d = tm.sample(tiny, steps=STEPS, cfg=1.0, seed=0)
    assert not torch.allclose(a, d), "cfg must matter (positive and negative differ)"


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_conditioning_format(fid, tiny_models):
    fam, var = _skip_unavailable(fid)
    tiny = tiny_models(fam, var)
    for cond in (tiny.positive(), tiny.negative()):
        assert isinstance(cond, list) and len(cond) == 1
        ctx, extra = cond[0]
        assert isinstance(ctx, torch.Tensor) and ctx.ndim == 3
        assert isinstance(extra, dict)
    pos, neg = tiny.positive()[0], tiny.negative()[0]
    assert not torch.equal(pos[0], neg[0])
    if fam in ("flux", "flux_fill", "flux_kontext", "hunyuan_video", "sd3", "hidream"):
        assert pos[1]["pooled_output"].ndim == 2
    if fam == "chroma":
        assert pos[1]["pooled_output"] is None
    if (fam, var) in (("flux", "dev"), ("flux_kontext", None), ("flux_fill", None)):
        assert "guidance" in pos[1]
    if fam in ("ltxv", "lumina2"):
        m = pos[1]["attention_mask"]
        assert m.shape == pos[0].shape[:2] and 0 < int(m.sum()) < m.numel()
    if fam == "hidream":
        assert pos[1]["conditioning_llama3"].ndim == 4
    if fam == "flux_kontext":
        assert isinstance(pos[1]["reference_latents"], list)


def test_video_frames_and_batch(tiny_models):
    tiny = tiny_models("wan21", "t2v")
    out = tm.sample(tiny, steps=2, batch=2, frames=2, h=8, w=12)
    assert out.shape == (2, 16, 2, 8, 12)
    assert torch.isfinite(out).all()


def test_patched_clone_is_used(tiny_models):
    tiny = tiny_models("flux", "dev")
    clone = tiny.patcher.clone()
    seen = []

    def wrapper(executor, *args, **kwargs):
        seen.append(1)
        return executor(*args, **kwargs)

    import comfy.patcher_extension as pe

    clone.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "tiny_test", wrapper)
    a = tm.sample(tiny, steps=2, model=clone)
    assert seen, "wrapper on the clone must run"
    n = len(seen)
    b = tm.sample(tiny, steps=2)
    assert len(seen) == n, "the original patcher must not carry the clone's wrapper"
    assert torch.equal(a, b)


def test_wan22_two_experts_differ(tiny_models):
    tiny = tiny_models("wan22", "t2v_14b")
    hi, lo = tiny.experts
    assert hi is tiny.patcher and lo is not hi
    k = "blocks.0.self_attn.q.weight"
    assert not torch.equal(hi.model.diffusion_model.state_dict()[k], lo.model.diffusion_model.state_dict()[k])
    both = tm.sample(tiny, steps=4)
    only_hi = tm.sample(tiny, steps=4, model=(hi, hi))
    assert not torch.equal(both, only_hi)


def test_builds_are_seeded(comfy):
    a = tm.build("sd3", seed=0)
    b = tm.build("sd3", seed=0)
    c = tm.build("sd3", seed=1)
    assert a.state_dict.keys() == b.state_dict.keys()
    for k in a.state_dict:  # includes the pos_embed buffer (torch.empty at init)
        assert torch.equal(a.state_dict[k], b.state_dict[k]), k
        assert torch.equal(a.diffusion_model.state_dict()[k], b.diffusion_model.state_dict()[k]), k
    k = "joint_blocks.0.x_block.attn.qkv.weight"
    assert not torch.equal(a.state_dict[k], c.state_dict[k])


@pytest.mark.parametrize("fid", ["sd3", "flux:dev", "wan21:t2v"])
def test_bfloat16_build_samples(fid, comfy):
    tiny = tm.build(fid, dtype=torch.bfloat16)
    out = tm.sample(tiny, steps=3)
    assert out.shape == tiny.latent().shape and torch.isfinite(out).all()


def test_wan22_ti2v_start_image_noise_mask(tiny_models):
    # Wan22ImageToVideoLatent: start image latent in frame 0, noise_mask 0 there;
    # WAN22 turns the denoise mask into per-token timesteps.
    tiny = tiny_models("wan22", "ti2v_5b")
    lat = tiny.latent(frames=3)
    g = torch.Generator().manual_seed(0)
    lat[:, :, :1] = torch.randn(lat[:, :, :1].shape, generator=g)
    mask = torch.ones([1, 1, 3, 16, 16])
    mask[:, :, :1] = 0.0
    out = tm.sample(tiny, steps=4, latent=lat, noise_mask=mask)
    assert out.shape == lat.shape and torch.isfinite(out).all()
    assert torch.allclose(out[:, :, :1], lat[:, :, :1], atol=1e-4)
    assert not torch.allclose(out[:, :, 1:], lat[:, :, 1:])
    assert torch.equal(out, tm.sample(tiny, steps=4, latent=lat, noise_mask=mask))
