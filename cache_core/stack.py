"""Drives a model's block stack through TeaCache and Learning-to-Cache.

A model forward calls :meth:`CacheController.begin` once, then :meth:`CacheController.block`
for every transformer block in execution order (through ComfyUI's block-replace patches, an object
patch, or the reference model's own hook), then :meth:`CacheController.end`. The family-specific
knowledge (which tensor is the indicator, what the stack's input and output are) lives in a
:class:`StackHooks` object, one per model family.

TeaCache decides at block 0. On a reuse, every block passes its inputs through unchanged and the
last block emits ``stack input + cached residual``; on a compute, blocks run (with L2C's per-layer
reuse when a schedule is set) and the last block stores the new residual.

Reuse may forecast instead (``reuse`` taylor1/taylor2, :mod:`cache_core.forecast`): every cache
keeps the Newton coefficients of its last k+1 computed residuals and a reuse takes their
extrapolation to the current step coordinate. Order 0 is today's reuse, bit for bit.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Protocol, Sequence

import torch

from . import budget, forecast
from .forecast import History
from .compile_region import outside_compile
from .stats import RunRecorder
from .steps import StepInfo
from .streams import StreamStates, signature
from .sync import DecisionSync, l1_sums
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

    # Optional, for stacks whose tokens are re-chunked inside (raylight's sequence-parallel Flux,
    # see nodes/sequence_parallel.py): ``residual(index, outputs, inputs, stack_in)`` gives the
    # residual in the last block's layout, and with ``restore_at_last_block = True`` a reuse
    # hands ``final_outputs`` that residual (not stack input + residual) to add to the last
    # block's own inputs.


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
    forecast_order: int = 0  # order of the stack forecast used on a TeaCache reuse (0 = reuse)
    l2c_before: tuple | None = None  # (block, signature, inputs) of a layer whose residual is kept
    kind: str = ""        # "" for the sampler's ordinary pass, else the guidance pass id (stats only)
    cached: bool = True   # False: every block runs as in the plain model, no cache is read or written
    # forwards that must take one branch (cache_core.lockstep): called once at block 0 with whether
    # this forward would reuse; returns whether it may
    agree: Callable[[bool], bool] | None = None


class CacheController:
    """State of one sampling run of one patched model: per-stream TeaCache state, residual caches,
    L2C block residuals and the run's statistics. Cheap to create; `reset()` drops every tensor."""

    def __init__(self, hooks: StackHooks, teacache: TeaCacheConfig | None = None, l2c=None,
                 recorder: RunRecorder | None = None, check_finite: bool = True, l2c_reuse: str = "cached",
                 sync: DecisionSync | None = None):
        self.hooks = hooks
        self.sync = sync  # None: one process, today's path; see cache_core/sync.py
        self.teacache = teacache if (teacache is not None and teacache.enabled) else None
        self.l2c = l2c
        self.tc_order = self.teacache.order if self.teacache is not None else 0
        self.l2c_order = forecast.reuse_order(l2c_reuse)
        if l2c is not None and getattr(l2c, "layers", hooks.n_blocks) != hooks.n_blocks:
            raise ValueError(f"the L2C schedule has {l2c.layers} layers but this model has {hooks.n_blocks} "
                             "blocks; use a schedule made for this model")
        self.recorder = recorder if recorder is not None else RunRecorder()
        self.recorder.reuse = forecast.describe(self.tc_order if self.teacache is not None else None,
                                                self.l2c_order if l2c is not None else None)
        self.check_finite = check_finite
        self.tc_states: StreamStates[TeaCacheState] = StreamStates(TeaCacheState)
        self._residuals: dict[Hashable, tuple[History, ...]] = {}  # stream -> residual history per stack part
        self._res_sigs: dict[Hashable, tuple] = {}
        # L2C caches: (index, streams) -> (signature key, {name: residual history}, skip epoch) and
        # (index, branch, streams) -> (signature key, un-gated output history, skip epoch)
        self._block_res: dict[tuple, tuple] = {}
        self._branch_out: dict[tuple, tuple] = {}
        self._skip_epoch: dict[tuple, int] = {}  # streams -> TeaCache reuses so far
        self._l2c_reused_layers: set[int] | None = None
        self._l2c_steps = None
        self.ctx: ForwardContext | None = None
        self.budget: budget.BudgetPlan | None = None  # target mode (teacache.target_speedup), per run
        self._budget_states: StreamStates[budget.BudgetState] = StreamStates(budget.BudgetState)
        self.device = ""  # which device's model this controller drives, for the stats ("" = the only one)

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
        self.budget = None
        self._budget_states.reset()

    def plan_budget(self, sigmas, sampler: str = "") -> None:
        """Target mode: the run's budget from its sigmas and sampler name (``cache_core.budget``).
        Without this call the first forward plans for an even schedule of one-evaluation steps."""
        cfg = self.teacache
        if cfg is None or not cfg.target_speedup:
            return
        self.budget = budget.plan(cfg.target_speedup, sigmas, sampler,
                                  lambda step, n, pos: forced_reason(step, n, pos, cfg) is not None)
        self.recorder.target = self.budget

    def cache_bytes(self) -> int:
        """Bytes held by every cache (k+1 tensors per cache and part when forecasting), wherever they live."""
        n = sum(h.nbytes() for hs in self._residuals.values() for h in hs)
        for _, d, _ in self._block_res.values():
            n += sum(h.nbytes() for h in d.values())
        n += sum(h.nbytes() for _, h, _ in self._branch_out.values())
        return n

    def begin(self, info: StepInfo, streams: Sequence[Hashable], kind: str = "", cached: bool = True,
              agree: Callable[[bool], bool] | None = None) -> None:
        """A model forward of ``streams`` (one key per batch chunk) starts. ``kind`` labels a
        guidance pass in the stats; ``cached=False`` runs it as the plain model, touching no state.
        ``agree``: see :attr:`ForwardContext.agree`."""
        self.ctx = ForwardContext(info=info, streams=list(streams), started=time.perf_counter(),
                                  kind=kind, cached=cached, reason="" if cached else "uncached", agree=agree)
        if self.l2c is not None and cached:
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
            if ctx.skip and ctx.forecast_order and reason == "reuse":
                reason = f"forecast{ctx.forecast_order}"
            self.recorder.add(ctx.info.step, ctx.info.sigma, key, not ctx.skip, reason,
                              d.rel_l1 if d is not None else None,
                              d.accumulated if d is not None else None,
                              ctx.layers_computed, ctx.layers_reused, wall, cb, kind=ctx.kind,
                              rescaled=d.rescaled if d is not None else None, device=self.device)

    def replay(self, forward: Callable[[], torch.Tensor]) -> tuple:
        """Runs ``forward`` (the evaluation that just computed and stored its residual, on the same
        input) again with every block reused from that residual; nothing is recorded and no state
        changes. Returns (its output, whether it reused): what a reuse of an unchanged input gives,
        which the generic route checks at its first run (``nodes/adapters/generic.py``)."""
        ctx = self.ctx
        self.ctx = ForwardContext(info=ctx.info, streams=ctx.streams, kind="replay")
        try:
            out = forward()
            return out, self.ctx.skip
        finally:
            self.ctx = ctx

    # -- the block hook ----------------------------------------------------------------------
    def block(self, index: int, inputs: Tensors, run: Callable[[Tensors], Tensors]) -> Tensors:
        """Block ``index`` of the current forward: :meth:`enter_block`, ``run`` when it says so,
        then :meth:`exit_block`."""
        out = self.enter_block(index, inputs)
        if out is not None:
            return out
        return self.exit_block(index, inputs, run(inputs))

    @outside_compile
    def enter_block(self, index: int, inputs: Tensors) -> Tensors | None:
        """Before block ``index`` runs. Returns the block's outputs when it must not run (a
        TeaCache reuse passes every block through and the last one emits stack input + cached
        residual; an L2C reuse adds the layer's cached residual), or None: then the caller runs
        the block and hands its outputs to :meth:`exit_block`. Never traced by ``torch.compile``
        (see ``compile_region``), so the caller's block compute stays compiled without guards on
        this state."""
        ctx = self.ctx
        if ctx is None:  # called outside a forward we know about: behave as the plain model
            return None
        if not ctx.cached:
            ctx.layers_computed += 1
            return None
        hooks = self.hooks
        if index == 0:
            self._at_first_block(ctx, inputs)
        if ctx.skip:
            ctx.layers_reused += 1
            if index == hooks.n_blocks - 1:
                return hooks.final_outputs(index, inputs, ctx.final)
            return {k: inputs[k] for k in hooks.hidden_keys(index)}
        out = self._enter_l2c(ctx, index, inputs)
        if out is not None:  # an L2C reuse: the caller skips the block and never calls exit_block
            self._after_last_block(ctx, index, inputs, out)
        return out

    @outside_compile
    def exit_block(self, index: int, inputs: Tensors, out: Tensors) -> Tensors:
        """After block ``index`` ran with ``inputs`` and gave ``out``: stores what the caches
        keep (L2C layer residuals; the TeaCache residual after the last block). Returns ``out``."""
        ctx = self.ctx
        if ctx is None or not ctx.cached:
            return out
        self._exit_l2c(ctx, index, out)
        self._after_last_block(ctx, index, inputs, out)
        return out

    def _after_last_block(self, ctx: ForwardContext, index: int, inputs: Tensors, out: Tensors) -> None:
        """The TeaCache residual of a computed step, after the last block, computed or L2C-reused."""
        if index == self.hooks.n_blocks - 1 and self.teacache is not None and ctx.stack_in is not None:
            residual = getattr(self.hooks, "residual", None)
            if residual is not None:
                self._store_residual(ctx, None, residual(index, out, inputs, ctx.stack_in))
            else:
                self._store_residual(ctx, self.hooks.stack_output(index, out, inputs, ctx.stack_in))

    def _at_first_block(self, ctx: ForwardContext, inputs: Tensors) -> None:
        if self.teacache is None:
            return
        if ctx.kind == "replay":  # see replay(): restore from the residual just stored, decide nothing
            ctx.final = self._restore(ctx, ctx.streams, self.hooks.stack_input(inputs))
            ctx.skip = ctx.final is not None
            return
        cfg = self.teacache
        hooks = self.hooks
        streams = ctx.streams
        ind = hooks.indicator(inputs).detach()
        if self.sync is not None:  # a CFG-parallel rank runs its share of the streams
            streams = ctx.streams = self.sync.local_streams(streams, ind.shape[0])
        chunks = ind.chunk(len(streams)) if len(streams) > 1 else [ind]
        states = [self.tc_states.get(k, like=c) for k, c in zip(streams, chunks)]
        if self.sync is None:
            changes = [rel_l1(c, s.prev_indicator) for c, s in zip(chunks, states) if s.prev_indicator is not None]
            values = torch.stack(changes).tolist() if changes else []  # one host sync for all streams
        else:
            values = self._synced_changes(chunks, states)
        forced = forced_reason(ctx.info.step, ctx.info.n_steps, ctx.info.position, cfg)
        if cfg.target_speedup and self.budget is None:
            n = ctx.info.n_steps
            self.plan_budget([1.0 - i / n for i in range(n + 1)])
        it = iter(values)
        decisions = []
        for k, c, s in zip(streams, chunks, states):
            change = next(it) if s.prev_indicator is not None else None
            d, new = decide(s, change, cfg, forced, self._budget_threshold(k, c, s, change, forced))
            new.prev_indicator = c  # updated on every evaluation, computed or not
            self.tc_states.set(k, new)
            decisions.append(d)
        ctx.decisions = decisions
        stack_in = hooks.stack_input(inputs)
        if all(not d.compute for d in decisions):
            final = self._restore(ctx, streams, stack_in)
            if final is None:
                ctx.reason = "no_cache"
            elif self.check_finite and not forecast.all_finite(_parts(final)):
                # an fp16 overflow in a reused residual must never reach the output: compute instead
                ctx.reason = "nonfinite"
                what = "forecast" if ctx.forecast_order else "reused"
                self.recorder.note(f"a {what} residual was not finite; those steps computed instead")
            if self.sync is not None and not self.sync.agree(not ctx.reason, step=ctx.info.step):
                ctx.reason = ctx.reason or "sync"  # another rank of the group must compute
            if ctx.agree is not None and not ctx.agree(not ctx.reason):
                ctx.reason = ctx.reason or "lockstep"  # another forward of this evaluation computes
            if not ctx.reason:
                ctx.skip = True
                ctx.final = final
                key = tuple(streams)
                self._skip_epoch[key] = self._skip_epoch.get(key, 0) + 1
                return
            self._reset_accumulators(streams)
        else:
            if self.sync is not None:
                self.sync.agree(False, step=ctx.info.step)  # this rank computes: so do all
            if ctx.agree is not None:
                ctx.agree(False)  # this forward computes: so do the others of its evaluation
            if any(not d.compute for d in decisions):
                # a batched forward computes every stream when any stream needs it; all accumulators restart
                self._reset_accumulators(streams)
                ctx.reason = "batch"
        if self.budget is not None:
            for k in streams:
                self._budget_states.set(k, budget.computed(self._budget_states.get(k)))
        # clone: downstream code (ControlNet, LTX-2's blocks) adds into it in place
        ctx.stack_in = _like(stack_in, [p.clone() for p in _parts(stack_in)])

    def _synced_changes(self, chunks, states) -> list:
        """The streams' relative L1 changes reduced over the sync's token group (sums, then the
        ratio: every rank gets the same numbers), for the streams that have a previous indicator."""
        diffs, refs = [], []
        for c, s in zip(chunks, states):
            d, r = l1_sums(c, s.prev_indicator) if s.prev_indicator is not None else (0.0, 0.0)
            diffs.append(d)
            refs.append(r)
        values = self.sync.relative_changes(diffs, refs, self.ctx.info.step)
        return [v for v, s in zip(values, states) if s.prev_indicator is not None]

    def _budget_threshold(self, key, chunk, state: TeaCacheState, change, forced) -> float | None:
        """Target mode: this stream's threshold for this evaluation (``cache_core.budget.decide``)."""
        if self.budget is None:
            return None
        rescaled = self.teacache.coefficients.rescale(change) if change is not None else None
        _, threshold, new = budget.decide(self.budget, self._budget_states.get(key, like=chunk), rescaled,
                                          state.accumulated + (rescaled or 0.0), forced is not None)
        self._budget_states.set(key, new)
        return threshold

    def _reset_accumulators(self, streams) -> None:
        for k in streams:
            st = self.tc_states.get(k)
            st.accumulated = 0.0
            st.consecutive_reuses = 0

    def _restore(self, ctx: ForwardContext, streams, stack_in: Stack) -> Stack | None:
        """``stack_in`` plus each stream's residual (reused, or forecast at this step's position), or
        None when any stream lacks one of the same shape (for every part: a stale or missing part
        of one stream means no reuse at all)."""
        per = _per_stream(stack_in, len(streams))
        res = []
        x = ctx.info.x
        for k, chunk in zip(streams, per):
            hs = self._residuals.get(k)
            if hs is None or self._res_sigs.get(k) != tuple((tuple(c.shape), c.dtype) for c in chunk):
                return None
            ctx.forecast_order = max(ctx.forecast_order, min(h.available_order for h in hs))
            res.append([forecast.extrapolate(h, x, c.device) for h, c in zip(hs, chunk)])
        if getattr(self.hooks, "restore_at_last_block", False):  # the last block adds it to its inputs
            return _like(stack_in, [torch.cat([r[j] for r in res]) if len(res) > 1 else res[0][j]
                                    for j in range(len(res[0]))])
        parts = _parts(stack_in)
        out = [p + (torch.cat([r[j] for r in res]) if len(res) > 1 else res[0][j]) for j, p in enumerate(parts)]
        return _like(stack_in, out)

    def _store_residual(self, ctx: ForwardContext, stack_out: Stack | None, res: Stack | None = None) -> None:
        n = len(ctx.streams)
        if res is None:
            res = _like(stack_out, [o - i for o, i in zip(_parts(stack_out), _parts(ctx.stack_in))])
            sigs = _per_stream(res, n)
        else:  # in another layout than the stack input: keyed by the input's shapes, which _restore checks
            sigs = _per_stream(ctx.stack_in, n)
        store = "cpu" if self.teacache.cache_device == "offload" else None
        for k, chunk, like in zip(ctx.streams, _per_stream(res, n), sigs):
            self._res_sigs[k] = tuple((tuple(c.shape), c.dtype) for c in like)
            old = self._residuals.get(k)
            if old is None or len(old) != len(chunk):
                old = (None,) * len(chunk)
            # one history per part: push() starts a new one where a part's shape or dtype changed
            self._residuals[k] = tuple(forecast.push(h, ctx.info.x, c, self.tc_order, store)
                                       for h, c in zip(old, chunk))
        ctx.stack_in = None

    def _enter_l2c(self, ctx: ForwardContext, index: int, inputs: Tensors) -> Tensors | None:
        row = ctx.l2c_row
        if row is None:
            ctx.layers_computed += 1
            return None
        plan = row[index]
        if plan.numel() > 1:  # branch-level schedule: the block's own code calls `branch()`
            ctx.branch_row = plan
            ctx.branch_sig = tuple((k, signature(inputs[k])) for k in self.hooks.hidden_keys(index)) + (
                tuple(ctx.streams),)
            ctx.branch_block = index
            return None
        keys = self.hooks.hidden_keys(index)
        sig = tuple((k, signature(inputs[k])) for k in keys) + (tuple(ctx.streams),)
        saved = self._block_res.get((index, sig[-1]))
        if saved is not None and saved[0] != sig:
            saved = None  # a new shape: the history cannot continue
        if not bool(plan) and saved is not None and self._usable(ctx, saved[2]):
            out = {k: inputs[k] + forecast.extrapolate(h, ctx.info.x) for k, h in saved[1].items()}
            if self._finite(out.values()):
                ctx.layers_reused += 1
                return out
        ctx.layers_computed += 1
        if bool(self._l2c_reused_layers) and index in self._l2c_reused_layers:
            # copies: many blocks add into their inputs in place (Chroma, LTX-Video, Flux/HunyuanVideo
            # txt and single blocks), which would make out - inputs zero
            ctx.l2c_before = (index, sig, {k: inputs[k].clone() for k in keys})
        return None

    def _exit_l2c(self, ctx: ForwardContext, index: int, out: Tensors) -> None:
        if ctx.branch_row is not None and ctx.branch_block == index:
            plan = ctx.branch_row
            ctx.branch_row = None
            n_reused = int((~plan).sum())
            ctx.layers_computed += 1 if n_reused < plan.numel() else 0
            ctx.layers_reused += 1 if n_reused == plan.numel() else 0
        before = ctx.l2c_before
        if before is not None and before[0] == index:
            ctx.l2c_before = None
            _, sig, saved_in = before
            # keyed per stream set too: cond and uncond run as separate forwards when ComfyUI
            # cannot batch them (different caption lengths) and must not evict each other
            old = self._block_res.get((index, sig[-1]))
            old = old[1] if old is not None and old[0] == sig else {}
            hist = {k: forecast.push(old.get(k), ctx.info.x, out[k] - saved_in[k], self.l2c_order) for k in saved_in}
            self._block_res[(index, sig[-1])] = (sig, hist, self._epoch(ctx))

    def branch(self, index: int, name: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        """For blocks with branches: the un-gated output of branch ``name`` of block ``index``, fresh
        or, where the schedule says reuse, from the last step that computed it."""
        ctx = self.ctx
        if ctx is None or ctx.branch_row is None or ctx.branch_block != index:
            return fn()
        names = self.l2c.branches
        j = names.index(name)
        key = (index, name, tuple(ctx.streams))
        saved = self._branch_out.get(key)
        if saved is not None and saved[0] != ctx.branch_sig:
            saved = None
        if not bool(ctx.branch_row[j]) and saved is not None and self._usable(ctx, saved[2]):
            out = forecast.extrapolate(saved[1], ctx.info.x)
            if self._finite([out]):
                return out
        out = fn()
        if self._l2c_reused_layers and index in self._l2c_reused_layers:
            hist = forecast.push(saved[1] if saved is not None else None, ctx.info.x, out, self.l2c_order)
            self._branch_out[key] = (ctx.branch_sig, hist, self._epoch(ctx))
        return out

    def _epoch(self, ctx: ForwardContext) -> int:
        return self._skip_epoch.get(tuple(ctx.streams), 0)

    def _usable(self, ctx: ForwardContext, epoch: int) -> bool:
        """Whether an L2C cache stored in skip epoch ``epoch`` may stand in for this step.

        L2C's schedule is learned for caches one step old. After a TeaCache reuse a plain cache
        is older than that (reusing it anyway gave 18 dB instead of 35 dB on the reference model),
        so it counts as missing and the layer computes. A forecast extrapolates to the current
        step, whatever the cache's age, so it is used."""
        return self.l2c_order > 0 or epoch == self._epoch(ctx)

    def _finite(self, tensors) -> bool:
        """A forecast that is not finite never reaches the output: the layer computes instead
        (plain reuse is left unchecked, as it holds what a computed step returned). Under a
        decision sync every rank computes the layer when any rank's forecast is not finite."""
        if not (self.check_finite and self.l2c_order):
            return True
        ok = forecast.all_finite(tensors)
        if self.sync is not None:
            ok = self.sync.agree(ok, "L2C forecast check", self.ctx.info.step if self.ctx is not None else 0)
        if ok:
            return True
        self.recorder.note("an L2C forecast was not finite; those layers computed instead")
        return False
