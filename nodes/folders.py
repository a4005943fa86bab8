"""Model folders this pack reads and writes (registered with ComfyUI's folder_paths), and safe
name resolution: nothing is ever read or written outside them."""
from __future__ import annotations

import os

import folder_paths

from ..dit_reference.flux_digits import MODEL_DIR

SCHEDULES = "l2c_schedules"
PROFILES = "teacache_profiles"
_EXTS = {SCHEDULES: {".safetensors", ".pt", ".pth"}, PROFILES: {".json"}}
MAX_FILE_BYTES = 64 * 2**20  # far above any schedule or profile; refuse larger files unread


# the pack's own diffusion model (the Flux digits model), listed by "Load Diffusion Model" beside
# the user's models; a search path only, never a place ComfyUI writes to (appended, not the default)
PACK_DIFFUSION_MODELS = str(MODEL_DIR)


def register() -> None:
    for name, exts in _EXTS.items():
        if name not in folder_paths.folder_names_and_paths:
            folder_paths.folder_names_and_paths[name] = ([os.path.join(folder_paths.models_dir, name)], set(exts))
    if os.path.isdir(PACK_DIFFUSION_MODELS):
        folder_paths.add_model_folder_path("diffusion_models", PACK_DIFFUSION_MODELS)


def listing(kind: str) -> list[str]:
    register()
    try:
        return sorted(folder_paths.get_filename_list(kind))
    except Exception:
        return []


def resolve(kind: str, name: str) -> str:
    """Full path of ``name`` inside the ``kind`` model folder; refuses path tricks."""
    register()
    if not name or os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        raise ValueError(f"{name!r} is not a plain file name; put the file in ComfyUI's models/{kind} "
                         "folder and pick it from the list")
    path = folder_paths.get_full_path(kind, name)
    if path is None:
        raise FileNotFoundError(f"{name!r} was not found in models/{kind}; put it there and refresh the page")
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{name!r} is {size / 2**20:.0f} MiB, far larger than any {kind} file "
                         f"(limit {MAX_FILE_BYTES // 2**20} MiB); it is not a schedule or profile")
    return path


def output_path(kind: str, name: str, ext: str) -> str:
    """Where a new file called ``name`` goes (first folder of ``kind``), created on demand."""
    register()
    base = os.path.basename(name)
    if not base or base != name or base.startswith("."):
        raise ValueError(f"{name!r} is not a plain file name (no folders, no leading dot)")
    if not base.endswith(ext):
        base += ext
    folder = folder_paths.get_folder_paths(kind)[0]
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, base)
