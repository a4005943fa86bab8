"""Inside one ComfyUI process: the Flux digits model, sampled through ComfyUI's KSampler path, and
the measurements the ComfyUI benchmarks share (block work done, kornia PSNR/SSIM, accuracy).

Imported only by a Python that runs ComfyUI's requirements, with ``COMFYUI_PATH`` naming the
checkout (``bench.comfy_peers`` starts such processes). ComfyUI is imported in CPU mode, and this
pack the way ComfyUI loads a custom node, by ``devtools/comfy_host.py`` (as the host tests do).
"""
from __future__ import annotations

import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from devtools import comfy_host  # noqa: E402
from devtools.comfy_host import pack_module as sub  # noqa: E402

SAMPLER, SCHEDULER = "euler", "simple"


class Session:
    """ComfyUI imported, the pack loaded, the Flux digits model loaded (the pack's loader)."""

    def __init__(self, threads: int = 1):
        torch.set_num_threads(threads)
        self.ns = comfy_host.import_comfy()
        self.version = self.ns.version
        import comfy.utils
        comfy.utils.PROGRESS_BAR_ENABLED = False
        self.fd = sub("dit_reference.flux_digits")
        self.nodes = {name: sub(f"nodes.{name}") for name in
                      ("teacache_node", "l2c_node", "learn_nodes", "digits_nodes", "runtime", "folders", "profiles")}
        self.nodes["folders"].register()
        self.model = self.nodes["digits_nodes"].FluxDigitsLoader.execute(self.fd.MODEL_FILE).args[0]
        self.dm = self.model.model.diffusion_model
        self.block_weights = block_costs(self.dm, (self.fd.LATENT_SIZE // 2) ** 2)

    # -- sampling ------------------------------------------------------------------------------
    def conds(self, labels):
        return self.fd.conditioning(labels), self.fd.conditioning([self.fd.NULL] * len(labels))

    def sample(self, model, labels, seed: int, steps: int, cfg: float) -> torch.Tensor:
        """The raw LATENT samples of ``nodes.common_ksampler`` (what the KSampler node runs)."""
        import nodes
        pos, neg = self.conds(labels)
        latent = {"samples": torch.zeros(len(labels), self.fd.LATENT_CHANNELS, self.fd.LATENT_SIZE, self.fd.LATENT_SIZE)}
        return nodes.common_ksampler(model, seed, steps, cfg, SAMPLER, SCHEDULER, pos, neg, latent)[0]["samples"]

    def pixels(self, latent: torch.Tensor) -> torch.Tensor:
        return self.fd.latent_to_pixels(latent).clamp(-1, 1)

    def node(self, cls, **given):
        """Runs a V3 node's ``execute`` with ``given`` inputs and every other input at its default,
        so rows keep working when a node gains optional inputs."""
        kw = {}
        for inp in cls.define_schema().inputs:
            if inp.id in given:
                kw[inp.id] = given.pop(inp.id)
            elif getattr(inp, "default", None) is not None:
                kw[inp.id] = inp.default
            elif getattr(inp, "options", None):
                kw[inp.id] = inp.options[0]
        if given:
            raise TypeError(f"{cls.__name__} has no inputs {sorted(given)}")
        return cls.execute(**kw).args


# -- measurements -------------------------------------------------------------------------------
def block_costs(dm, img_tokens: int, txt_tokens: int = 1) -> list[float]:
    """Relative cost of each Flux block per model evaluation: weights times the tokens they
    process (double blocks: image weights x image tokens + text weights x text tokens; single
    blocks: all weights x the joined tokens). Attention scores (5x5 tokens here) are negligible."""
    out = []
    for b in dm.double_blocks:
        img = sum(p.numel() for n, p in b.named_parameters() if n.startswith("img_"))
        txt = sum(p.numel() for n, p in b.named_parameters() if n.startswith("txt_"))
        out.append(img * img_tokens + txt * txt_tokens)
    for b in dm.single_blocks:
        out.append(sum(p.numel() for p in b.parameters()) * (img_tokens + txt_tokens))
    return out


@contextlib.contextmanager
def count_blocks(dm, weights):
    """Counts block work actually computed: a forward hook on every block (a block replacement
    that reuses a cache never calls the block; EasyCache/LazyCache skip the whole model)."""
    done = {"work": 0.0, "calls": 0}
    blocks = list(dm.double_blocks) + list(dm.single_blocks)
    handles = []
    for b, w in zip(blocks, weights):
        def hook(mod, inp, out, w=w):
            done["work"] += w
            done["calls"] += 1
        handles.append(b.register_forward_hook(hook))
    try:
        yield done
    finally:
        for h in handles:
            h.remove()


def kornia_metrics(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(PSNR dB, SSIM) of two [B, 1, 8, 8] pixel batches in [-1, 1]: the demo's conventions
    (``dit_reference.demo.psnr`` / ``ssim``: kornia through ``cache_core.metrics``, data range 2, one
    MSE over the batch, a 3x3 window without padding), as every benchmark of the digits uses."""
    from dit_reference.demo import psnr, ssim
    return psnr(a, b), ssim(a, b)


def classifier():
    from dit_reference.classifier import DigitClassifier
    return DigitClassifier()


def clocked(fn):
    """(result, CPU seconds of this process, wall seconds) of one call. On a CPU shared with other
    jobs, the process's CPU time of a 1-thread run is the steadier measure of its work; wall time
    swings with the machine's load."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def median(xs):
    return statistics.median(xs)
