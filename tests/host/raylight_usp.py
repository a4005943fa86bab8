"""Run raylight's own sequence-parallel (USP) and CFG-parallel code on CPU, in processes joined by
torch.distributed (gloo), for the host tests (tests/host/test_sequence_parallel.py).

raylight (``../shared/raylight``, read-only) is imported from its source tree without its package
``__init__`` (which imports Ray and its nodes): a package module is made for ``raylight`` and its
submodules load from the tree. Its own ``xfuser_compat.install_minimal_xfuser`` loads xFuser's
parallel state and long-context attention (xfuser and yunchang, installed ``--no-deps`` by
:func:`ensure_xfuser` into a cache folder). What differs from a raylight GPU worker, and why:

* the process group is gloo (raylight: NCCL), and xFuser's groups are made with ``backend="gloo"``;
* attention is yunchang's ``TORCH_MATH`` kernel (raylight's choices are GPU kernels);
* xFuser's ``hybrid/attn_layer.py`` imports yunchang's ``LongContextAttention`` only when
  ``torch.cuda.is_available()``: that import runs with it saying True;
* xFuser 0.7's ``init_distributed_environment`` asks ``envs.get_device_name()``, which raylight's
  ``envs`` stub lacks: the stub gets one that says ``cpu``.

Then raylight's code does the rest as in its workers: ``USPInjectRegistry.inject`` as the model's
ON_LOAD callback (``RayWorker.patch_usp``) and ``CFGParallelInjectRegistry.inject`` as a
DIFFUSION_MODEL wrapper (``RayWorker.patch_cfg``)."""
from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAYLIGHT_SRC = Path(os.environ.get("DITCACHE_RAYLIGHT", REPO.parent / "shared" / "raylight")) / "src" / "raylight"
# raylight asks xfuser>=0.4.4; these are the releases the test was written against
XFUSER_PINS = ("xfuser==0.7.0", "yunchang==0.6.4")


def deps_dir() -> Path:
    base = Path(os.environ.get("DITCACHE_HOSTS_DIR", Path.home() / ".cache" / "dit-cache" / "hosts"))
    return base / ("raylight-deps-" + "-".join(p.replace("==", "") for p in XFUSER_PINS))


def ensure_xfuser() -> Path:
    """xfuser and yunchang (pure Python, ~11 MB, no dependencies pulled: torch stays as it is) in a
    cache folder; returns it. Raises RuntimeError when pip cannot get them."""
    d = deps_dir()
    if not (d / "xfuser").is_dir() or not (d / "yunchang").is_dir():
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(d),
                            *XFUSER_PINS], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"pip could not install {' '.join(XFUSER_PINS)} into {d}: {r.stderr[-2000:]}")
    return d


def boot(rank: int, world: int, port: int, sp: int, cfg: int = 1) -> None:
    """Join the gloo group and set up xFuser's parallel state as raylight's
    ``initialize_xfuser_parallel`` does (``sp`` Ulysses ranks x ``cfg`` CFG ranks)."""
    import torch.distributed as dist
    if not (RAYLIGHT_SRC / "xfuser_compat.py").is_file():
        raise RuntimeError(f"raylight's source is not at {RAYLIGHT_SRC}; set DITCACHE_RAYLIGHT to a raylight checkout")
    sys.path.insert(0, str(deps_dir()))
    pkg = types.ModuleType("raylight")
    pkg.__path__ = [str(RAYLIGHT_SRC)]
    sys.modules["raylight"] = pkg
    import torch
    from raylight.xfuser_compat import install_minimal_xfuser
    available = torch.cuda.is_available
    torch.cuda.is_available = lambda: True  # xFuser imports yunchang's attention only "on a GPU"
    try:
        install_minimal_xfuser()
    finally:
        torch.cuda.is_available = available
    env = sys.modules["xfuser.envs"]
    if not hasattr(env, "get_device_name"):
        env.get_device_name = lambda: "cpu"
    import raylight.distributed_modules.attention as xattn
    xattn.set_attn_type("TORCH_MATH")
    xattn.set_sync_ulysses(False)
    from xfuser.core.distributed import init_distributed_environment, initialize_model_parallel
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}")
    init_distributed_environment(rank=rank, world_size=world, backend="gloo")
    initialize_model_parallel(data_parallel_degree=world // (sp * cfg), sequence_parallel_degree=sp,
                              classifier_free_guidance_degree=cfg, ulysses_degree=sp, ring_degree=1,
                              backend="gloo")


def parallelise(patcher, usp: bool, cfg: bool):
    """``patcher`` with raylight's USP injection (an ON_LOAD callback, as ``RayWorker.patch_usp``)
    and/or its CFG-parallel wrapper (as ``RayWorker.patch_cfg``), both raylight's own code."""
    import comfy.patcher_extension as pe
    m = patcher.clone()
    if usp:
        from raylight.distributed_modules.usp import USPInjectRegistry
        m.add_callback(pe.CallbacksMP.ON_LOAD, USPInjectRegistry.inject)
    if cfg:
        from raylight.distributed_modules.cfg import CFGParallelInjectRegistry
        m.add_wrapper(pe.WrappersMP.DIFFUSION_MODEL, CFGParallelInjectRegistry.inject(m))
    return m
