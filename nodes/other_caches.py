"""Other caches on the same model: ComfyUI's own EasyCache and LazyCache.

They skip the whole model (EasyCache: the diffusion model's forward; LazyCache: the sampler's
model call) on steps whose input barely changed and add a cached output difference. With
TeaCache Patch or an L2C schedule on the same model, both would skip work on the same steps, each
reusing output the other already approximated, and neither's statistics would say what ran. So
such a model is refused, in either order, with the node to remove named: at our node when the
other cache came first, at sampling time when it was applied after ours.
"""
from __future__ import annotations

# transformer_options key both ComfyUI nodes store their holder under
# (comfy_extras/nodes_easycache.py, 0.3.64 and 0.29.0), and the node each holder class belongs to
_KEY = "easycache"
_NODES = {"EasyCacheHolder": "EasyCache", "LazyCacheHolder": "LazyCache"}


class CacheConflictError(ValueError):
    """Two caches on one model."""


def other_cache(model_options: dict) -> str | None:
    """The ComfyUI cache node applied to a model with these options ("EasyCache", "LazyCache"), or
    None."""
    holder = (model_options.get("transformer_options") or {}).get(_KEY)
    if holder is None:
        return None
    return _NODES.get(type(holder).__name__, "EasyCache or LazyCache")


def refuse_before(model, node: str) -> None:
    """Raises when ``model`` already carries EasyCache/LazyCache (applied before ``node``)."""
    other = other_cache(model.model_options)
    if other is not None:
        raise CacheConflictError(
            f"{node} cannot be applied to a model that ComfyUI's {other} node already caches: both would skip "
            f"the model's work on the same steps and reuse each other's approximations. Remove the {other} "
            f"node, or remove {node}.")


def refuse_at_sampling(model_options: dict, ours: str) -> None:
    """Raises when EasyCache/LazyCache was applied after our node (``ours`` names it)."""
    other = other_cache(model_options)
    if other is not None:
        raise CacheConflictError(
            f"This model has both {ours} (dit-cache) and ComfyUI's {other} node, applied after it: both would "
            f"skip the model's work on the same steps and reuse each other's approximations. Remove the "
            f"{other} node, or remove {ours}.")
