"""Lockstep decisions for the forwards of one model evaluation that run side by side in threads.

ComfyUI's MultiGPU CFG Split (``comfy/multigpu.py``, ``_calc_cond_batch_multigpu`` in
``comfy/samplers.py``) runs cond and uncond as separate forwards, one pool thread per device.
Each forward's TeaCache decision is its own; the step only gets faster when *every* device
reuses, since the sampler waits for the slowest. A :class:`Round` makes the forwards of one
evaluation decide together, as one batched forward on one device does
(:meth:`cache_core.stack.CacheController._at_first_block`): the blocks are skipped only when
every forward would skip them, and a forward that would have skipped computes with the others.

Pure threading, no ComfyUI: each forward casts one :class:`Ballot` at its first block (skip or
compute) or abstains when it ends without deciding (an uncached guidance pass, an error before
the first block), so no forward waits for one that will never vote. A round that does not fill
within ``timeout`` seconds fails with :class:`LockstepTimeout` naming who arrived; it never hangs.
"""
from __future__ import annotations

import threading
import time

DEFAULT_TIMEOUT_S = 300.0


class LockstepError(RuntimeError):
    """The forwards of one evaluation could not decide together."""


class LockstepTimeout(LockstepError):
    """A round did not fill in time: a device never reached its first block."""


class Round:
    """The rendezvous of ``expected`` forwards of one model evaluation (one per device).

    :meth:`vote` with ``True`` (this forward's streams would all reuse) or ``False`` (it computes)
    blocks until every forward has voted or abstained, then returns the common verdict: ``True``
    only when no forward voted ``False``. ``label`` names the evaluation in errors (e.g. "step 3").
    """

    def __init__(self, expected: int, timeout: float = DEFAULT_TIMEOUT_S, label: str = ""):
        if expected < 1:
            raise ValueError(f"a lockstep round needs at least one forward, got {expected}")
        self.expected = int(expected)
        self.timeout = float(timeout)
        self.label = label
        self._cond = threading.Condition()
        self._arrived = 0
        self._compute = False   # any forward voted compute
        self._voters = 0        # forwards that voted (not abstained)

    def ballot(self) -> "Ballot":
        return Ballot(self)

    @property
    def arrived(self) -> int:
        with self._cond:
            return self._arrived

    def _arrive(self, skip: bool | None) -> None:
        if self._arrived >= self.expected:
            raise LockstepError(f"dit-cache lockstep{self._where()}: {self._arrived + 1} forwards took part where "
                                f"{self.expected} were expected; decide per device (TeaCache Patch, multigpu = "
                                "independent) and please report this")
        self._arrived += 1
        if skip is not None:
            self._voters += 1
            self._compute = self._compute or not skip
        self._cond.notify_all()

    def vote(self, skip: bool) -> bool:
        """This forward's verdict; returns the round's once every forward has arrived."""
        deadline = time.monotonic() + self.timeout
        with self._cond:
            self._arrive(bool(skip))
            while self._arrived < self.expected:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LockstepTimeout(
                        f"dit-cache lockstep{self._where()}: waited {self.timeout:.0f} s for the other devices' "
                        f"decisions, {self._arrived} of {self.expected} forwards arrived. A device stalled or "
                        "failed before its first block; set multigpu = independent on TeaCache Patch to decide "
                        "per device")
                self._cond.wait(left)
            return not self._compute

    def abstain(self) -> None:
        """This forward will not decide (it runs uncached, or failed): never waited for."""
        with self._cond:
            self._arrive(None)

    def _where(self) -> str:
        return f" ({self.label})" if self.label else ""


class Ballot:
    """One forward's single vote in a :class:`Round`; :meth:`close` abstains if it never voted."""

    def __init__(self, round_: Round):
        self.round = round_
        self.cast = False

    def __call__(self, skip: bool) -> bool:
        if self.cast:  # a second decision in one forward (a stack run twice): it keeps its own
            return skip
        self.cast = True
        return self.round.vote(skip)

    def close(self) -> None:
        if not self.cast:
            self.cast = True
            self.round.abstain()
