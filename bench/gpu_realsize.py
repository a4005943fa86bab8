"""Computed versus reused steps at real model size (CUDA only, random weights, bf16).

    python -m bench.gpu_realsize [--models flux wan] [--repeats 5] [--steps 28]
    COMFYUI_PATH=/path/to/ComfyUI python -m bench.gpu_realsize

Without CUDA it prints why it skips and exits 0. With ComfyUI importable (``COMFYUI_PATH``, or the
checkout holding this pack: ``devtools.comfy_host.find_comfyui``) it builds

* ``comfy.ldm.flux.model.Flux`` at FLUX.1-dev size (19 double + 38 single blocks, width 3072,
  24 heads, guidance embedding) at 1024x1024: a 16x128x128 latent = 4096 image tokens, plus 512
  T5 tokens;
* ``comfy.ldm.wan.model.WanModel`` at Wan 2.1 1.3B size (dim 1536, 30 layers, 12 heads, ffn 8960)
  at 832x480 with 81 frames: a 16x21x60x104 latent = 21*30*52 = 32760 tokens after the 1x2x2
  patchify, plus 512 T5 tokens;

otherwise (no ComfyUI) a stand-in stack of adaLN DiT blocks (dit_reference.model.Block) of the
same width, depth, heads and token count, labelled ``standin``.

A *computed* step is a full forward. A *reused* step is the forward TeaCache runs on a reuse: every
block is replaced (through ComfyUI's ``patches_replace["dit"]``, the hook dit-cache uses) by an
identity and the last one adds a cached residual, so only the parts outside the blocks run
(embeddings, RoPE, final layer). A computed step of a caching run also clones the stack input and
stores the residual. Reported: seconds per computed / reused step (median of ``--repeats``),
end-to-end seconds for ``--steps`` steps at fixed schedules (all computed; skip every 2nd; skip 2
of 3), the speed-up, the bound 1 / (1 - skipped share), and peak memory
(torch.cuda.max_memory_allocated) with and without the cache. Batch 1, one stream (no CFG
batching). Writes bench/results/gpu_realsize.json. No network; about 3-6 minutes on an H100.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch

from devtools.comfy_host import find_comfyui

REPO = Path(__file__).resolve().parents[1]
DEV = "cuda"
SMOKE = False  # --smoke: tiny sizes on any device, to check the code paths (no meaningful timings)


def import_comfy(path: Path):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    import comfy.options
    comfy.options.enable_args_parsing(False)
    import comfy.cli_args
    if DEV == "cpu":
        comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401
    import comfy.ops
    return comfy.ops.disable_weight_init


def init_random_(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator(device=DEV).manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02 / max(1.0, (p.shape[-1] / 1024) ** 0.5), generator=g)
            else:
                p.zero_()


class ReuseOptions:
    """patches_replace entries for a model whose blocks are listed as (kind, index) keys, in order.

    mode "plain": no entry (the unpatched forward). mode "compute": every block runs through a
    replace wrapper; the first block's input is cloned and ``last output[:, offset:] - input``
    stored (the residual cache; ``offset`` skips the text tokens Flux's single blocks prepend).
    mode "reuse": every block is an identity and the last adds the stored residual."""

    def __init__(self, keys: list[tuple[str, int]], offset: int = 0, hidden: str = "img"):
        self.keys = keys
        self.first_key, self.last_key = keys[0], keys[-1]
        self.offset = offset
        self.residual = None
        self.stack_in = None
        self.hidden = hidden

    def options(self, mode: str) -> dict:
        if mode == "plain":
            return {}
        make = self._compute if mode == "compute" else self._reuse
        return {"patches_replace": {"dit": {k: make(k) for k in self.keys}}}

    def _compute(self, key):
        def f(args, extra):
            if key == self.first_key:
                self.stack_in = args[self.hidden].clone()
            out = extra["original_block"](args)
            if key == self.last_key:
                self.residual = out[self.hidden][:, self.offset:] - self.stack_in
                self.stack_in = None
            return out
        return f

    def _reuse(self, key):
        def f(args, extra):
            out = {k: args[k] for k in ("img", "txt") if k in args and args[k] is not None}
            if key == self.last_key:
                x = args[self.hidden]
                out[self.hidden] = (torch.cat([x[:, :self.offset], x[:, self.offset:] + self.residual], dim=1)
                                    if self.offset else x + self.residual)
            return out
        return f


def build_flux(ops, dtype):
    from comfy.ldm.flux.model import Flux
    nd, ns, w, hw = (2, 2, 256, 16) if SMOKE else (19, 38, 3072, 128)
    m = Flux(in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096, hidden_size=w, mlp_ratio=4.0,
             num_heads=w // 128, depth=nd, depth_single_blocks=ns, axes_dim=[16, 56, 56], theta=10000, patch_size=2,
             qkv_bias=True, guidance_embed=True, dtype=dtype, device=DEV, operations=ops)
    m.eval().requires_grad_(False)
    init_random_(m)
    b = 1
    inputs = dict(x=torch.randn(b, 16, hw, hw, device=DEV, dtype=dtype),
                  timestep=torch.full((b,), 0.5, device=DEV, dtype=dtype),
                  context=torch.randn(b, 512, 4096, device=DEV, dtype=dtype),
                  y=torch.randn(b, 768, device=DEV, dtype=dtype),
                  guidance=torch.full((b,), 3.5, device=DEV, dtype=dtype))
    keys = [("double_block", i) for i in range(nd)] + [("single_block", i) for i in range(ns)]
    ro = ReuseOptions(keys, offset=512)  # residual of the image tokens over all 57 blocks, as TeaCache4FLUX

    def fwd(mode):
        return m(**inputs, transformer_options=ro.options(mode))
    info = {"model": "comfy.ldm.flux.model.Flux", "size": "FLUX.1-dev (19 double, 38 single, width 3072, 24 heads)",
            "resolution": "1024x1024", "image_tokens": 4096, "text_tokens": 512,
            "params_billion": sum(p.numel() for p in m.parameters()) / 1e9,
            "note": "reuse: all blocks identity, the last adds the cached image-token residual"}
    return m, fwd, ro, info


def build_wan(ops, dtype):
    from comfy.ldm.wan.model import WanModel
    nl, dim, ffn, heads, (f, h, w) = (2, 256, 512, 2, (3, 8, 8)) if SMOKE else (30, 1536, 8960, 12, (21, 60, 104))
    m = WanModel(model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=16, dim=dim, ffn_dim=ffn,
                 freq_dim=256, text_dim=4096, out_dim=16, num_heads=heads, num_layers=nl, window_size=(-1, -1),
                 qk_norm=True, cross_attn_norm=True, eps=1e-6, device=DEV, dtype=dtype, operations=ops)
    m.eval().requires_grad_(False)
    init_random_(m)
    b = 1
    inputs = dict(x=torch.randn(b, 16, f, h, w, device=DEV, dtype=dtype),
                  timestep=torch.full((b,), 500.0, device=DEV, dtype=dtype),
                  context=torch.randn(b, 512, 4096, device=DEV, dtype=dtype))
    keys = [("double_block", i) for i in range(nl)]
    ro = ReuseOptions(keys)

    def fwd(mode):
        return m(**inputs, transformer_options=ro.options(mode))
    info = {"model": "comfy.ldm.wan.model.WanModel", "size": "Wan 2.1 1.3B (dim 1536, 30 layers, 12 heads, ffn 8960)",
            "resolution": "832x480, 81 frames (21 latent frames)", "image_tokens": 21 * 30 * 52, "text_tokens": 512,
            "params_billion": sum(p.numel() for p in m.parameters()) / 1e9}
    return m, fwd, ro, info


class StandIn(torch.nn.Module):
    """Used without ComfyUI: a stack of adaLN blocks of the real width/depth/heads/tokens."""

    def __init__(self, width, depth, heads, tokens, dtype):
        super().__init__()
        from dit_reference.model import Block
        self.blocks = torch.nn.ModuleList([Block(width, heads, 4.0) for _ in range(depth)])
        self.inp = torch.nn.Linear(64, width)
        self.out = torch.nn.Linear(width, 64)
        self.to(device=DEV, dtype=dtype)
        self.x = torch.randn(1, tokens, 64, device=DEV, dtype=dtype)
        self.c = torch.randn(1, width, device=DEV, dtype=dtype)

    def forward(self, transformer_options=None):
        rep = (transformer_options or {}).get("patches_replace", {}).get("dit", {})
        h = self.inp(self.x)
        for i, b in enumerate(self.blocks):
            f = rep.get(("double_block", i))
            if f is None:
                h = b(h, self.c)
            else:
                h = f({"img": h}, {"original_block": lambda a, b=b: {"img": b(a["img"], self.c)}})["img"]
        return self.out(h)


def build_standin(name, dtype):
    width, depth, heads, tokens = {"flux": (3072, 57, 24, 4608), "wan": (1536, 30, 12, 32760 + 512)}[name]
    if SMOKE:
        width, depth, heads, tokens = 256, 3, 2, 64
    m = StandIn(width, depth, heads, tokens, dtype).eval().requires_grad_(False)
    init_random_(m)
    keys = [("double_block", i) for i in range(depth)]
    ro = ReuseOptions(keys)
    return m, (lambda mode: m(transformer_options=ro.options(mode))), ro, {
        "model": "standin adaLN DiT blocks (no ComfyUI)", "width": width, "depth": depth, "heads": heads,
        "tokens": tokens}


def _sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def time_forward(fwd, mode, repeats) -> list[float]:
    out = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fwd(mode)
        _sync()
        out.append(time.perf_counter() - t0)
    return out


def run_schedule(fwd, ro, steps: int, skip) -> tuple[float, int, int]:
    """Runs `steps` evaluations, reusing where skip(step) is True; (seconds, reused, peak bytes)."""
    ro.residual = None
    _sync()
    if DEV == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    reused = 0
    for s in range(steps):
        if skip is None:
            fwd("plain")
        elif skip(s) and ro.residual is not None and s != steps - 1:
            fwd("reuse")
            reused += 1
        else:
            fwd("compute")
    _sync()
    return time.perf_counter() - t0, reused, (torch.cuda.max_memory_allocated() if DEV == "cuda" else 0)


def bench_model(name, builder, steps, repeats) -> dict:
    from statistics import median
    t_build = time.perf_counter()
    m, fwd, ro, info = builder()
    info["build_s"] = time.perf_counter() - t_build
    print(f"[{name}] built {info['model']} in {info['build_s']:.1f}s", flush=True)
    with torch.inference_mode():
        for mode in ("plain", "compute", "reuse"):  # warm-up (kernels, allocator); compute stores a residual
            fwd(mode)
        comp = time_forward(fwd, "plain", repeats)
        comp_c = time_forward(fwd, "compute", repeats)
        reuse = time_forward(fwd, "reuse", repeats)
        info.update({"computed_step_s": median(comp), "computed_step_with_cache_store_s": median(comp_c),
                     "reused_step_s": median(reuse), "reuse_fraction": median(reuse) / median(comp),
                     "samples": {"computed": comp, "computed_store": comp_c, "reused": reuse}})
        print(f"[{name}] computed {median(comp):.4f}s (+store {median(comp_c):.4f}s), reused {median(reuse):.4f}s "
              f"= {100 * median(reuse) / median(comp):.1f}% of a computed step", flush=True)
        scheds = {"all computed (unpatched)": None, "skip every 2nd": lambda s: s % 2 == 1,
                  "skip 2 of 3": lambda s: s % 3 != 0}
        base = None
        info["schedules"] = {}
        for label, sk in scheds.items():
            secs, reused, peak = run_schedule(fwd, ro, steps, sk)
            if base is None:
                base = secs
            share = reused / steps
            bound = 1 / (1 - share)
            info["schedules"][label] = {"seconds": secs, "reused_steps": reused, "steps": steps,
                                        "skipped_share": share, "speedup": base / secs, "bound": bound,
                                        "efficiency": (base / secs) / bound, "peak_memory_gib": peak / 2 ** 30}
            print(f"[{name}] {label:<26} {steps} steps {secs:7.2f}s  reused {reused:2d}  speed-up {base / secs:.2f}x "
                  f"(bound {bound:.2f}x)  peak {peak / 2 ** 30:.2f} GiB", flush=True)
        info["residual_cache_mib"] = (ro.residual.numel() * ro.residual.element_size() / 2 ** 20
                                      if ro.residual is not None else 0.0)
    del m, fwd, ro
    gc.collect()
    if DEV == "cuda":
        torch.cuda.empty_cache()
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_realsize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["flux", "wan"], choices=["flux", "wan"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=0, help="steps per schedule (default: 28 Flux, 30 Wan)")
    ap.add_argument("--standin", action="store_true", help="use the stand-in blocks even if ComfyUI is importable")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    global DEV, SMOKE
    if args.smoke:
        SMOKE, DEV = True, ("cuda" if torch.cuda.is_available() else "cpu")
        args.repeats, args.steps = 1, args.steps or 4
    elif not torch.cuda.is_available():
        print("gpu_realsize: skipped, CUDA is not available (this benchmark times real-size models on a GPU)")
        return 0
    sys.path.insert(0, str(REPO))
    from bench.common import environment, write_json
    dtype = torch.bfloat16 if DEV == "cuda" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = True
    path, why = (None, "--standin given") if args.standin else find_comfyui()
    ops = None
    if path is not None:
        try:
            ops = import_comfy(path)
        except Exception as exc:  # missing optional dependency and the like: fall back, say why
            why = f"ComfyUI at {path} failed to import: {type(exc).__name__}: {exc}"
            ops = None
    print(f"gpu_realsize: {torch.cuda.get_device_name(0) if DEV == 'cuda' else 'cpu smoke'}; {why if ops is None else 'using ' + why}", flush=True)
    res = {"environment": environment(), "comfyui": str(path) if ops is not None else None, "why": why,
           "dtype": "bfloat16", "models": {}}
    for name in args.models:
        steps = args.steps or {"flux": 28, "wan": 30}[name]
        if ops is not None:
            builder = (lambda: build_flux(ops, dtype)) if name == "flux" else (lambda: build_wan(ops, dtype))
        else:
            builder = lambda name=name: build_standin(name, dtype)  # noqa: E731
        try:
            res["models"][name] = bench_model(name, builder, steps, args.repeats)
        except torch.cuda.OutOfMemoryError as exc:
            res["models"][name] = {"error": f"out of memory: {exc}"}
            print(f"[{name}] out of memory, skipped", flush=True)
        write_json("gpu_realsize_smoke.json" if SMOKE else "gpu_realsize.json", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
