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
    ("hunyuan_video", "HunyuanVideo15Adapter"),
    ("hunyuan_video", "HunyuanImage21Adapter"),
    ("wan", "WanAdapter"),
    ("ltxv", "LTXVAdapter"),
    ("ltxv", "LTXAVAdapter"),
    ("kandinsky5", "Kandinsky5Adapter"),
    ("sd3", "SD3Adapter"),
    ("lumina2", "Lumina2Adapter"),
    ("z_image", "ZImageAdapter"),
    ("qwen_image", "QwenImageAdapter"),
    ("hidream", "HiDreamAdapter"),
    ("cosmos", "CosmosPredict2Adapter"),
    ("anima", "AnimaAdapter"),
    ("mage_flow", "MageFlowAdapter"),
    ("lens", "LensAdapter"),
    ("joyimage", "JoyImageAdapter"),
    ("krea2", "Krea2Adapter"),
    ("ideogram4", "Ideogram4Adapter"),
    ("ernie", "ErnieImageAdapter"),
    ("boogu", "BooguAdapter"),
    ("minimax", "MiniMaxH3Adapter"),
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


def model_tooltip() -> str:
    """The ``model`` tooltip of the cache nodes: every family in the registry, so a family whose
    adapter is added appears without editing a node."""
    return ("A diffusion transformer of a supported family: " + "; ".join(supported_names()) + ". Any other DiT "
            "gets the generic route (its main block stack, raw coefficients: calibrate for it).")


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
    if dm is None:
        raise UnsupportedModelError(
            f"dit-cache does not support this model: {model_name(model_patcher)}. Supported families: "
            + "; ".join(supported_names()) + ". Connect one of those models, or remove the cache node.")
    from .generic import GenericAdapter
    return GenericAdapter.for_model(model_patcher)  # any other DiT, or an error saying why not


def model_name(model_patcher) -> str:
    """What ComfyUI loaded, in its own terms: the model config (what its detection recognised,
    e.g. "Lens") and the network class (e.g. "comfy.ldm.lens.model.LensTransformer2DModel")."""
    model = getattr(model_patcher, "model", None)
    dm = getattr(model, "diffusion_model", None)
    if dm is None:
        return f"{type(model if model is not None else model_patcher).__name__}, which has no diffusion model"
    net = f"{type(dm).__module__}.{type(dm).__qualname__}"
    cfg = getattr(model, "model_config", None)
    return f"{type(cfg).__name__} ({net})" if cfg is not None else net
