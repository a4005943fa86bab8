"""Which family-free TeaCache indicator tracks the model output change best (the generic route's
choice, ``nodes/adapters/generic.py``), against the family's own indicator (its first block's
modulated input).

For every evaluation after a stream's first, at full compute: x = the relative L1 change of the
indicator, y = that of the model output (velocity). Reported per indicator: Pearson r of (x, y),
Spearman rho, and the relative error of the constrained order-2 polynomial fit y ~ p(x) (what a
calibration would reach; lower is better).

* the reference DiT (``dit_reference/model.py``): 4 seeds x 8 labels, 20 steps, cfg 3;
* the Flux digits model through ComfyUI (with ``--comfy``: run by a ComfyUI environment's python with
  ``COMFYUI_PATH`` set): 4 seeds x 8 digits, 20 euler steps, cfg 3; the generic route's stack
  there is the single blocks (the larger list), the Flux adapter's indicator is double block 0's.

    python -m bench.generic_indicator                       # reference DiT
    COMFYUI_PATH=... <env python> -m bench.generic_indicator --comfy   # Flux digits
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODES = ("input", "input+embedding", "embedding")


def _stats(xs, ys) -> dict:
    from cache_core.calibrate import fit_coefficients
    x, y = np.asarray(xs), np.asarray(ys)
    rank = lambda a: np.argsort(np.argsort(a))  # noqa: E731
    fit = fit_coefficients(x, y, order=2)
    return {"pearson": float(np.corrcoef(x, y)[0, 1]), "spearman": float(np.corrcoef(rank(x), rank(y))[0, 1]),
            "fit_rel_error": float(fit.rel_error), "pairs": int(len(x))}


def reference(seeds=(0, 1, 2, 3)) -> dict:
    from cache_core.calibrate import ChangeRecorder, RecordingController
    from dit_reference.model import ReferenceDiT, ReferenceHooks
    from dit_reference.sampling import sample
    from devtools.comfy_host import pack_module
    indicator_of = pack_module("nodes.adapters.generic").indicator_of

    model = ReferenceDiT.load()
    out = {}
    for name in ("family",) + MODES:
        hooks = ReferenceHooks(model)
        if name != "family":
            hooks.indicator = lambda inputs, m=name: indicator_of(inputs, ("img",), m)
        ctl = RecordingController(hooks, ChangeRecorder())
        h = model.register_forward_hook(lambda mod, args, o: ctl.output(o))
        try:
            for seed in seeds:
                g = torch.Generator().manual_seed(10_000 + seed)
                labels = torch.randint(0, model.cfg.classes, (8,), generator=g)
                sample(model, labels, steps=20, cfg=3.0, seed=seed, controller=ctl)
        finally:
            h.remove()
        out[name] = _stats(ctl.changes.xs, ctl.changes.ys)
    return out


def flux_digits(seeds=(0, 1, 2, 3)) -> dict:
    from bench.comfy_session import Session, sub
    s = Session()
    learn = s.nodes["learn_nodes"]
    generic = sub("nodes.adapters.generic")
    flux = sub("nodes.adapters").detect(s.model)
    labels = list(range(8))
    pos, neg = s.conds(labels)
    latent = {"samples": torch.zeros(len(labels), s.fd.LATENT_CHANNELS, s.fd.LATENT_SIZE, s.fd.LATENT_SIZE)}
    out = {}
    for name in ("family",) + MODES:
        if name == "family":
            ad = flux
        else:
            ad = generic.GenericAdapter(s.model)
            ad.hooks = lambda ad=ad, m=name: generic.GenericHooks(ad.stack, ad.model, m)
        ctl = learn.record_pairs(s.model, ad, pos, neg, latent, seeds, 20, "euler", "simple", 3.0)
        out[name] = _stats(ctl.changes.xs, ctl.changes.ys)
    out["generic_stack"] = f"{generic.GenericAdapter(s.model).stack.path} ({s.version})"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--comfy", action="store_true", help="the Flux digits model through ComfyUI")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = {"flux_digits": flux_digits()} if a.comfy else {"reference_dit": reference()}
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
