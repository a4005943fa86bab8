"""The host tests' name for ``devtools.comfy_host`` (one implementation, shared with the workflow
generator and the benchmarks). Module state such as ``_COMFY`` is read through to it."""
from devtools import comfy_host as _impl
from devtools.comfy_host import *  # noqa: F401,F403
from devtools.comfy_host import REPO_ROOT, comfy_version, enclosing_comfyui, find_comfyui, force_cpu, import_comfy, is_comfyui  # noqa: F401


def __getattr__(name):
    return getattr(_impl, name)
