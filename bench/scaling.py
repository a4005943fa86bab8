"""How sampling cost and caching speed-up change with steps, resolution and batch (CPU).

    python -m bench.scaling [--repeats 3] [--quick]

For every setting: median wall-clock of the uncached sampler, seconds per step, and the measured
speed-up of fixed skip schedules (uniform "compute every 2nd" and "every 3rd" step, reusing the
block-stack residual; bench.common.StackSkipController) against their bound 1 / (1 - skipped
share). Fixed schedules keep the skipped share identical across settings, so the speed-up
differences come from cost alone.

* steps: the trained model, batch 32, 10 / 25 / 50 steps.
* batch: the trained model, 25 steps, 1 / 8 / 32 / 128 images (the forward batch is 2x, CFG).
* resolution: random-weight ReferenceDiT configs with image_size 8 / 16 / 32 (16 / 64 / 256 tokens,
  width 128, depth 8), 25 steps, batch 8; timing only (the position embedding fixes the token count,
  so each size is its own model).

Writes bench/results/scaling.json and scaling.png (speed-up of "compute every 2nd" per setting).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from bench.common import RESULTS, StackSkipController, UniformSkip, environment, log, median, setup, write_json
from dit_reference.demo import scatter_plot
from dit_reference.model import ReferenceConfig, ReferenceDiT
from dit_reference.sampling import sample


def measure(model, batch: int, steps: int, repeats: int, cfg: float = 3.0) -> dict:
    labels = torch.arange(batch) % 10
    L = len(model.blocks)
    sample(model, labels, steps=2, cfg=cfg, seed=0)  # warm-up
    ctl_box: dict = {}

    def skip_run(k):
        ctl_box[k] = StackSkipController(L, UniformSkip(compute_every=k))
        return sample(model, labels, steps=steps, cfg=cfg, seed=0, controller=ctl_box[k])
    times: dict = {"base": [], 2: [], 3: []}
    for _ in range(repeats):  # interleaved: a shared machine's speed drifts
        for key in times:
            t0 = time.perf_counter()
            if key == "base":
                sample(model, labels, steps=steps, cfg=cfg, seed=0)
            else:
                skip_run(key)
            times[key].append(time.perf_counter() - t0)
    base = times["base"]
    row = {"batch": batch, "steps": steps, "tokens": model.tokens, "image_size": model.cfg.image_size,
           "uncached_s": median(base), "s_per_step": median(base) / steps, "schedules": {}}
    for k in (2, 3):
        secs = times[k]
        reused = len({r.step for r in ctl_box[k].recorder.records if r.decision == "reuse"})
        share = reused / steps
        bound = 1 / (1 - share)
        sp = median(base) / median(secs)
        row["schedules"][f"compute every {k}"] = {"skipped_share": share, "bound": bound, "speedup": sp,
                                                  "efficiency": sp / bound, "median_s": median(secs)}
    s2 = row["schedules"]["compute every 2"]
    log.info("batch %4d steps %3d tokens %4d: %.3fs (%.1f ms/step); every-2nd %.2fx of %.2fx bound, every-3rd %.2fx "
             "of %.2fx", batch, steps, model.tokens, row["uncached_s"], 1e3 * row["s_per_step"], s2["speedup"],
             s2["bound"], row["schedules"]["compute every 3"]["speedup"], row["schedules"]["compute every 3"]["bound"])
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report", action="store_true", help="only redraw the plot and table from scaling.json")
    args = ap.parse_args(argv)
    if args.report:
        import json
        report(json.loads((RESULTS / "scaling.json").read_text()))
        return 0
    setup(args.threads)
    t0 = time.perf_counter()
    model = ReferenceDiT.load()
    res: dict = {"args": vars(args), "environment": environment(), "steps": [], "batch": [], "resolution": []}
    for s in ([10, 25] if args.quick else [10, 25, 50]):
        res["steps"].append(measure(model, 32, s, args.repeats))
    for b in ([1, 32] if args.quick else [1, 8, 32, 128]):
        res["batch"].append(measure(model, b, 25, args.repeats))
    torch.manual_seed(0)
    for size in ([8, 16] if args.quick else [8, 16, 32]):
        m = ReferenceDiT(ReferenceConfig(image_size=size)).eval()
        for p in m.parameters():  # random, non-zero weights everywhere (the zero init would make blocks no-ops)
            torch.nn.init.normal_(p, std=0.02)
        res["resolution"].append(measure(m, 8, 25, args.repeats))
    res["seconds"] = time.perf_counter() - t0
    write_json("scaling.json", res)
    report(res)
    return 0


def report(res: dict) -> None:
    import math
    series = {
        "steps (batch 32)": [(r["steps"], r["schedules"]["compute every 2"]["speedup"]) for r in res["steps"]],
        "batch (log2 + 1, 25 steps)": [(math.log2(r["batch"]) + 1, r["schedules"]["compute every 2"]["speedup"])
                                   for r in res["batch"]],
        "tokens/16 (batch 8)": [(r["tokens"] / 16, r["schedules"]["compute every 2"]["speedup"]) for r in res["resolution"]],
    }
    scatter_plot(series, RESULTS / "scaling.png", "speed-up of 'compute every 2nd step' (bound 1.92x at 25 steps)",
                 xlabel="steps | log2(batch)+1 | tokens/16", ylabel="measured speed-up (x)")
    print("\nsetting              s/step(ms)  every-2nd (bound)   every-3rd (bound)")
    for key in ("steps", "batch", "resolution"):
        for r in res[key]:
            a, b = r["schedules"]["compute every 2"], r["schedules"]["compute every 3"]
            print(f"{key:<10} b{r['batch']:<4} s{r['steps']:<3} n{r['tokens']:<4} {1e3 * r['s_per_step']:>8.1f}  "
                  f"{a['speedup']:.2f}x ({a['bound']:.2f}x)   {b['speedup']:.2f}x ({b['bound']:.2f}x)")


if __name__ == "__main__":
    sys.exit(main())
