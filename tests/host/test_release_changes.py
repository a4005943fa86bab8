"""What ComfyUI changed in 0.30-0.33 that a cache pack touches (issue 18, item 4).

* LTX 2.5 rewrote the LTX forward: block 0's self-attention input is now ComfyUI's fused
  ``rms_adaln`` kernel (comfy_kitchen) instead of ``rms_norm(x) * (1 + scale) + shift``. Our
  LTX-Video and LTX-2 indicators compute the latter; they must still be what the block's
  self-attention sees (video and audio), on every release.
* LTX 2.5's Spatio-Temporal Guidance (0.33.0, ``LTXVSpatioTemporalGuidance``) evaluates the cond
  again with some blocks' self-attention perturbed: that pass is never fed the cond's cache.
* CUDA graphs (``comfy/model_prefetch.py``, see ``cache_core/graph_capture.py``): ComfyUI captures
  none of the DiT block loops we patch, so the decisions run in Python at every step; were a
  patched block ever reached inside a capture, the run stops with a message and a note in Cache
  Stats instead of baking one step's decision into the graph. On the CPU the capture is simulated;
  the unpatched model is not concerned.
"""
from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from helpers import holder_of, summary, teacache
from pack import sub

STEPS = 4
LTX = [f for f in ("ltxv", "ltxav") if f in tm.family_ids()]


def _attention_inputs(block, family):
    """Forward pre-hooks recording what block 0's self-attentions receive (video, and audio)."""
    seen = {"video": [], "audio": []}
    mods = [("video", block.attn1)] + ([("audio", block.audio_attn1)] if family == "ltxav" else [])
    handles = [m.register_forward_pre_hook(lambda mod, args, kw, k=k: seen[k].append(args[0].detach().clone()),
                                           with_kwargs=True) for k, m in mods]
    return seen, handles


@pytest.mark.parametrize("fam", LTX)
def test_ltx_indicator_is_what_block0_self_attention_sees(tiny_models, fam):
    tiny = tiny_models(fam)
    m = teacache(tiny.patcher, 1e-9)  # on, and every step computes: block 0 runs at every evaluation
    hooks = holder_of(m).hooks
    indicators, original = [], hooks.indicator

    def recording(inputs):
        out = original(inputs)
        indicators.append(out.detach().clone())
        return out
    hooks.indicator = recording
    block0 = tiny.block_modules(m.model.diffusion_model)[0]
    seen, handles = _attention_inputs(block0, fam)
    try:
        tm.sample(tiny, steps=STEPS, model=m)
    finally:
        for h in handles:
            h.remove()
        hooks.indicator = original
    assert len(indicators) == len(seen["video"]) > 0
    for ind, video, audio in zip(indicators, seen["video"], seen["audio"] or [None] * len(indicators)):
        if fam == "ltxav":  # per stream, divided by its size (the adapter's weighting)
            parts = [video] + ([audio] if audio is not None and audio.numel() else [])
            expected = torch.cat([p.flatten(1) / p[0].numel() for p in parts], dim=1)
        else:
            expected = video
        torch.testing.assert_close(ind, expected, rtol=1e-4, atol=1e-6)


def _has_stg() -> bool:
    """Whether this ComfyUI has LTX 2.5's Spatio-Temporal Guidance node (0.33.0)."""
    try:
        import comfy_env
        comfy_env.import_comfy()
        import comfy_extras.nodes_lt as lt
        return hasattr(lt, "LTXVSpatioTemporalGuidance")
    except Exception:
        return False


def test_ltx2_stg_pass_is_never_fed_the_conds_cache(tiny_models):
    from comfy_extras.nodes_lt import LTXVSpatioTemporalGuidance
    tiny = tiny_models("ltxav")

    def stg(model):
        return LTXVSpatioTemporalGuidance.execute(model, scale=2.0, blocks="1", start_percent=0.0,
                                                  end_percent=1.0).args[0]
    plain = tm.sample(tiny, steps=STEPS, model=stg(tiny.patcher))
    # threshold 0: bit-identical with the guidance pass
    assert torch.equal(tm.sample(tiny, steps=STEPS, model=stg(teacache(tiny.patcher, 0.0))), plain)
    # a threshold that reuses every middle step: the perturbed pass still computes each time
    m = stg(teacache(tiny.patcher, 1000.0))
    out = tm.sample(tiny, steps=STEPS, model=m)
    s = summary(m)
    assert s["reused"] > 0 and s["guidance_passes"] == STEPS == s["guidance_computed"], s
    assert torch.isfinite(out).all()


if not ("ltxav" in tm.family_ids() and _has_stg()):  # collected only where the release has STG
    del test_ltx2_stg_pass_is_never_fed_the_conds_cache


def test_a_cuda_graph_capture_of_patched_blocks_stops_the_run(tiny_models, monkeypatch):
    capture = sub("cache_core.graph_capture")
    assert capture.capturing() is False  # here: no capture, and CUDA is never initialised for asking
    tiny = tiny_models("flux")
    m = teacache(tiny.patcher, 0.4)
    monkeypatch.setattr(capture, "capturing", lambda: True)
    with pytest.raises(RuntimeError, match="--disable-cuda-graphs") as e:
        tm.sample(tiny, steps=STEPS, model=m)
    assert "captured into a CUDA graph" in str(e.value)
    s = summary(m)
    assert capture.CAPTURE_NOTE in s["notes"], s["notes"]
    assert capture.CAPTURE_NOTE in holder_of(m).last_report
    # the unpatched model is not ours to stop
    plain = tm.sample(tiny, steps=STEPS)
    monkeypatch.undo()
    # and the patched model runs again once nothing captures
    assert torch.equal(tm.sample(tiny, steps=STEPS, model=teacache(tiny.patcher, 0.0)), plain)
    tm.sample(tiny, steps=STEPS, model=m)
    assert capture.CAPTURE_NOTE not in summary(m)["notes"]
