"""Router checkpoint readers: official DiT sample, U-ViT layout, refusals, safety, fuzz."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_core.l2c import L2CSchedule, ScheduleError, load_any, read_router_file, save_logits

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared"
DIT20 = SHARED / "reference" / "l2c" / "DiT-XL-2_DDIM20_router.pt"
needs_dit = pytest.mark.skipif(not DIT20.is_file(),
                               reason=f"reference router {DIT20} is absent (shared/ not present)")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA is not available"))]


@needs_dit
def test_dit_sample_decodes_312_of_560():
    r = read_router_file(DIT20)
    assert (r.format, r.family, r.steps, r.layers) == ("dit", "dit", 20, 28)
    assert r.default_threshold == 0.1
    assert r.args["num_sampling_steps"] == 20
    assert r.cache_steps == tuple(range(1, 20, 2))  # even router indices 18..0
    s = load_any(DIT20)
    summ = s.summary()
    assert (summ["computed"], summ["total"]) == (312, 560)
    assert round(100 * summ["removed_cache_steps"], 2) == 44.29
    assert s.family == "dit" and s.threshold == 0.1 and s.source == DIT20.name
    # full steps compute everything; the last step uses router 0 (all 56 active at 0.1)
    assert bool(s.compute[0::2].all()) and int(s.compute[19].sum()) == 56
    # a stricter threshold never computes more
    assert load_any(DIT20, threshold=0.5).summary()["computed"] <= 312


@needs_dit
def test_dit_sample_round_trips_as_schedule(tmp_path):
    s = load_any(DIT20)
    p = tmp_path / "dit20.safetensors"
    s.save(p)
    t = load_any(p)
    assert torch.equal(t.compute, s.compute) and t.cache_steps == s.cache_steps
    with pytest.raises(ScheduleError, match="finished schedule"):
        read_router_file(p)


@needs_dit
def test_cli_json():
    out = subprocess.run([sys.executable, "-m", "cache_core.l2c", "inspect", str(DIT20),
                          "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert set(info) == {"format", "steps", "layers", "computed", "total",
                         "removed_cache_steps", "removed_all_steps"}
    assert info["format"] == "dit" and info["steps"] == 20 and info["layers"] == 28
    assert (info["computed"], info["total"]) == (312, 560)
    assert info["removed_cache_steps"] == pytest.approx(248 / 560)
    assert info["removed_all_steps"] == pytest.approx(248 / 1120)


def test_cli_bad_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    out = subprocess.run([sys.executable, "-m", "cache_core.l2c", "inspect", str(bad)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "bad.pt" in out.stderr and "not a torch checkpoint" in out.stderr


def _uvit_file(path, nfe=20, depth=29, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {f"{i}.prob": torch.randn(2 * depth, generator=g) * 3 for i in range(nfe)}
    torch.save(state, path)
    return state


@pytest.mark.parametrize("device", DEVICES)
def test_uvit_layout(tmp_path, device):
    p = tmp_path / "dpm20_router.pth"
    state = _uvit_file(p)
    if device == "cuda":  # tensors saved on the GPU must still load on a CPU reader
        torch.save({k: v.to("cuda") for k, v in state.items()}, p)
    r = read_router_file(p)
    assert (r.format, r.family, r.steps, r.layers) == ("uvit", "uvit", 20, 29)
    assert r.default_threshold == 0.9
    assert r.cache_steps == tuple(range(2, 20, 2))  # evaluation 2k uses router k, k=1..9
    s = r.to_schedule()
    expect = sum(int((torch.sigmoid(state[f"{k}.prob"]) > 0.9).sum()) for k in range(1, 10))
    assert s.summary()["computed"] == expect and s.summary()["total"] == 9 * 58
    for k in range(1, 10):  # branch order: entry 2i attention, 2i+1 MLP of block i
        want = (torch.sigmoid(state[f"{k}.prob"]) > 0.9).view(29, 2)
        assert torch.equal(s.compute[2 * k], want)
    assert bool(s.compute[1::2].all()) and bool(s.compute[0].all())


def test_malicious_pickle_not_executed(tmp_path):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    p = tmp_path / "evil.pt"
    torch.save({"routers": {"0.prob": Evil()}}, p)
    for fn in (read_router_file, load_any):
        with pytest.raises(ScheduleError, match="refused.*not executed"):
            fn(p)
    assert not marker.exists()


def test_refusals(tmp_path):
    # truncated official-style archive
    p = tmp_path / "r.pt"
    torch.save({"routers": {f"{i}.prob": torch.zeros(8) for i in range(4)},
                "args": argparse.Namespace(num_sampling_steps=4)}, p)
    data = p.read_bytes()
    assert read_router_file(p).layers == 4
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ScheduleError, match="truncated or corrupt"):
        load_any(tmp_path / "trunc.pt")
    # corrupt: bytes flipped in the middle of the archive
    corrupt = bytearray(data)
    for i in range(len(corrupt) // 3, len(corrupt) // 3 + 64):
        corrupt[i] ^= 0xFF
    (tmp_path / "corrupt.pt").write_bytes(bytes(corrupt))
    with pytest.raises(ScheduleError):
        load_any(tmp_path / "corrupt.pt")
    # wrong format: a valid torch file that is not a router
    torch.save({"model": torch.zeros(3)}, tmp_path / "model.pt")
    with pytest.raises(ScheduleError, match="not a Learning-to-Cache router"):
        load_any(tmp_path / "model.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ScheduleError, match="not a Learning-to-Cache router"):
        load_any(tmp_path / "list.pt")
    # wrong layer count: routers of different lengths, odd length, model mismatch
    torch.save({"routers": {"0.prob": torch.zeros(8), "1.prob": torch.zeros(6)}},
               tmp_path / "ragged.pt")
    with pytest.raises(ScheduleError, match="different lengths"):
        load_any(tmp_path / "ragged.pt")
    torch.save({"0.prob": torch.zeros(7)}, tmp_path / "odd.pth")
    with pytest.raises(ScheduleError, match="not 2 x depth"):
        load_any(tmp_path / "odd.pth")
    torch.save({"routers": {"0.prob": torch.zeros(8), "1.prob": torch.zeros(8)},
                "args": argparse.Namespace(model="DiT-XL/2", num_sampling_steps=2)},
               tmp_path / "xl.pt")
    with pytest.raises(ScheduleError, match="4 layers but DiT-XL has 28"):
        load_any(tmp_path / "xl.pt")
    with pytest.raises(ScheduleError, match="4 layers but 28 were expected"):
        load_any(p, layers=28)
    # gaps, NaN, bad threshold
    torch.save({"0.prob": torch.zeros(8), "2.prob": torch.zeros(8)}, tmp_path / "gap.pth")
    with pytest.raises(ScheduleError, match="without gaps"):
        load_any(tmp_path / "gap.pth")
    torch.save({"0.prob": torch.full((8,), float("nan"))}, tmp_path / "nan.pth")
    with pytest.raises(ScheduleError, match="NaN"):
        load_any(tmp_path / "nan.pth")
    with pytest.raises(ScheduleError, match="threshold"):
        load_any(p, threshold=1.5)


def test_trainer_logits_file(tmp_path):
    logits = torch.full((4, 3, 2), float("inf"))
    logits[1] = torch.tensor([[2.0, -2.0], [0.1, -0.1], [5.0, -5.0]])
    logits[3] = -5.0
    p = tmp_path / "trained.safetensors"
    save_logits(p, logits, family="flux", branches=("attn", "mlp"), cache_steps=[1, 3],
                threshold=0.5, source="toy")
    r = read_router_file(p)
    assert r.format == "l2c-logits" and r.family == "flux" and r.cache_steps == (1, 3)
    s = load_any(p)
    assert s.compute[1].tolist() == [[True, False], [True, False], [True, False]]
    assert not bool(s.compute[3].any()) and bool(s.compute[0].all())
    assert load_any(p, threshold=0.6).compute[1].tolist() == [[True, False], [False, False],
                                                             [True, False]]


_seed_bytes = []
if DIT20.is_file():
    _seed_bytes.append(DIT20.read_bytes())


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(
    st.binary(max_size=512),
    st.builds(lambda pre, junk: b"PK\x03\x04" + pre + junk, st.binary(max_size=64),
              st.binary(max_size=256)),
    st.builds(lambda n, body: n.to_bytes(8, "little") + b'{"' + body,
              st.integers(0, 300), st.binary(max_size=300)),
    st.builds(lambda cut, flip: (cut, flip), st.integers(0, 24063), st.integers(0, 24063)),
))
def test_fuzz_loaders_only_raise_schedule_error(tmp_path_factory, blob):
    if isinstance(blob, tuple):  # mutate the real router file: truncate or flip a byte
        if not _seed_bytes:
            return
        cut, flip = blob
        data = bytearray(_seed_bytes[0][: max(cut, 1)])
        data[flip % len(data)] ^= 0x5A
        blob = bytes(data)
    p = tmp_path_factory.mktemp("fuzz") / "f.bin"
    p.write_bytes(blob)
    for fn in (load_any, read_router_file, L2CSchedule.load):
        try:
            fn(p)
        except ScheduleError:
            pass
