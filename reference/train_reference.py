"""Train the reference DiT on scikit-learn's 8x8 digits (flow matching, class-conditional, CFG).

    python reference/train_reference.py                # train (~10 min on 2 CPU cores), save, evaluate
    python reference/train_reference.py --eval-only    # evaluate the shipped weights only

Writes
  dit_reference/data/reference_dit.safetensors   EMA weights; metadata: config, seed, steps, final loss, ...
  dit_reference/data/reference_classifier.json   digits classifier (multinomial logistic regression)
                                                 evaluated with numpy by dit_reference.classifier.DigitClassifier
  reference/loss_curve.json (+ loss_curve.png) training loss every few steps
  reference/eval.json                         classifier accuracy of full-compute samples

Flow matching as in dit_reference.sampling: x_t = (1 - t) x0 + t noise, velocity target
noise - x0, t ~ U(0, 1). Labels are replaced by the null class with probability 0.1 so that the
model also learns the unconditional velocity (classifier-free guidance).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dit_reference.model import WEIGHTS, ReferenceConfig, ReferenceDiT  # noqa: E402
from dit_reference.sampling import sample  # noqa: E402

log = logging.getLogger("train_reference")
HERE = Path(__file__).resolve().parent
CLASSIFIER = WEIGHTS.with_name("reference_classifier.json")


def load_digits_tensor() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0 * 2.0 - 1.0  # [N,1,8,8] in [-1,1]
    y = torch.tensor(d.target, dtype=torch.long)
    return x, y


def train_classifier(seed: int = 0) -> dict:
    """Multinomial logistic regression on the [-1, 1]-scaled 8x8 digits. Deterministic (lbfgs).
    Reports held-out accuracy on a 25% split, then refits on all data and returns the parameters."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    x, y = load_digits_tensor()
    X = x.reshape(len(x), -1).numpy().astype(np.float64)
    Y = y.numpy()
    xtr, xte, ytr, yte = train_test_split(X, Y, test_size=0.25, random_state=seed, stratify=Y)
    clf = LogisticRegression(C=0.5, max_iter=5000)
    clf.fit(xtr, ytr)
    held_out = float(clf.score(xte, yte))
    clf = LogisticRegression(C=0.5, max_iter=5000)
    clf.fit(X, Y)
    return {"kind": "logistic_regression", "input": "8x8 image flattened row-major, values in [-1, 1]",
            "classes": [int(c) for c in clf.classes_], "coef": clf.coef_.tolist(),
            "intercept": clf.intercept_.tolist(), "held_out_accuracy": held_out,
            "train_accuracy": float(clf.score(X, Y)), "C": 0.5, "seed": seed,
            "made_by": "reference/train_reference.py"}


def classify(params: dict, images: torch.Tensor) -> np.ndarray:
    X = images.reshape(len(images), -1).double().numpy()
    logits = X @ np.asarray(params["coef"]).T + np.asarray(params["intercept"])
    return np.asarray(params["classes"])[logits.argmax(1)]


def evaluate(model: ReferenceDiT, clf: dict, per_class: int = 20, steps: int = 25, cfgs=(1.0, 2.0, 3.0, 4.0),
             seed: int = 1234) -> dict:
    labels = torch.arange(10).repeat_interleave(per_class)
    out = {}
    for c in cfgs:
        x = sample(model, labels, steps=steps, cfg=c, seed=seed).clamp(-1, 1)
        pred = classify(clf, x)
        acc = float((pred == labels.numpy()).mean())
        per = [float((pred[labels.numpy() == k] == k).mean()) for k in range(10)]
        out[f"cfg{c:g}"] = {"accuracy": acc, "per_class": per}
        log.info("eval steps=%d cfg=%g: classifier accuracy %.3f (%d samples)", steps, c, acc, len(labels))
    return {"steps": steps, "per_class": per_class, "seed": seed, "results": out}


def cosine_lr(step: int, args, t0: float) -> float:
    """Warm-up, then cosine decay over whichever runs out first, the step count or the wall-clock
    budget, so a run slowed down by a busy machine still ends with a decayed learning rate."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    p = max((step - args.warmup) / max(1, args.steps - args.warmup),
            (time.perf_counter() - t0) / (args.max_minutes * 60))
    return args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * min(1.0, p)))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    d = min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.mul_(d).add_(pm.detach(), alpha=1 - d)


def flow_matching_loop(args, model, ema, opt, params, x_all: torch.Tensor, y_all: torch.Tensor,
                       g: torch.Generator, null_label: int, predict, n_params: int, log: logging.Logger,
                       autograd_context=contextlib.nullcontext, metrics=None) -> dict:
    """The rectified-flow training loop both digit models use (SD3/Flux convention
    ``x_t = (1 - t) x0 + t noise``, velocity target ``noise - x0``, t ~ U(0, 1)).

    Each step: cosine LR with warmup (``cosine_lr``), a batch of ``args.batch`` drawn with ``g``
    (indices, label dropout to ``null_label`` with ``args.label_dropout``, noise, t: in that order),
    MSE of ``predict(x_t, t, labels)`` against the target (forward and backward inside
    ``autograd_context()``), gradient norm clipped to 1 over ``params``, ``opt`` step, EMA of
    ``model`` into ``ema`` (``ema_update``). Every ``args.log_every`` steps a curve entry; ``metrics(err)``
    (optional) adds ``{key: (label, value)}`` to it and to the log line. Stops after ``args.steps`` or
    ``args.max_minutes``. Returns ``{"curve", "steps_done", "train_seconds", "final_loss_smoothed",
    "final_loss", "n_params"}``."""
    params = list(params)
    n = len(x_all)

    def lr_at(step):
        return cosine_lr(step, args, t0)

    curve, running = [], None
    t0 = time.perf_counter()
    step = 0
    for step in range(args.steps):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        idx = torch.randint(0, n, (args.batch,), generator=g)
        x0, y = x_all[idx], y_all[idx].clone()
        y[torch.rand(args.batch, generator=g) < args.label_dropout] = null_label
        noise = torch.randn(x0.shape, generator=g)
        t = torch.rand(args.batch, generator=g)
        tt = t.view(-1, 1, 1, 1)
        xt = (1 - tt) * x0 + tt * noise
        with autograd_context():
            err = predict(xt, t, y) - (noise - x0)
            loss = err.pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_update(ema, model, step, args.ema)
        lv = float(loss.detach())
        running = lv if running is None else 0.98 * running + 0.02 * lv
        if step % args.log_every == 0 or step == args.steps - 1:
            el = time.perf_counter() - t0
            extra = metrics(err.detach()) if metrics is not None else {}
            curve.append({"step": step, "loss": lv, "loss_smooth": running, **{k: v for k, (_, v) in extra.items()},
                          "lr": lr_at(step), "elapsed_s": el})
            if step % (args.log_every * 10) == 0:
                shown = "".join(f", {label} {v:.4f}" for label, v in extra.values())
                log.info("step %5d/%d loss %.4f (smoothed %.4f%s) lr %.2e %.0fs", step, args.steps, lv, running,
                         shown, lr_at(step), el)
        if time.perf_counter() - t0 > args.max_minutes * 60:
            log.warning("stopping at step %d: the %.0f-minute budget is spent", step, args.max_minutes)
            break
    elapsed = time.perf_counter() - t0
    info = {"steps_done": step + 1, "train_seconds": elapsed, "final_loss_smoothed": running,
            "final_loss": curve[-1]["loss"], "n_params": n_params}
    log.info("trained %d steps in %.1f min, smoothed final loss %.4f", step + 1, elapsed / 60, running)
    return {"curve": curve, **info}


def train(args) -> tuple[ReferenceDiT, dict]:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    cfg = ReferenceConfig(width=args.width, depth=args.depth, heads=args.heads)
    model = ReferenceDiT(cfg)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("config %s, %.2fM parameters", asdict(cfg), n_params / 1e6)
    x_all, y_all = load_digits_tensor()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.99))
    g = torch.Generator().manual_seed(args.seed)
    return ema, flow_matching_loop(args, model, ema, opt, model.parameters(), x_all, y_all, g, null_label=cfg.classes,
                                   predict=model, n_params=n_params, log=log)


def plot_curve(curve: list[dict], path: Path, title: str = "reference DiT flow-matching loss") -> None:
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return
    W, H, m = 640, 360, 40
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    steps = [c["step"] for c in curve]
    ys = [math.log10(max(c["loss_smooth"], 1e-6)) for c in curve]
    lo, hi = min(ys), max(ys)
    sx = lambda s: m + (W - 2 * m) * s / max(1, steps[-1])  # noqa: E731
    sy = lambda v: H - m - (H - 2 * m) * (v - lo) / max(1e-9, hi - lo)  # noqa: E731
    d.rectangle([m, m, W - m, H - m], outline="black")
    d.line([(sx(s), sy(v)) for s, v in zip(steps, ys)], fill=(30, 90, 200), width=2)
    d.text((m, 10), f"{title} (smoothed, log10), {steps[-1] + 1} steps", fill="black")
    d.text((4, m), f"{10 ** hi:.3f}", fill="black")
    d.text((4, H - m - 10), f"{10 ** lo:.3f}", fill="black")
    d.text((W - m - 30, H - m + 5), str(steps[-1]), fill="black")
    img.save(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-min", type=float, default=2e-5)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--label-dropout", type=float, default=0.1)
    ap.add_argument("--width", type=int, default=ReferenceConfig.width)
    ap.add_argument("--depth", type=int, default=ReferenceConfig.depth)
    ap.add_argument("--heads", type=int, default=ReferenceConfig.heads)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=28.0)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    ap.add_argument("--eval-only", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)

    clf = train_classifier(args.seed)
    log.info("classifier: held-out accuracy %.3f on real digits", clf["held_out_accuracy"])
    if args.eval_only:
        model = ReferenceDiT.load(args.out)
    else:
        CLASSIFIER.write_text(json.dumps(clf))
        model, info = train(args)
        curve = info.pop("curve")
        meta = {"seed": args.seed, "steps": info["steps_done"], "final_loss": f"{info['final_loss_smoothed']:.5f}",
                "train_seconds": f"{info['train_seconds']:.1f}", "batch": args.batch, "lr": args.lr,
                "ema": args.ema, "label_dropout": args.label_dropout, "dataset": "sklearn.datasets.load_digits",
                "objective": "flow matching, x_t=(1-t)x0+t*noise, v=noise-x0, t~U(0,1)"}
        model.save(args.out, extra=meta)
        (HERE / "loss_curve.json").write_text(json.dumps({"meta": meta, **info, "curve": curve}, indent=1))
        plot_curve(curve, HERE / "loss_curve.png")
        log.info("saved %s (%.1f MB)", args.out, args.out.stat().st_size / 1e6)
        model = ReferenceDiT.load(args.out)
    ev = evaluate(model, clf)
    (HERE / "eval.json").write_text(json.dumps(ev, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
