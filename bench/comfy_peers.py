"""Side by side inside ComfyUI, on the trained Flux digits model: this pack's nodes against
ComfyUI's own EasyCache and LazyCache nodes, fewer steps and uniform step skipping.

    python -m bench.comfy_peers [--per-class 5] [--steps 25] [--cfg 3] [--repeats 3]
    python -m bench.comfy_peers --accuracy      # full-compute classifier accuracy only (cfg 1-4)

Runs one process per ComfyUI release: every source tree ``tests/hosts.py`` finds
(``DITCACHE_COMFYUI_TREES``, else ``shared/comfyui/*`` beside this repository or a folder above
it) is copied to a temporary folder and run with its own environment (``tests/hosts.py`` makes
it once). Everything of one release happens in that one ComfyUI process, on 1 CPU thread:

* the model: ``dit_cache_flux_digits.safetensors`` through the pack's Flux Digits Loader (the stock
  loader's steps; see ``nodes/digits_nodes.py``), sampled by ``nodes.common_ksampler`` (the
  KSampler node's code): euler / simple, ``--steps`` steps, cfg ``--cfg``, one batch of
  ``--per-class`` samples of every digit from one seed, positive Digit Conditioning, negative
  the unconditional class;
* methods, each through its node's ``execute``: TeaCache Patch with the published ``flux``, the
  ``raw`` and calibrated coefficients (TeaCache Calibrate on other seeds), L2C (L2C Learn
  Schedule on other seeds, at several lambda), TeaCache + L2C, ComfyUI's EasyCache and LazyCache
  (their default start 0.15 / end 0.95, several reuse thresholds; as shipped and in the variants
  :func:`peer_variants` explains), fewer steps, and uniform step
  skipping (the pack's block-stack reuse, computing every k-th step: TeaCache's accumulator with
  a constant rescaling of 1 and threshold k - 0.5);
* fidelity: PSNR and SSIM (kornia, ``bench/comfy_session.py``) of the decoded 8x8 digits against
  the full-compute samples of the same seed, and the digits classifier's accuracy;
* speed: the full-compute run and the setting alternate ``--repeats`` times; the measured
  speed-up is the median of the pairs' ratios of this process's CPU time (1 thread: the work
  done, steadier than wall time on a machine shared with other jobs; the wall-clock ratio is in
  the JSON too). Its bound is 1 / (share of the block work still computed), counted by hooks on
  the blocks (``comfy_session.block_costs`` weighs blocks by the tokens they process);
* overhead with caching off: TeaCache Patch at threshold 0, L2C Schedule Loader with an
  all-compute schedule, EasyCache and LazyCache at reuse threshold 0, against the bare model
  (interleaved, ``--overhead-repeats`` each, CPU time), per sampling step and as a ratio, and
  whether the output stayed bit-identical.

Writes ``bench/results/comfy_peers.json`` (every row, both releases), ``comfy_peers.md`` (PSNR
at measured 1.5x / 2x / 3x, interpolated on each method's Pareto frontier as in
``bench.fidelity``; overhead) and ``comfy_peers.png`` (PSNR against measured speed-up, one
panel per release). ``--accuracy`` writes ``reference/flux_digits/eval.json``.

Adding rows: :func:`teacache_rows` reads TeaCache Patch's inputs; when it has a ``reuse`` input
(the forecast modes), every non-default mode becomes its own family at the raw-coefficient
thresholds, with no change here.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

log = logging.getLogger("bench")
RESULTS = REPO / "bench" / "results"
TARGETS = (1.5, 2.0, 3.0)
CALIBRATION_SEED = 1000
LEARN_SEED = 2000
PROFILE_NAME = "dit_cache_bench_flux_digits"


# ============================================================================ child (in ComfyUI)
class Bench:
    def __init__(self, s, args):
        import torch
        self.s, self.args = s, args
        self.labels = torch.arange(10).repeat_interleave(args.per_class).tolist()
        self.rows: list[dict] = []
        self.ref = None
        self.clf = __import__("bench.comfy_session", fromlist=["classifier"]).classifier()
        self.full_work = sum(s.block_weights) * args.steps

    def sample(self, model, steps=None, labels=None, seed=None):
        return self.s.sample(model, labels or self.labels, self.args.seed if seed is None else seed,
                             steps or self.args.steps, self.args.cfg)

    def run(self, family: str, label: str, model, param=None, steps: int | None = None) -> dict:
        from bench.comfy_session import clocked, count_blocks, kornia_metrics, median
        import torch
        steps = steps or self.args.steps
        with count_blocks(self.s.dm, self.s.block_weights) as done:
            try:
                x = self.sample(model, steps)
            except Exception as e:  # a peer node that fails on this release is a result too
                row = {"release": self.s.version, "family": family, "method": label, "param": param, "steps": steps,
                       "error": f"{type(e).__name__}: {e}"}
                self.rows.append(row)
                log.warning("[%s] %-34s failed: %s", self.s.version, label, row["error"])
                return row
        work = done["work"] / self.full_work
        # paired timing: full compute and this setting alternate, so slow swings of a shared machine's
        # load cancel in each pair's ratio
        ref_c, ref_w, cpu, wall = [], [], [], []
        for _ in range(self.args.repeats):
            _, c, w = clocked(lambda: self.sample(self.s.model))
            ref_c.append(c)
            ref_w.append(w)
            lat, c, w = clocked(lambda: self.sample(model, steps))
            cpu.append(c)
            wall.append(w)
            if not torch.equal(lat, x):
                log.warning("%s: repeated runs differ (the method keeps state between runs?)", label)
        px = self.s.pixels(x)
        if self.ref is None:
            self.ref = px
        psnr, ssim = kornia_metrics(px, self.ref)
        acc = self.clf.accuracy(px, torch.tensor(self.labels))
        row = {"release": self.s.version, "family": family, "method": label, "param": param, "steps": steps,
               "work": work, "bound": 1.0 / work if work > 0 else math.inf,
               "cpu_s": cpu, "uncached_cpu_s": ref_c, "wall_s": wall, "uncached_wall_s": ref_w,
               "speedup": median([r / c for r, c in zip(ref_c, cpu)]),
               "speedup_wall": median([r / w for r, w in zip(ref_w, wall)]),
               "psnr": psnr, "ssim": ssim, "accuracy": acc}
        self.rows.append(row)
        log.info("[%s] %-34s work %.3f bound %.2fx measured %.2fx (wall %.2fx) PSNR %5s SSIM %.3f acc %.2f",
                 self.s.version, label, work, row["bound"], row["speedup"], row["speedup_wall"],
                 "inf" if math.isinf(psnr) else f"{psnr:.1f}", ssim, acc)
        return row


def teacache_rows(b: "Bench") -> list[tuple[str, str, dict]]:
    """(family, label, TeaCache Patch inputs) for every TeaCache setting measured."""
    a = b.args
    rows = [("TeaCache, published `flux` coefficients", f"flux {t:g}", {"rel_l1_thresh": t, "coefficients": "flux"})
            for t in a.flux_thresholds]
    rows += [("TeaCache, `raw` coefficients", f"raw {t:g}", {"rel_l1_thresh": t, "coefficients": "raw"})
             for t in a.raw_thresholds]
    # hook for the forecast reuse modes (branch `forecast`): one family per non-default mode
    node = b.s.nodes["teacache_node"].TeaCachePatch
    reuse = next((i for i in node.define_schema().inputs if i.id == "reuse"), None)
    for mode in (getattr(reuse, "options", None) or []):
        if mode == getattr(reuse, "default", None):
            continue
        rows += [(f"TeaCache, `raw`, reuse={mode}", f"raw {t:g} {mode}",
                  {"rel_l1_thresh": t, "coefficients": "raw", "reuse": mode}) for t in a.raw_thresholds]
    return rows


def run_methods(b: "Bench") -> None:
    import torch
    s, a = b.s, b.args
    tc = s.nodes["teacache_node"].TeaCachePatch
    b.run("reference", "full compute", s.model, steps=a.steps)
    for family, label, inputs in teacache_rows(b):
        b.run(family, label, s.node(tc, model=s.model, **inputs)[0], param=inputs["rel_l1_thresh"])

    # calibrated on other seeds, one sample per digit
    labels10 = list(range(10))
    pos, neg = s.conds(labels10)
    latent = {"samples": torch.zeros(10, s.fd.LATENT_CHANNELS, s.fd.LATENT_SIZE, s.fd.LATENT_SIZE)}
    t0 = time.perf_counter()
    report = s.node(s.nodes["learn_nodes"].TeaCacheCalibrate, model=s.model, positive=pos, negative=neg,
                    latent=latent, seed=CALIBRATION_SEED, seeds=a.calibration_seeds, steps=a.steps,
                    sampler_name="euler", scheduler="simple", cfg=a.cfg, profile_name=PROFILE_NAME)[1]
    log.info("calibrated in %.0fs:\n%s", time.perf_counter() - t0, report)
    for t in a.calibrated_thresholds:
        m = s.node(tc, model=s.model, rel_l1_thresh=t, coefficients=PROFILE_NAME + ".json")[0]
        b.run("TeaCache, calibrated on this model", f"calibrated {t:g}", m, param=t)

    l2c_models = {}
    for lam in a.lams:
        t0 = time.perf_counter()
        out = s.node(s.nodes["learn_nodes"].L2CLearnSchedule, model=s.model, positive=pos, negative=neg,
                     latent=latent, seed=LEARN_SEED, steps=a.steps, sampler_name="euler", scheduler="simple",
                     cfg=a.cfg, lam=lam, theta=0.5, iterations=a.l2c_iterations,
                     schedule_name=f"dit_cache_bench_flux_digits_lam{lam:g}")
        log.info("L2C lam %g learned in %.0fs: %s", lam, time.perf_counter() - t0, out[1].splitlines()[2:3])
        l2c_models[lam] = out[0]
        b.run("L2C, learned with L2C Learn Schedule", f"L2C lam {lam:g}", out[0], param=lam)
    base = l2c_models[a.lams[len(a.lams) // 2]]
    for t in a.combo_thresholds:
        m = s.node(tc, model=base, rel_l1_thresh=t, coefficients="raw")[0]
        b.run(f"TeaCache `raw` + L2C (lam {a.lams[len(a.lams) // 2]:g})", f"raw {t:g} + L2C", m, param=t)

    import comfy_extras.nodes_easycache as ec
    for name, node, grid in (("EasyCache", ec.EasyCacheNode, a.easycache_thresholds),
                             ("LazyCache", ec.LazyCacheNode, a.lazycache_thresholds)):
        for variant, copied, every in peer_variants(name):
            for t in grid:
                m = s.node(node, model=input_copied(s.model) if copied else s.model, reuse_threshold=t)[0]
                if every:
                    m.model_options["transformer_options"]["easycache"].subsample_factor = 1
                b.run(f"ComfyUI {name}{variant}", f"{name} {t:g}{variant}", m, param=t)

    for n in a.fewer_steps:
        b.run("baseline: fewer steps", f"{n} steps", s.model, param=n, steps=n)
    for k in a.uniform_every:
        b.run("baseline: uniform step skipping", f"compute every {k}", uniform_skip(s, k), param=k)


def run_target_methods(b: "Bench") -> None:
    """``--only target`` (issue 16): full compute; the forecast rows (TeaCache ``raw`` with
    reuse taylor1/taylor2 at the raw thresholds, and the fixed interval ``compute_every`` with
    taylor1/taylor2); then at each target: target mode (the published ``flux`` coefficients the
    node picks, ``auto``) in every reuse mode, the fixed interval at the same budget
    (bench.target_rows.even_interval) and TeaCache with the threshold tuned by bisection to the
    same count of computed evaluations."""
    import importlib
    from bench.target_rows import TARGET_MODES, TARGETS as T16, even_interval, tune_threshold
    s, a = b.s, b.args
    tc = s.nodes["teacache_node"].TeaCachePatch
    runtime = s.nodes["runtime"]
    budget = importlib.import_module(tc.__module__.rsplit(".nodes.", 1)[0] + ".cache_core.budget")
    b.run("reference", "full compute", s.model, steps=a.steps)
    for mode in ("taylor1", "taylor2") if not a.targets else ():  # --targets: a part of the target rows only
        for t in a.raw_thresholds:
            b.run(f"TeaCache, `raw`, reuse={mode}", f"raw {t:g} {mode}",
                  s.node(tc, model=s.model, rel_l1_thresh=t, coefficients="raw", reuse=mode)[0], param=t)
        for n in a.uniform_every:
            b.run(f"fixed interval, reuse={mode}", f"compute every {n} {mode}",
                  s.node(tc, model=s.model, rel_l1_thresh=1000.0, coefficients="raw", reuse=mode,
                         compute_every=n)[0], param=n)

    def computed(model) -> int:
        recs = runtime.get_holder(model.model_options).last_records
        return sum(r.decision == "compute" for r in recs if not r.kind and r.stream == recs[0].stream)

    def count(t):
        m = s.node(tc, model=s.model, rel_l1_thresh=t)[0]
        b.sample(m)
        return computed(m)

    b.thresholds = {}
    for target in (a.targets or T16):
        for mode in TARGET_MODES:
            m = s.node(tc, model=s.model, target_speedup=target, reuse=mode)[0]
            row = b.run(f"target {mode}", f"target {target:g}x {mode}", m, param=target)
            row["computed"] = computed(m)
            with even_interval(budget):
                m = s.node(tc, model=s.model, target_speedup=target, reuse=mode)[0]
                r2 = b.run(f"interval at budget {mode}", f"even interval {target:g}x {mode}", m, param=target)
                r2["computed"] = computed(m)
        want = row["computed"]
        thr, got = tune_threshold(count, want, 0.0, 3.0, 8)
        b.thresholds[f"{target:g}"] = {"threshold": thr, "computed": got, "budget": want}
        log.info("[%s] target %gx: threshold %.4f computes %d (budget %d)", s.version, target, thr, got, want)
        for mode in TARGET_MODES:
            m = s.node(tc, model=s.model, rel_l1_thresh=thr, reuse=mode)[0]
            r3 = b.run(f"threshold at budget {mode}", f"flux {thr:.4g} (tuned to {target:g}x) {mode}", m, param=target)
            r3["computed"] = computed(m)


def target_table(rows: list[dict], steps: int) -> list[str]:
    """The issue-16 rows of one release: per target and reuse mode, target mode against the fixed
    interval and the tuned threshold at the same budget."""
    lines = ["| target | method | reuse | computed | bound | measured (CPU) | PSNR dB | SSIM | vs best other (dB) |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for t in sorted({r["param"] for r in rows if str(r.get("family", "")).startswith("target ")}):
        for mode in ("cached", "taylor1", "taylor2"):
            group = {k: next((r for r in rows if r.get("family") == f"{k} {mode}" and r["param"] == t), None)
                     for k in ("target", "interval at budget", "threshold at budget")}
            if group["target"] is None:
                continue
            others = [g["psnr"] for k, g in group.items() if g is not None and k != "target" and "psnr" in g]
            for k, r in group.items():
                if r is None or "psnr" not in r:
                    continue
                d = f"{r['psnr'] - max(others):+.2f}" if k == "target" and others else ""
                lines.append(f"| {t:g}x | {k} | {mode} | {r.get('computed', '?')}/{steps} | {r['bound']:.2f}x | "
                             f"{r['speedup']:.2f}x | {r['psnr']:.2f} | {r['ssim']:.3f} | {d} |")
    return lines


def peer_variants(name: str) -> list[tuple[str, bool, bool]]:
    """(family suffix, input copied, every latent position) of the EasyCache/LazyCache rows.

    * As shipped.
    * EasyCache with its input copied: on a reused step EasyCache adds its cached difference into
      the diffusion model's input in place (``apply_cache_diff``), and in a float32 run of a flow
      model (this CPU run) that input is the very tensor ComfyUI computes the denoised sample from
      (``calculate_input`` and ``.to(dtype)`` return it unchanged), so every reused step is wrong.
      In a bf16/fp16 run the input is a cast copy and the bug is invisible; the copy (a
      DIFFUSION_MODEL wrapper outside EasyCache's) gives this run the same.
    * The change estimate over every latent position: the nodes look at every 8th latent row and
      column, which on this 4x4 latent is one corner position of 16 (a 1024x1024 image gives them 256
      of 16384). Not a node input: the holder's ``subsample_factor`` set on the clone."""
    if name == "EasyCache":
        return [("", False, False), (", input copied", True, False), (", input copied, every position", True, True)]
    return [("", False, False), (", every position", False, True)]


def input_copied(model):
    import comfy.patcher_extension
    m = model.clone()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "dit_cache_bench_copy",
                           lambda executor, x, *args, **kw: executor(x.clone(), *args, **kw))
    return m


def uniform_skip(s, every: int):
    """The pack's block-stack reuse on a fixed pattern: compute every ``every``-th step (first and
    last always compute), via TeaCache's accumulator with a constant rescaling of 1."""
    teacache = sub_module(s, "cache_core.teacache")
    coeff = sub_module(s, "cache_core.coefficients")
    prof = coeff.CoefficientProfile(f"uniform{every}", (1.0,), (0.0, 1e9), source="constant: one per step")
    cfg = teacache.TeaCacheConfig(rel_l1_thresh=every - 0.5, coefficients=prof)
    adapters = sub_module(s, "nodes.adapters")
    return s.nodes["runtime"].patch_model(s.model, lambda m: adapters.detect(m), teacache=cfg)[0]


def sub_module(s, name):
    from devtools.comfy_host import pack_module
    return pack_module(name)


def overhead(b: "Bench") -> list[dict]:
    """Caching off, each node against the bare model, interleaved (see the module doc)."""
    import torch
    import comfy_extras.nodes_easycache as ec
    from bench.comfy_session import clocked, median
    s, a = b.s, b.args
    l2c_mod = sub_module(s, "cache_core.l2c")
    folders = s.nodes["folders"]
    name = "dit_cache_bench_all_compute.safetensors"
    sched = l2c_mod.L2CSchedule.all_compute(a.steps, len(s.block_weights), ("block",), family="flux",
                                            source="bench: all compute")
    sched.save(folders.output_path(folders.SCHEDULES, name, ".safetensors"))
    off = {
        "TeaCache Patch, threshold 0": s.node(s.nodes["teacache_node"].TeaCachePatch, model=s.model,
                                              rel_l1_thresh=0.0)[0],
        "L2C Schedule Loader, all-compute schedule": s.node(s.nodes["l2c_node"].L2CScheduleLoader, model=s.model,
                                                            schedule=name)[0],
        "ComfyUI EasyCache, threshold 0": s.node(ec.EasyCacheNode, model=s.model, reuse_threshold=0.0)[0],
        "ComfyUI LazyCache, threshold 0": s.node(ec.LazyCacheNode, model=s.model, reuse_threshold=0.0)[0],
    }
    ref = b.sample(s.model)
    same, failed = {}, {}
    for k, m in list(off.items()):
        try:
            same[k] = torch.equal(b.sample(m), ref)
        except Exception as e:
            failed[k] = f"{type(e).__name__}: {e}"
            del off[k]
    times = {k: [] for k in ["bare model", *off]}
    walls = {k: [] for k in times}
    for _ in range(a.overhead_repeats):
        for k in times:
            _, c, w = clocked(lambda: b.sample(s.model if k == "bare model" else off[k]))
            times[k].append(c)
            walls[k].append(w)
    t_bare = median(times["bare model"])
    out = []
    for k, ts in times.items():
        t = median(ts)
        out.append({"release": s.version, "node": k, "median_s": t, "ratio": t / t_bare,
                    "ms_per_step": (t - t_bare) / a.steps * 1e3, "identical": same.get(k, True), "cpu_s": ts,
                    "wall_s": walls[k]})
        log.info("[%s] overhead %-44s %.3fs  %.3fx  %+.2f ms/step  identical %s", s.version, k, t, t / t_bare,
                 (t - t_bare) / a.steps * 1e3, same.get(k, True))
    out += [{"release": s.version, "node": k, "error": e} for k, e in failed.items()]
    return out


def accuracy(s, args) -> dict:
    import torch
    from bench.comfy_session import classifier
    clf = classifier()
    labels = torch.arange(10).repeat_interleave(args.eval_per_class)
    out = {}
    for cfg in args.eval_cfgs:
        x = s.pixels(s.sample(s.model, labels.tolist(), args.seed, args.steps, cfg))
        pred = clf.predict(x)
        acc = float((pred == labels.numpy()).mean())
        out[f"cfg{cfg:g}"] = {"accuracy": acc,
                              "per_class": [float((pred[labels.numpy() == k] == k).mean()) for k in range(10)]}
        log.info("[%s] full compute, %d steps, cfg %g: classifier accuracy %.3f (%d samples)", s.version,
                 args.steps, cfg, acc, len(labels))
    return {"release": s.version, "steps": args.steps, "sampler": "euler", "scheduler": "simple",
            "per_class": args.eval_per_class, "seed": args.seed, "results": out}


def child(args) -> int:
    from bench.comfy_session import Session
    s = Session(threads=args.threads)
    log.info("ComfyUI %s at %s, Flux digits model: %d blocks", s.version, s.ns.path, len(s.block_weights))
    if args.accuracy:
        result = {"accuracy": accuracy(s, args)}
    else:
        b = Bench(s, args)
        if args.only == "target":
            run_target_methods(b)
            result = {"rows": b.rows, "overhead": [], "target_thresholds": b.thresholds}
        else:
            run_methods(b)
            result = {"rows": b.rows, "overhead": overhead(b)}
    result["environment"] = {"comfyui": s.version, "torch": __import__("torch").__version__,
                             "threads": __import__("torch").get_num_threads()}
    Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 0


# ============================================================================ parent
def find_trees() -> list[Path]:
    from bench.common import comfyui_hosts
    trees = comfyui_hosts().shared_trees()
    if not trees:
        raise SystemExit("no ComfyUI source tree found: set DITCACHE_COMFYUI_TREES (a checkout or a folder of them)")
    return trees


def run_release(tree: Path, argv: list[str], work: Path) -> dict:
    from bench.common import comfyui_hosts
    hosts = comfyui_hosts()
    host = hosts.Host(tree, "source tree", True)
    py = hosts.ensure_env(host, work)
    checkout = hosts._copy_tree(tree, work / host.version)
    out = work / f"result-{host.version}.json"
    env = dict(os.environ, COMFYUI_PATH=str(checkout), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    cmd = [py, "-m", "bench.comfy_peers", "--child", "--json", str(out), *argv]
    log.info("ComfyUI %s: %s", host.version, " ".join(cmd))
    t0 = time.time()
    r = subprocess.run(cmd, cwd=str(REPO), env=env)
    if r.returncode != 0:
        raise SystemExit(f"the benchmark against ComfyUI {host.version} failed (exit {r.returncode})")
    log.info("ComfyUI %s done in %.0fs", host.version, time.time() - t0)
    return json.loads(out.read_text())


def frontier_table(rows: list[dict]) -> list[str]:
    from bench.common import interpolate_at
    fams = []
    for r in rows:
        if r["family"] not in fams and r["family"] != "reference":
            fams.append(r["family"])
    lines = ["| method | " + " | ".join(f"@ {t:g}×" for t in TARGETS) + " | fastest: measured (bound), PSNR |",
             "|---|" + "---:|" * (len(TARGETS) + 1)]
    for f in fams:
        rs = [r for r in rows if r["family"] == f and "error" not in r]
        if not rs:
            err = next(r["error"] for r in rows if r["family"] == f)
            lines.append(f"| {f} | " + " | ".join("failed" for _ in TARGETS) + f" | failed: {err[:80]} |")
            continue
        pts = [(r["speedup"], r["psnr"]) for r in rs if math.isfinite(r["psnr"])]
        cells = []
        for t in TARGETS:
            v = interpolate_at(pts, t)
            cells.append("—" if v is None else f"{v[1].replace('>=', '≥')}{v[0]:.1f}")
        top = max(rs, key=lambda r: r["speedup"])
        lines.append(f"| {f} | " + " | ".join(cells) + f" | {top['speedup']:.2f}× ({top['bound']:.2f}×), "
                     f"{top['psnr']:.1f} |")
    return lines


def row_table(rows: list[dict]) -> list[str]:
    lines = ["| method | setting | work | bound | measured (CPU) | wall | PSNR dB | SSIM | accuracy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['family']} | {r['method']} | failed: {r['error'][:100]} | | | | | | |")
            continue
        p = "∞" if not math.isfinite(r["psnr"]) else f"{r['psnr']:.1f}"
        lines.append(f"| {r['family']} | {r['method']} | {r['work']:.3f} | {r['bound']:.2f}× | {r['speedup']:.2f}× "
                     f"| {r['speedup_wall']:.2f}× | {p} | {r['ssim']:.3f} | {r['accuracy']:.2f} |")
    return lines


def overhead_table(over: list[dict]) -> list[str]:
    lines = ["| node, caching off | CPU seconds per run | ratio | ms per step | output identical |",
             "|---|---:|---:|---:|---|"]
    for o in over:
        if "error" in o:
            lines.append(f"| {o['node']} | failed: {o['error'][:100]} | | | |")
            continue
        lines.append(f"| {o['node']} | {o['median_s']:.3f} | {o['ratio']:.3f}× | {o['ms_per_step']:+.2f} | "
                     f"{'yes' if o['identical'] else 'no'} |")
    return lines


def report(results: dict, args, command: str) -> str:
    md = ["# ComfyUI peers on the Flux digits model", "",
          f"`{command}`: {args.per_class * 10} samples ({args.per_class} per digit), {args.steps} steps euler/simple, "
          f"cfg {args.cfg:g}, 1 CPU thread. Measured speed-up: median ratio of CPU time against full compute, "
          f"{args.repeats} alternating pairs; bound: 1 / share of block work computed. PSNR (dB) of the decoded digits "
          "against full compute, interpolated on each method's Pareto frontier at a measured speed-up (≥: its "
          "slowest setting is already faster; —: not reached).", ""]
    for ver, res in results.items():
        md += [f"## ComfyUI {ver}", ""] + frontier_table(res["rows"]) + [""]
        if any(str(r.get("family", "")).startswith("target ") for r in res["rows"]):
            md += ["Target mode (issue 16): computed = computed / ordinary evaluations per stream; thresholds "
                   f"tuned to the budget: {res.get('target_thresholds')}", ""]
            md += target_table(res["rows"], args.steps) + [""]
        md += ["Every setting:", ""] + row_table(res["rows"]) + [""]
        if not res["overhead"]:
            continue
        md += ["Overhead with caching off (median of "
               f"{args.overhead_repeats} interleaved runs):", ""] + overhead_table(res["overhead"]) + [""]
    return "\n".join(md)


SHORT = {"TeaCache, published `flux` coefficients": "TeaCache, flux coeff.", "TeaCache, `raw` coefficients":
         "TeaCache, raw", "TeaCache, calibrated on this model": "TeaCache, calibrated",
         "L2C, learned with L2C Learn Schedule": "L2C learned", "ComfyUI EasyCache": "EasyCache (as shipped)",
         "ComfyUI EasyCache, input copied": "EasyCache, input copied",
         "ComfyUI EasyCache, input copied, every position": "EasyCache, copied, all pos.",
         "ComfyUI LazyCache": "LazyCache (as shipped)", "ComfyUI LazyCache, every position": "LazyCache, all pos.",
         "baseline: fewer steps": "fewer steps", "baseline: uniform step skipping": "uniform step skipping"}


def short(family: str) -> str:
    if family.startswith("TeaCache `raw` + L2C"):
        return "TeaCache raw + L2C"
    return SHORT.get(family, family[:28])


def plot(results: dict, path: Path) -> None:
    """PSNR against measured speed-up, one panel per release, the same colour per method in each
    (a method that failed on a release keeps its legend entry, with no points)."""
    from PIL import Image
    from dit_reference.demo import scatter_plot
    fams = []
    for res in results.values():
        for r in res["rows"]:
            if r["family"] != "reference" and r["family"] not in fams:
                fams.append(r["family"])
    panels = []
    with tempfile.TemporaryDirectory() as d:
        for ver, res in results.items():
            series: dict[str, list] = {short(f): [] for f in fams}
            for r in res["rows"]:
                if r["family"] != "reference" and "error" not in r and math.isfinite(r["psnr"]):
                    series[short(r["family"])].append((r["speedup"], r["psnr"]))
            p = Path(d) / f"{ver}.png"
            scatter_plot(series, p, f"Flux digits model in ComfyUI {ver}: PSNR vs measured speed-up (CPU time)",
                         size=(900, 520))
            panels.append(Image.open(p).convert("RGB"))
        w = max(p.width for p in panels)
        img = Image.new("RGB", (w, sum(p.height for p in panels)), "white")
        y = 0
        for p in panels:
            img.paste(p, (0, y))
            y += p.height
        img.save(path)


def write_results(results: dict, args, command: str) -> str:
    data = {"command": command, "args": vars(args), "releases": results}
    base = "comfy_peers" + ("_target" if getattr(args, "only", None) == "target" else "") + getattr(args, "out_suffix", "")
    (RESULTS / f"{base}.json").write_text(json.dumps(data, indent=1, default=str))
    md = report(results, args, command)
    (RESULTS / f"{base}.md").write_text(md + "\n")
    plot(results, RESULTS / f"{base}.png")
    return md


def parent(args, argv: list[str]) -> int:
    trees = find_trees()
    command = "python -m bench.comfy_peers" + ("" if not argv else " " + " ".join(argv))
    results = {}
    with tempfile.TemporaryDirectory(prefix="dit_cache_peers_") as d:
        for tree in trees:
            res = run_release(tree, argv, Path(d))
            results[res["environment"]["comfyui"]] = res
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.accuracy:
        out = {"command": command, "model": "dit_reference/data/diffusion_models/dit_cache_flux_digits.safetensors",
               "classifier": "dit_reference/data/reference_classifier.json",
               "releases": {v: r["accuracy"] for v, r in results.items()}}
        (REPO / "reference" / "flux_digits" / "eval.json").write_text(json.dumps(out, indent=1))
        return 0
    print(write_results(results, args, command))
    return 0


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m bench.comfy_peers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=5)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--overhead-repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--flux-thresholds", type=floats, default=floats("0.2,0.3,0.45,0.6,0.8,1,1.3"))
    ap.add_argument("--raw-thresholds", type=floats, default=floats("0.05,0.1,0.15,0.2,0.3,0.4"))
    ap.add_argument("--calibrated-thresholds", type=floats, default=floats("0.02,0.04,0.06,0.1,0.15,0.2"))
    ap.add_argument("--calibration-seeds", type=int, default=4)
    ap.add_argument("--lams", type=floats, default=floats("0.001,0.003,0.01"))
    ap.add_argument("--l2c-iterations", type=int, default=10)
    ap.add_argument("--combo-thresholds", type=floats, default=floats("0.05,0.1,0.2"))
    ap.add_argument("--easycache-thresholds", type=floats, default=floats("0.05,0.1,0.2,0.3,0.5,0.8"))
    ap.add_argument("--lazycache-thresholds", type=floats, default=floats("0.05,0.1,0.2,0.3,0.5,0.8"))
    ap.add_argument("--fewer-steps", type=ints, default=ints("20,17,13,10,8,6"))
    ap.add_argument("--uniform-every", type=ints, default=ints("2,3,4"))
    ap.add_argument("--accuracy", action="store_true", help="full-compute accuracy only (reference/flux_digits/eval.json)")
    ap.add_argument("--eval-per-class", type=int, default=20)
    ap.add_argument("--eval-cfgs", type=floats, default=floats("1,2,3,4"))
    ap.add_argument("--report", action="store_true", help="write the tables and plot again from comfy_peers.json")
    ap.add_argument("--only", choices=["target"], default=None,
                    help="only full compute, the forecast rows and the issue-16 target rows "
                         "(writes comfy_peers_target.*)")
    ap.add_argument("--targets", type=floats, default=None,
                    help="with --only target: these targets only, without the forecast rows (to split a run)")
    ap.add_argument("--out-suffix", default="", help="appended to the result files' names")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.child:
        return child(args)
    if args.report:  # tables and plot again from the last results
        data = json.loads((RESULTS / "comfy_peers.json").read_text())
        print(write_results(data["releases"], argparse.Namespace(**data["args"]), data["command"]))
        return 0
    return parent(args, argv)


if __name__ == "__main__":
    sys.exit(main())
