"""dit-cache: TeaCache and Learning-to-Cache for diffusion transformers in ComfyUI.

ComfyUI imports this file as the pack's package; the engine in ``cache_core`` never imports ComfyUI.
"""
try:
    import comfy  # noqa: F401  (present only when ComfyUI loads us)
    _IN_COMFY = True
except ImportError:
    _IN_COMFY = False

WEB_DIRECTORY = "./web"

if _IN_COMFY:
    from .nodes.extension import comfy_entrypoint  # noqa: F401

__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"] if _IN_COMFY else ["WEB_DIRECTORY"]
