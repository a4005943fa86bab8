"""dit-cache: TeaCache and Learning-to-Cache for diffusion transformers in ComfyUI.

ComfyUI imports this file as the pack's package; the engine in ``cache_core`` never imports ComfyUI.
"""
try:
    import comfy  # noqa: F401  (present only when ComfyUI loads us)
    _IN_COMFY = True
except ImportError:
    _IN_COMFY = False

WEB_DIRECTORY = "./web"

# ``__package__`` is empty when this file is imported as a bare module: pytest does that for the
# checkout's root when its folder name is not a Python identifier (e.g. a worktree "wt-x"), and a
# relative import would fail there; ComfyUI always imports it as a package.
if _IN_COMFY and __package__:
    from .nodes.extension import comfy_entrypoint  # noqa: F401

__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"] if "comfy_entrypoint" in globals() else ["WEB_DIRECTORY"]
