"""The forecaster (cache_core.forecast) with hand-made tensors, and forecasting through the
block-stack controller on the reference DiT (random weights): TeaCache and L2C, fixed interval,
memory, offload, non-finite forecasts."""
import dataclasses

import pytest
import torch

from cache_core import forecast
from cache_core.forecast import extrapolate, push, reuse_order
from cache_core.l2c import L2CSchedule
from dit_reference.model import ReferenceHooks
from dit_reference.sampling import make_controller, sample
from cache_core.stack import CacheController
from cache_core.steps import StepLocator
from cache_core.teacache import TeaCacheConfig, TeaCacheState, decide, forced_reason

UNEVEN = [0.0, 0.7, 1.9, 2.4, 3.1]  # computed positions, unevenly spaced


def poly(coefs, x):
    return sum(c * x ** i for i, c in enumerate(coefs))


def history_of(positions, values, order):
    h = None
    for x, v in zip(positions, values):
        h = push(h, x, v, order)
    return h


@pytest.mark.parametrize("order", [0, 1, 2])
@pytest.mark.parametrize("at", [3.8, 5.0, 2.0])  # ahead (one and several steps) and in between
def test_order_k_reproduces_degree_k_polynomials_on_uneven_positions(order, at):
    g = torch.Generator().manual_seed(order)
    coefs = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(order + 1)]
    h = history_of(UNEVEN, [poly(coefs, x) for x in UNEVEN], order)
    assert h.available_order == order and len(h.positions) == order + 1
    assert torch.allclose(extrapolate(h, at), poly(coefs, at), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", [0, 1])
def test_order_k_misses_degree_k_plus_1(order):
    """The exactness above is the order's doing: one degree more and the forecast is off."""
    coefs = [torch.ones(2, dtype=torch.float64)] * (order + 2)
    h = history_of(UNEVEN, [poly(coefs, x) for x in UNEVEN], order)
    assert (extrapolate(h, 4.0) - poly(coefs, 4.0)).abs().min() > 0.1


def test_order_2_beats_backward_differences_on_a_quadratic():
    """TaylorSeer's plain backward differences are not exact for a parabola; divided differences are."""
    f = lambda x: torch.tensor([x * x], dtype=torch.float64)  # noqa: E731
    h = history_of([0.0, 1.0, 2.0], [f(0.0), f(1.0), f(2.0)], 2)
    assert torch.equal(extrapolate(h, 3.0), f(3.0))
    d1, d2 = 4.0 - 1.0, 4.0 - 2 * 1.0 + 0.0  # backward differences at x=2
    assert 4.0 + d1 + d2 / 2 != 9.0


def test_order_0_is_the_stored_tensor_itself():
    v = torch.randn(2, 5, dtype=torch.bfloat16)
    h = history_of([0.0, 1.0], [torch.randn(2, 5, dtype=torch.bfloat16), v], 0)
    assert extrapolate(h, 7.5) is v
    # a higher order with a single computed step is reuse too
    h2 = push(None, 3.0, v, 2)
    assert h2.available_order == 0 and extrapolate(h2, 9.0) is v


def test_push_is_pure_and_keeps_k_plus_1_tensors():
    vals = [torch.full((4,), float(i)) for i in range(5)]
    h = None
    seen = []
    for i, v in enumerate(vals):
        new = push(h, float(i), v, 2)
        if h is not None:
            assert h.positions == tuple(float(j) for j in range(i - 1, max(-1, i - 4), -1))
        seen.append(new)
        h = new
    assert [x.available_order for x in seen] == [0, 1, 2, 2, 2]
    assert h.nbytes() == 3 * vals[0].numel() * vals[0].element_size()
    assert h.coefs[0] is vals[-1]


def test_new_shape_starts_over():
    h = history_of([0.0, 1.0], [torch.zeros(3), torch.ones(3)], 1)
    assert push(h, 2.0, torch.ones(4), 1).available_order == 0
    assert push(h, 2.0, torch.ones(3, dtype=torch.float64), 1).available_order == 0


@pytest.mark.parametrize("order", [1, 2])
def test_repeated_position_replaces_the_latest_value(order):
    """A 2nd-order sampler evaluates each sigma twice: the second value replaces the first and the
    older computed steps stay."""
    g = torch.Generator().manual_seed(1)
    v = [torch.randn(5, generator=g, dtype=torch.float64) for _ in range(4)]
    replaced = history_of([0.0, 0.6, 1.7, 1.7], v, order)
    direct = history_of([0.0, 0.6, 1.7], [v[0], v[1], v[3]], order)
    assert replaced.positions == direct.positions and replaced.available_order == order
    for a, b in zip(replaced.coefs, direct.coefs):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    assert replaced.coefs[0] is v[3]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_forecasts_stay_finite_and_close(dtype):
    g = torch.Generator().manual_seed(0)
    base = [torch.randn(64, generator=g) * 30 for _ in range(3)]
    xs = [0.0, 1.0, 2.5]
    vals = [base[0] + x * base[1] + x * x * base[2] / 10 for x in xs]
    lo = extrapolate(history_of(xs, [v.to(dtype) for v in vals], 2), 3.5)
    hi = extrapolate(history_of(xs, vals, 2), 3.5)
    assert lo.dtype == dtype and torch.isfinite(lo).all()
    assert (lo.float() - hi).abs().max() < 0.05 * hi.abs().max()


def test_all_finite():
    ok = torch.randn(1000)
    assert forecast.all_finite([ok]) and forecast.all_finite([ok, ok.double()]) and forecast.all_finite([])
    for bad in (float("inf"), float("-inf"), float("nan")):
        t = ok.clone()
        t[17] = bad
        assert not forecast.all_finite([t]) and not forecast.all_finite([ok, t])
    both = ok.clone()
    both[1], both[2] = float("inf"), float("-inf")
    assert not forecast.all_finite([both])
    # a big fp16 tensor whose fp16 sum would overflow is still finite
    assert forecast.all_finite([torch.full((100_000,), 60_000.0, dtype=torch.float16)])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="cached, taylor1, taylor2"):
        reuse_order("taylor3")
    with pytest.raises(ValueError, match="order must be 0, 1 or 2"):
        push(None, 0.0, torch.zeros(1), 3)
    with pytest.raises(ValueError, match="position must be finite"):
        push(None, float("nan"), torch.zeros(1), 1)
    with pytest.raises(ValueError, match="compute_every"):
        TeaCacheConfig(0.3, "raw", compute_every=-1)
    with pytest.raises(ValueError, match="reuse must be one of"):
        TeaCacheConfig(0.3, "raw", reuse="taylor")


def test_run_ids_show_the_mode():
    assert TeaCacheConfig(0.3, "raw").run_id() == "TC(t0.3,raw)"
    assert TeaCacheConfig(0.3, "raw", reuse="taylor2", compute_every=3).run_id() == "TC(t0.3,raw,every3,taylor2)"
    assert forecast.with_reuse_tag("L2C(x,block,-20%)", "taylor1") == "L2C(x,block,-20%,taylor1)"
    assert forecast.with_reuse_tag("L2C(x,block,-20%)", "cached") == "L2C(x,block,-20%)"


def test_step_coordinate_is_fractional_between_schedule_sigmas():
    loc = StepLocator([1.0, 0.8, 0.5, 0.2, 0.0])
    assert [loc.locate(s).x for s in (1.0, 0.8, 0.5, 0.2)] == [0.0, 1.0, 2.0, 3.0]
    assert loc.locate(0.9).x == pytest.approx(0.5) and loc.locate(0.6).x == pytest.approx(1 + 2 / 3)
    assert loc.locate(0.1).x == pytest.approx(3.5)  # a 2nd-order sampler's last intermediate evaluation
    assert StepLocator([0.0, 0.5, 1.0]).locate(0.25).x == pytest.approx(0.5)  # ascending schedules too


def test_fixed_interval_decisions():
    cfg = TeaCacheConfig(1000.0, "raw", compute_every=3)
    assert [forced_reason(s, 10, s / 9, cfg) for s in range(10)] == [
        "interval", None, None, "interval", None, None, "interval", None, None, "last"]
    # the accumulator does not decide, however large the change
    d, _ = decide(TeaCacheState(None, 0.0, 0, 1), 50.0, TeaCacheConfig(0.1, "raw", compute_every=3))
    assert not d.compute and d.reason == "reuse"
    d, _ = decide(TeaCacheState(None, 0.0, 0, 1), 0.0, cfg, "interval")
    assert d.compute and d.reason == "interval"


# -- through the controller ---------------------------------------------------------------------
# the small random-weight reference DiT and the one-forward driver of the stack tests
from test_stack import CFG, LABELS, _one_forward, model  # noqa: E402


class EveryNthReuse:
    """An independent implementation of plain reuse: compute every n-th step (and the last),
    otherwise add the last computed block-stack residual to the stack input."""

    def __init__(self, n_blocks, n):
        self.n_blocks, self.n = n_blocks, n
        self.residual = None
        self.recorder = __import__("cache_core.stats", fromlist=["RunRecorder"]).RunRecorder()
        self.l2c = None

    def begin(self, info, streams):
        self.compute = info.step % self.n == 0 or info.step == info.n_steps - 1

    def end(self):
        pass

    def reset(self):
        self.residual = None

    def branch(self, i, name, fn):
        return fn()

    def block(self, i, inputs, run):
        if i == 0:
            self.h_in = inputs["img"].clone()
        if not self.compute:
            return {"img": self.h_in + self.residual} if i == self.n_blocks - 1 else {"img": inputs["img"]}
        out = run(inputs)
        if i == self.n_blocks - 1:
            self.residual = out["img"] - self.h_in
        return out


def test_cached_mode_is_bit_identical_to_plain_reuse(device):
    m = model(device)
    ours = sample(m, LABELS, steps=10, controller=make_controller(m, TeaCacheConfig(1000.0, "raw", compute_every=3)))
    plain = sample(m, LABELS, steps=10, controller=EveryNthReuse(CFG.depth, 3))
    assert torch.equal(ours, plain)


@pytest.mark.parametrize("reuse", ["taylor1", "taylor2"])
@pytest.mark.parametrize("every", [0, 2])
def test_threshold_zero_is_bit_identical_whatever_the_reuse(device, reuse, every):
    m = model(device)
    base = sample(m, LABELS, steps=8)
    cfg = TeaCacheConfig(0.0, "raw", reuse=reuse, compute_every=every)
    assert torch.equal(base, sample(m, LABELS, steps=8, controller=make_controller(m, cfg)))


def _stack_residuals(m, steps):
    """Full-compute block-stack residual of every step (cond and uncond batched)."""
    res = {}

    def hook(i, inputs, run):
        if i == 0:
            hook.h = inputs["img"].clone()
        out = run(inputs)
        if i == CFG.depth - 1:
            res[hook.step] = out["img"] - hook.h
        return out

    class Probe(EveryNthReuse):
        def begin(self, info, streams):
            hook.step = info.step

        def block(self, i, inputs, run):
            return hook(i, inputs, run)

    sample(m, LABELS, steps=steps, controller=Probe(CFG.depth, 1))
    return res


@pytest.mark.parametrize("reuse,order", [("taylor1", 1), ("taylor2", 2)])
def test_forecast_steps_use_the_forecaster_and_count_memory(reuse, order):
    m = model("cpu")
    steps, every = 10, 3
    ctl = make_controller(m, TeaCacheConfig(1000.0, "raw", reuse=reuse, compute_every=every))
    sample(m, LABELS, steps=steps, controller=ctl)
    recs = [r for r in ctl.recorder.records if r.stream == "cond"]
    computed = [r.step for r in recs if r.decision == "compute"]
    assert computed == [0, 3, 6, 9]
    # the first reuses have fewer computed steps behind them than the order asks for
    reasons = [r.reason for r in recs if r.decision == "reuse"]
    assert reasons == ["reuse", "reuse"] + [f"forecast{min(order, 1)}"] * 2 + [f"forecast{order}"] * 2
    one = ctl.recorder.peak_cache_bytes / (order + 1)
    cached = make_controller(m, TeaCacheConfig(1000.0, "raw", compute_every=every))
    sample(m, LABELS, steps=steps, controller=cached)
    assert cached.recorder.peak_cache_bytes == one
    assert ctl.recorder.reuse.startswith(f"reuse: TeaCache taylor{order} forecast")
    assert f"taylor{order}" in ctl.recorder.run_id
    assert f"taylor{order}" in ctl.recorder.table().splitlines()[1]


def test_forecast_is_closer_to_full_compute_than_reuse(reference_model):
    m = reference_model  # trained: its trajectories are smooth, as real models' are
    steps = 13
    base = sample(m, LABELS, steps=steps)
    err = {}
    for reuse in ("cached", "taylor1", "taylor2"):
        ctl = make_controller(m, TeaCacheConfig(1000.0, "raw", reuse=reuse, compute_every=3))
        err[reuse] = float((sample(m, LABELS, steps=steps, controller=ctl) - base).pow(2).mean())
    assert err["taylor1"] < err["cached"] and err["taylor2"] < err["cached"], err


def test_offload_forecast_matches_main(device):
    m = model(device)
    outs, peaks = [], []
    for dev in ("main", "offload"):
        ctl = make_controller(m, TeaCacheConfig(1000.0, "raw", reuse="taylor2", compute_every=2, cache_device=dev))
        outs.append(sample(m, LABELS, steps=9, controller=ctl))
        peaks.append(ctl.recorder.peak_cache_bytes)
    assert torch.equal(outs[0], outs[1]) and peaks[0] == peaks[1] > 0


def test_offload_keeps_every_coefficient_on_cpu():
    m = model("cpu")
    ctl = CacheController(ReferenceHooks(m), TeaCacheConfig(1000.0, "raw", reuse="taylor2", compute_every=2,
                                                             cache_device="offload"))
    loc = StepLocator([1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        for t in (1.0, 0.8, 0.6, 0.4, 0.2):
            _one_forward(m, ctl, x, t, ["a"], loc)
    (h,) = ctl._residuals["a"]  # one history per part of the stack
    assert h.available_order == 2 and all(c.device.type == "cpu" for c in h.coefs)


def test_nonfinite_forecast_computes_instead():
    m = model("cpu")
    ctl = CacheController(ReferenceHooks(m), TeaCacheConfig(1000.0, "raw", reuse="taylor1", compute_every=2))
    loc = StepLocator([1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        for t in (1.0, 0.8, 0.6):
            _one_forward(m, ctl, x, t, ["a"], loc)
        (h,) = ctl._residuals["a"]  # one history per part of the stack
        assert h.available_order == 1
        # a finite latest residual with an overflowing slope: only the forecast is not finite
        ctl._residuals["a"] = (dataclasses.replace(h, coefs=(h.coefs[0], torch.full_like(h.coefs[1], float("inf")))),)
        out = _one_forward(m, ctl, x, 0.4, ["a"], loc)
    assert torch.isfinite(out).all()
    r = ctl.recorder.records[-1]
    assert r.decision == "compute" and r.reason == "nonfinite"
    assert any("forecast residual was not finite" in n for n in ctl.recorder.notes)


# -- L2C ---------------------------------------------------------------------------------------
def _odd_layers_reused(steps, first_reuse=2, branches=("block",)):
    comp = torch.ones(steps, CFG.depth, len(branches), dtype=torch.bool)
    comp[first_reuse:steps - 1, 1::2] = False
    return L2CSchedule(comp, branches, "reference")


@pytest.mark.parametrize("branches", [("block",), ("attn", "mlp")])
def test_l2c_forecast_all_compute_is_bit_identical(device, branches):
    m = model(device)
    base = sample(m, LABELS, steps=6)
    sched = L2CSchedule.all_compute(6, CFG.depth, branches, family="reference")
    assert torch.equal(base, sample(m, LABELS, steps=6, controller=make_controller(m, l2c=sched, l2c_reuse="taylor2")))


@pytest.mark.parametrize("branches", [("block",), ("attn", "mlp")])
def test_l2c_forecast_reuses_the_same_layers_closer_to_full_compute(reference_model, branches):
    m = reference_model
    steps = 9
    base = sample(m, LABELS, steps=steps)
    # odd layers compute at steps 0 and 1, then are forecast (every other layer every other step)
    comp = torch.ones(steps, len(m.blocks), len(branches), dtype=torch.bool)
    comp[2:steps - 1:2, 1::2] = False
    sched = L2CSchedule(comp, branches, "reference")
    out, recs = {}, {}
    for reuse in ("cached", "taylor1", "taylor2"):
        ctl = make_controller(m, l2c=sched, l2c_reuse=reuse)
        out[reuse] = sample(m, LABELS, steps=steps, controller=ctl)
        recs[reuse] = [(r.step, r.layers_computed, r.layers_reused) for r in ctl.recorder.records]
        assert torch.isfinite(out[reuse]).all()
    assert recs["cached"] == recs["taylor1"] == recs["taylor2"]
    err = {k: float((v - base).pow(2).mean()) for k, v in out.items()}
    assert err["taylor1"] < err["cached"] and err["taylor2"] < err["cached"], err
    assert "taylor2" in make_controller(m, l2c=sched, l2c_reuse="taylor2").recorder.run_id


def test_l2c_forecast_with_one_computed_step_is_reuse():
    """Reused from step 1 on, odd layers have one computed step behind them: the forecast is the
    cached residual itself, bit for bit."""
    m = model("cpu")
    sched = _odd_layers_reused(7, first_reuse=1)
    a = sample(m, LABELS, steps=7, controller=make_controller(m, l2c=sched))
    b = sample(m, LABELS, steps=7, controller=make_controller(m, l2c=sched, l2c_reuse="taylor2"))
    assert torch.equal(a, b)


def test_l2c_forecast_memory_counts_every_coefficient():
    m = model("cpu")
    peaks = []
    for reuse in ("cached", "taylor2"):
        ctl = make_controller(m, l2c=_odd_layers_reused(8, first_reuse=3), l2c_reuse=reuse)
        sample(m, LABELS, steps=8, controller=ctl)
        peaks.append(ctl.recorder.peak_cache_bytes)
    assert peaks[1] == 3 * peaks[0] > 0


def test_l2c_forecast_uses_caches_older_than_a_teacache_reuse():
    """Plain L2C caches count as missing after a TeaCache reuse; forecasts extrapolate them."""
    m = model("cpu")
    steps = 10
    sched = _odd_layers_reused(steps, first_reuse=1)
    tc = TeaCacheConfig(1000.0, "raw", reuse="taylor1", compute_every=2)
    reused = {}
    for reuse in ("cached", "taylor1"):
        ctl = make_controller(m, tc, l2c=sched, l2c_reuse=reuse)
        sample(m, LABELS, steps=steps, controller=ctl)
        reused[reuse] = sum(r.layers_reused for r in ctl.recorder.records if r.decision == "compute")
    assert reused["cached"] == 0 and reused["taylor1"] > 0


def test_nonfinite_l2c_forecast_computes_the_layer(monkeypatch):
    m = model("cpu")
    steps = 8
    sched = _odd_layers_reused(steps, first_reuse=3)
    ctl = make_controller(m, l2c=sched, l2c_reuse="taylor1")
    orig = forecast.extrapolate

    def overflowing(h, x, device=None):
        out = orig(h, x, device)
        return out + float("inf") if h.available_order > 0 else out

    monkeypatch.setattr(forecast, "extrapolate", overflowing)
    out = sample(m, LABELS, steps=steps, controller=ctl)
    assert torch.isfinite(out).all()
    assert ctl.recorder.summary()["layers_reused"] == 0
    assert any("L2C forecast was not finite" in n for n in ctl.recorder.notes)
