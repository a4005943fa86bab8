"""End-to-end speed on a GPU through ComfyUI's own sampling path and our nodes.

Random-weight models of ComfyUI's real classes at real size (FLUX.1-dev: 19 double + 38 single
blocks, width 3072, at 1024x1024; Wan 2.1 1.3B at 832x480, 33 frames), bf16, sampled with
``comfy.sample.sample`` unpatched, through TeaCache Patch at threshold 0 (overhead, bit-identity)
and at fixed thresholds. Random weights change between steps unlike trained ones, so which steps a
threshold skips says nothing about quality; what is measured is the time of the path itself:
measured speed-up against the bound ``1 / (1 - skipped share)`` and peak memory with the caches.

    COMFYUI_PATH=/path/to/ComfyUI python -m bench.gpu_comfy_e2e

Skips (exit 0, with the reason) without CUDA or ComfyUI.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

FLUX = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
            hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=19, depth_single_blocks=38,
            axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True)
WAN = dict(image_model="wan2.1", dim=1536, out_dim=16, num_heads=12, ffn_dim=8960, num_layers=30,
           patch_size=(1, 2, 2), freq_dim=256, window_size=(-1, -1), qk_norm=True, cross_attn_norm=True,
           eps=1e-6, in_dim=16, model_type="t2v")


def build(c, unet_config, dtype):
    mc = c.comfy_model_detection.model_config_from_unet_config(dict(unet_config), None)
    mc.set_inference_dtype(dtype, None)
    dev = torch.device("cuda")
    model = mc.get_model({}, "", device=dev)
    with torch.no_grad():
        g = torch.Generator(device=dev).manual_seed(0)
        for name, p in model.diffusion_model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g, device=dev, dtype=torch.float32)
                        .div_(math.sqrt(p[0].numel())).to(p.dtype))
            elif name.endswith(("weight", "scale")):
                p.fill_(1.0)
            else:
                p.zero_()
    return c.model_patcher.ModelPatcher(model, load_device=dev, offload_device=torch.device("cpu"))


def run(c, patcher, positive, negative, latent, steps, cfg):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    noise = c.sample.prepare_noise(latent, 0)
    out = c.sample.sample(patcher, noise, steps, cfg, "euler", "simple", positive, negative, latent,
                          disable_pbar=True, seed=0)
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0, torch.cuda.max_memory_allocated() / 2**30


def bench(c, sub, name, unet_config, positive, negative, latent, steps, cfg, thresholds, profile, repeats):
    patcher = build(c, unet_config, torch.bfloat16)
    node = sub("nodes.teacache_node").TeaCachePatch
    holder_of = sub("nodes.runtime").get_holder
    base, _, _ = run(c, patcher, positive, negative, latent, steps, cfg)  # warm-up and reference
    rows = []
    settings = [("unpatched", None)] + [(f"TeaCache {t:g}", t) for t in thresholds]
    # interleave settings across repeats so clock drift hits all alike
    times = {n: [] for n, _ in settings}
    outs, peaks, sums = {}, {}, {}
    for _ in range(repeats):
        for n, t in settings:
            m = patcher if t is None else node.execute(patcher, t, 0.0, 1.0, profile, "main", 0).args[0]
            out, sec, peak = run(c, m, positive, negative, latent, steps, cfg)
            times[n].append(sec)
            outs[n], peaks[n] = out, peak
            if t is not None:
                sums[n] = holder_of(m.model_options).last_summary
    t_base = sorted(times["unpatched"])[len(times["unpatched"]) // 2]
    for n, t in settings:
        med = sorted(times[n])[len(times[n]) // 2]
        s = sums.get(n)
        skipped = (s["reused"] / s["evaluations"]) if s else 0.0
        rows.append({"setting": n, "median_s": med, "seconds": times[n], "speedup": t_base / med,
                     "computed": s["computed"] if s else None, "evaluations": s["evaluations"] if s else None,
                     "bound": 1 / (1 - skipped) if skipped < 1 else float("inf"),
                     "peak_gib": peaks[n], "bit_identical_to_unpatched": bool(torch.equal(outs[n], base)),
                     "run_id": s["run_id"] if s else ""})
    del patcher
    torch.cuda.empty_cache()
    return {"model": name, "steps": steps, "cfg": cfg, "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", choices=["flux", "wan"], default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("skipped: CUDA is not available")
        return 0
    os.environ.setdefault("DITCACHE_HOST_DEVICE", "gpu")
    from devtools import comfy_host
    path, why = comfy_host.find_comfyui()
    if path is None:
        print(f"skipped: ComfyUI not found ({why}); set COMFYUI_PATH")
        return 0
    c = comfy_host.import_comfy(path)
    sub = comfy_host.pack_module
    results = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "comfyui": c.version,
               "note": "random bf16 weights; speed of the path only, not of a trained model's schedule",
               "models": []}
    g = torch.Generator().manual_seed(0)
    if args.only in (None, "flux"):
        pos = [[torch.randn(1, 512, 4096, generator=g), {"pooled_output": torch.randn(1, 768, generator=g),
                                                         "guidance": 3.5}]]
        neg = [[torch.zeros(1, 512, 4096), {"pooled_output": torch.zeros(1, 768), "guidance": 3.5}]]
        lat = torch.zeros(1, 16, 128, 128)
        results["models"].append(bench(c, sub, "FLUX.1-dev size, 1024x1024, 28 steps, cfg 1 (guidance 3.5)",
                                       FLUX, pos, neg, lat, 28, 1.0, [0.0, 0.4, 0.8, 10.0], "flux", args.repeats))
    if args.only in (None, "wan"):
        pos = [[torch.randn(1, 512, 4096, generator=g), {}]]
        neg = [[torch.randn(1, 512, 4096, generator=g), {}]]
        lat = torch.zeros(1, 16, 9, 60, 104)
        results["models"].append(bench(c, sub, "Wan 2.1 1.3B size, 832x480, 33 frames, 20 steps, cfg 5",
                                       WAN, pos, neg, lat, 20, 5.0, [0.0, 0.2, 1.0, 10.0],
                                       "wan2.1_t2v_1.3B_ret", args.repeats))
    import json
    out = REPO / "bench" / "results" / "gpu_comfy_e2e.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    for m in results["models"]:
        print(f"\n{m['model']} on {results['gpu']}")
        print(f"{'setting':16} {'computed':>9} {'median s':>9} {'speed-up':>9} {'bound':>7} {'peak GiB':>9} identical")
        for r in m["rows"]:
            comp = f"{r['computed']}/{r['evaluations']}" if r["computed"] is not None else "-"
            print(f"{r['setting']:16} {comp:>9} {r['median_s']:>9.2f} {r['speedup']:>8.2f}x {r['bound']:>6.2f}x "
                  f"{r['peak_gib']:>9.2f} {r['bit_identical_to_unpatched']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
