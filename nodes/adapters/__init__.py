"""One adapter per model family; `detect` finds the one for a loaded model."""
from __future__ import annotations

import importlib
import logging

from .base import Adapter, AdapterMismatchError, UnsupportedModelError

log = logging.getLogger("dit_cache")

# module name -> adapter class name, in detection order (specific before general)
_ADAPTERS = [
    ("flux", "FluxAdapter"),
    ("flux2", "Flux2Adapter"),
    ("flux", "LongCatImageAdapter"),
    ("flux", "OvisImageAdapter"),
    ("chroma", "ChromaAdapter"),
    ("chroma", "ChromaRadianceAdapter"),
    ("hunyuan_video", "HunyuanVideoAdapter"),
    ("wan", "WanAdapter"),
    ("ltxv", "LTXVAdapter"),
    ("sd3", "SD3Adapter"),
    ("lumina2", "Lumina2Adapter"),
    ("z_image", "ZImageAdapter"),
    ("qwen_image", "QwenImageAdapter"),
    ("hidream", "HiDreamAdapter"),
    ("cosmos", "CosmosPredict2Adapter"),
]


def adapter_classes() -> list[type[Adapter]]:
    out = []
    for mod, cls in _ADAPTERS:
        try:
            m = importlib.import_module(f".{mod}", __name__)
        except ModuleNotFoundError as e:
            if e.name and e.name.endswith(f"adapters.{mod}"):
                continue  # adapter not written yet
            raise
        out.append(getattr(m, cls))
    return out


def supported_names() -> list[str]:
    return [c.display for c in adapter_classes()]


def detect(model_patcher) -> Adapter:
    """The adapter for this model, or an error naming every supported family."""
    dm = getattr(getattr(model_patcher, "model", None), "diffusion_model", None)
    for cls in adapter_classes():
        try:
            ok = dm is not None and cls.matches(model_patcher)
        except ImportError:
            ok = False
        if ok:
            return cls(model_patcher)
    found = type(dm).__name__ if dm is not None else type(model_patcher).__name__
    raise UnsupportedModelError(
        f"dit-cache does not support this model ({found}). Supported families: "
        + "; ".join(supported_names()) + ". Connect one of those models, or remove the cache node.")
