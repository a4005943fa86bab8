"""Drives a model's block stack through TeaCache and Learning-to-Cache.

A model forward calls :meth:`CacheController.begin` once, then :meth:`CacheController.block`
for every transformer block in execution order (through ComfyUI's block-replace patches, an object
patch, or the reference model's own hook), then :meth:`CacheController.end`. The family-specific
knowledge (which tensor is the indicator, what the stack's input and output are) lives in a
:class:`StackHooks` object, one per model family.

TeaCache decides at block 0. On a reuse, every block passes its inputs through unchanged and the
last block emits ``stack input + cached residual``; on a compute, blocks run (with L2C's per-layer
reuse when a schedule is set) and the last block stores the new residual.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Protocol, Sequence

import torch

from .stats import RunRecorder
from .steps import StepInfo
from .streams import StreamStates, signature
from .teacache import Decision, TeaCacheConfig, TeaCacheState, decide, forced_reason, rel_l1

log = logging.getLogger(__name__)

Tensors = dict  # block inputs/outputs by name, as ComfyUI's block-replace dicts hold them
Stack = torch.Tensor | tuple  # a stack's input/output: one tensor, or a tuple of parts (batch first)


def _parts(x: Stack) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _like(x: Stack, parts) -> Stack:
    """``parts`` in the form of ``x``: a tensor, or a tuple of tensors."""
    return tuple(parts) if isinstance(x, (tuple, list)) else parts[0]


def _per_stream(x: Stack, n: int) -> list:
    """Each part split into ``n`` batch chunks, regrouped per stream: [(part0, part1, ...), ...]."""
    chunked = [p.chunk(n) if n > 1 else (p,) for p in _parts(x)]
    return [tuple(c[i] for c in chunked) for i in range(n)]


class StackHooks(Protocol):
    """What the controller needs to know about one model family's block stack."""
    n_blocks: int

    def indicator(self, inputs: Tensors) -> torch.Tensor:
        """TeaCache indicator at block 0 (batch first), e.g. the first block's modulated input."""

    def stack_input(self, inputs: Tensors) -> "Stack":
        """The tensor whose residual is cached, taken from block 0's inputs (batch first). A tuple
        of tensors for stacks that carry several token streams side by side (LTX-2's video and
        audio): one decision covers every part, and a reuse restores every part or none."""

    def stack_output(self, index: int, outputs: Tensors, inputs: Tensors, like: "Stack") -> "Stack":
        """The same tensor(s) after the last block, shaped like `like` (the stack input)."""

    def final_outputs(self, index: int, inputs: Tensors, final: "Stack") -> Tensors:
        """What the last block returns on a reuse, given the restored stack output."""

    def hidden_keys(self, index: int) -> Sequence[str]:
        """Names of the hidden states a block takes and returns (identity and L2C reuse use them)."""


@dataclass
class ForwardContext:
    info: StepInfo
    streams: list              # stream key per batch chunk, batch order
    started: float = 0.0
    skip: bool = False
    final: Stack | None = None
    stack_in: Stack | None = None
    decisions: list = field(default_factory=list)  # per stream: Decision or None
    reason: str = ""
    layers_computed: int = 0
    layers_reused: int = 0
    l2c_row: torch.Tensor | None = None  # [layers, branches] bool for this step
    branch_row: torch.Tensor | None = None  # row of the block being run (branch-level schedules)
    branch_sig: tuple = ()
    branch_block: int = -1


class CacheController:
    """State of one sampling run of one patched model: per-stream TeaCache state, residual caches,
    L2C block residuals and the run's statistics. Cheap to create; `reset()` drops every tensor."""

    def __init__(self, hooks: StackHooks, teacache: TeaCacheConfig | None = None, l2c=None,
                 recorder: RunRecorder | None = None, check_finite: bool = True):
        self.hooks = hooks
        self.teacache = teacache if (teacache is not None and teacache.enabled) else None
        self.l2c = l2c
        if l2c is not None and getattr(l2c, "layers", hooks.n_blocks) != hooks.n_blocks:
            raise ValueError(f"the L2C schedule has {l2c.layers} layers but this model has {hooks.n_blocks} "
                             "blocks; use a schedule made for this model")
        self.recorder = recorder if recorder is not None else RunRecorder()
        self.check_finite = check_finite
        self.tc_states: StreamStates[TeaCacheState] = StreamStates(TeaCacheState)
        self._residuals: dict[Hashable, torch.Tensor] = {}
        self._res_sigs: dict[Hashable, tuple] = {}
        # L2C caches: (index, streams) -> (signature key, {name: residual}, skip epoch) and
        # (index, branch, streams) -> (signature key, un-gated output, skip epoch)
        self._block_res: dict[tuple, tuple] = {}
        self._branch_out: dict[tuple, tuple] = {}
        self._skip_epoch: dict[tuple, int] = {}  # streams -> TeaCache reuses so far
        self._l2c_reused_layers: set[int] | None = None
        self._l2c_steps = None
        self.ctx: ForwardContext | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every cached tensor and state (a new run, an interrupt, a new input)."""
        self.tc_states.reset()
        self._residuals.clear()
        self._res_sigs.clear()
        self._block_res.clear()
        self._branch_out.clear()
        self._skip_epoch.clear()
        self._l2c_reused_layers = None
        self._l2c_steps = None
        self.ctx = None

    def cache_bytes(self) -> int:
        n = sum(t.numel() * t.element_size() for r in self._residuals.values() for t in r)
        for _, d, _ in self._block_res.values():
            n += sum(t.numel() * t.element_size() for t in d.values())
        n += sum(t.numel() * t.element_size() for _, t, _ in self._branch_out.values())
        return n

    def begin(self, info: StepInfo, streams: Sequence[Hashable]) -> None:
        self.ctx = ForwardContext(info=info, streams=list(streams), started=time.perf_counter())
        if self.l2c is not None:
            row = self.l2c.for_step(info.step, info.n_steps)
            self.ctx.l2c_row = row
            if self._l2c_steps != info.n_steps:
                self._l2c_steps = info.n_steps
                reused = set()
                for s in range(info.n_steps):
                    r = self.l2c.for_step(s, info.n_steps)
                    reused.update(int(i) for i in torch.nonzero(~r.all(dim=1)).flatten().tolist())
                self._l2c_reused_layers = reused

    def end(self) -> None:
        ctx = self.ctx
        if ctx is None:
            return
        self.ctx = None
        wall = (time.perf_counter() - ctx.started) / max(1, len(ctx.streams))
        cb = self.cache_bytes()
        for i, key in enumerate(ctx.streams):
            d: Decision | None = ctx.decisions[i] if i < len(ctx.decisions) else None
            reason = ctx.reason or (d.reason if d is not None else ("l2c" if ctx.layers_reused else "compute"))
            self.recorder.add(ctx.info.step, ctx.info.sigma, key, not ctx.skip, reason,
                              d.rel_l1 if d is not None else None,
                              d.accumulated if d is not None else None,
                              ctx.layers_computed, ctx.layers_reused, wall, cb)

    # -- the block hook ----------------------------------------------------------------------
    def block(self, index: int, inputs: Tensors, run: Callable[[Tensors], Tensors]) -> Tensors:
        ctx = self.ctx
        if ctx is None:  # called outside a forward we know about: behave as the plain model
            return run(inputs)
        hooks = self.hooks
        last = index == hooks.n_blocks - 1
        if index == 0:
            self._at_first_block(ctx, inputs)
        if ctx.skip:
            ctx.layers_reused += 1
            if last:
                return hooks.final_outputs(index, inputs, ctx.final)
            return {k: inputs[k] for k in hooks.hidden_keys(index)}
        out = self._run_block(ctx, index, inputs, run)
        if last and self.teacache is not None and ctx.stack_in is not None:
            self._store_residual(ctx, hooks.stack_output(index, out, inputs, ctx.stack_in))
        return out

    def _at_first_block(self, ctx: ForwardContext, inputs: Tensors) -> None:
        if self.teacache is None:
            return
        cfg = self.teacache
        hooks = self.hooks
        streams = ctx.streams
        ind = hooks.indicator(inputs).detach()
        chunks = ind.chunk(len(streams)) if len(streams) > 1 else [ind]
        states = [self.tc_states.get(k, like=c) for k, c in zip(streams, chunks)]
        changes = [rel_l1(c, s.prev_indicator) for c, s in zip(chunks, states) if s.prev_indicator is not None]
        values = torch.stack(changes).tolist() if changes else []  # one host sync for all streams
        forced = forced_reason(ctx.info.step, ctx.info.n_steps, ctx.info.position, cfg)
        it = iter(values)
        decisions = []
        for k, c, s in zip(streams, chunks, states):
            change = next(it) if s.prev_indicator is not None else None
            d, new = decide(s, change, cfg, forced)
            new.prev_indicator = c  # updated on every evaluation, computed or not
            self.tc_states.set(k, new)
            decisions.append(d)
        ctx.decisions = decisions
        stack_in = hooks.stack_input(inputs)
        if all(not d.compute for d in decisions):
            final = self._restore(streams, stack_in)
            if final is None:
                ctx.reason = "no_cache"
            elif self.check_finite and not all(bool(torch.isfinite(p).all()) for p in _parts(final)):
                # an fp16 overflow in a reused residual must never reach the output: compute instead
                ctx.reason = "nonfinite"
                self.recorder.note("a reused residual was not finite; those steps computed instead")
            else:
                ctx.skip = True
                ctx.final = final
                key = tuple(streams)
                self._skip_epoch[key] = self._skip_epoch.get(key, 0) + 1
                return
            self._reset_accumulators(streams)
        elif any(not d.compute for d in decisions):
            # a batched forward computes every stream when any stream needs it; all accumulators restart
            self._reset_accumulators(streams)
            ctx.reason = "batch"
        # clone: downstream code (ControlNet, LTX-2's blocks) adds into it in place
        ctx.stack_in = _like(stack_in, [p.clone() for p in _parts(stack_in)])

    def _reset_accumulators(self, streams) -> None:
        for k in streams:
            st = self.tc_states.get(k)
            st.accumulated = 0.0
            st.consecutive_reuses = 0

    def _restore(self, streams, stack_in: Stack) -> Stack | None:
        """``stack_in`` plus each stream's residual, or None when any stream lacks one of the same
        shape (for every part: a stale or missing part of one stream means no reuse at all)."""
        per = _per_stream(stack_in, len(streams))
        res = []
        for k, chunk in zip(streams, per):
            r = self._residuals.get(k)
            if r is None or self._res_sigs.get(k) != tuple((tuple(c.shape), c.dtype) for c in chunk):
                return None
            res.append([t.to(c.device, non_blocking=True) for t, c in zip(r, chunk)])
        parts = _parts(stack_in)
        out = [p + (torch.cat([r[j] for r in res]) if len(res) > 1 else res[0][j]) for j, p in enumerate(parts)]
        return _like(stack_in, out)

    def _store_residual(self, ctx: ForwardContext, stack_out: Stack) -> None:
        res = _like(stack_out, [o - i for o, i in zip(_parts(stack_out), _parts(ctx.stack_in))])
        offload = self.teacache.cache_device == "offload"
        for k, chunk in zip(ctx.streams, _per_stream(res, len(ctx.streams))):
            self._res_sigs[k] = tuple((tuple(c.shape), c.dtype) for c in chunk)
            self._residuals[k] = tuple(c.to("cpu", non_blocking=True) if offload else c for c in chunk)
        ctx.stack_in = None

    def _run_block(self, ctx: ForwardContext, index: int, inputs: Tensors, run) -> Tensors:
        row = ctx.l2c_row
        if row is None:
            ctx.layers_computed += 1
            return run(inputs)
        plan = row[index]
        if plan.numel() > 1:  # branch-level schedule: the block's own code calls `branch()`
            ctx.branch_row = plan
            ctx.branch_sig = tuple((k, signature(inputs[k])) for k in self.hooks.hidden_keys(index)) + (
                tuple(ctx.streams),)
            ctx.branch_block = index
            try:
                out = run(inputs)
            finally:
                ctx.branch_row = None
            n_reused = int((~plan).sum())
            ctx.layers_computed += 1 if n_reused < plan.numel() else 0
            ctx.layers_reused += 1 if n_reused == plan.numel() else 0
            return out
        keys = self.hooks.hidden_keys(index)
        sig = tuple((k, signature(inputs[k])) for k in keys) + (tuple(ctx.streams),)
        if not bool(plan):
            saved = self._block_res.get((index, sig[-1]))
            if saved is not None and saved[0] == sig and saved[2] == self._epoch(ctx):
                ctx.layers_reused += 1
                return {k: inputs[k] + saved[1][k] for k in keys}
        save = bool(self._l2c_reused_layers) and index in self._l2c_reused_layers
        # copies: many blocks add into their inputs in place (Chroma, LTX-Video, Flux/HunyuanVideo
        # txt and single blocks), which would make out - inputs zero
        before = {k: inputs[k].clone() for k in keys} if save else None
        out = run(inputs)
        ctx.layers_computed += 1
        if save:
            # keyed per stream set too: cond and uncond run as separate forwards when ComfyUI
            # cannot batch them (different caption lengths) and must not evict each other
            self._block_res[(index, sig[-1])] = (sig, {k: out[k] - before[k] for k in keys}, self._epoch(ctx))
        return out

    def branch(self, index: int, name: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        """For blocks with branches: the un-gated output of branch ``name`` of block ``index``, fresh
        or, where the schedule says reuse, from the last step that computed it."""
        ctx = self.ctx
        if ctx is None or ctx.branch_row is None or ctx.branch_block != index:
            return fn()
        names = self.l2c.branches
        j = names.index(name)
        key = (index, name, tuple(ctx.streams))
        if not bool(ctx.branch_row[j]):
            saved = self._branch_out.get(key)
            if saved is not None and saved[0] == ctx.branch_sig and saved[2] == self._epoch(ctx):
                return saved[1]
        out = fn()
        if self._l2c_reused_layers and index in self._l2c_reused_layers:
            self._branch_out[key] = (ctx.branch_sig, out, self._epoch(ctx))
        return out

    def _epoch(self, ctx: ForwardContext) -> int:
        """L2C's schedule is learned for caches one step old. After a TeaCache reuse they are
        older than that (reusing them anyway gave 18 dB instead of 35 dB on the reference model),
        so an entry stored before the last TeaCache reuse counts as missing and the layer computes."""
        return self._skip_epoch.get(tuple(ctx.streams), 0)
