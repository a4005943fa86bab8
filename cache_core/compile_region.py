"""Where a model compiled with ``torch.compile`` stops tracing and where it resumes.

A cache decides from Python state that changes every step and every run (stream keys, step
numbers, counters, the TeaCache accumulator). Traced by Dynamo, each of those becomes a guard and
every new value a recompile (issue 11: 5-6 new graphs per identical run, then the recompile limit
and an uncompiled model). So the decision and the bookkeeping run *outside* the compiled region,
and only the blocks that compute run inside it:

* :func:`outside_compile` marks a function that Dynamo never traces, nor anything it calls.
* :func:`compile_boundary` marks a function whose own frame is not traced, while the functions
  it calls (a block's forward) are compiled as frames of their own.

Both are no-ops apart from a fraction of a microsecond per call when nothing is compiled
(``torch.compiler.disable``).
"""
from __future__ import annotations

from typing import Callable, TypeVar

import torch

F = TypeVar("F", bound=Callable)


def outside_compile(fn: F) -> F:
    """``fn`` runs eagerly, and so does everything it calls."""
    return torch.compiler.disable(fn, recursive=True)


def compile_boundary(fn: F) -> F:
    """``fn``'s own frame runs eagerly; frames it calls are traced and compiled as usual."""
    return torch.compiler.disable(fn, recursive=False)
