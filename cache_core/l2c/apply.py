"""Apply a static L2C schedule to a model made of residual blocks.

L2C caches a branch's *un-gated* output (what attention / MLP returned before the adaLN gate
and the residual add). On a reuse step the caller still recomputes the cheap modulation and
gate for the current timestep and applies it to the cached output, exactly as the official
DiT code does. This class only decides "cached or fresh" and keeps the store.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch

log = logging.getLogger(__name__)


class BranchCache:
    """Per-(layer, branch) store of the last computed un-gated branch outputs."""

    def __init__(self, branches: Sequence[str] = ("attn", "mlp")):
        self.branches = tuple(branches)
        self._index = {b: i for i, b in enumerate(self.branches)}
        self._store: dict[tuple[int, str], torch.Tensor] = {}
        self._signature: tuple | None = None
        self.computed = 0
        self.reused = 0

    def reset(self) -> None:
        """Forget all cached outputs (new run, new resolution, new batch layout ...)."""
        self._store.clear()
        self._signature = None

    def begin_step(self, x: torch.Tensor) -> None:
        """Call once per model call with its input; a change of shape, dtype or device means
        the cached tensors cannot be mixed in any more, so the store is dropped."""
        sig = (tuple(x.shape), x.dtype, x.device)
        if self._signature is not None and sig != self._signature:
            log.debug("L2C cache reset: input changed from %s to %s", self._signature, sig)
            self._store.clear()
        self._signature = sig

    def branch(self, layer: int, name: str, step_row: torch.Tensor | None,
               fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The un-gated output of branch `name` of `layer`: cached when step_row says reuse
        and a cached output exists, else fn() (which is then stored)."""
        compute = True
        if step_row is not None:
            compute = bool(step_row[layer, self._index[name]])
        key = (layer, name)
        if not compute:
            cached = self._store.get(key)
            if cached is not None:
                self.reused += 1
                return cached
        out = fn()
        # Detached: the cache must never keep an autograd graph alive across steps.
        self._store[key] = out.detach()
        self.computed += 1
        return out

    def __len__(self) -> int:
        return len(self._store)
