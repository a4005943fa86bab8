"""Which model evaluations are the sampler's ordinary pass, and which are guidance passes.

A sampler step calls the guider's ``predict_noise`` once; inside it ComfyUI evaluates each cond
(cond, uncond, ...) once with the model's own patches. Guidance nodes add evaluations of their
own inside the same call, sharing a cond's uuid:

* Skip Layer Guidance (``SkipLayerGuidanceDiT``, ``SkipLayerGuidanceSD3``) evaluates the cond
  again with some blocks replaced by identities; ``SkipLayerGuidanceDiTSimple`` evaluates the
  uncond that way; Perturbed-Attention Guidance replaces an attention. Their
  ``transformer_options`` carry other ``patches_replace``/``patches`` than the ordinary pass.
* Self-Attention Guidance and LTX-2's identity guidance evaluate a cond again with the same
  patches but another input (a blurred latent, a cond without reference audio).

Taken for the stream's next evaluation, such a pass read the cond's cache (its change is 0, so it
reused the cond's result and the guidance did nothing) and moved the cond's own decisions
(issue 11). So every evaluation gets a *pass key*: ordinary evaluations keep the cond's stream;
an evaluation patched differently gets a stream of its own per patch difference (``g1:<uuid>``,
its own TeaCache state and residual, so a guidance pass that recurs every step caches like any
stream); a second evaluation of the same stream inside one ``predict_noise`` call runs uncached
(``g1#2:<uuid>``), since nothing makes its input follow the stream's.
"""
from __future__ import annotations

from dataclasses import dataclass, field


def patch_signature(transformer_options: dict | None) -> dict:
    """What decides how the blocks run: every ``patches_replace`` entry and ``patches`` list of
    ``transformer_options`` by identity, keyed ``("replace", name, key)`` / ``("patches", name)``."""
    sig: dict = {}
    if not transformer_options:
        return sig
    for name, entries in (transformer_options.get("patches_replace") or {}).items():
        for key, fn in (entries or {}).items():
            sig[("replace", name, key)] = id(fn)
    for name, fns in (transformer_options.get("patches") or {}).items():
        sig[("patches", name)] = tuple(id(f) for f in (fns or ()))
    return sig


def patch_difference(signature: dict, reference: dict) -> tuple:
    """The entries in which ``signature`` differs from ``reference`` (added, removed or replaced),
    sorted; empty when the evaluation patches the model as the ordinary pass does."""
    keys = set(signature) | set(reference)
    return tuple(sorted((k for k in keys if signature.get(k) != reference.get(k)), key=repr))


def describe(difference: tuple) -> str:
    """A short text for a patch difference, e.g. ``dit double_block 1 replaced``."""
    parts = []
    for k in difference:
        if k[0] == "replace":
            key = k[2] if isinstance(k[2], tuple) else (k[2],)
            parts.append(f"{k[1]} {' '.join(str(p) for p in key)} replaced")
        else:
            parts.append(f"{k[1]} patches changed")
    return ", ".join(parts)


@dataclass
class PassKey:
    streams: list           # stream key per batch chunk
    guidance: str = ""      # "" for the ordinary pass, else the pass id ("g1", "g1#2", "#2", ...)
    cached: bool = True     # False: run the blocks as the plain model does, touch no cache state
    difference: tuple = ()  # the patch difference that made it a guidance pass


@dataclass
class ModelCall:
    """One sampler evaluation (one ``predict_noise`` call): the ordinary pass's patches and the
    streams evaluated so far."""
    reference: dict
    seen: dict = field(default_factory=dict)  # stream key -> evaluations of it in this call
    options: dict | None = None  # the call's model_options (its cfg functions name a guidance pass's node)


class PassClassifier:
    """Per sampling run: numbers the patch differences it meets (``g1``, ``g2``, ...) and keys each
    evaluation (see the module docstring)."""

    def __init__(self):
        self.ids: dict = {}    # patch difference -> "g<n>"
        self.call: ModelCall | None = None

    def begin_call(self, transformer_options: dict | None, model_options: dict | None = None) -> ModelCall | None:
        previous = self.call
        self.call = ModelCall(patch_signature(transformer_options), options=model_options)
        return previous

    def end_call(self, previous: ModelCall | None) -> None:
        self.call = previous

    def classify(self, streams: list, transformer_options: dict | None,
                 stack_intact=lambda difference: True) -> PassKey:
        """The pass key of an evaluation of ``streams`` (the cond streams ComfyUI batched) with
        ``transformer_options``. ``stack_intact(difference)`` says whether the model's first and
        last hooked blocks still reach the cache under that difference (a guidance pass that
        replaces either cannot be cached)."""
        call = self.call
        if call is None:  # not inside a predict_noise call (a sampler calling the model directly)
            return PassKey(list(streams))
        diff = patch_difference(patch_signature(transformer_options), call.reference)
        gid = ""
        if diff:
            gid = self.ids.get(diff)
            if gid is None:
                gid = self.ids[diff] = f"g{len(self.ids) + 1}"
        keys = [f"{gid}:{s}" if gid else s for s in streams]
        counts = [call.seen.get(k, 0) + 1 for k in keys]
        for k, n in zip(keys, counts):
            call.seen[k] = n
        repeat = max(counts)
        if repeat > 1:
            gid = f"{gid}#{repeat}"
            return PassKey([f"{gid}:{s}" for s in streams], gid, False, diff)
        if diff and not stack_intact(diff):
            return PassKey(keys, gid, False, diff)
        return PassKey(keys, gid, True, diff)
