"""Router training and schedule application on a tiny adaLN-style residual toy model."""

import math

import pytest
import torch
from torch import nn

from cache_core.l2c import BranchCache, L2CSchedule, RouterBatch, RouterTrainable, RouterTrainer

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA is not available"))]
D, TOKENS, BATCH, LAYERS, STEPS = 16, 8, 4, 4, 8
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add contention



class ToyBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.mod = nn.Linear(d, 4 * d)  # shift/gate for each branch, from the conditioning
        self.attn = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d))  # "attn-ish"
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))


class ToyDiT(nn.Module):
    """Implements RouterTrainable; also a schedule-driven forward using BranchCache."""

    branches = ("attn", "mlp")

    def __init__(self, layers=LAYERS, d=D, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.n_layers = layers
        self.t_embed = nn.Linear(2, d)
        self.blocks = nn.ModuleList(ToyBlock(d) for _ in range(layers))
        self.out = nn.Linear(d, d)

    def _run(self, x, t, cond, branch_fn):
        c = cond + self.t_embed(torch.stack([torch.sin(3 * t), torch.cos(3 * t)]).to(x))
        h = x
        for i, blk in enumerate(self.blocks):
            s1, g1, s2, g2 = blk.mod(c).unsqueeze(1).chunk(4, dim=-1)
            norm = nn.functional.layer_norm
            a = branch_fn(i, 0, lambda: blk.attn(norm(h, (h.shape[-1],)) + s1))
            h = h + g1 * a
            m = branch_fn(i, 1, lambda: blk.mlp(norm(h, (h.shape[-1],)) + s2))
            h = h + g2 * m
        return self.out(h)

    def forward(self, x, t, cond):
        return self._run(x, t, cond, lambda i, j, fn: fn())

    def forward_with_mix(self, x, t, cond, beta, cached):
        fresh = [[None, None] for _ in range(self.n_layers)]

        def mix(i, j, fn):
            out = fn()
            fresh[i][j] = out
            if beta is None:
                return out
            return beta[i, j] * out + (1 - beta[i, j]) * cached[i][j]

        return self._run(x, t, cond, mix), fresh

    def forward_scheduled(self, x, t, cond, cache, row):
        cache.begin_step(x)
        return self._run(x, t, cond,
                         lambda i, j, fn: cache.branch(i, self.branches[j], row, fn))


def _trajectory(device, steps=STEPS, seed=1):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(BATCH, TOKENS, D, generator=g)
    drift = torch.randn(BATCH, TOKENS, D, generator=g)
    cond = torch.randn(BATCH, D, generator=g).to(device)
    xs = [(x0 + 0.15 * k * drift).to(device) for k in range(steps)]
    ts = [torch.tensor(1 - k / (steps - 1), device=device) for k in range(steps)]
    return xs, ts, cond


def _sampler(device):
    xs, ts, cond = _trajectory(device)
    return lambda s: RouterBatch(xs[s - 1], ts[s - 1], xs[s], ts[s], cond)


def test_toy_model_implements_protocol():
    assert isinstance(ToyDiT(), RouterTrainable)


@pytest.mark.parametrize("device", DEVICES)
def test_training_lowers_loss_and_freezes_model(device):
    model = ToyDiT().to(device)
    calls = []
    tr = RouterTrainer(model, STEPS, family="toy", lam=3e-4, lr=0.1, device=device)
    losses = tr.fit(_sampler(device), 160, progress=lambda i, n: calls.append((i, n)))
    n = len(tr.cache_steps)  # compare whole rounds over the cache steps
    assert sum(losses[-n:]) < 0.8 * sum(losses[:n])
    assert calls[0] == (1, 160) and calls[-1] == (160, 160) and len(calls) == 160
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    for p in tr.logits.values():
        assert p.detach().abs().max().item() <= tr.clamp
    s = tr.to_schedule(0.5)
    assert (s.steps, s.layers, s.branches, s.family) == (STEPS, LAYERS, ("attn", "mlp"), "toy")
    assert bool(s.compute[0::2].all())  # full steps untouched


def test_sparser_with_larger_lambda():
    counts = []
    for lam in (1e-5, 1e-4, 3e-4, 1e-3):
        tr = RouterTrainer(ToyDiT(), STEPS, family="toy", lam=lam, lr=0.1)
        tr.fit(_sampler("cpu"), 160)
        counts.append(tr.to_schedule(0.5).summary()["computed"])
    assert all(b <= a for a, b in zip(counts, counts[1:])), counts
    assert counts[-1] < counts[0], counts


def test_trainer_logits_reload(tmp_path):
    from cache_core.l2c import load_any
    tr = RouterTrainer(ToyDiT(), STEPS, family="toy", lam=1e-2, lr=0.05)
    tr.fit(_sampler("cpu"), 40)
    p = tmp_path / "toy_logits.safetensors"
    tr.save_logits(p, threshold=0.5)
    assert torch.equal(load_any(p).compute, tr.to_schedule(0.5).compute)
    assert torch.equal(load_any(p, threshold=0.8).compute, tr.to_schedule(0.8).compute)


@pytest.mark.parametrize("device", DEVICES)
def test_all_compute_schedule_is_bit_identical(device):
    model = ToyDiT().to(device)
    xs, ts, cond = _trajectory(device)
    sched = L2CSchedule.all_compute(STEPS, LAYERS, ("attn", "mlp"), family="toy")
    cache = BranchCache(("attn", "mlp"))
    with torch.no_grad():
        for k in range(STEPS):
            ref = model(xs[k], ts[k], cond)
            got = model.forward_scheduled(xs[k], ts[k], cond, cache, sched.for_step(k, STEPS))
            assert torch.equal(ref, got)
    assert cache.reused == 0 and cache.computed == STEPS * LAYERS * 2


@pytest.mark.parametrize("device", DEVICES)
def test_reuse_matches_hard_mix(device):
    """Inference with a thresholded row equals the training mix with beta in {0, 1}."""
    model = ToyDiT().to(device)
    xs, ts, cond = _trajectory(device)
    row = torch.tensor([[True, False], [False, False], [False, True], [True, True]])
    cache = BranchCache()
    with torch.no_grad():
        model.forward_scheduled(xs[0], ts[0], cond, cache, None)
        got = model.forward_scheduled(xs[1], ts[1], cond, cache, row)
        _, cached = model.forward_with_mix(xs[0], ts[0], cond, None, None)
        want, _ = model.forward_with_mix(xs[1], ts[1], cond, row.float().to(device), cached)
        full = model(xs[1], ts[1], cond)
    assert torch.allclose(got, want, atol=1e-6, rtol=0)
    assert not torch.allclose(got, full)
    assert cache.reused == 4


def test_branch_cache_resets_on_shape_and_dtype_change():
    model = ToyDiT()
    xs, ts, cond = _trajectory("cpu")
    reuse_all = torch.zeros(LAYERS, 2, dtype=torch.bool)
    cache = BranchCache()
    with torch.no_grad():
        model.forward_scheduled(xs[0], ts[0], cond, cache, None)
        assert len(cache) == LAYERS * 2
        x_small, c_small = xs[1][:2], cond[:2]  # batch shrinks: cached tensors don't fit
        out = model.forward_scheduled(x_small, ts[1], c_small, cache, reuse_all)
        assert torch.equal(out, model(x_small, ts[1], c_small))
        assert cache.reused == 0
        model.double()
        cache2_out = model.forward_scheduled(x_small.double(), ts[1], c_small.double(), cache,
                                             reuse_all)
        assert cache2_out.dtype == torch.float64 and cache.reused == 0
    cache.reset()
    assert len(cache) == 0


def test_to_schedule_threshold_semantics():
    tr = RouterTrainer(ToyDiT(), 4, family="toy", init_logit=0.0)
    with torch.no_grad():
        tr.logits[1][0, 0] = 2.0
        tr.logits[3][:] = -1.0
    s = tr.to_schedule(0.5)
    assert s.cache_steps == (1, 3) and s.threshold == 0.5 and s.kind == "trained"
    assert s.compute[1].tolist() == [[True, False]] + [[False, False]] * (LAYERS - 1)
    assert not bool(s.compute[3].any())
    assert s.summary()["computed"] == 1 and s.summary()["total"] == 2 * LAYERS * 2
    assert math.isclose(torch.sigmoid(torch.tensor(2.0)).item(), tr.beta(1)[0, 0].item())
