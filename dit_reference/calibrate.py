"""TeaCache calibration on the reference DiT: the engine's recorder
(:class:`cache_core.calibrate.RecordingController`) on full-compute runs of the reference model.

Used by ``python -m dit_reference calibrate`` and ``bench.fidelity``; the ComfyUI nodes calibrate
through ``nodes/learn_nodes.py`` instead.
"""
from __future__ import annotations

from typing import Sequence

import torch

from cache_core.calibrate import ChangeRecorder, RecordingController

from .model import ReferenceHooks
from .sampling import sample


def record_reference(model, steps: int = 20, seeds: Sequence[int] = (0, 1, 2, 3), cfg: float = 3.0,
                     batch: int = 8, changes: ChangeRecorder | None = None) -> ChangeRecorder:
    """Samples the reference DiT at full compute for every seed and records the pairs; the model
    output is the velocity prediction (cond and uncond streams separately)."""
    rec = changes if changes is not None else ChangeRecorder()
    ctl = RecordingController(ReferenceHooks(model), rec)
    handle = model.register_forward_hook(lambda mod, args, out: ctl.output(out))
    try:
        for seed in seeds:
            g = torch.Generator().manual_seed(10_000 + int(seed))
            labels = torch.randint(0, model.cfg.classes, (batch,), generator=g)
            sample(model, labels, steps=steps, cfg=cfg, seed=int(seed), controller=ctl)  # resets at the end
    finally:
        handle.remove()
    return rec


__all__ = ["record_reference"]
