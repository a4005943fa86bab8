"""Bad input gets a clear error that says what to do, and leaves the model unpatched."""
from __future__ import annotations

import math
import os

import pytest
import torch

from helpers import holder_of, l2c, schedule_folder, save_schedule, teacache
from pack import sub


@pytest.fixture(scope="module")
def flux(tiny_models):
    return tiny_models("flux")


def _unpatched(model):
    return holder_of(model) is None and not model.object_patches and \
        "dit" not in model.model_options.get("transformer_options", {}).get("patches_replace", {})


@pytest.mark.parametrize("thresh, match", [
    (-0.5, "must be >= 0"), (float("nan"), "finite number"), (math.inf, "finite number"),
    (-math.inf, "finite number")])
def test_bad_threshold(flux, thresh, match):
    with pytest.raises(ValueError, match=match):
        teacache(flux.patcher, thresh)
    assert _unpatched(flux.patcher)


def test_start_after_end(flux):
    with pytest.raises(ValueError, match="start_percent .* is after end_percent"):
        teacache(flux.patcher, 0.4, start=0.8, end=0.2)


def test_auto_threshold_is_the_family_recommendation(flux):
    m = teacache(flux.patcher, -1.0, coefficients="auto")
    h = holder_of(m)
    assert h.teacache.rel_l1_thresh == h.adapter.recommended_threshold
    assert h.teacache.coefficients.name == "flux"


def test_unknown_coefficients(flux):
    with pytest.raises(KeyError, match="known:"):
        teacache(flux.patcher, 0.4, coefficients="no-such-set")


BAD_FILES = {
    "truncated.safetensors": lambda good: good[: len(good) // 2],
    "corrupt.safetensors": lambda good: b"\x00" * 8 + os.urandom(200),
    "notes.safetensors": lambda good: b"this is a text file, not a schedule\n" * 4,
    "random.pt": lambda good: os.urandom(512),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_schedule_files_are_refused(flux, name):
    from dit_cache_pack.cache_core.l2c import ScheduleError
    n = sub("nodes.adapters").detect(flux.patcher).n_blocks
    with schedule_folder() as d:
        good = save_schedule(d, "good.safetensors", torch.ones(4, n, 1, dtype=torch.bool), "flux")
        data = open(good, "rb").read()
        with open(os.path.join(d, name), "wb") as f:
            f.write(BAD_FILES[name](data))
        before = sorted(os.listdir(d))
        with pytest.raises(ScheduleError) as e:
            l2c(flux.patcher, name)
        assert name in str(e.value) or "schedule" in str(e.value).lower()
        assert sorted(os.listdir(d)) == before  # nothing written
    assert _unpatched(flux.patcher)


def test_schedule_for_other_family_or_depth(flux):
    from dit_cache_pack.cache_core.l2c import ScheduleError
    n = sub("nodes.adapters").detect(flux.patcher).n_blocks
    with schedule_folder() as d:
        save_schedule(d, "wan.safetensors", torch.ones(4, n, 1, dtype=torch.bool), "wan21")
        save_schedule(d, "deep.safetensors", torch.ones(4, n + 3, 1, dtype=torch.bool), "flux")
        with pytest.raises(ScheduleError, match="'wan21' but the model is 'flux'"):
            l2c(flux.patcher, "wan.safetensors")
        with pytest.raises(ScheduleError, match="layers but the model has"):
            l2c(flux.patcher, "deep.safetensors")


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/dit_cache_pwned_marker",))


def test_malicious_pickle_is_refused_without_running(flux):
    from dit_cache_pack.cache_core.l2c import ScheduleError
    marker = "/tmp/dit_cache_pwned_marker"
    if os.path.exists(marker):
        os.remove(marker)
    with schedule_folder() as d:
        torch.save({"routers": {"0.prob": torch.zeros(4)}, "x": _Boom()}, os.path.join(d, "evil.pt"))
        with pytest.raises(ScheduleError):
            l2c(flux.patcher, "evil.pt")
    assert not os.path.exists(marker)


@pytest.mark.parametrize("name", ["../escape.safetensors", "/etc/passwd", "a/../../b.safetensors"])
def test_path_components_are_refused(flux, name):
    with pytest.raises(ValueError, match="not a plain file name"):
        l2c(flux.patcher, name)


def test_huge_file_is_refused_unread(flux):
    with schedule_folder() as d:
        p = os.path.join(d, "huge.safetensors")
        with open(p, "wb") as f:
            f.truncate(80 * 2**20)  # sparse: costs no disk
        with pytest.raises(ValueError, match="far larger than any"):
            l2c(flux.patcher, "huge.safetensors")


def test_bad_l2c_threshold(flux):
    n = sub("nodes.adapters").detect(flux.patcher).n_blocks
    with schedule_folder() as d:
        save_schedule(d, "s.safetensors", torch.ones(4, n, 1, dtype=torch.bool), "flux")
        for t in (float("nan"), -0.1, 1.5):
            with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
                l2c(flux.patcher, "s.safetensors", t)


def _profile_folder():
    import contextlib
    import tempfile
    import folder_paths

    @contextlib.contextmanager
    def cm():
        folders = sub("nodes.folders")
        folders.register()
        with tempfile.TemporaryDirectory() as d:
            old = folder_paths.folder_names_and_paths[folders.PROFILES]
            folder_paths.folder_names_and_paths[folders.PROFILES] = ([d], old[1])
            try:
                yield d
            finally:
                folder_paths.folder_names_and_paths[folders.PROFILES] = old
    return cm()


def _write_profile(d, name, **doc):
    import json
    with open(os.path.join(d, name), "w") as f:
        json.dump(doc, f)


def test_auto_prefers_profile_calibrated_on_this_model_for_the_nearest_step_count(flux):
    import tiny_models as tm
    prof = sub("nodes.profiles")
    fp = prof.model_fingerprint(flux.patcher)
    with _profile_folder() as d:
        base = dict(family="flux", model_sha256=fp, input_range=[0.0, 1.0])
        _write_profile(d, "six.json", steps=6, coefficients=[0, 0, 0, 0.5, 0], **base)
        _write_profile(d, "twenty.json", steps=20, coefficients=[0, 0, 0, 2.0, 0], **base)
        _write_profile(d, "other.json", steps=6, coefficients=[0, 0, 0, 9.0, 0],
                       **{**base, "model_sha256": "0" * 64})
        m = teacache(flux.patcher, 0.4, coefficients="auto")
        h = holder_of(m)
        assert sorted(p.name for _, p in h.calibrated) == ["six", "twenty"]
        assert h.teacache_for(6).coefficients.name == "six"
        assert h.teacache_for(18).coefficients.name == "twenty"
        tm.sample(flux, steps=6, model=m)
        assert "six" in h.last_summary["run_id"]  # the run used, and names, the 6-step profile
        # a profile made for another family is refused by name
        _write_profile(d, "wan.json", family="wan", steps=6, coefficients=[1, 0], input_range=[0, 1])
        with pytest.raises(ValueError, match="calibrated for wan"):
            teacache(flux.patcher, 0.4, coefficients="wan.json")
        with open(os.path.join(d, "broken.json"), "w") as f:
            f.write("{not json")
        with pytest.raises(ValueError, match="not a valid profile file"):
            teacache(flux.patcher, 0.4, coefficients="broken.json")
