"""L2CSchedule: construction, persistence, validation, resampling."""

import json
import struct

import pytest
import torch

from cache_core.l2c import L2CSchedule, ScheduleError
from cache_core.l2c.schedule import META_KEY


def _sched(steps=6, layers=3, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    compute = torch.rand(steps, layers, 2, generator=g) > 0.5
    compute[0::2] = True  # even steps full, odd steps cache steps
    kw.setdefault("cache_steps", list(range(1, steps, 2)))
    return L2CSchedule(compute, ("attn", "mlp"), "dit", threshold=0.1, source="unit",
                       kind="test", **kw)


def test_round_trip(tmp_path):
    s = _sched()
    p = tmp_path / "s.safetensors"
    s.save(p)
    t = L2CSchedule.load(p)
    assert torch.equal(t.compute, s.compute)
    assert t.metadata() == s.metadata()
    assert (t.family, t.layers, t.steps, t.branches) == ("dit", 3, 6, ("attn", "mlp"))
    assert t.threshold == 0.1 and t.source == "unit" and t.kind == "test"


def test_block_granularity_and_summary():
    s = L2CSchedule.all_compute(4, 5, ("block",), family="flux")
    assert s.summary()["computed"] == s.summary()["total"] == 3 * 5
    assert s.summary()["removed_all_steps"] == 0.0
    assert "0.00% removed" in s.describe()


def test_validate_for():
    s = _sched()
    s.validate_for("dit", 3)
    with pytest.raises(ScheduleError, match="family 'dit'.*'uvit'"):
        s.validate_for("uvit", 3)
    with pytest.raises(ScheduleError, match="3 layers.*28"):
        s.validate_for("dit", 28)


def test_resample_same_and_ends():
    s = _sched(steps=10)
    assert s.resample(10) is s
    for n in (1, 2, 7, 25):
        r = s.resample(n)
        assert r.steps == n and r.layers == s.layers
        assert r.positions[0] == 0.0 and (n == 1 or r.positions[-1] == 1.0)
        assert bool(r.compute[0].all())  # nothing cached before the first step
        if n > 1:
            assert torch.equal(r.compute[-1], s.compute[-1])


def test_resample_nearest_position():
    compute = torch.ones(5, 1, 1, dtype=torch.bool)
    compute[2, 0, 0] = False  # middle step (position 0.5) reuses
    s = L2CSchedule(compute, ("block",), "dit", cache_steps=[2])
    # targets k/8; k=4 (0.5) is nearest to source step 2, k=5 (0.625) ties between 0.5 and
    # 0.75 and ties go to the earlier source step
    r = s.resample(9)
    assert r.compute[:, 0, 0].tolist() == [True] * 4 + [False, False] + [True] * 3
    assert r.cache_steps == (4, 5)
    assert torch.equal(s.for_step(4, 9), r.compute[4])
    with pytest.raises(ScheduleError, match="outside"):
        s.for_step(9, 9)


def test_constructor_refuses_inconsistent():
    with pytest.raises(ScheduleError, match="bool"):
        L2CSchedule(torch.ones(2, 2, 2), ("a", "b"), "dit")
    with pytest.raises(ScheduleError, match="branches"):
        L2CSchedule(torch.ones(2, 2, 2, dtype=torch.bool), ("a",), "dit")
    with pytest.raises(ScheduleError, match="positions"):
        L2CSchedule(torch.ones(2, 2, 1, dtype=torch.bool), ("a",), "dit", positions=[0.0])
    bad = torch.ones(3, 2, 1, dtype=torch.bool)
    bad[1] = False
    with pytest.raises(ScheduleError, match="not listed as cache steps"):
        L2CSchedule(bad, ("a",), "dit", cache_steps=[2])


def _write_raw(path, tensors_header, meta, payload=b""):
    header = dict(tensors_header)
    if meta is not None:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + payload)


def test_load_refuses_bad_files(tmp_path):
    good = tmp_path / "good.safetensors"
    _sched().save(good)
    data = good.read_bytes()

    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(data[: len(data) - 10])
    with pytest.raises(ScheduleError, match="truncated or corrupt"):
        L2CSchedule.load(trunc)

    head = tmp_path / "head.safetensors"
    head.write_bytes(data[:20])
    with pytest.raises(ScheduleError, match="not a safetensors file|truncated"):
        L2CSchedule.load(head)

    notst = tmp_path / "x.safetensors"
    notst.write_bytes(b"hello world, not a tensor file at all")
    with pytest.raises(ScheduleError, match="not a safetensors file"):
        L2CSchedule.load(notst)

    from safetensors.torch import save_file
    nometa = tmp_path / "nometa.safetensors"
    save_file({"compute": torch.ones(2, 2, 2, dtype=torch.bool)}, str(nometa))
    with pytest.raises(ScheduleError, match="no 'dit_cache.l2c' metadata"):
        L2CSchedule.load(nometa)

    meta = _sched().metadata()
    wrong_dtype = tmp_path / "dtype.safetensors"
    save_file({"compute": torch.ones(6, 3, 2)}, str(wrong_dtype),
              metadata={META_KEY: json.dumps(meta)})
    with pytest.raises(ScheduleError, match="must be bool"):
        L2CSchedule.load(wrong_dtype)

    wrong_shape = tmp_path / "shape.safetensors"
    save_file({"compute": torch.ones(6, 4, 2, dtype=torch.bool)}, str(wrong_shape),
              metadata={META_KEY: json.dumps(meta)})
    with pytest.raises(ScheduleError, match=r"shape \(6, 4, 2\) but the metadata says \(6, 3, 2\)"):
        L2CSchedule.load(wrong_shape)

    missing = dict(meta)
    del missing["family"]
    miss = tmp_path / "miss.safetensors"
    save_file({"compute": torch.ones(6, 3, 2, dtype=torch.bool)}, str(miss),
              metadata={META_KEY: json.dumps(missing)})
    with pytest.raises(ScheduleError, match="lacks family"):
        L2CSchedule.load(miss)

    badjson = tmp_path / "badjson.safetensors"
    save_file({"compute": torch.ones(6, 3, 2, dtype=torch.bool)}, str(badjson),
              metadata={META_KEY: "{not json"})
    with pytest.raises(ScheduleError, match="not valid JSON"):
        L2CSchedule.load(badjson)

    extra = tmp_path / "extra.safetensors"
    save_file({"compute": torch.ones(6, 3, 2, dtype=torch.bool), "x": torch.ones(1)},
              str(extra), metadata={META_KEY: json.dumps(meta)})
    with pytest.raises(ScheduleError, match="exactly one tensor"):
        L2CSchedule.load(extra)


def test_load_refuses_huge_and_missing(tmp_path):
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as fh:  # sparse: costs no disk
        fh.truncate(65 * 1024 * 1024)
    with pytest.raises(ScheduleError, match="64 MiB"):
        L2CSchedule.load(big)
    with pytest.raises(ScheduleError, match="cannot read"):
        L2CSchedule.load(tmp_path / "absent.safetensors")
