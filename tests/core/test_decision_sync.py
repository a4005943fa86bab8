"""The decision sync (cache_core/sync.py) with torch.distributed (gloo), 2 processes, on a toy
stack whose tokens are sharded and whose blocks mix every token through a collective (as USP
attention does, so a rank that skipped while another computed would hang there).

One spawn runs every case on both ranks; the parent runs the same cases in one process and
compares: decisions identical on every rank and equal to the single-process run, outputs within
float tolerance, TeaCache reuse and taylor1 forecasts, L2C (plain and taylor1), CFG-parallel
ranks that hold one of two streams, a forced desync and a rank that never arrives (both must
raise DecisionSyncError, not hang). The host suite does the same on ComfyUI's Flux and Wan
(tests/host/test_sequence_parallel.py)."""
from __future__ import annotations

import os
import socket
import tempfile
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cache_core.l2c import L2CSchedule
from cache_core.stack import CacheController
from cache_core.steps import StepLocator
from cache_core.sync import DecisionSyncError, TorchDistSync, make_sync
from cache_core.teacache import TeaCacheConfig

N_TOKENS, DIM, DEPTH, STEPS = 8, 16, 4, 10
SIGMAS = torch.linspace(1.0, 0.0, STEPS + 1).tolist()


class ToyHooks:
    n_blocks = DEPTH

    def indicator(self, inputs):
        return inputs["img"] * (1 + inputs["t"])

    def stack_input(self, inputs):
        return inputs["img"]

    def stack_output(self, index, outputs, inputs, like):
        return outputs["img"]

    def final_outputs(self, index, inputs, final):
        return {"img": final}

    def hidden_keys(self, index):
        return ("img",)


def weights():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(DIM, DIM, generator=g) * 0.3, torch.randn(DIM, DIM, generator=g) * 0.3)
            for _ in range(DEPTH)]


def token_mean(x, group):
    """Mean over every token of the sample, whole or sharded over ``group``."""
    s = x.sum(dim=1, keepdim=True)
    n = torch.tensor(float(x.shape[1]))
    if group is not None:
        dist.all_reduce(s, group=group)
        dist.all_reduce(n, group=group)
    return s / n


def sample(ctl, x, streams, group=None, skip_step=None):
    """Euler over SIGMAS; each evaluation runs the block stack through the controller."""
    w = weights()
    loc = StepLocator(SIGMAS)
    for i in range(STEPS):
        if i == skip_step:
            continue  # a rank that leaves out a forward: the desync case
        t = SIGMAS[i]
        ctl.begin(loc.locate(t), streams)
        try:
            h = x
            for j, (a, b) in enumerate(w):
                def run(inp, a=a, b=b):
                    y = inp["img"]
                    return {"img": y + torch.tanh(y @ a) * 0.5 + token_mean(y, group) @ b * 0.3}
                h = ctl.block(j, {"img": h, "t": t}, run)["img"]
        finally:
            ctl.end()
        x = x + (SIGMAS[i + 1] - t) * (h - x)
    return x


def start(seed=1, batch=1):
    return torch.randn(batch, N_TOKENS, DIM, generator=torch.Generator().manual_seed(seed))


def schedule():
    comp = torch.ones(STEPS, DEPTH, 1, dtype=torch.bool)
    comp[2:8:2, 1:3, 0] = False
    return L2CSchedule(comp, ("block",), "toy")


CASES = {  # name -> controller settings
    "cached": dict(teacache=TeaCacheConfig(0.15, "raw")),
    "taylor1": dict(teacache=TeaCacheConfig(0.15, "raw", reuse="taylor1")),
    "l2c": dict(l2c="schedule"),
    "l2c_taylor1+tc": dict(teacache=TeaCacheConfig(0.1, "raw"), l2c="schedule", l2c_reuse="taylor1"),
}


def controller(case, sync=None):
    kw = dict(CASES[case])
    if kw.get("l2c") == "schedule":
        kw["l2c"] = schedule()
    return CacheController(ToyHooks(), sync=sync, **kw)


def decisions(ctl):
    return [(r.step, str(r.stream), r.decision == "compute", r.layers_computed) for r in ctl.recorder.records]


def _worker(rank, world, port, out_dir):
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}")
    torch.set_num_threads(1)
    res = {}
    try:
        group = dist.group.WORLD
        for case in CASES:  # sequence parallel: each rank holds half the tokens
            t0 = time.perf_counter()
            ctl = controller(case, TorchDistSync(token_group=group, timeout=30))
            x = start().chunk(world, dim=1)[rank]
            res[case] = (sample(ctl, x, ["cond"], group), decisions(ctl), time.perf_counter() - t0)
        # CFG parallel: batch 2 (cond, uncond) split over the ranks, tokens whole; the stream keys list both
        ctl = CacheController(ToyHooks(), teacache=TeaCacheConfig(0.15, "raw"),
                              sync=TorchDistSync(branch_group=group, cfg_rank=rank, cfg_world=world, timeout=30))
        res["cfg"] = (sample(ctl, start(batch=2)[rank:rank + 1], ["cond", "uncond"]), decisions(ctl), 0.0)
        # forced desync: rank 1 leaves out step 0's forward
        try:
            ctl = controller("cached", TorchDistSync(token_group=group, timeout=30))
            sample(ctl, start().chunk(world, dim=1)[rank], ["cond"], group, skip_step=0 if rank == 1 else None)
            res["desync"] = "no error"
        except DecisionSyncError as e:
            res["desync"] = str(e)
        # a rank that never arrives: rank 0 must give up after the timeout, not hang
        if rank == 0:
            t0 = time.perf_counter()
            try:
                ctl = controller("cached", TorchDistSync(token_group=group, timeout=2))
                sample(ctl, start().chunk(world, dim=1)[rank], ["cond"], group)
                res["absent"] = ("no error", 0.0)
            except DecisionSyncError as e:
                res["absent"] = (str(e), time.perf_counter() - t0)
        else:
            time.sleep(5)
    finally:
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
        if rank == 0:
            time.sleep(0.5)
        dist.destroy_process_group() if rank == 1 else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks():
    """Both ranks' results for every case, from one spawn of 2 processes."""
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        mp.start_processes(_worker, args=(2, _free_port(), d), nprocs=2, join=True, start_method="spawn")
        took = time.perf_counter() - t0
        out = [torch.load(os.path.join(d, f"rank{r}.pt"), weights_only=False) for r in range(2)]
    print(f"2-rank spawn with every case: {took:.1f} s")
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_ranks_decide_as_one_process(ranks, case):
    ctl = controller(case)
    single = sample(ctl, start(), ["cond"])
    ref = decisions(ctl)
    (x0, d0, _), (x1, d1, _) = ranks[0][case], ranks[1][case]
    assert d0 == d1 == ref
    if CASES[case].get("teacache") is not None:
        assert 0 < sum(not c for _, _, c, _ in ref) < STEPS  # the case reuses and computes
    else:
        assert sum(n < DEPTH for *_, n in ref) == 3  # L2C reused layers on 3 steps
    torch.testing.assert_close(torch.cat([x0, x1], dim=1), single, rtol=1e-5, atol=1e-5)


def test_cfg_parallel_ranks_hold_one_stream_each(ranks):
    ctl = CacheController(ToyHooks(), teacache=TeaCacheConfig(0.15, "raw"))
    single = sample(ctl, start(batch=2), ["cond", "uncond"])
    ref = decisions(ctl)
    (x0, d0, _), (x1, d1, _) = ranks[0]["cfg"], ranks[1]["cfg"]
    # each rank records its own stream; the steps computed are the batched run's
    assert d0 == [d for d in ref if d[1] == "cond"] and d1 == [d for d in ref if d[1] == "uncond"]
    assert any(not c for *_, c, _ in ref)
    torch.testing.assert_close(torch.cat([x0, x1]), single, rtol=1e-5, atol=1e-5)


def test_forced_desync_raises_on_every_rank(ranks):
    for r in ranks:
        assert "out of step" in r["desync"] and "step 0" in r["desync"] and "step 1" in r["desync"], r["desync"]


def test_absent_rank_raises_within_the_timeout(ranks):
    msg, took = ranks[0]["absent"]
    assert "did not arrive within 2 s" in msg, msg
    assert took < 4.5


def test_no_sync_without_a_process_group():
    assert not dist.is_initialized()
    assert make_sync() is None
    with pytest.raises(DecisionSyncError, match="not initialised"):
        TorchDistSync()
