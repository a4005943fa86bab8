"""A small class-conditional DiT (adaLN-zero blocks, like DiT and Flux's single-stream blocks).

It is the model the tests, the demo and the benchmarks drive through the same adapter protocol
(:class:`cache_core.stack.StackHooks`) that the ComfyUI families use. It is trained with flow
matching on scikit-learn's 8x8 digits (see ``reference/train_reference.py``); the trained weights
ship as ``data/reference_dit.safetensors``.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS = Path(__file__).with_name("data") / "reference_dit.safetensors"


@dataclass
class ReferenceConfig:
    image_size: int = 8
    channels: int = 1
    patch: int = 2
    width: int = 128
    depth: int = 8
    heads: int = 4
    mlp_ratio: float = 4.0
    classes: int = 10  # index `classes` is the null class used for classifier-free guidance


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """adaLN-zero block with two branches, attention and MLP, each gated by the conditioning."""

    branches = ("attn", "mlp")

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.ada = nn.Linear(width, 6 * width)

    def modulation(self, c: torch.Tensor):
        return self.ada(F.silu(c)).chunk(6, dim=-1)

    def modulated_input(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(c)[:2]
        return modulate(self.norm1(x), shift, scale)

    def forward(self, x: torch.Tensor, c: torch.Tensor,
                branch: Callable[[str, Callable[[], torch.Tensor]], torch.Tensor] | None = None) -> torch.Tensor:
        """``branch(name, fn)`` may return a cached un-gated branch output instead of ``fn()``;
        gates and modulation are always recomputed from the current conditioning (as L2C does)."""
        sh1, sc1, g1, sh2, sc2, g2 = self.modulation(c)
        run = branch if branch is not None else (lambda name, fn: fn())
        a = run("attn", lambda: self.attn(modulate(self.norm1(x), sh1, sc1)))
        x = x + g1.unsqueeze(1) * a
        m = run("mlp", lambda: self.mlp(modulate(self.norm2(x), sh2, sc2)))
        return x + g2.unsqueeze(1) * m


class ReferenceDiT(nn.Module):
    def __init__(self, cfg: ReferenceConfig | None = None):
        super().__init__()
        cfg = cfg or ReferenceConfig()
        self.cfg = cfg
        p, w = cfg.patch, cfg.width
        self.tokens = (cfg.image_size // p) ** 2
        self.patch_in = nn.Linear(cfg.channels * p * p, w)
        self.pos = nn.Parameter(torch.randn(1, self.tokens, w) * 0.02)
        self.t_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.y_emb = nn.Embedding(cfg.classes + 1, w)
        self.blocks = nn.ModuleList([Block(w, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(w, 2 * w)
        self.patch_out = nn.Linear(w, cfg.channels * p * p)
        self._zero_init()

    def _zero_init(self):
        for b in self.blocks:
            nn.init.zeros_(b.ada.weight)
            nn.init.zeros_(b.ada.bias)
        nn.init.zeros_(self.ada_out.weight)
        nn.init.zeros_(self.ada_out.bias)
        nn.init.zeros_(self.patch_out.weight)
        nn.init.zeros_(self.patch_out.bias)

    @property
    def null_class(self) -> int:
        return self.cfg.classes

    def embed(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor):
        b, ch, hh, ww = x.shape
        p = self.cfg.patch
        tok = x.reshape(b, ch, hh // p, p, ww // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, ch * p * p)
        h = self.patch_in(tok) + self.pos
        c = self.t_mlp(timestep_embedding(t, self.cfg.width).to(h.dtype)) + self.y_emb(y)
        return h, c

    def unembed(self, h: torch.Tensor, c: torch.Tensor, shape) -> torch.Tensor:
        b, ch, hh, ww = shape
        p = self.cfg.patch
        shift, scale = self.ada_out(F.silu(c)).chunk(2, dim=-1)
        out = self.patch_out(modulate(self.norm_out(h), shift, scale))
        return out.reshape(b, hh // p, ww // p, ch, p, p).permute(0, 3, 1, 4, 2, 5).reshape(shape)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, block_hook=None,
                branch_fn=None) -> torch.Tensor:
        """Velocity prediction. ``block_hook(i, inputs, run)`` mirrors ComfyUI's block replacement
        (inputs ``{"img", "vec"}``, returns ``{"img"}``); ``branch_fn(i, name, fn)`` lets L2C reuse branches."""
        h, c = self.embed(x, t, y)
        for i, blk in enumerate(self.blocks):
            def run(args, blk=blk, i=i):
                br = (lambda name, fn: branch_fn(i, name, fn)) if branch_fn is not None else None
                return {"img": blk(args["img"], args["vec"], br)}
            if block_hook is None:
                h = run({"img": h, "vec": c})["img"]
            else:
                h = block_hook(i, {"img": h, "vec": c}, run)["img"]
        return self.unembed(h, c, x.shape)

    # -- weights -----------------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict | None = None) -> None:
        from safetensors.torch import save_file
        meta = {"config": json.dumps(asdict(self.cfg))}
        if extra:
            meta.update({k: str(v) for k, v in extra.items()})
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path = WEIGHTS, device="cpu", dtype=torch.float32) -> "ReferenceDiT":
        from safetensors import safe_open
        from safetensors.torch import load_file
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"reference weights not found at {path}; run reference/train_reference.py")
        with safe_open(str(path), "pt") as f:
            cfg = ReferenceConfig(**json.loads(f.metadata()["config"]))
        m = cls(cfg)
        m.load_state_dict(load_file(str(path)))
        return m.to(device=device, dtype=dtype).eval()


class ReferenceHooks:
    """The reference model's side of :class:`cache_core.stack.StackHooks`."""

    def __init__(self, model: ReferenceDiT):
        self.model = model
        self.n_blocks = len(model.blocks)

    def indicator(self, inputs):
        return self.model.blocks[0].modulated_input(inputs["img"], inputs["vec"])

    def stack_input(self, inputs):
        return inputs["img"]

    def stack_output(self, index, outputs, inputs, like):
        return outputs["img"]

    def final_outputs(self, index, inputs, final):
        return {"img": final}

    def hidden_keys(self, index):
        return ("img",)
