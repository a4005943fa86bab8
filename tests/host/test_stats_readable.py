"""Cache Stats as a person reads it (issue 19): the first line is the summary, streams carry the
names the user gave them (positive/negative, the node that added a guidance pass, an area cond by
its index) in the report, the summary and the plot's rows, never uuid prefixes."""
from __future__ import annotations

import re

import issue_models as im
import pytest
import tiny_models as tm
from helpers import holder_of, summary, teacache
from pack import sub

STEPS = 4


@pytest.fixture(scope="module")
def flux(comfy):
    return im.flux_2x4()


def _uuid_like(text):
    return re.findall(r"\b[0-9a-f]{8}-[0-9a-f]", text)


def test_first_line_is_the_summary_and_streams_are_named(flux):
    m = teacache(flux.patcher, 0.4)
    tm.sample(flux, steps=STEPS, cfg=3.0, model=m)
    h = holder_of(m)
    s, report = h.last_summary, h.last_report
    first = report.splitlines()[0]
    assert first == sub("cache_core.report").headline(s)
    assert first.startswith("speed-up ") and f"computed {s['computed']}/{s['evaluations']} evaluations" in first
    assert "look at: " in first and "reuse TeaCache cached residual" in first
    assert list(s["stream_names"].values()) == ["positive", "negative"]
    rows = report.splitlines()[-len(h.last_records):]
    assert {r.split()[3] for r in rows} == {"positive", "negative"}
    assert not _uuid_like(report), report


def test_area_conds_are_named_by_index(flux):
    pos = flux.positive(1, 16, 16, flux.default_frames)
    t, d = pos[0]
    positive = [[t, dict(d)], [t.clone(), dict(d, area=(8, 8, 0, 0), strength=1.0)]]
    m = teacache(flux.patcher, 0.4)
    tm.sample(flux, steps=STEPS, cfg=3.0, model=m, positive=positive)
    assert sorted(summary(m)["stream_names"].values()) == ["negative", "positive 1", "positive 2 (area)"]


def test_guidance_pass_is_named_by_its_node(flux):
    from comfy_extras.nodes_slg import SkipLayerGuidanceDiT
    slg = SkipLayerGuidanceDiT.execute(flux.patcher, scale=3.0, start_percent=0.0, end_percent=1.0,
                                       double_layers="1", single_layers="").args[0]
    m = teacache(slg, 0.4)
    tm.sample(flux, steps=STEPS, cfg=3.0, model=m)
    names = summary(m)["stream_names"]
    guided = [n for k, n in names.items() if ":" in k]
    assert guided and all(n.startswith("positive · ") for n in guided), names
    assert all("Skip Layer Guidance" in n or "SkipLayerGuidance" in n for n in guided), names
    assert not _uuid_like(holder_of(m).last_report)


def test_plot_rows_are_the_named_streams(flux):
    m = teacache(flux.patcher, 0.4)
    tm.sample(flux, steps=STEPS, cfg=3.0, model=m)
    h = holder_of(m)
    plot = sub("nodes.plot")
    rows = plot.band_rows(h.last_records, h.last_summary["stream_names"])
    assert [name for _, name in rows] == ["positive", "negative"]
    img = plot.stats_plot(h.last_records, 0.4, h.last_summary)
    assert img.shape[0] == 1 and img.shape[-1] == 3 and img.shape[2] == plot.WIDTH


def test_compare_first_line_says_whether_the_difference_is_visible(comfy):
    cmp = sub("nodes.compare_node")
    fid = sub("cache_core.metrics").Fidelity

    def line(psnr, ssim, space="image", n=1):
        return cmp.visibility(space, [fid(psnr, ssim, 0.1, 1.0, 11)] * n)
    assert line(float("inf"), 1.0).startswith("No difference")
    assert line(43.0, 0.99).startswith("No visible difference: PSNR 43.00 dB, SSIM 0.990")
    assert line(43.0, 0.96).startswith("Difference near the threshold of visibility")  # SSIM inside the JND band
    assert line(36.0, 0.99).startswith("Difference near the threshold of visibility")
    assert line(28.0, 0.99).startswith("Visible difference") and line(41.0, 0.90).startswith("Visible difference")
    assert line(50.0, 0.999, space="latent").startswith("Latent difference, visibility not judged")
    worst = cmp.visibility("image", [fid(45.0, 0.995, 0.1, 1.0, 11), fid(31.0, 0.93, 0.1, 1.0, 11)])
    assert worst.startswith("Difference near the threshold") and "(worst image #1)" in worst
