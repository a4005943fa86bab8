"""Generate the example workflows in this folder (ComfyUI UI / litegraph format, drag-and-drop
loadable), one per model family plus an L2C one and a with/without-TeaCache comparison
(``compare_graph``, reusable for any model).

    python workflows/make_workflows.py            # write workflows/*.json
    python workflows/make_workflows.py --check    # exit 1 if a file would change

Widget orders and defaults are read from the live node definitions (the same data ComfyUI's
``/object_info`` serves: ``input`` + ``input_order``): stock nodes from a ComfyUI checkout
(``COMFYUI_PATH``, or the checkout holding this pack: ``devtools.comfy_host``), our nodes from this pack's
``comfy_entrypoint()``.  Output is deterministic (no random ids, no timestamps).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ------------------------------------------------------------------ node definitions

def _comfy():
    from devtools.comfy_host import import_comfy
    return import_comfy()


def init_stock_nodes(ns) -> None:
    """Load ComfyUI's built-in extra nodes (comfy_extras) into ``nodes.NODE_CLASS_MAPPINGS``."""
    import nodes
    if getattr(nodes, "_dit_cache_extras_loaded", False):
        return
    # ComfyUI's main.py imports the top-level ``utils`` package first; once something has put
    # ``comfy/`` at the front of sys.path, ``import utils`` would find comfy/utils.py instead,
    # and comfy_extras/nodes_images.py (via server.py) fails to import.
    root = str(ns.path)
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    mod = sys.modules.get("utils")
    if mod is not None and not hasattr(mod, "__path__"):
        del sys.modules["utils"]
    import utils.install_util  # noqa: F401
    import logging
    logging.disable(logging.WARNING)  # optional stock nodes (audio, upscale) may fail to import here
    try:
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    finally:
        logging.disable(logging.NOTSET)
    nodes._dit_cache_extras_loaded = True


def node_info(cls) -> dict:
    """The /object_info entry of a node class (V1 or V3), reduced to what workflows need."""
    if hasattr(cls, "GET_NODE_INFO_V1"):
        info = dict(cls.GET_NODE_INFO_V1())
    else:
        inputs = cls.INPUT_TYPES()
        info = {
            "input": inputs,
            "output": list(cls.RETURN_TYPES),
            "output_name": list(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES),
            "display_name": None,
            "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
        }
    info["input_order"] = info.get("input_order") or {k: list(v.keys()) for k, v in info["input"].items()}
    info["output"] = [str(getattr(o, "value", o)) for o in info["output"]]
    info["output_name"] = [str(o) for o in (info.get("output_name") or info["output"])]
    return info


def our_node_classes() -> list:
    from devtools.comfy_host import load_pack
    pack = load_pack()
    ext = asyncio.run(pack.comfy_entrypoint())
    return asyncio.run(ext.get_node_list())


def object_info(ns=None) -> tuple[dict, set]:
    """``({node_type: info}, our_node_types)`` for every stock node and every node of this pack."""
    ns = ns or _comfy()
    init_stock_nodes(ns)
    import nodes
    out = {}
    for name, cls in nodes.NODE_CLASS_MAPPINGS.items():
        try:
            out[name] = node_info(cls)
        except Exception:  # a stock node whose definition fails is not used here
            pass
    ours = set()
    for cls in our_node_classes():
        info = node_info(cls)
        nid = info.get("name") or cls.define_schema().node_id
        out[nid] = info
        ours.add(nid)
    return out, ours


def input_spec(info: dict, name: str):
    for group in ("required", "optional"):
        if name in info["input"].get(group, {}):
            spec = info["input"][group][name]
            return spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
    raise KeyError(name)


def combo_options(typ, opts) -> list | None:
    if isinstance(typ, (list, tuple)):
        return list(typ)
    if typ == "COMBO":
        return list(opts.get("options", []))
    return None


FILE_EXTS = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".json", ".png", ".jpg", ".jpeg",
             ".webp", ".mp4", ".wav", ".flac", ".mp3")


def is_file_combo(name: str, opts: dict) -> bool:
    """A combo listing files of a models/input folder: it may name files absent here."""
    return (name.endswith("_name") or name[:-1].endswith("_name")
            or name in ("schedule", "image", "video", "audio", "file", "text_encoder") or bool(opts.get("image_upload")))


def is_widget(typ, opts) -> bool:
    if opts.get("forceInput"):
        return False
    # a V3 MultiType input ("FLOAT,INT") shows the widget its first type names
    return isinstance(typ, (list, tuple)) or typ in WIDGET_TYPES or opts.get("widgetType") in WIDGET_TYPES


def ordered_inputs(info: dict) -> list[str]:
    order = info["input_order"]
    return list(order.get("required", [])) + list(order.get("optional", []))


def widget_layout(info: dict) -> list[tuple[str, str]]:
    """``[(input_name, kind)]`` in widgets_values order; kind is "value", "control" (the
    control_after_generate entry after a seed) or "upload" (the image upload button value)."""
    out = []
    for name in ordered_inputs(info):
        typ, opts = input_spec(info, name)
        if not is_widget(typ, opts):
            continue
        out.append((name, "value"))
        if opts.get("control_after_generate"):
            out.append((name, "control"))
        if opts.get("image_upload") or opts.get("video_upload") or opts.get("audio_upload"):
            out.append((name, "upload"))
    return out


# ------------------------------------------------------------------ graph builder

class Node:
    def __init__(self, graph, nid, type_, info, title):
        self.graph, self.id, self.type, self.info, self.title = graph, nid, type_, info, title
        self.inputs = []  # [{name, type, link}]
        self.links_out = {}  # slot -> [link ids]
        self.widgets = {}

    def out(self, name_or_index=0):
        if isinstance(name_or_index, int):
            return (self, name_or_index)
        names = self.info["output_name"]
        if name_or_index in names:
            return (self, names.index(name_or_index))
        types = self.info["output"]
        if name_or_index in types:
            return (self, types.index(name_or_index))
        raise KeyError(f"{self.type} has no output {name_or_index!r} (has {names})")


class Graph:
    def __init__(self, infos: dict, name: str):
        self.infos, self.name = infos, name
        self.nodes: list[Node] = []
        self.links = []  # [id, origin_id, origin_slot, target_id, target_slot, type]
        self.groups = []

    def add(self, type_, title=None, **kw) -> Node:
        if type_ not in self.infos:
            raise KeyError(f"node type {type_} is not known to this ComfyUI")
        info = self.infos[type_]
        node = Node(self, len(self.nodes) + 1, type_, info, title)
        self.nodes.append(node)
        names = ordered_inputs(info)
        for k in kw:
            if k not in names:
                raise KeyError(f"{type_} has no input {k!r} (inputs: {names})")
        for name in names:
            typ, opts = input_spec(info, name)
            val = kw.get(name)
            if is_widget(typ, opts):
                if isinstance(val, tuple) and val and isinstance(val[0], Node):
                    raise ValueError(f"{type_}.{name} is a widget; linking widgets is not supported here")
                if val is None:
                    if "default" in opts:
                        val = opts["default"]
                    else:
                        choices = combo_options(typ, opts)
                        if not choices:
                            raise ValueError(f"{type_}.{name}: give a value (no default, no options)")
                        val = choices[0]
                choices = combo_options(typ, opts)
                if choices is not None:
                    if is_file_combo(name, opts):
                        if val not in choices and not str(val).lower().endswith(FILE_EXTS):
                            raise ValueError(f"{type_}.{name}: {val!r} does not look like a file name")
                    elif val not in choices:
                        raise ValueError(f"{type_}.{name}: {val!r} not in {choices}")
                node.widgets[name] = val
            else:
                slot = {"name": name, "type": typ if isinstance(typ, str) else "COMBO", "link": None}
                node.inputs.append(slot)
                if val is not None:
                    src, out_slot = val
                    self._link(src, out_slot, node, len(node.inputs) - 1)
                elif name in info["input"].get("required", {}):
                    raise ValueError(f"{self.name}: required input {type_}.{name} is not connected")
        return node

    def _link(self, src: Node, out_slot: int, dst: Node, in_slot: int):
        lid = len(self.links) + 1
        typ = src.info["output"][out_slot]
        self.links.append([lid, src.id, out_slot, dst.id, in_slot, typ])
        src.links_out.setdefault(out_slot, []).append(lid)
        dst.inputs[in_slot]["link"] = lid

    # -------------------------------------------------------------- serialisation

    def _order_and_columns(self):
        parents = {n.id: set() for n in self.nodes}
        for l in self.links:
            parents[l[3]].add(l[1])
        depth = {}

        def d(nid):
            if nid not in depth:
                depth[nid] = 1 + max((d(p) for p in parents[nid]), default=-1)
            return depth[nid]
        for n in self.nodes:
            d(n.id)
        order = sorted(self.nodes, key=lambda n: (depth[n.id], n.id))
        return {n.id: i for i, n in enumerate(order)}, depth

    def to_json(self) -> dict:
        order, depth = self._order_and_columns()
        col_y: dict[int, float] = {}
        out_nodes = []
        for n in sorted(self.nodes, key=lambda n: n.id):
            values = []
            for name, kind in widget_layout(n.info):
                if kind == "value":
                    values.append(n.widgets[name])
                elif kind == "control":
                    values.append("fixed")
                else:
                    values.append("image")
            n_w = sum(1 for _, k in widget_layout(n.info) if k != "control")
            multiline = sum(1 for name in n.widgets
                            if input_spec(n.info, name)[1].get("multiline"))
            h = 46 + 24 * max(len(n.inputs), len(n.info["output"])) + 26 * n_w + 90 * multiline
            w = 400 if multiline else 320
            c = depth[n.id]
            y = col_y.get(c, 0.0)
            col_y[c] = y + h + 60
            node = {
                "id": n.id,
                "type": n.type,
                "pos": [40 + c * 380, 40 + y],
                "size": [w, h],
                "flags": {},
                "order": order[n.id],
                "mode": 0,
                "inputs": [dict(s) for s in n.inputs],
                "outputs": [
                    {"name": nm, "type": t, "links": list(n.links_out.get(i, [])), "slot_index": i}
                    for i, (nm, t) in enumerate(zip(n.info["output_name"], n.info["output"]))
                ],
                "properties": {"Node name for S&R": n.type},
                "widgets_values": values,
            }
            if n.title:
                node["title"] = n.title
            out_nodes.append(node)
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"dit-cache/workflows/{self.name}")),
            "revision": 0,
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": out_nodes,
            "links": [list(l) for l in self.links],
            "groups": self.groups,
            "config": {},
            "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}, "dit_cache": {"generated_by": "workflows/make_workflows.py"}},
            "version": 0.4,
        }


# ------------------------------------------------------------------ shared pieces

NEG = "blurry, low quality, distorted, watermark, text"
VIDEO_NEG = ("static, overexposed, blurry details, subtitles, worst quality, low quality, JPEG artifacts, "
             "deformed, disfigured, extra fingers, still picture, messy background")


def output(x, slot=0):
    """A node's output (``(node, slot)``), or ``x`` itself when it is one already."""
    return x.out(slot) if isinstance(x, Node) else x


def teacache(g, model, title=None, rel_l1_thresh=-1.0, coefficients="auto"):
    """TeaCache Patch at the README's recommended setting: target_speedup 2 with reuse taylor1."""
    return g.add("DitCache_TeaCachePatch", title=title, model=output(model),
                 rel_l1_thresh=rel_l1_thresh, start_percent=0.0, end_percent=1.0, coefficients=coefficients,
                 cache_device="main", max_consecutive_skips=0, reuse="taylor1", target_speedup=2.0)


def stats_then_decode(g, patched, latent, vae, save="image", prefix="dit-cache", fps=16.0, title=None):
    """Cache Stats after the sampler (its passthrough carries the latent on to VAEDecode)."""
    stats = g.add("DitCache_CacheStats", title=title, model=patched.out(0), passthrough=latent)
    dec = g.add("VAEDecode", samples=stats.out(0), vae=vae)
    if save == "image":
        g.add("SaveImage", images=dec.out(0), filename_prefix=prefix)
    else:
        g.add("SaveAnimatedWEBP", images=dec.out(0), filename_prefix=prefix, fps=fps, lossless=False,
              quality=90, method="default")
    return stats


def ksampler(g, model, pos, neg, latent, steps, cfg, sampler="euler", scheduler="simple", seed=42, title=None):
    return g.add("KSampler", title=title, model=output(model), seed=seed, steps=steps, cfg=cfg, sampler_name=sampler,
                 scheduler=scheduler, positive=pos, negative=neg, latent_image=latent, denoise=1.0)


def compare_graph(g, model, pos, neg, latent, steps, cfg, sampler="euler", scheduler="simple", seed=42, vae=None,
                  to_image=None, prefix="dit-cache/compare", rel_l1_thresh=-1.0, coefficients="auto") -> dict:
    """The same seed sampled twice from ``model`` (a node or ``(node, slot)``), without and with
    TeaCache Patch, then Cache Stats on the cached run and Cache Compare of the two.

    How the latents become pictures: ``to_image(g, latent_output) -> image_output`` (any decoder,
    e.g. a model's own latent-to-pixel map) makes IMAGEs that Cache Compare compares and
    SaveImage keeps; else ``vae`` (a VAE output) goes to Cache Compare, which decodes both
    latents, and VAEDecode + SaveImage keep the cached picture; with neither, the latents are
    compared in latent space. Returns the nodes by role: reference, teacache, cached, stats, compare."""
    tc = teacache(g, model, rel_l1_thresh=rel_l1_thresh, coefficients=coefficients)
    ref = ksampler(g, model, pos, neg, latent, steps, cfg, sampler, scheduler, seed, title="KSampler (no cache)")
    cached = ksampler(g, tc, pos, neg, latent, steps, cfg, sampler, scheduler, seed, title="KSampler (TeaCache)")
    stats = g.add("DitCache_CacheStats", model=tc.out(0), passthrough=cached.out(0))
    if to_image is not None:
        ref_img, cached_img = to_image(g, ref.out(0)), to_image(g, stats.out(0))
        cmp = g.add("DitCache_CacheCompare", reference=ref_img, cached=cached_img, model=tc.out(0))
        g.add("SaveImage", images=cached_img, filename_prefix=prefix)
    else:
        cmp = g.add("DitCache_CacheCompare", reference=ref.out(0), cached=stats.out(0), vae=vae, model=tc.out(0))
        if vae is not None:
            dec = g.add("VAEDecode", samples=stats.out(0), vae=vae)
            g.add("SaveImage", images=dec.out(0), filename_prefix=prefix)
    return {"reference": ref, "teacache": tc, "cached": cached, "stats": stats, "compare": cmp}


def encode(g, clip, text):
    return g.add("CLIPTextEncode", text=text, clip=clip).out(0)


# ------------------------------------------------------------------ workflows

def flux_t2i(g):
    unet = g.add("UNETLoader", unet_name="flux1-dev.safetensors", weight_dtype="default")
    clip = g.add("DualCLIPLoader", clip_name1="clip_l.safetensors", clip_name2="t5xxl_fp16.safetensors", type="flux")
    vae = g.add("VAELoader", vae_name="ae.safetensors")
    ms = g.add("ModelSamplingFlux", model=unet.out(0), max_shift=1.15, base_shift=0.5, width=1024, height=1024)
    tc = teacache(g, ms)
    pos = g.add("FluxGuidance", conditioning=encode(g, clip.out(0), "a red fox reading a newspaper in a cozy cafe, "
                                                                     "morning light, 35mm photo"), guidance=3.5)
    neg = g.add("ConditioningZeroOut", conditioning=pos.out(0))
    lat = g.add("EmptySD3LatentImage", width=1024, height=1024, batch_size=1)
    ks = ksampler(g, tc, pos.out(0), neg.out(0), lat.out(0), steps=28, cfg=1.0)
    stats_then_decode(g, tc, ks.out(0), vae.out(0), prefix="dit-cache/flux")


def flux_kontext(g):
    unet = g.add("UNETLoader", unet_name="flux1-dev-kontext_fp8_scaled.safetensors", weight_dtype="default")
    clip = g.add("DualCLIPLoader", clip_name1="clip_l.safetensors", clip_name2="t5xxl_fp8_e4m3fn_scaled.safetensors",
                 type="flux")
    vae = g.add("VAELoader", vae_name="ae.safetensors")
    img = g.add("LoadImage", image="example.png")
    scaled = g.add("FluxKontextImageScale", image=img.out(0))
    enc = g.add("VAEEncode", pixels=scaled.out(0), vae=vae.out(0))
    tc = teacache(g, unet)
    text = encode(g, clip.out(0), "make it a watercolor painting, keep the composition")
    ref = g.add("ReferenceLatent", conditioning=text, latent=enc.out(0))
    pos = g.add("FluxGuidance", conditioning=ref.out(0), guidance=2.5)
    neg = g.add("ConditioningZeroOut", conditioning=text)
    ks = ksampler(g, tc, pos.out(0), neg.out(0), enc.out(0), steps=20, cfg=1.0)
    stats_then_decode(g, tc, ks.out(0), vae.out(0), prefix="dit-cache/flux_kontext")


def _chroma(g, name, unet, vae, latent, prompt, steps, scheduler="simple"):
    """Chroma and Chroma Radiance (pixel space: the "pixel_space" VAE and its own empty latent)."""
    unet = g.add("UNETLoader", unet_name=unet, weight_dtype="default")
    clip = g.add("CLIPLoader", clip_name="t5xxl_fp8_e4m3fn_scaled.safetensors", type="chroma")
    tok = g.add("T5TokenizerOptions", clip=clip.out(0), min_padding=1, min_length=0)
    vae = g.add("VAELoader", vae_name=vae)
    tc = teacache(g, unet)
    pos = encode(g, tok.out(0), prompt)
    neg = encode(g, tok.out(0), NEG)
    lat = g.add(latent, width=1024, height=1024, batch_size=1)
    ks = ksampler(g, tc, pos, neg, lat.out(0), steps=steps, cfg=4.0, scheduler=scheduler)
    stats_then_decode(g, tc, ks.out(0), vae.out(0), prefix=f"dit-cache/{name}")


def chroma(g):
    _chroma(g, "chroma", "chroma-unlocked-v37.safetensors", "ae.safetensors", "EmptySD3LatentImage",
            "a lighthouse on a cliff during a storm, dramatic clouds, oil painting", 26, scheduler="beta")


def _wan_text(g, clip_file="umt5_xxl_fp8_e4m3fn_scaled.safetensors"):
    clip = g.add("CLIPLoader", clip_name=clip_file, type="wan")
    vae = g.add("VAELoader", vae_name="wan_2.1_vae.safetensors")
    pos = encode(g, clip.out(0), "a corgi running along a beach at sunset, waves, slow motion, cinematic")
    neg = encode(g, clip.out(0), VIDEO_NEG)
    return pos, neg, vae


def _wan_model(g, unet, shift):
    """A Wan diffusion model with its shift and TeaCache, and the Wan text: ``(teacache, pos, neg, vae)``."""
    unet = g.add("UNETLoader", unet_name=unet, weight_dtype="default")
    ms = g.add("ModelSamplingSD3", model=unet.out(0), shift=shift)
    return (teacache(g, ms),) + _wan_text(g)


def wan21_t2v(g):
    tc, pos, neg, vae = _wan_model(g, "wan2.1_t2v_1.3B_fp16.safetensors", shift=8.0)
    lat = g.add("EmptyHunyuanLatentVideo", width=832, height=480, length=33, batch_size=1)
    ks = ksampler(g, tc, pos, neg, lat.out(0), steps=30, cfg=6.0, sampler="uni_pc")
    stats_then_decode(g, tc, ks.out(0), vae.out(0), save="video", prefix="dit-cache/wan21_t2v", fps=16.0)


def wan21_i2v(g):
    tc, pos, neg, vae = _wan_model(g, "wan2.1_i2v_480p_14B_fp16.safetensors", shift=8.0)
    cv = g.add("CLIPVisionLoader", clip_name="clip_vision_h.safetensors")
    img = g.add("LoadImage", image="example.png")
    cvo = g.add("CLIPVisionEncode", clip_vision=cv.out(0), image=img.out(0), crop="none")
    i2v = g.add("WanImageToVideo", positive=pos, negative=neg, vae=vae.out(0), width=832, height=480, length=33,
                batch_size=1, clip_vision_output=cvo.out(0), start_image=img.out(0))
    ks = ksampler(g, tc, i2v.out("positive"), i2v.out("negative"), i2v.out("latent"), steps=20, cfg=6.0,
                  sampler="uni_pc")
    stats_then_decode(g, tc, ks.out(0), vae.out(0), save="video", prefix="dit-cache/wan21_i2v", fps=16.0)


def wan22_t2v(g):
    """Wan 2.2 A14B: high-noise expert for the first half of the steps, low-noise expert after;
    each expert has its own TeaCache Patch and Cache Stats."""
    hi = g.add("UNETLoader", title="Wan 2.2 high-noise expert",
               unet_name="wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", weight_dtype="default")
    lo = g.add("UNETLoader", title="Wan 2.2 low-noise expert",
               unet_name="wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", weight_dtype="default")
    ms_hi = g.add("ModelSamplingSD3", model=hi.out(0), shift=8.0)
    ms_lo = g.add("ModelSamplingSD3", model=lo.out(0), shift=8.0)
    tc_hi = teacache(g, ms_hi, title="TeaCache Patch (high noise)")
    tc_lo = teacache(g, ms_lo, title="TeaCache Patch (low noise)")
    pos, neg, vae = _wan_text(g)
    lat = g.add("EmptyHunyuanLatentVideo", width=832, height=480, length=33, batch_size=1)
    k1 = g.add("KSamplerAdvanced", model=tc_hi.out(0), add_noise="enable", noise_seed=42, steps=20, cfg=3.5,
               sampler_name="euler", scheduler="simple", positive=pos, negative=neg, latent_image=lat.out(0),
               start_at_step=0, end_at_step=10, return_with_leftover_noise="enable")
    s1 = g.add("DitCache_CacheStats", title="Cache Stats (high noise)", model=tc_hi.out(0), passthrough=k1.out(0))
    k2 = g.add("KSamplerAdvanced", model=tc_lo.out(0), add_noise="disable", noise_seed=42, steps=20, cfg=3.5,
               sampler_name="euler", scheduler="simple", positive=pos, negative=neg, latent_image=s1.out(0),
               start_at_step=10, end_at_step=10000, return_with_leftover_noise="disable")
    stats_then_decode(g, tc_lo, k2.out(0), vae.out(0), save="video", prefix="dit-cache/wan22_t2v", fps=16.0,
                      title="Cache Stats (low noise)")


def hunyuan_video(g):
    unet = g.add("UNETLoader", unet_name="hunyuan_video_t2v_720p_bf16.safetensors", weight_dtype="default")
    clip = g.add("DualCLIPLoader", clip_name1="clip_l.safetensors", clip_name2="llava_llama3_fp8_scaled.safetensors",
                 type="hunyuan_video")
    vae = g.add("VAELoader", vae_name="hunyuan_video_vae_bf16.safetensors")
    ms = g.add("ModelSamplingSD3", model=unet.out(0), shift=7.0)
    tc = teacache(g, ms)
    text = encode(g, clip.out(0), "a cat walks on the grass, realistic style, daylight")
    pos = g.add("FluxGuidance", conditioning=text, guidance=6.0)
    neg = g.add("ConditioningZeroOut", conditioning=text)
    lat = g.add("EmptyHunyuanLatentVideo", width=848, height=480, length=73, batch_size=1)
    ks = ksampler(g, tc, pos.out(0), neg.out(0), lat.out(0), steps=30, cfg=1.0)
    stats_then_decode(g, tc, ks.out(0), vae.out(0), save="video", prefix="dit-cache/hunyuan_video", fps=24.0)


def ltxv(g):
    ck = g.add("CheckpointLoaderSimple", ckpt_name="ltx-video-2b-v0.9.5.safetensors")
    clip = g.add("CLIPLoader", clip_name="t5xxl_fp16.safetensors", type="ltxv")
    tc = teacache(g, ck)
    pos = encode(g, clip.out(0), "a woman with long brown hair smiles at the camera, soft window light, "
                                 "the camera slowly pushes in")
    neg = encode(g, clip.out(0), "low quality, worst quality, deformed, distorted, disfigured, motion smear, "
                                 "motion artifacts, fused fingers, bad anatomy, weird hand, ugly")
    cond = g.add("LTXVConditioning", positive=pos, negative=neg, frame_rate=25.0)
    lat = g.add("EmptyLTXVLatentVideo", width=768, height=512, length=97, batch_size=1)
    ks = ksampler(g, tc, cond.out("positive"), cond.out("negative"), lat.out(0), steps=30, cfg=3.0)
    stats_then_decode(g, tc, ks.out(0), ck.out("VAE"), save="video", prefix="dit-cache/ltxv", fps=24.0)


def sd35(g):
    ck = g.add("CheckpointLoaderSimple", ckpt_name="sd3.5_large.safetensors")
    clip = g.add("TripleCLIPLoader", clip_name1="clip_l.safetensors", clip_name2="clip_g.safetensors",
                 clip_name3="t5xxl_fp16.safetensors")
    ms = g.add("ModelSamplingSD3", model=ck.out("MODEL"), shift=3.0)
    tc = teacache(g, ms)
    pos = encode(g, clip.out(0), "a glass teapot with blooming tea flowers, studio photo, soft shadows")
    neg = encode(g, clip.out(0), NEG)
    lat = g.add("EmptySD3LatentImage", width=1024, height=1024, batch_size=1)
    ks = ksampler(g, tc, pos, neg, lat.out(0), steps=28, cfg=4.5, scheduler="sgm_uniform")
    stats_then_decode(g, tc, ks.out(0), ck.out("VAE"), prefix="dit-cache/sd35")


def lumina2(g):
    ck = g.add("CheckpointLoaderSimple", ckpt_name="lumina_2.safetensors")
    ms = g.add("ModelSamplingAuraFlow", model=ck.out("MODEL"), shift=6.0)
    tc = teacache(g, ms)
    pos = encode(g, ck.out("CLIP"), "You are an assistant designed to generate superior images with the superior "
                                    "degree of image-text alignment based on textual prompts or user prompts. "
                                    "<Prompt Start> a snowy mountain village at night, warm lights in windows")
    neg = encode(g, ck.out("CLIP"), "You are an assistant designed to generate low-quality images based on "
                                    "textual prompts <Prompt Start> blurry, worst quality, low quality")
    lat = g.add("EmptySD3LatentImage", width=1024, height=1024, batch_size=1)
    ks = ksampler(g, tc, pos, neg, lat.out(0), steps=25, cfg=4.0, sampler="res_multistep")
    stats_then_decode(g, tc, ks.out(0), ck.out("VAE"), prefix="dit-cache/lumina2")


def qwen_image(g):
    _t2i(g, "qwen_image", "qwen_image_fp8_e4m3fn.safetensors", "qwen_2.5_vl_7b_fp8_scaled.safetensors", "qwen_image",
         "qwen_image_vae.safetensors", 'a vintage shop sign that reads "Tea & Cache", hand-painted letters',
         steps=20, cfg=2.5, shift=3.1, neg="", width=1328, height=1328)


def hidream(g):
    _t2i(g, "hidream", "hidream_i1_full_fp16.safetensors",
         ("clip_l_hidream.safetensors", "clip_g_hidream.safetensors", "t5xxl_fp8_e4m3fn_scaled.safetensors",
          "llama_3.1_8b_instruct_fp8_scaled.safetensors"), None, "ae.safetensors",
         "an origami crane on a wooden desk, macro photo, shallow depth of field", steps=50, cfg=5.0,
         shift=3.0, sampling="ModelSamplingSD3", sampler="uni_pc")


def cosmos_predict2(g):
    _t2i(g, "cosmos_predict2", "cosmos_predict2_2B_t2i.safetensors", "oldt5_xxl_fp8_e4m3fn_scaled.safetensors",
         "cosmos", "wan_2.1_vae.safetensors",
         "a robot arm stacking colorful wooden blocks on a table, studio lighting", steps=35, cfg=4.0)


def clip_loader(g, files, clip_type=None):
    """The stock text-encoder loader for one to four files (Triple/Quadruple take no type)."""
    kinds = {1: "CLIPLoader", 2: "DualCLIPLoader", 3: "TripleCLIPLoader", 4: "QuadrupleCLIPLoader"}
    if isinstance(files, str):
        files = (files,)
    if len(files) == 1:
        kw = {"clip_name": files[0]}
    else:
        kw = {f"clip_name{i}": f for i, f in enumerate(files, 1)}
    if clip_type is not None:
        kw["type"] = clip_type
    return g.add(kinds[len(files)], **kw)


def encode_kandinsky5(g, clip, text):
    return g.add("CLIPTextEncodeKandinsky5", clip=clip, clip_l=text, qwen25_7b=text).out(0)


def _t2i(g, name, unet, clip, clip_type, vae, prompt, steps, cfg, shift=None, latent="EmptySD3LatentImage",
         sampler="euler", neg=NEG, guidance=None, sampling="ModelSamplingAuraFlow", width=1024, height=1024,
         length=None, encoder=encode, fps=None):
    """The text-to-image (or, with ``fps``, text-to-video) graph most families share: diffusion model,
    text encoder(s) (``clip``: one file or a tuple, see ``clip_loader``), optional shift (``sampling``
    node) and embedded guidance, TeaCache, KSampler, Cache Stats. ``neg=None`` zeroes the positive."""
    m = g.add("UNETLoader", unet_name=unet, weight_dtype="default")
    te = clip_loader(g, clip, clip_type)
    v = g.add("VAELoader", vae_name=vae)
    if shift is not None:
        m = g.add(sampling, model=m.out(0), shift=shift)
    tc = teacache(g, m)
    pos = encoder(g, te.out(0), prompt)
    if guidance is not None:
        pos = g.add("FluxGuidance", conditioning=pos, guidance=guidance).out(0)
    negative = g.add("ConditioningZeroOut", conditioning=pos).out(0) if neg is None else encoder(g, te.out(0), neg)
    size = {"width": width, "height": height} if length is None else {"width": width, "height": height,
                                                                        "length": length}
    lat = g.add(latent, batch_size=1, **size)
    ks = ksampler(g, tc, pos, negative, lat.out(0), steps=steps, cfg=cfg, sampler=sampler)
    if fps is None:
        stats_then_decode(g, tc, ks.out(0), v.out(0), prefix=f"dit-cache/{name}")
    else:
        stats_then_decode(g, tc, ks.out(0), v.out(0), save="video", prefix=f"dit-cache/{name}", fps=fps)


def flux2_dev(g):
    _t2i(g, "flux2_dev", "flux2_dev_fp8mixed.safetensors", "mistral_3_small_flux2_fp8.safetensors", "flux2",
         "flux2-vae.safetensors", "a hand-lettered bakery menu board, chalk on slate, warm morning light",
         steps=28, cfg=1.0, latent="EmptyFlux2LatentImage", neg=None, guidance=4.0)


def flux2_klein_edit(g):
    """Flux.2 klein (base, with CFG): the input image as a reference latent on both conditionings."""
    unet = g.add("UNETLoader", unet_name="flux-2-klein-base-4b.safetensors", weight_dtype="default")
    clip = g.add("CLIPLoader", clip_name="qwen_3_4b.safetensors", type="flux2")
    vae = g.add("VAELoader", vae_name="flux2-vae.safetensors")
    img = g.add("LoadImage", image="example.png")
    scaled = g.add("ImageScaleToTotalPixels", image=img.out(0), upscale_method="lanczos", megapixels=1.0)
    enc = g.add("VAEEncode", pixels=scaled.out(0), vae=vae.out(0))
    tc = teacache(g, unet)
    pos = g.add("ReferenceLatent", conditioning=encode(g, clip.out(0), "turn the scene into a snowy winter evening"),
                latent=enc.out(0))
    neg = g.add("ReferenceLatent", conditioning=encode(g, clip.out(0), ""), latent=enc.out(0))
    ks = ksampler(g, tc, pos.out(0), neg.out(0), enc.out(0), steps=28, cfg=4.0)
    stats_then_decode(g, tc, ks.out(0), vae.out(0), prefix="dit-cache/flux2_klein_edit")


def z_image(g):
    _t2i(g, "z_image", "z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors", "lumina2", "ae.safetensors",
         "a red tram crossing a rainy city street at dusk, reflections on wet cobblestones", steps=9, cfg=1.0,
         shift=3.0, sampler="res_multistep", neg=None)


def qwen_image_edit(g):
    """Qwen-Image-Edit-2511 (2509 the same graph): TextEncodeQwenImageEditPlus encodes the image into
    the prompt and attaches it as a reference latent."""
    unet = g.add("UNETLoader", unet_name="qwen_image_edit_2511_bf16.safetensors", weight_dtype="default")
    clip = g.add("CLIPLoader", clip_name="qwen_2.5_vl_7b_fp8_scaled.safetensors", type="qwen_image")
    vae = g.add("VAELoader", vae_name="qwen_image_vae.safetensors")
    img = g.add("LoadImage", image="example.png")
    scaled = g.add("FluxKontextImageScale", image=img.out(0))  # about 1 megapixel, as the model was trained
    ms = g.add("ModelSamplingAuraFlow", model=unet.out(0), shift=3.1)
    tc = teacache(g, ms)
    pos = g.add("TextEncodeQwenImageEditPlus", clip=clip.out(0), prompt="make the jacket bright yellow",
                vae=vae.out(0), image1=scaled.out(0))
    neg = g.add("TextEncodeQwenImageEditPlus", clip=clip.out(0), prompt="", vae=vae.out(0), image1=scaled.out(0))
    enc = g.add("VAEEncode", pixels=scaled.out(0), vae=vae.out(0))
    ks = ksampler(g, tc, pos.out(0), neg.out(0), enc.out(0), steps=40, cfg=4.0)
    stats_then_decode(g, tc, ks.out(0), vae.out(0), prefix="dit-cache/qwen_image_edit")


def chroma_radiance(g):
    _chroma(g, "chroma_radiance", "chroma-radiance.safetensors", "pixel_space", "EmptyChromaRadianceLatentImage",
            "a paper boat on a puddle after rain, macro photo", 30)


def longcat_image(g):
    _t2i(g, "longcat_image", "longcat_image_bf16.safetensors", "qwen_2.5_vl_7b_fp8_scaled.safetensors",
         "longcat_image", "ae.safetensors", 'a neon sign that reads "OPEN LATE" above a noodle bar', steps=50,
         cfg=4.5)


def ovis_image(g):
    _t2i(g, "ovis_image", "ovis_image_bf16.safetensors", "ovis_2.5.safetensors", "ovis", "ae.safetensors",
         'a minimalist concert poster with the title "NIGHT SIGNALS" in bold letters', steps=50, cfg=5.0)


def l2c_flux(g):
    """Learning-to-Cache schedule plus TeaCache on Flux: the schedule decides which layers reuse
    on each step, TeaCache skips whole steps; Cache Stats reports both."""
    unet = g.add("UNETLoader", unet_name="flux1-dev.safetensors", weight_dtype="default")
    clip = g.add("DualCLIPLoader", clip_name1="clip_l.safetensors", clip_name2="t5xxl_fp16.safetensors", type="flux")
    vae = g.add("VAELoader", vae_name="ae.safetensors")
    l2c = g.add("DitCache_L2CScheduleLoader", model=unet.out(0), schedule="flux1-dev_l2c.safetensors", threshold=0.1)
    g.add("PreviewAny", source=l2c.out(1))
    tc = teacache(g, l2c)
    text = encode(g, clip.out(0), "a red fox reading a newspaper in a cozy cafe, morning light, 35mm photo")
    pos = g.add("FluxGuidance", conditioning=text, guidance=3.5)
    neg = g.add("ConditioningZeroOut", conditioning=text)
    lat = g.add("EmptySD3LatentImage", width=1024, height=1024, batch_size=1)
    ks = ksampler(g, tc, pos.out(0), neg.out(0), lat.out(0), steps=28, cfg=1.0)
    stats_then_decode(g, tc, ks.out(0), vae.out(0), prefix="dit-cache/flux_l2c")


def flux_digits_compare(g):
    """The pack's own Flux digits model (ComfyUI's Flux class trained on 8x8 digits; runs on a CPU,
    nothing to download): the same seed sampled without and with TeaCache, both decoded by Digit
    Decode, Cache Stats on the cached run and Cache Compare of the two."""
    model = g.add("DitCache_FluxDigitsLoader", unet_name="dit_cache_flux_digits.safetensors")
    pos = g.add("DitCache_DigitConditioning", digits="0123456789")
    neg = g.add("ConditioningZeroOut", conditioning=pos.out(0))
    lat = g.add("EmptySD3LatentImage", width=32, height=32, batch_size=10)
    compare_graph(g, model, pos.out(0), neg.out(0), lat.out(0), steps=25, cfg=3.0,
                  to_image=lambda g, latent: g.add("DitCache_DigitDecode", samples=latent, scale=8).out(0),
                  prefix="dit-cache/flux_digits")


def flux_compare(g):
    """Flux dev, the same seed with and without TeaCache, compared by Cache Compare."""
    unet = g.add("UNETLoader", unet_name="flux1-dev.safetensors", weight_dtype="default")
    clip = g.add("DualCLIPLoader", clip_name1="clip_l.safetensors", clip_name2="t5xxl_fp16.safetensors", type="flux")
    vae = g.add("VAELoader", vae_name="ae.safetensors")
    ms = g.add("ModelSamplingFlux", model=unet.out(0), max_shift=1.15, base_shift=0.5, width=1024, height=1024)
    pos = g.add("FluxGuidance", conditioning=encode(g, clip.out(0), "a red fox reading a newspaper in a cozy cafe, "
                                                                     "morning light, 35mm photo"), guidance=3.5)
    neg = g.add("ConditioningZeroOut", conditioning=pos.out(0))
    lat = g.add("EmptySD3LatentImage", width=1024, height=1024, batch_size=1)
    compare_graph(g, ms, pos.out(0), neg.out(0), lat.out(0), steps=28, cfg=1.0, vae=vae.out(0),
                  prefix="dit-cache/flux_compare")


def hunyuan_video15(g):
    # shift 5.0: the shift LightX2V fitted 480p t2v at
    _t2i(g, "hunyuan_video15", "hunyuanvideo1.5_480p_t2v_fp16.safetensors",
         ("qwen_2.5_vl_7b_fp8_scaled.safetensors", "byt5_small_glyphxl_fp16.safetensors"), "hunyuan_video_15",
         "hunyuanvideo15_vae_fp16.safetensors", "a paper boat drifting down a rainy street gutter, close-up, cinematic",
         steps=50, cfg=6.0, shift=5.0, sampling="ModelSamplingSD3", neg="", latent="EmptyHunyuanVideo15Latent",
         width=848, height=480, length=61, fps=24.0)


def hunyuan_image21(g):
    _t2i(g, "hunyuan_image21", "hunyuanimage2.1_bf16.safetensors",
         ("qwen_2.5_vl_7b.safetensors", "byt5_small_glyphxl_fp16.safetensors"), "hunyuan_image",
         "hunyuan_image_2.1_vae_fp16.safetensors", "a bakery window at dawn with a chalkboard that reads \"fresh bread\"",
         steps=20, cfg=3.5, neg="", latent="EmptyHunyuanImageLatent", width=2048, height=2048)


def ltx2_av(g):
    """LTX-2: one sampler over the joined video + audio latent; TeaCache decides for both at once."""
    ck = g.add("CheckpointLoaderSimple", ckpt_name="ltx-2-19b-dev.safetensors")
    clip = g.add("LTXAVTextEncoderLoader", text_encoder="gemma_3_12B_it.safetensors",
                 ckpt_name="ltx-2-19b-dev.safetensors")
    avae = g.add("LTXVAudioVAELoader", ckpt_name="ltx-2-19b-dev.safetensors")
    tc = teacache(g, ck)
    pos = encode(g, clip.out(0), "a street musician plays a trumpet under a bridge, the sound echoes, warm evening light")
    neg = encode(g, clip.out(0), "low quality, worst quality, distorted, muffled audio")
    cond = g.add("LTXVConditioning", positive=pos, negative=neg, frame_rate=25.0)
    video = g.add("EmptyLTXVLatentVideo", width=768, height=512, length=97, batch_size=1)
    audio = g.add("LTXVEmptyLatentAudio", frames_number=97, frame_rate=25.0, batch_size=1, audio_vae=avae.out(0))
    av = g.add("LTXVConcatAVLatent", video_latent=video.out(0), audio_latent=audio.out(0))
    ks = ksampler(g, tc, cond.out("positive"), cond.out("negative"), av.out(0), steps=40, cfg=4.0)
    stats = g.add("DitCache_CacheStats", model=tc.out(0), passthrough=ks.out(0))
    sep = g.add("LTXVSeparateAVLatent", av_latent=stats.out(0))
    frames = g.add("VAEDecode", samples=sep.out("video_latent"), vae=ck.out("VAE"))
    sound = g.add("LTXVAudioVAEDecode", samples=sep.out("audio_latent"), audio_vae=avae.out(0))
    vid = g.add("CreateVideo", images=frames.out(0), fps=25.0, audio=sound.out(0))
    g.add("SaveVideo", video=vid.out(0), filename_prefix="dit-cache/ltx2")


def kandinsky5_video(g):
    _t2i(g, "kandinsky5_video", "kandinsky5lite_t2v_sft_5s.safetensors",
         ("qwen_2.5_vl_7b_fp8_scaled.safetensors", "clip_l.safetensors"), "kandinsky5",
         "hunyuan_video_vae_bf16.safetensors",
         "a hummingbird hovers at a red flower, slow motion, shallow depth of field", steps=50, cfg=5.0,
         shift=10.0, sampling="ModelSamplingSD3", neg=VIDEO_NEG, encoder=encode_kandinsky5,
         latent="EmptyHunyuanLatentVideo", width=768, height=512, length=121, fps=24.0)


def kandinsky5_image(g):
    _t2i(g, "kandinsky5_image", "kandinsky5lite_t2i.safetensors",
         ("qwen_2.5_vl_7b_fp8_scaled.safetensors", "clip_l.safetensors"), "kandinsky5_image", "ae.safetensors",
         "an isometric illustration of a tiny island with a lighthouse, pastel colors", steps=50, cfg=3.5,
         shift=3.0, sampling="ModelSamplingSD3", encoder=encode_kandinsky5)


def _wan_audio(g, encoder_file):
    enc = g.add("AudioEncoderLoader", audio_encoder_name=encoder_file)
    audio = g.add("LoadAudio", audio="speech.wav")
    return g.add("AudioEncoderEncode", audio_encoder=enc.out(0), audio=audio.out(0)).out(0)


def _wan_sound(g, name, unet, shift, node, encoder_file, length, steps, cfg, fps):
    """Wan sound-to-video (``node``: WanSoundImageToVideo, WanHuMoImageToVideo): the sound encoded by
    ``encoder_file`` and a reference image steer the video."""
    tc, pos, neg, vae = _wan_model(g, unet, shift=shift)
    ref = g.add("LoadImage", image="example.png")
    cond = g.add(node, positive=pos, negative=neg, vae=vae.out(0), width=832, height=480, length=length,
                 batch_size=1, audio_encoder_output=_wan_audio(g, encoder_file), ref_image=ref.out(0))
    ks = ksampler(g, tc, cond.out("positive"), cond.out("negative"), cond.out("latent"), steps=steps, cfg=cfg)
    stats_then_decode(g, tc, ks.out(0), vae.out(0), save="video", prefix=f"dit-cache/{name}", fps=fps)


def wan22_s2v(g):
    """Wan 2.2 S2V: the sound, a reference image and (optionally) a pose video steer the video."""
    _wan_sound(g, "wan22_s2v", "wan2.2_s2v_14B_bf16.safetensors", 8.0, "WanSoundImageToVideo",
               "wav2vec2_large_english_fp16.safetensors", length=77, steps=20, cfg=6.0, fps=16.0)


def wan21_humo(g):
    """HuMo: the sound and a reference image of the subject steer the video."""
    _wan_sound(g, "wan21_humo", "humo_17B_fp8_e4m3fn.safetensors", 5.0, "WanHuMoImageToVideo",
               "whisper_large_v3_fp16.safetensors", length=97, steps=30, cfg=5.0, fps=25.0)


def wan22_animate(g):
    """Wan 2.2 Animate: a reference character moved by a pose video and a face video."""
    tc, pos, neg, vae = _wan_model(g, "wan2.2_animate_14B_bf16.safetensors", shift=8.0)
    cv = g.add("CLIPVisionLoader", clip_name="clip_vision_h.safetensors")
    ref = g.add("LoadImage", image="example.png")
    cvo = g.add("CLIPVisionEncode", clip_vision=cv.out(0), image=ref.out(0), crop="none")
    pose = g.add("GetVideoComponents", video=g.add("LoadVideo", file="pose.mp4").out(0))
    face = g.add("GetVideoComponents", video=g.add("LoadVideo", file="face.mp4").out(0))
    anim = g.add("WanAnimateToVideo", positive=pos, negative=neg, vae=vae.out(0), width=832, height=480, length=77,
                 batch_size=1, clip_vision_output=cvo.out(0), reference_image=ref.out(0),
                 pose_video=pose.out("images"), face_video=face.out("images"))
    ks = ksampler(g, tc, anim.out("positive"), anim.out("negative"), anim.out("latent"), steps=20, cfg=1.0)
    # the reference image is the latent's first frame: drop it before decoding
    trim = g.add("TrimVideoLatent", title="Trim the reference frame", samples=ks.out(0), trim_amount=1)
    stats_then_decode(g, tc, trim.out(0), vae.out(0), save="video", prefix="dit-cache/wan22_animate", fps=16.0)


def wan21_fun_control(g):
    """Wan Fun-control: a control video (depth, pose, edges) in the conditioning latent."""
    tc, pos, neg, vae = _wan_model(g, "wan2.1_fun_control_1.3B_bf16.safetensors", shift=8.0)
    ctrl = g.add("GetVideoComponents", video=g.add("LoadVideo", file="control.mp4").out(0))
    fun = g.add("WanFunControlToVideo", positive=pos, negative=neg, vae=vae.out(0), width=832, height=480, length=81,
                batch_size=1, control_video=ctrl.out("images"))
    ks = ksampler(g, tc, fun.out("positive"), fun.out("negative"), fun.out("latent"), steps=30, cfg=6.0,
                  sampler="uni_pc")
    stats_then_decode(g, tc, ks.out(0), vae.out(0), save="video", prefix="dit-cache/wan21_fun_control", fps=16.0)


WORKFLOWS = {
    "flux_t2i_teacache": flux_t2i,
    "flux_kontext_edit_teacache": flux_kontext,
    "chroma_teacache": chroma,
    "wan21_t2v_teacache": wan21_t2v,
    "wan21_i2v_teacache": wan21_i2v,
    "wan22_t2v_a14b_teacache": wan22_t2v,
    "hunyuan_video_teacache": hunyuan_video,
    "ltxv_teacache": ltxv,
    "sd35_teacache": sd35,
    "lumina2_teacache": lumina2,
    "qwen_image_teacache": qwen_image,
    "hidream_teacache": hidream,
    "cosmos_predict2_teacache": cosmos_predict2,
    "flux_l2c_teacache": l2c_flux,
    "flux_compare_teacache": flux_compare,
    "flux_digits_teacache_compare": flux_digits_compare,
    "hunyuan_video15_teacache": hunyuan_video15,
    "hunyuan_image21_teacache": hunyuan_image21,
    "ltx2_av_teacache": ltx2_av,
    "kandinsky5_video_teacache": kandinsky5_video,
    "kandinsky5_image_teacache": kandinsky5_image,
    "wan22_s2v_teacache": wan22_s2v,
    "wan21_humo_teacache": wan21_humo,
    "wan22_animate_teacache": wan22_animate,
    "wan21_fun_control_teacache": wan21_fun_control,
    "flux2_dev_teacache": flux2_dev,
    "flux2_klein_edit_teacache": flux2_klein_edit,
    "z_image_teacache": z_image,
    "qwen_image_edit_teacache": qwen_image_edit,
    "chroma_radiance_teacache": chroma_radiance,
    "longcat_image_teacache": longcat_image,
    "ovis_image_teacache": ovis_image,
}
# The files are generated against the newest tested ComfyUI release (its stock node definitions:
# widget orders, output slots). Older releases load them too (tests/host/test_workflows.py);
# workflows for families that exist only in newer releases are listed here with that release.
GENERATED_WITH = "0.29.0"
NEEDS_RELEASE: dict[str, str] = {
    name: "0.29.0" for name in (
        "hunyuan_video15_teacache", "ltx2_av_teacache", "kandinsky5_video_teacache", "kandinsky5_image_teacache",
        "flux2_dev_teacache", "flux2_klein_edit_teacache", "z_image_teacache", "longcat_image_teacache",
        "ovis_image_teacache")}


def release_tuple(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split(".")[:3])


def available(name: str, version: str) -> bool:
    """Whether workflow ``name`` (no ``.json``) can be built and loaded in ComfyUI ``version``."""
    need = NEEDS_RELEASE.get(name)
    return need is None or release_tuple(version) >= release_tuple(need)


def build_all(infos: dict, version: str = GENERATED_WITH) -> dict[str, str]:
    """``{file name: JSON text}`` of every workflow buildable in ComfyUI ``version``."""
    out = {}
    for name, fn in WORKFLOWS.items():
        if not available(name, version):
            continue
        g = Graph(infos, name)
        fn(g)
        out[name + ".json"] = json.dumps(g.to_json(), indent=2, ensure_ascii=False) + "\n"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = ap.parse_args(argv)
    ns = _comfy()
    if ns.version != GENERATED_WITH:
        print(f"the workflows are generated with ComfyUI {GENERATED_WITH}, this is {ns.version}: "
              f"set COMFYUI_PATH to a {GENERATED_WITH} checkout (tests/hosts.py --setup-only gives its Python)")
        return 2
    infos, _ = object_info(ns)
    files = build_all(infos)
    changed = []
    for fname, text in files.items():
        path = HERE / fname
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            changed.append(fname)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    stale = sorted(p.name for p in HERE.glob("*.json") if p.name not in files)
    if args.check:
        if changed or stale:
            print("out of date:", ", ".join(changed + stale))
            return 1
        print(f"{len(files)} workflows up to date")
        return 0
    print(f"wrote {len(changed)} of {len(files)} workflows" + (f"; not generated here: {stale}" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
