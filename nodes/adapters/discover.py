"""Finds a diffusion transformer's main block stack without knowing its family (the generic route).

A DiT's stack is a ``ModuleList`` of blocks of one class and one width that the
forward runs in order, each taking and returning the hidden state(s). The main one is the list
holding the most parameters among those the model's own forward runs (AuraFlow's 32 single layers
rather than its 4 double layers; Omnigen2's layers rather than its refiners; ACE-Step's transformer
blocks, never its lyric encoder's). How the forward calls them is read from ComfyUI's source:

* **block replacement**: the loop over the list looks up ``blocks_replace[("<kind>", i)]`` and its
  ``block_wrap`` fills ``out["<stream>"]``: those keys are the hidden streams;
* **object patch**: otherwise each block's ``forward`` is patched; its ``return`` statement names
  the streams (``return x`` or ``return hidden_states, encoder_hidden_states``). Where it returns
  an expression, the first parameter is taken as the one stream.

What this cannot see from the source (a stream the loop keeps aside, a block with side effects) the
first-run check of :mod:`.generic` catches.
"""
from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import dataclass

import torch

MAX_DEPTH = 3  # how deep under the diffusion model a block list may sit (HiDream-O1: language_model.layers)


class NoBlockStack(ValueError):
    """The model has no stack the generic route can cache; the message says what is missing."""


@dataclass(frozen=True)
class BlockStack:
    path: str                  # attribute path under the diffusion model, e.g. "single_layers"
    blocks: tuple              # the block modules, in order
    kind: str | None           # patches_replace["dit"] kind where the forward offers it, else None
    streams: tuple             # hidden-state names the blocks take and return
    returns_tuple: bool = False  # object patch: the forward returns a tuple of the streams

    @property
    def route(self) -> str:
        return "block replacement" if self.kind else "object patch"


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def block_lists(dm: torch.nn.Module) -> list[tuple[str, torch.nn.ModuleList]]:
    """Every ModuleList of >= 2 modules of one class up to MAX_DEPTH under ``dm``, most parameters first."""
    found = []
    for name, mod in dm.named_modules():
        if not name or name.count(".") >= MAX_DEPTH or not isinstance(mod, torch.nn.ModuleList):
            continue
        if len(mod) >= 2 and len({type(b) for b in mod}) == 1:
            found.append((name, mod))
    found.sort(key=lambda nm: -_n_params(nm[1]))
    return found


def one_width(blocks) -> bool:
    """Every weight name the blocks share has one shape in all of them but the last (a UNet's lists
    change width block to block; HunyuanDiT's later blocks add a skip projection and Mochi's last
    block drops its text update, which is fine)."""
    seen: dict = {}
    for b in blocks[:-1]:
        for k, v in b.state_dict().items():
            if seen.setdefault(k, tuple(v.shape)) != tuple(v.shape):
                return False
    return True


def _class_source(cls) -> str:
    parts = []
    for c in cls.__mro__:
        if c is torch.nn.Module or c is object:
            break
        try:
            parts.append(inspect.getsource(c))
        except (OSError, TypeError):
            pass
    return "\n".join(parts)


def replace_route(dm: torch.nn.Module, path: str) -> tuple[str, tuple] | None:
    """(kind, streams) where the forward's loop over ``self.<path>`` consults ``blocks_replace``."""
    src = _class_source(type(dm))
    loop = re.compile(r"in enumerate\(self\." + re.escape(path) + r"\)\s*:")
    for m in loop.finditer(src):
        rest = src[m.end():]
        nxt = re.search(r"in enumerate\(self\.", rest)
        body = rest[:nxt.start()] if nxt else rest
        call = re.search(r"blocks_replace\[\(\s*[\"'](\w+)[\"']\s*,\s*\w+\s*\)\]\s*\(", body)
        if call is None:
            continue
        streams = tuple(dict.fromkeys(re.findall(r"out\[[\"'](\w+)[\"']\]\s*[,=]", body[:call.start()])))
        if streams:
            return call.group(1), streams
    return None


def forward_streams(block: torch.nn.Module) -> tuple[tuple, bool]:
    """(stream names, returns_tuple) of a block's ``forward`` from its return statements."""
    fn = type(block).forward
    sig = inspect.signature(fn)
    params = [p.name for p in sig.parameters.values()
              if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        raise NoBlockStack(f"{type(block).__name__}.forward takes *args, which the generic route cannot bind by name")
    if not params:
        raise NoBlockStack(f"{type(block).__name__}.forward takes no named inputs")
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return (params[0],), False
    returns = [n.value for n in ast.walk(tree) if isinstance(n, ast.Return) and n.value is not None]
    tuples = [tuple(e.id for e in r.elts if isinstance(e, ast.Name)) for r in returns if isinstance(r, ast.Tuple)]
    # every tuple return names the same parameters: those are the streams, in the order returned
    if tuples and len(set(tuples)) == 1 and len(tuples[0]) == len(returns[0].elts) and \
            all(n in params for n in tuples[0]) and len(tuples) == len(returns):
        return tuples[0], True
    if tuples:
        raise NoBlockStack(f"{type(block).__name__}.forward returns a tuple the generic route cannot map to its "
                           "inputs")
    return (params[0],), False


def find_stack(dm: torch.nn.Module) -> BlockStack:
    """The main block stack of ``dm`` and how to hook it; :class:`NoBlockStack` says why there is none."""
    lists = block_lists(dm)
    if not lists:
        raise NoBlockStack(f"{type(dm).__name__} has no list of two or more blocks of one class")
    # the main stack is run by the model's own forward, not by a submodule (ACE-Step's lyric encoder)
    src = _class_source(type(dm))
    own = [(p, b) for p, b in lists if re.search(r"self\." + re.escape(p) + r"\b", src)]
    path, blocks = (own or lists)[0]
    if not one_width(blocks):
        raise NoBlockStack(f"the blocks of {type(dm).__name__}.{path} change width from block to block (a "
                           "UNet's do), so they do not carry one hidden state of one width")
    rep = replace_route(dm, path)
    if rep is not None:
        return BlockStack(path, tuple(blocks), rep[0], rep[1])
    streams, as_tuple = forward_streams(blocks[0])
    return BlockStack(path, tuple(blocks), None, streams, as_tuple)
