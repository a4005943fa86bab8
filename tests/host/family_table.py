"""Prints one markdown row per tiny family on the running ComfyUI: threshold 0 bit-identical to
the unpatched sample, evaluations skipped at the family's recommended threshold with its ``auto``
coefficients, and which coefficients those are. Tiny random-weight models: the skip counts say
that the recommended settings reuse on these models, not what they give on real weights.

    COMFYUI_PATH=<checkout> <that env's python> tests/host/family_table.py [family ids...]
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_models as tm  # noqa: E402
from helpers import holder_of, summary, teacache  # noqa: E402

STEPS = 20


def row(fid: str, version: str) -> str:
    tiny = tm.build(fid)
    models = tiny.experts or [tiny.patcher]
    base = tm.sample(tiny, steps=STEPS)
    zero = [teacache(p, 0.0) for p in models]
    same = torch.equal(tm.sample(tiny, steps=STEPS, model=zero if tiny.experts else zero[0]), base)
    rec = [teacache(p, -1.0, coefficients="auto") for p in models]
    tm.sample(tiny, steps=STEPS, model=rec if tiny.experts else rec[0])
    skipped = sum(summary(m)["reused"] for m in rec)
    total = sum(summary(m)["evaluations"] for m in rec)
    h = holder_of(rec[0])
    return (f"| {fid} | {version} | {'yes' if same else 'NO'} | {skipped}/{total} at {h.teacache.rel_l1_thresh:g} "
            f"| `{h.teacache.coefficients.name}` |")


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    version = tm.import_comfy().version
    print(f"| family | ComfyUI | identity at 0 | evaluations skipped ({STEPS} steps, cfg 2.5, euler) | coefficients |")
    print("|---|---|---|---|---|")
    for fid in argv or tm.family_ids():
        print(row(fid, version), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
