"""What every family adapter shares: detection, the two ways of hooking blocks, and errors.

Blocks are hooked through ComfyUI's ``patches_replace["dit"]`` block replacement where a family
offers it, otherwise through ``add_object_patch`` on each block instance's ``forward`` (the
model's class is never touched). Both routes feed :meth:`CacheController.block` with a dict of
the block's inputs, so one controller serves every family.
"""
from __future__ import annotations

import copy
import inspect
import logging
from typing import Callable, Sequence

import torch

from ...cache_core.compile_region import compile_boundary, outside_compile
from ...cache_core.graph_capture import refuse_capture
from ..multigpu import check_runs_here, controller_of

log = logging.getLogger("dit_cache")


# The ComfyUI releases whose model code every family's host tests run against (tests/hosts.py),
# oldest first
TESTED_RELEASES = ("0.3.64", "0.29.0", "0.33.0")


def tested_since(release: str) -> tuple:
    """The tested releases from ``release`` on: ``tested_releases`` of a family that only newer
    ComfyUI releases have (its host tests are gated to them)."""
    return TESTED_RELEASES[TESTED_RELEASES.index(release):]


class UnsupportedModelError(ValueError):
    pass


class AdapterMismatchError(RuntimeError):
    """The model's internals are not what this adapter was written for (a newer ComfyUI?)."""


def comfyui_version() -> str:
    """The running ComfyUI's release (``comfyui_version.py`` at its root), or "unknown"."""
    try:
        import comfyui_version
        return str(comfyui_version.__version__)
    except Exception:  # not a ComfyUI process, or a checkout without the file
        return "unknown"


def _releases(versions) -> str:
    v = list(versions)
    return v[0] if len(v) == 1 else ", ".join(v[:-1]) + " and " + v[-1]


def mismatch_message(family: str, detail: str) -> str:
    """Why a supported family's model is not as its adapter expects, and what to do.

    On a release the family was tested with, the model itself is new to dit-cache (a variant of a
    known network class); on any other release, ComfyUI's model code is the likely change."""
    cls = Adapter.registry.get(family)
    display = cls.display if cls is not None else family
    tested = cls.tested_releases if cls is not None else TESTED_RELEASES
    running = comfyui_version()
    if running in tested:
        why = (f"this is a {display} variant dit-cache does not support yet (ComfyUI {running} is a release "
               "this family was tested with). Remove the cache node for this model, and please report it")
    else:
        why = (f"ComfyUI {running} changed the {display} model code (dit-cache tested this family with ComfyUI "
               f"{_releases(tested)}). Update dit-cache, or remove the cache node for this model")
    return f"dit-cache {family} adapter: {detail}; {why}."


def require(obj, *attrs: str, family: str) -> None:
    """Fail loudly, never silently wrong, when a block lacks what the adapter reads."""
    missing = [a for a in attrs if not hasattr(obj, a)]
    if missing:
        raise AdapterMismatchError(mismatch_message(family, f"{type(obj).__name__} has no {', '.join(missing)}"))


def network_is(model_patcher, network: str) -> bool:
    """Whether the loaded diffusion model is exactly ComfyUI's class ``network``
    ("module:Class"); False where this ComfyUI has no such module (an older release)."""
    import importlib
    module, _, cls = network.partition(":")
    try:
        expected = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        return False
    return type(model_patcher.model.diffusion_model) is expected


def generated_image_tokens(inputs: dict, img: torch.Tensor) -> int:
    """How many leading tokens of a double-stream block's ``img`` are the image being generated.

    Reference latents (Flux Kontext, Flux.2, Qwen-Image-Edit) are appended after them, their
    counts listed in ``transformer_options["reference_image_num_tokens"]``. The count comes from
    the positional embedding ``pe`` (text, image and reference tokens), which stays whole even
    where a patch (ComfyUI's Flux KV cache) drops the reference tokens from ``img``. Without
    reference latents, or in a layout other than that: every token.
    """
    refs = (inputs.get("transformer_options") or {}).get("reference_image_num_tokens") or ()
    pe, txt = inputs.get("pe"), inputs.get("txt")
    if not refs or not torch.is_tensor(pe) or not torch.is_tensor(txt) or pe.ndim < 3:
        return img.shape[1]
    n = pe.shape[2] - txt.shape[1] - sum(refs)
    return n if 0 < n <= img.shape[1] else img.shape[1]


class Adapter:
    """Base of one model family's adapter. Subclasses set the class attributes and `hooks()`."""
    name = "base"                 # id used in run ids, schedules and profiles
    display = "Base"              # shown in messages and the README table
    default_profile = "raw"       # TeaCache coefficients used by `auto`
    recommended_threshold = 0.2
    branches: tuple = ("block",)  # L2C granularity exposed by this family
    tested_releases: tuple = TESTED_RELEASES  # ComfyUI releases this family's host tests run on
    registry: dict = {}           # name -> adapter class, for messages

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Adapter.registry[cls.name] = cls

    def __init__(self, model_patcher):
        self.patcher = model_patcher
        self.base_model = model_patcher.model
        self.dm = model_patcher.model.diffusion_model

    def for_model(self, base_model) -> "Adapter":
        """This adapter reading ``base_model``, another device's copy of the same model (ComfyUI's
        MultiGPU CFG Split), so that its hooks call that copy's modules."""
        if base_model is self.base_model:
            return self
        other = copy.copy(self)
        other.base_model = base_model
        other.dm = base_model.diffusion_model
        return other

    # -- detection ---------------------------------------------------------------------------
    @classmethod
    def matches(cls, model_patcher) -> bool:
        raise NotImplementedError

    def variant(self) -> str:
        """A finer name (dev, schnell, fill, kontext, i2v ...), used to pick coefficients."""
        return type(self.base_model.model_config).__name__

    def profile_for_variant(self) -> str:
        return self.default_profile

    # -- blocks ------------------------------------------------------------------------------
    def block_keys(self) -> list[tuple[str, int]]:
        """Execution-ordered (kind, index) of every hooked block."""
        raise NotImplementedError

    @property
    def n_blocks(self) -> int:
        return len(self.block_keys())

    def hooks(self):
        raise NotImplementedError

    def install(self, model_patcher, holder) -> None:
        raise NotImplementedError

    def stack_intact(self, difference: tuple) -> bool:
        """Whether a pass whose patches differ from the ordinary pass by ``difference`` (see
        ``nodes/passes.py``) still runs the first and the last hooked block through the cache,
        which a cached evaluation needs (the decision is made at the first, the residual
        restored and stored at the last)."""
        return True


def double_single_keys(double: Sequence[int], single: Sequence[int]) -> list[tuple[str, int]]:
    """Replace keys of the Flux-style layout: the double-stream blocks, then the single-stream ones."""
    return [("double_block", i) for i in double] + [("single_block", i) for i in single]


class BlockReplacePatch:
    """A ``patches_replace["dit"]`` entry: hands the block to the run's controller."""

    def __init__(self, index: int, holder, previous=None):
        self.index = index
        self.holder = holder
        # chain a replacement another pack installed before us instead of dropping it
        self.previous = previous.previous if isinstance(previous, BlockReplacePatch) else previous

    def __deepcopy__(self, memo):  # shared by clones, like the holder it points at
        return self

    @staticmethod
    def split(d: dict) -> dict:
        """ComfyUI's block arguments (or outputs) as the controller sees them: every hidden state
        under its own key. Identity here; families whose blocks pass a tuple override it."""
        return d

    @staticmethod
    def join(d: dict) -> dict:
        """The inverse of :meth:`split`: back to what ComfyUI's block and loop expect."""
        return d

    @compile_boundary
    def __call__(self, args: dict, extra: dict):
        original = extra["original_block"]
        if self.previous is not None:
            prev = self.previous
            run_fn = lambda a: prev(a, extra)  # noqa: E731
        else:
            run_fn = original
        controller = controller_for(self.holder, args.get("transformer_options"))
        if controller is None:
            return run_fn(args)
        split, join = self.split, self.join
        return join(drive_block(controller, self.index, split(args), lambda a: split(run_fn(join(a)))))


@outside_compile
def controller_for(holder, transformer_options):
    """The controller of the run this evaluation belongs to, or None (outside a sampling run)."""
    run = holder.active_run(transformer_options)
    return controller_of(run) if run is not None else None


@compile_boundary
def drive_block(controller, index: int, inputs: dict, run_fn: Callable[[dict], dict]) -> dict:
    """Runs one block through ``controller``: the decision and the cache bookkeeping outside any
    ``torch.compile`` region, ``run_fn`` (the block itself) inside it when the model is compiled.
    Never inside a CUDA graph capture: that stops the run (``cache_core/graph_capture.py``)."""
    refuse_capture(getattr(controller, "recorder", None))
    enter = getattr(controller, "enter_block", None)
    if enter is None:  # the calibration and learning controllers: block() with their own logic
        return outside_compile(controller.block)(index, inputs, run_fn)
    out = enter(index, inputs)
    if out is not None:
        return out
    return controller.exit_block(index, inputs, run_fn(inputs))


class ReplaceAdapter(Adapter):
    """Families whose forward loop consults ``patches_replace["dit"]`` for every block."""
    replace_patch = BlockReplacePatch

    def stack_intact(self, difference: tuple) -> bool:
        keys = self.block_keys()
        ends = {("replace", "dit", keys[0]), ("replace", "dit", keys[-1])}
        return not ends.intersection(difference)

    def install(self, model_patcher, holder) -> None:
        dit = model_patcher.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
        for i, (kind, n) in enumerate(self.block_keys()):
            model_patcher.set_model_patch_replace(self.replace_patch(i, holder, dit.get((kind, n))), "dit", kind, n)


class ForwardIO:
    """How a block's ``forward(*args, **kwargs)`` maps to the controller's input/output dicts.

    ``hidden``: parameter names of the hidden states that flow block to block (in the order the
    forward returns them); ``returns_tuple``: whether the forward returns a tuple of them.
    """

    def __init__(self, hidden: Sequence[str], returns_tuple: bool = False):
        self.hidden = tuple(hidden)
        self.returns_tuple = returns_tuple


class ModuleBoundPatch:
    """An object patch on one block instance's ``forward``: ``module`` is the block, ``original``
    the forward ComfyUI would call without us (bound to ``module``, or another pack's patch)."""
    module: torch.nn.Module
    original: Callable

    def rebound(self, module: torch.nn.Module, key: str = "") -> "ModuleBoundPatch":
        """This patch on ``module``, the same block of another device's model copy (see
        ``nodes/multigpu.py``)."""
        if module is self.module:
            return self
        if getattr(self.original, "__self__", None) is not self.module:
            raise RuntimeError(
                f"dit-cache: {key or type(self.module).__name__} carries another node pack's patch under "
                "dit-cache's, bound to the first device's block; under MultiGPU CFG Split it would run that "
                "device's weights on every device. Remove that node or MultiGPU CFG Split")
        other = copy.copy(self)
        other.module = module
        other.original = self.original.__func__.__get__(module, type(module))
        return other


class BlockForwardPatch(ModuleBoundPatch):
    """An object patch on one block instance's ``forward`` attribute."""

    def __init__(self, index: int, holder, module: torch.nn.Module, io: ForwardIO, original=None):
        self.index = index
        self.holder = holder
        self.module = module
        self.io = io
        # the bound method ComfyUI would call without us (or another pack's patch before ours)
        prev = original if original is not None else module.forward
        self.original = prev.original if isinstance(prev, BlockForwardPatch) else prev
        self.signature = inspect.signature(type(module).forward)

    def __deepcopy__(self, memo):
        return self

    @compile_boundary
    def __call__(self, *args, **kwargs):
        controller, arguments = self._bind(args, kwargs)
        if controller is None:
            return self.original(*args, **kwargs)
        io = self.io
        original = self.original

        def run_fn(inputs: dict) -> dict:
            out = original(**{k: inputs[k] for k in arguments})
            if io.returns_tuple:
                return dict(zip(io.hidden, out))
            return {io.hidden[0]: out}

        out = drive_block(controller, self.index, arguments, run_fn)
        if io.returns_tuple:
            return tuple(out[k] for k in io.hidden)
        return out[io.hidden[0]]

    @outside_compile
    def _bind(self, args, kwargs):
        controller = controller_for(self.holder, kwargs.get("transformer_options"))
        if controller is None:
            return None, None
        check_runs_here(self.module)
        arguments = dict(self.signature.bind(self.module, *args, **kwargs).arguments)
        arguments.pop("self", None)
        for p in self.signature.parameters.values():  # a forward's **kwargs go back as keywords
            if p.kind == p.VAR_KEYWORD:
                arguments.update(arguments.pop(p.name, {}))
        return controller, arguments


class ForwardPatchAdapter(Adapter):
    """Families whose forward loop has no block replacement: patch each block's ``forward``."""
    forward_io: ForwardIO

    def block_modules(self) -> list[tuple[str, torch.nn.Module]]:
        """Execution-ordered (attribute path under the model, module) of every hooked block."""
        raise NotImplementedError

    def block_keys(self):
        return [(path, i) for i, (path, _) in enumerate(self.block_modules())]

    def io_for(self, index: int) -> ForwardIO:
        return self.forward_io

    def install(self, model_patcher, holder) -> None:
        for i, (path, module) in enumerate(self.block_modules()):
            key = f"diffusion_model.{path}.forward"
            prev = model_patcher.object_patches.get(key)
            model_patcher.add_object_patch(key, BlockForwardPatch(i, holder, module, self.io_for(i), prev))


class StackForwardAdapter(ForwardPatchAdapter):
    """A network with one list of blocks that one hidden state flows through, whose loop has no
    block replacement: each block's ``forward`` is object-patched. Subclasses name the exact
    network class, the block list, the hidden-state parameter and :meth:`indicator`."""
    network = ""              # "module:Class" of the diffusion model, matched exactly
    blocks_attr = "layers"
    default_profile = "raw"   # none published: the unscaled change, a cautious threshold; calibrate
    recommended_threshold = 0.15

    @classmethod
    def matches(cls, model_patcher) -> bool:
        return network_is(model_patcher, cls.network)

    def variant(self) -> str:
        return self.name

    def block_modules(self):
        require(self.dm, self.blocks_attr, family=self.name)
        return [(f"{self.blocks_attr}.{i}", m) for i, m in enumerate(getattr(self.dm, self.blocks_attr))]

    def indicator(self, first: torch.nn.Module, inputs: dict) -> torch.Tensor:
        """The first block's modulated input, from its bound ``forward`` arguments."""
        raise NotImplementedError

    first_requires: tuple = ()  # attributes of the first block that :meth:`indicator` reads

    def hooks(self):
        blocks = getattr(self.dm, self.blocks_attr)
        first = blocks[0]
        require(first, *self.first_requires, family=self.name)
        return SimpleHooks(len(blocks), self.forward_io.hidden[0], lambda inputs: self.indicator(first, inputs))


class SimpleHooks:
    """StackHooks for stacks where one hidden state flows through every block unchanged in shape."""

    def __init__(self, n_blocks: int, key: str, indicator: Callable[[dict], torch.Tensor]):
        self.n_blocks = n_blocks
        self.key = key
        self._indicator = indicator

    def indicator(self, inputs):
        return self._indicator(inputs)

    def stack_input(self, inputs):
        return inputs[self.key]

    def stack_output(self, index, outputs, inputs, like):
        return outputs[self.key]

    def final_outputs(self, index, inputs, final):
        return {self.key: final}

    def hidden_keys(self, index):
        return (self.key,)
