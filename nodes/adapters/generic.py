"""The generic route: TeaCache and L2C on any DiT block stack that no family adapter knows.

:mod:`.discover` finds the main list of identical blocks and how the forward calls them. The
stack's residual is cached over every hidden stream the blocks carry (a tuple stack for two or
more, as for LTX-2's video and audio). The indicator needs no family knowledge: block 0's input
streams together with its timestep/conditioning embedding (:data:`INDICATOR`; measured against the
input alone, the embedding alone and the family's own indicator by ``bench/generic_indicator.py``).

Assumptions, checked where a family adapter would know them: the stack's input and output have the
same shape (at the first computed step's last block), and reusing a residual reproduces the computed
output on an unchanged input (:meth:`GenericAdapter.check_first_run`: the first computed evaluation
of every run is evaluated again with every block reused, and the two outputs must agree). A failed
check raises :class:`GenericRouteError`, which says which assumption failed. ``auto`` coefficients
are ``raw``: no polynomial was fitted for an unknown model (calibrate one with TeaCache Calibrate).
"""
from __future__ import annotations

import logging
import weakref

import torch

from .base import (Adapter, BlockForwardPatch, BlockReplacePatch, ForwardIO, UnsupportedModelError,
                   comfyui_version)
from .discover import BlockStack, NoBlockStack, find_stack

log = logging.getLogger("dit_cache")

# What a model needs for the generic route, said in every refusal
NEEDS = ("the generic route caches any diffusion transformer whose main block list holds blocks of one class and width "
         "that take and return the same hidden states, where reusing the stack's residual reproduces its "
         "output")
# bench/results/generic_indicator.json (fit error of an order-2 calibration, lower is better):
# reference DiT input 0.47 (r = -0.77), input+embedding 0.24, embedding 0.23, family 0.35; Flux
# digits input 0.14, input+embedding 0.19, embedding 0.22, family 0.16. The input alone fails on the
# reference DiT, the embedding alone ranks Flux's changes worst (rho 0.76): the combination is the
# one that tracks the output on both.
INDICATOR = "input+embedding"


class GenericRouteError(UnsupportedModelError):
    """The generic route's assumptions do not hold for this model (found at its first run)."""


def _is_float(t) -> bool:
    return torch.is_tensor(t) and t.is_floating_point()


def _batch(inputs: dict, streams) -> int:
    """The batch size of block 0's ``inputs``: the streams' first dimension, or, where the streams
    disagree on it (packed token sequences with no batch dimension: SeedVR2's NaDiT concatenates the
    samples' tokens into one [tokens, width] tensor per stream), the embedding's."""
    lead = {inputs[k].shape[0] for k in streams if _is_float(inputs.get(k))}
    if len(lead) == 1:
        return lead.pop()
    emb = [v for k, v in inputs.items() if k not in streams and _is_float(v) and v.ndim == 2]
    return emb[0].shape[0] if emb else 1


def embedding_keys(inputs: dict, streams) -> list:
    """Block inputs that look like a timestep/conditioning embedding: [batch, width] float tensors
    other than the streams (Flux's vec, AuraFlow's global_cond, CogVideoX's temb, ...)."""
    batch = _batch(inputs, streams)
    return [k for k, v in inputs.items() if k not in streams and _is_float(v) and v.ndim == 2 and v.shape[0] == batch]


def indicator_of(inputs: dict, streams, mode: str = INDICATOR) -> torch.Tensor:
    """The family-free TeaCache indicator of block 0's ``inputs``, [batch, n] float32.

    ``input``: the input streams, flattened and joined. ``input+embedding``: those and the embedding
    inputs, each part divided by its element count so that rel_l1 weighs them alike.
    ``embedding``: the embeddings alone (the input where there is none). Packed streams (see
    ``_batch``) are split evenly into the batch's samples."""
    xs = [inputs[k] for k in streams if _is_float(inputs.get(k))]
    es = [inputs[k] for k in embedding_keys(inputs, streams)] if mode != "input" else []
    parts = es if (mode == "embedding" and es) else xs + es
    batch = _batch(inputs, streams)
    parts = [p.reshape(batch, -1) for p in parts]
    if mode == "input+embedding":
        parts = [p / p.shape[1] for p in parts]
    return torch.cat([p.float() for p in parts], dim=1)


class GenericHooks:
    """StackHooks for a discovered stack: every float stream is a part of the cached residual."""

    def __init__(self, stack: BlockStack, describe: str, mode: str = INDICATOR):
        self.stack = stack
        self.n_blocks = len(stack.blocks)
        self.describe = describe
        self.mode = mode

    def _parts(self, d: dict) -> list:
        return [k for k in self.stack.streams if _is_float(d.get(k))]

    def indicator(self, inputs):
        return indicator_of(inputs, self.stack.streams, self.mode)

    def stack_input(self, inputs):
        return tuple(inputs[k] for k in self._parts(inputs))

    def stack_output(self, index, outputs, inputs, like):
        keys = self._parts(outputs)
        out = tuple(outputs[k] for k in keys)
        if len(out) != len(like) or any(o.shape != i.shape for o, i in zip(out, like)):
            shapes = lambda ts: ", ".join(str(tuple(t.shape)) for t in ts)  # noqa: E731
            raise GenericRouteError(
                f"dit-cache generic route: {self.describe}: the block stack {self.stack.path} turned hidden states of "
                f"shape {shapes(like)} into {shapes(out)} ({', '.join(keys)}); the generic route needs a stack whose "
                "input and output have the same shape. Remove the cache node for this model, and please report it")
        return out

    def final_outputs(self, index, inputs, final):
        out = {k: inputs[k] for k in self.stack.streams if k in inputs}
        out.update(zip(self._parts(inputs), final))
        return out

    def hidden_keys(self, index):
        return self.stack.streams


class GenericAdapter(Adapter):
    name = "generic"
    display = "any other DiT block stack (generic route)"
    default_profile = "raw"
    recommended_threshold = 0.1
    rel_tolerance = {torch.float32: 1e-3, torch.float64: 1e-6}  # other dtypes: 2e-2

    def __init__(self, model_patcher, stack: BlockStack | None = None):
        super().__init__(model_patcher)
        from . import model_name
        self.model = model_name(model_patcher)
        self.stack = stack if stack is not None else find_stack(self.dm)
        self._checked = weakref.WeakSet()  # the runs checked (each run is checked once)

    @classmethod
    def matches(cls, model_patcher) -> bool:
        return True

    @classmethod
    def for_model(cls, model_patcher) -> "GenericAdapter":
        """The generic route for this model, or :class:`UnsupportedModelError` saying why not."""
        from . import model_name, supported_names
        try:
            return cls(model_patcher)
        except NoBlockStack as e:
            raise UnsupportedModelError(
                f"dit-cache does not support this model: {model_name(model_patcher)}. Supported families: "
                + "; ".join(supported_names()) + f". Any other DiT gets the generic route, which this model cannot "
                f"use: {e}; {NEEDS}. Connect a supported model, or remove the cache node.") from None

    def variant(self) -> str:
        return type(self.dm).__name__

    def block_keys(self):
        if self.stack.kind:
            return [(self.stack.kind, i) for i in range(len(self.stack.blocks))]
        return [(self.stack.path, i) for i in range(len(self.stack.blocks))]

    def hooks(self):
        return GenericHooks(self.stack, self.model)

    def stack_intact(self, difference: tuple) -> bool:
        if not self.stack.kind:
            return True
        keys = self.block_keys()
        return not {("replace", "dit", keys[0]), ("replace", "dit", keys[-1])}.intersection(difference)

    def install(self, model_patcher, holder) -> None:
        log.info("dit-cache generic route for %s: %d blocks of %s by %s, streams %s", self.model,
                 len(self.stack.blocks), self.stack.path, self.stack.route, ", ".join(self.stack.streams))
        if self.stack.kind:
            opts = model_patcher.model_options.get("transformer_options", {})
            dit = opts.get("patches_replace", {}).get("dit", {})
            for i, key in enumerate(self.block_keys()):
                model_patcher.set_model_patch_replace(BlockReplacePatch(i, holder, dit.get(key)), "dit", *key)
            return
        io = ForwardIO(self.stack.streams, self.stack.returns_tuple)
        for i, module in enumerate(self.stack.blocks):
            key = f"diffusion_model.{self.stack.path}.{i}.forward"
            prev = model_patcher.object_patches.get(key)
            model_patcher.add_object_patch(key, BlockForwardPatch(i, holder, module, io, prev))

    # -- the first-run check -----------------------------------------------------------------
    def check_first_run(self, run, controller, x, out, evaluate) -> None:
        """After the first evaluation of ``run`` that computed and stored a residual: ``evaluate``
        (the same evaluation of input ``x``) again with every block reused; the denoised outputs
        must agree to the model dtype's rounding, relative to their largest value. Costs the
        model's work outside the blocks, once per run."""
        ctx = controller.ctx
        if run in self._checked or ctx is None or not ctx.cached or ctx.skip or controller.teacache is None \
                or not ctx.decisions or not torch.is_tensor(out):
            return
        self._checked.add(run)
        try:
            again, reused = controller.replay(evaluate)
        except Exception as e:  # the model's own code failed once its blocks were skipped
            raise GenericRouteError(
                f"dit-cache generic route: {self.model} failed the first-run check: with every block of its stack "
                f"{self.stack.path} reused from the cached residual, its forward failed ({type(e).__name__}: {e}), "
                "so the code after the blocks needs something only running them makes. Remove the cache node for "
                f"this model (ComfyUI {comfyui_version()}), and please report it") from e
        if not reused:
            return  # no residual of this shape was stored (a pass the stack did not run through)
        scale = float(out.detach().abs().max())
        diff = float((again.detach().float() - out.detach().float()).abs().max())
        tol = self.rel_tolerance.get(out.dtype, 2e-2)
        if not diff <= tol * max(scale, 1e-6):
            raise GenericRouteError(
                f"dit-cache generic route: {self.model} failed the first-run check: reusing the cached residual of "
                f"its block stack {self.stack.path} ({len(self.stack.blocks)} blocks, {self.stack.route}, streams "
                f"{', '.join(self.stack.streams)}) on an unchanged input gave an output {diff / max(scale, 1e-6):.3g} "
                f"away from the computed one (relative; at most {tol:g} allowed), so the blocks carry something the "
                f"route cannot restore. Remove the cache node for this model (ComfyUI {comfyui_version()}), and "
                "please report it")
        run.recorder.note(f"generic route: {len(self.stack.blocks)} blocks of {self.stack.path} by "
                          f"{self.stack.route}; checked at the first step that a reuse reproduces the computed output")
