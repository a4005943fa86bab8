"""The shipped reference DiT, its sampling through the cache controller, and the demo's metrics.

Fast (a few seconds, one torch thread). The sample-quality check is ``slow`` and runs only with
``DITCACHE_SLOW=1`` (``DITCACHE_SLOW=1 python -m pytest -m slow tests/core/test_reference_model.py``).
"""
from __future__ import annotations

import math
import os

import pytest
import torch

from dit_reference.classifier import CLASSIFIER, DigitClassifier
from dit_reference.demo import psnr, ssim
from dit_reference.learn import ReferenceBranchModel
from dit_reference.model import WEIGHTS
from dit_reference.sampling import make_controller, sample
from cache_core.teacache import TeaCacheConfig


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(reference_model):
    return reference_model


LABELS = torch.arange(10)


def test_weights_ship_and_load(model):
    assert WEIGHTS.is_file()
    assert WEIGHTS.stat().st_size <= 20 * 2 ** 20
    from safetensors import safe_open
    with safe_open(str(WEIGHTS), "pt") as f:
        meta = f.metadata()
    for key in ("config", "seed", "steps", "final_loss"):
        assert key in meta
    assert not model.training
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # trained: the zero-initialised output projection is no longer zero
    assert model.patch_out.weight.abs().sum() > 0


def test_forward_shape(model):
    x = torch.randn(3, 1, 8, 8)
    t = torch.tensor([0.1, 0.5, 0.9])
    y = torch.tensor([0, 5, model.null_class])
    with torch.no_grad():
        v = model(x, t, y)
    assert v.shape == x.shape
    assert torch.isfinite(v).all()


def test_threshold_zero_is_bit_identical(model):
    plain = sample(model, LABELS, steps=8, cfg=3.0, seed=3)
    ctl = make_controller(model, teacache=TeaCacheConfig(rel_l1_thresh=0.0))
    through = sample(model, LABELS, steps=8, cfg=3.0, seed=3, controller=ctl)
    assert torch.equal(plain, through)


def test_positive_threshold_skips_and_stays_finite(model):
    ctl = make_controller(model, teacache=TeaCacheConfig(rel_l1_thresh=0.3, coefficients="raw"))
    x = sample(model, LABELS, steps=12, cfg=3.0, seed=3, controller=ctl)
    s = ctl.recorder.summary()
    assert s["evaluations"] == 24  # 12 steps x (cond, uncond)
    assert s["computed"] < s["evaluations"]
    assert torch.isfinite(x).all()
    ref = sample(model, LABELS, steps=12, cfg=3.0, seed=3)
    assert psnr(x, ref) > 15.0  # close to the uncached samples, not garbage


def test_l2c_adapter_mixing_is_exact_at_the_ends(model):
    ad = ReferenceBranchModel(model)
    x = torch.randn(4, 1, 8, 8)
    cond = (torch.tensor([1, 2, 3, 4]), 3.0)
    with torch.no_grad():
        plain, fresh = ad.forward_with_mix(x, 0.6, cond, None, None)
        ones = torch.ones(ad.n_layers, 2)
        mixed1, _ = ad.forward_with_mix(x, 0.6, cond, ones, fresh)
        mixed0, _ = ad.forward_with_mix(x, 0.6, cond, torch.zeros_like(ones), fresh)
    assert len(fresh) == ad.n_layers and len(fresh[0]) == 2
    torch.testing.assert_close(mixed1, plain)
    torch.testing.assert_close(mixed0, plain)  # cache taken from the same inputs: reuse == fresh


def test_metrics():
    a = torch.rand(5, 1, 8, 8) * 2 - 1
    assert math.isinf(psnr(a, a))
    assert ssim(a, a) == pytest.approx(1.0)
    b = (a + 0.3 * torch.randn_like(a)).clamp(-1, 1)
    assert 0 < psnr(a, b) < 40
    assert -1 <= ssim(a, b) < 0.99


def test_classifier_ships():
    assert CLASSIFIER.is_file()
    clf = DigitClassifier()
    assert clf.held_out_accuracy is not None and clf.held_out_accuracy > 0.9
    pred = clf.predict(torch.zeros(3, 1, 8, 8))
    assert pred.shape == (3,)


def test_classifier_on_real_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = torch.tensor(d.images[:300], dtype=torch.float32).unsqueeze(1) / 16 * 2 - 1
    acc = DigitClassifier().accuracy(x, torch.tensor(d.target[:300]))
    assert acc > 0.95


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DITCACHE_SLOW"), reason="set DITCACHE_SLOW=1 to run the sample-quality check")
def test_full_compute_samples_are_recognisable(model):
    labels = torch.arange(10).repeat_interleave(20)
    x = sample(model, labels, steps=25, cfg=3.0, seed=1234)
    assert DigitClassifier().accuracy(x, labels) >= 0.8
