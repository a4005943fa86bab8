"""TeaCache Patch under ComfyUI's MultiGPU CFG Split, lockstep against independent decisions, on
the trained Flux digits model (CPU stand-in for two GPUs).

    COMFYUI_PATH=<a 0.29.0+ checkout> <its env's python> -m bench.multigpu_split [--steps 25] [--cfg 3]

ComfyUI is made to see two devices, ``cpu`` and ``cpu:0`` (its device list,
``comfy.model_management.get_all_torch_devices``, as the host tests do); the MultiGPU CFG Split
node loads a second copy of the model there through the loader's reload factory and every step
runs the positive on one copy and the negative on the other, in ComfyUI's pool threads. Per
threshold (published ``flux`` coefficients), three runs of one batch (``--per-class`` samples of
every digit, one seed):

* one device: cond and uncond batched in one forward, so they decide together (what a one-GPU
  user gets);
* the split with ``multigpu`` = lockstep (the default) and = independent.

Reported per run: evaluations computed, the steps on which every device reused (only those save
wall time under the split: the sampler waits for the slower device), the step-model speed-up
``steps / (steps - those steps)``, PSNR (kornia, ``bench/comfy_session.py``) of the decoded digits
against the full-compute samples, and the largest latent difference from the one-device run.
The split's wall time on this CPU is in the JSON too, but two threads on a shared 2-core box say
little about two GPUs. Writes ``bench/results/multigpu_split.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.comfy_session import Session, kornia_metrics  # noqa: E402

OUT = REPO / "bench" / "results" / "multigpu_split.json"
THRESHOLDS = (0.2, 0.3, 0.4, 0.6, 0.8)


def two_devices() -> None:
    import comfy.model_management as mm
    mm.get_all_torch_devices = lambda exclude_current=False: [torch.device("cpu"), torch.device("cpu", 0)]


def split(model):
    import comfy.model_management as mm
    from comfy_extras.nodes_multigpu import MultiGPUCFGSplitNode
    # the node walks loaded_models(), which reads None for a model whose patchers were freed
    # (ComfyUI's graph cache keeps them alive; this script does not)
    mm.current_loaded_models[:] = [m for m in mm.current_loaded_models if m.model is not None]
    return MultiGPUCFGSplitNode.execute(model, 2).args[0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--per-class", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--thresholds", type=float, nargs="*", default=THRESHOLDS)
    args = ap.parse_args(argv)

    s = Session(threads=1)
    two_devices()
    tc_node = s.nodes["teacache_node"].TeaCachePatch
    runtime = s.nodes["runtime"]
    labels = [d for d in range(10) for _ in range(args.per_class)]

    def sample(model):
        t = time.perf_counter()
        out = s.sample(model, labels, args.seed, args.steps, args.cfg)
        return out, time.perf_counter() - t

    full, _ = sample(s.model)
    full_px = s.pixels(full)
    _, plain_split_wall = sample(split(s.model))
    rows = []
    for thr in args.thresholds:
        one = None
        for mode in ("one device", "lockstep", "independent"):
            m = s.node(tc_node, model=s.model, rel_l1_thresh=thr, coefficients="flux",
                       multigpu="lockstep" if mode == "one device" else mode)[0]
            if mode != "one device":
                m = split(m)
            out, wall = sample(m)
            summ = runtime.get_holder(m.model_options).last_summary
            all_reused = len(summ["steps_all_reused"])
            psnr, ssim = kornia_metrics(s.pixels(out), full_px)
            row = {"threshold": thr, "mode": mode, "computed": summ["computed"], "evaluations": summ["evaluations"],
                   "steps_all_reused": all_reused, "steps": summ["steps"],
                   "step_model_speedup": summ["steps"] / max(1, summ["steps"] - all_reused),
                   "psnr_vs_full": psnr, "ssim_vs_full": ssim, "wall_s": wall,
                   "devices": {d: v["computed"] for d, v in summ["devices"].items()}}
            if one is None:
                one = out
            else:
                row["max_abs_diff_vs_one_device"] = float((out - one).abs().max())
                row["wall_ratio_vs_uncached_split"] = plain_split_wall / wall
            rows.append(row)
            print(f"thr {thr:<4} {mode:<12} computed {row['computed']:>2}/{row['evaluations']} "
                  f"every device reused {all_reused:>2}/{row['steps']} steps (step model {row['step_model_speedup']:.2f}x) "
                  f"PSNR {psnr:6.2f} dB  diff vs one device "
                  f"{row.get('max_abs_diff_vs_one_device', 0.0):.2e}", flush=True)
    result = {"comfyui": s.version, "steps": args.steps, "cfg": args.cfg, "samples": len(labels),
              "latent_magnitude": float(full.abs().max()), "rows": rows,
              "note": "CPU stand-in: cpu and cpu:0 as ComfyUI's two devices, 1 torch thread each"}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
