"""Per-stream state with automatic reset when the input's shape, dtype or device changes.

A stream is whatever the caller keys it by: "cond"/"uncond", a ComfyUI cond uuid, or any other
hashable. Streams never share state.
"""
from __future__ import annotations

from typing import Callable, Generic, Hashable, TypeVar

import torch

S = TypeVar("S")


def signature(t: torch.Tensor) -> tuple:
    return (tuple(t.shape), t.dtype, t.device)


class StreamStates(Generic[S]):
    def __init__(self, factory: Callable[[], S]):
        self._factory = factory
        self._states: dict[Hashable, S] = {}
        self._sigs: dict[Hashable, tuple] = {}
        self.resets = 0  # shape/dtype/device-triggered resets, for the stats

    def get(self, key: Hashable, like: torch.Tensor | None = None) -> S:
        """State of ``key``; a fresh one when ``like`` differs in shape/dtype/device from before."""
        if like is not None:
            sig = signature(like)
            old = self._sigs.get(key)
            if old is not None and old != sig:
                self._states.pop(key, None)
                self.resets += 1
            self._sigs[key] = sig
        st = self._states.get(key)
        if st is None:
            st = self._factory()
            self._states[key] = st
        return st

    def set(self, key: Hashable, state: S) -> None:
        self._states[key] = state

    def keys(self):
        return self._states.keys()

    def items(self):
        return self._states.items()

    def reset(self) -> None:
        self._states.clear()
        self._sigs.clear()

    def __len__(self) -> int:
        return len(self._states)
