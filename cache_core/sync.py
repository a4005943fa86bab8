"""Decision sync for distributed engines: every rank that runs one model forward together takes
the same TeaCache branch.

Under sequence (context) parallelism (xDiT/xFuser USP: Ulysses, Ring; raylight) each rank holds a
shard of one sample's tokens, so an indicator computed on the shard differs per rank: one rank
would reuse while another computes, and the attention collectives of the computing rank wait for
ever. Under FSDP every block call all-gathers weights, and under CFG parallelism the ranks of one
step exchange their outputs, so there too a skip must be taken by all or by none.

:class:`DecisionSync` is what :class:`cache_core.stack.CacheController` calls at the decision
(block 0 of a forward):

* :meth:`DecisionSync.relative_changes` reduces the indicator's statistics over the *token group*
  (the ranks that share one sample's tokens): it all-reduces the sums of ``|F - F_prev|`` and
  ``|F_prev|`` and divides, as xDiT and cache-dit do (``xfuser/model_executor/cache``,
  ``cache_dit/cache_factory``), so every rank compares the same number, equal to the
  single-process ``mean|dF| / mean|F_prev|`` up to float rounding;
* :meth:`DecisionSync.agree` combines compute flags over the *branch group* (every rank that must
  take the same branch): a skip happens only when every rank can skip, so CFG-parallel ranks
  that hold different streams behave as the single-process batched forward (which computes every
  stream when any stream needs it).

Residuals and forecast histories stay per rank (each rank caches its own shard). Every call also
checks a decision counter: ranks that reached different decisions (a rank that skipped a forward,
or a model that calls its blocks a different number of times per rank) fail with
:class:`DecisionSyncError` naming both counters, and a rank that never arrives makes the others
fail with the same error after ``timeout`` seconds instead of hanging until the NCCL watchdog.

Without a sync object (one process, or a world of one rank: :func:`make_sync` returns None) the
controller runs today's code path, bit for bit.
"""
from __future__ import annotations

import datetime
import logging
from typing import Hashable, Sequence

import torch

log = logging.getLogger(__name__)

_STEPS = 1_000_003  # steps per decision stamp (a prime above any step count)


class DecisionSyncError(RuntimeError):
    """Ranks that must take the same caching decision could not agree (different decision
    counters, or a rank did not arrive within the timeout)."""


def l1_sums(current: torch.Tensor, previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum|current - previous|, sum|previous|) as 0-d float64 tensors: the parts of TeaCache's
    relative L1 change (:func:`cache_core.teacache.rel_l1`) that add up over token shards."""
    c = current.float()
    p = previous.float()
    return (c - p).abs().sum(dtype=torch.float64), p.abs().sum(dtype=torch.float64)


class DecisionSync:
    """Base interface; :class:`TorchDistSync` implements it over ``torch.distributed``."""

    def relative_changes(self, diff_sums: Sequence[torch.Tensor | float],
                         ref_sums: Sequence[torch.Tensor | float], step: int = 0) -> list[float]:
        """Per stream: sum over the token group of ``diff_sums[i]`` over the sum of ``ref_sums[i]``.
        ``step`` (the sampling step) is checked to be the same on every rank."""
        raise NotImplementedError

    def agree(self, local_ok: bool, what: str = "skip", step: int = 0) -> bool:
        """True when ``local_ok`` is true on every rank of the branch group."""
        raise NotImplementedError

    def gather_tokens(self, t: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """``t``'s shards of the token group concatenated along ``dim`` in rank order."""
        raise NotImplementedError

    @property
    def token_rank(self) -> int:
        return 0

    @property
    def token_world(self) -> int:
        return 1

    def local_streams(self, streams: Sequence[Hashable], batch: int) -> list:
        """The streams of this rank's batch chunk when a CFG-parallel engine split the batch after
        the stream keys were taken (raylight: ``uuids`` lists cond and uncond, each rank runs batch 1).

        Raises DecisionSyncError when ``batch`` is no whole split of ``streams`` over this rank's CFG group."""
        streams = list(streams)
        if batch == len(streams) or len(streams) <= 1:
            return streams
        rank, world = self.cfg_rank, self.cfg_world
        if batch * world != len(streams):
            raise DecisionSyncError(
                f"this rank runs a batch of {batch} but the forward lists {len(streams)} cond streams and the "
                f"CFG-parallel group has {world} rank(s); the batch cannot be matched to streams")
        return streams[rank * batch:(rank + 1) * batch]

    cfg_rank: int = 0
    cfg_world: int = 1


def _group_size(group) -> int:
    import torch.distributed as dist
    return dist.get_world_size(group)


class TorchDistSync(DecisionSync):
    """Decision sync over ``torch.distributed`` process groups.

    ``token_group``: ranks that hold shards of one sample's tokens (the sequence-parallel group;
    None = no sharding: statistics stay local). ``branch_group``: every rank that must take the
    same branch (default: the whole world; for raylight, sequence x CFG x FSDP ranks).
    ``cfg_rank``/``cfg_world``: this rank's place in the CFG-parallel group, for
    :meth:`local_streams`. ``timeout``: seconds a rank waits for the others at a decision before
    raising :class:`DecisionSyncError`.

    The reductions run on ``device`` (CPU for gloo groups, the rank's GPU for NCCL groups): a few
    scalars per decision, and one host sync, which the single-process decision already has.
    ``gather_group``: the token group's ranks on the tensors' own backend (NCCL for CUDA tensors),
    for :meth:`gather_tokens`; default ``token_group``."""

    def __init__(self, token_group=None, branch_group=None, cfg_rank: int = 0, cfg_world: int = 1,
                 timeout: float = 60.0, device: torch.device | str = "cpu", gather_group=None):
        import torch.distributed as dist
        if not dist.is_initialized():
            raise DecisionSyncError("torch.distributed is not initialised: a decision sync needs the process "
                                    "group of the engine that runs the model (raylight, xDiT, torchrun)")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}; try 60")
        self.token_group = token_group
        self.gather_group = gather_group if gather_group is not None else token_group
        self.branch_group = branch_group if branch_group is not None else dist.group.WORLD
        self.cfg_rank = int(cfg_rank)
        self.cfg_world = int(cfg_world)
        self.timeout = float(timeout)
        self.device = torch.device(device)
        self._tw = _group_size(token_group) if token_group is not None else 1
        self._tr = dist.get_rank(token_group) if token_group is not None else 0
        self.decisions = 0  # decision counter, checked across ranks on every call

    @property
    def token_rank(self) -> int:
        return self._tr

    @property
    def token_world(self) -> int:
        return self._tw

    def _reduce(self, t: torch.Tensor, op, group, what: str) -> torch.Tensor:
        import torch.distributed as dist
        t = t.to(self.device)
        try:
            work = dist.all_reduce(t, op=op, group=group, async_op=True)
            ok = work.wait(timeout=datetime.timedelta(seconds=self.timeout))
        except Exception as e:  # gloo: timeout or a peer that left; NCCL: watchdog errors
            raise DecisionSyncError(
                f"dit-cache: rank {dist.get_rank()} waited for the other ranks at decision {self.decisions} "
                f"({what}) and they did not arrive within {self.timeout:g} s: {e}. A rank skipped a model "
                "forward or runs a different model; every rank of the parallel group must sample the same graph."
            ) from e
        if ok is False:
            raise DecisionSyncError(f"dit-cache: rank {dist.get_rank()}: the {what} reduction at decision "
                                    f"{self.decisions} did not complete within {self.timeout:g} s")
        return t.cpu()

    def _stamp(self, step: int) -> float:
        """Decision counter and step in one float64 (exact below 2**53)."""
        return float(self.decisions * _STEPS + int(step) % _STEPS)

    def _check_counter(self, lo: float, hi: float, what: str) -> None:
        if lo != hi:
            import torch.distributed as dist

            def say(v: float) -> str:
                v = int(round(v))
                return f"decision {v // _STEPS} (step {v % _STEPS})"
            raise DecisionSyncError(
                f"dit-cache: ranks are out of step at the {what} of a caching decision: rank {dist.get_rank()} "
                f"is at decision {self.decisions}; the ranks range from {say(lo)} to {say(hi)}. Every rank of "
                "the parallel group must run the same model forwards in the same order.")

    def relative_changes(self, diff_sums, ref_sums, step: int = 0) -> list[float]:
        import torch.distributed as dist
        self.decisions += 1
        n = len(diff_sums)
        vals = torch.zeros(2 * n + 2, dtype=torch.float64)
        for i in range(n):
            vals[2 * i] = float(diff_sums[i])
            vals[2 * i + 1] = float(ref_sums[i])
        # counter and its square: their sums over W ranks are W*c and W*c^2 only when all agree
        vals[2 * n] = self._stamp(step)
        vals[2 * n + 1] = self._stamp(step) ** 2
        if self.token_group is not None and self._tw > 1:
            vals = self._reduce(vals, dist.ReduceOp.SUM, self.token_group, "indicator statistics")
            w = self._tw
            mean = vals[2 * n].item() / w
            spread = max(0.0, vals[2 * n + 1].item() / w - mean * mean) ** 0.5  # std of the stamps
            if spread > 0.25:
                self._check_counter(mean - spread, mean + spread, "indicator statistics")
        return [float(vals[2 * i] / max(vals[2 * i + 1].item(), 1e-12)) for i in range(n)]

    def agree(self, local_ok: bool, what: str = "skip", step: int = 0) -> bool:
        import torch.distributed as dist
        if what != "skip":
            self.decisions += 1
        # MAX of (not ok, stamp, -stamp): any rank that cannot skip wins; the stamps' max and min
        stamp = self._stamp(step)
        t = torch.tensor([0.0 if local_ok else 1.0, stamp, -stamp], dtype=torch.float64)
        t = self._reduce(t, dist.ReduceOp.MAX, self.branch_group, what)
        self._check_counter(-t[2].item(), t[1].item(), what)
        return t[0].item() == 0.0

    def gather_tokens(self, t: torch.Tensor, dim: int = 1) -> torch.Tensor:
        import torch.distributed as dist
        if self.token_group is None or self._tw == 1:
            return t
        t = t.contiguous()
        parts = [torch.empty_like(t) for _ in range(self._tw)]
        try:
            work = dist.all_gather(parts, t, group=self.gather_group, async_op=True)
            work.wait(timeout=datetime.timedelta(seconds=self.timeout))
        except Exception as e:
            raise DecisionSyncError(f"dit-cache: rank {dist.get_rank()}: gathering the stack input over the "
                                    f"sequence-parallel group failed or timed out after {self.timeout:g} s: {e}") from e
        return torch.cat(parts, dim=dim)


def make_sync(token_group=None, branch_group=None, cfg_rank: int = 0, cfg_world: int = 1,
              timeout: float = 60.0, device: torch.device | str = "cpu", gather_group=None) -> TorchDistSync | None:
    """A :class:`TorchDistSync`, or None where nothing needs syncing (torch.distributed not
    initialised, or a branch group of one rank): then the controller keeps the single-process path."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = branch_group if branch_group is not None else dist.group.WORLD
    if _group_size(group) <= 1 and (token_group is None or _group_size(token_group) <= 1):
        return None
    return TorchDistSync(token_group, branch_group, cfg_rank, cfg_world, timeout, device, gather_group)


__all__ = ["DecisionSync", "DecisionSyncError", "TorchDistSync", "l1_sums", "make_sync"]
