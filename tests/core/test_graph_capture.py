"""cache_core.graph_capture: asking whether a CUDA graph is being captured never initialises CUDA,
and a capture stops the run with the message and a note in the run's report."""
from __future__ import annotations

import pytest
import torch

from cache_core import graph_capture
from cache_core.stats import RunRecorder


def test_no_capture_here_and_cuda_left_alone():
    was = torch.cuda.is_initialized()
    assert graph_capture.capturing() is False or torch.cuda.is_available()
    assert torch.cuda.is_initialized() == was
    graph_capture.refuse_capture(RunRecorder())  # nothing happens outside a capture


def test_a_capture_is_refused_with_a_note(monkeypatch):
    monkeypatch.setattr(graph_capture, "capturing", lambda: True)
    rec = RunRecorder()
    with pytest.raises(RuntimeError, match="--disable-cuda-graphs"):
        graph_capture.refuse_capture(rec)
    rec.finish()
    assert graph_capture.CAPTURE_NOTE in rec.summary()["notes"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_capturing_is_true_inside_a_real_capture():
    g = torch.cuda.CUDAGraph()
    x = torch.zeros(4, device="cuda")
    seen = []
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        x.add_(1)  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        seen.append(graph_capture.capturing())
        x.add_(1)
    assert seen == [True] and graph_capture.capturing() is False
