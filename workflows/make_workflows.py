"""Generate the example workflows in this folder (ComfyUI UI / litegraph format, drag-and-drop
loadable): one per model family plus an L2C one and with/without-TeaCache comparisons
(``compare_graph``, reusable for any model).

    python workflows/make_workflows.py            # write workflows/*.json
    python workflows/make_workflows.py --check    # exit 1 if a file would change

``TABLE`` (at the end) has one row per file: the builder that draws the graph (``t2i``,
``image_edit``, ``wan``, ... each documents its parameters) and the row's models, prompts and
sampler settings; a new family is one row. Widget orders and defaults are read from the live node
definitions (the same data ComfyUI's ``/object_info`` serves: ``input`` + ``input_order``): stock
nodes from a ComfyUI checkout (``COMFYUI_PATH``, or the checkout holding this pack:
``devtools.comfy_host``; the files are made with ``GENERATED_WITH``), our nodes from this pack's
``comfy_entrypoint()``. Output is deterministic (no random ids, no timestamps).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Callable, NamedTuple

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
            return _spec(info["input"][group][name])
    raise KeyError(name)


# A V3 DynamicCombo (ComfyUI 0.33.0: SaveVideo's ``format``): a combo whose chosen option adds
# that option's inputs, named ``<combo>.<input>``, right after it (nested combos likewise).
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"


def combo_options(typ, opts) -> list | None:
    if isinstance(typ, (list, tuple)):
        return list(typ)
    if typ == "COMBO":
        return list(opts.get("options", []))
    if typ == DYNAMIC_COMBO:
        return [o["key"] for o in opts.get("options", [])]
    return None


def default_value(typ, opts):
    """The value the page gives a new widget: its default, else its first option."""
    if "default" in opts:
        return opts["default"]
    choices = combo_options(typ, opts)
    if not choices:
        raise ValueError("no default and no options")
    return choices[0]


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
    return (isinstance(typ, (list, tuple)) or typ in WIDGET_TYPES or typ == DYNAMIC_COMBO
            or opts.get("widgetType") in WIDGET_TYPES)


def ordered_inputs(info: dict) -> list[str]:
    order = info["input_order"]
    return list(order.get("required", [])) + list(order.get("optional", []))


def _spec(spec):
    return spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})


def widget_slots(info: dict, chosen=None) -> list[tuple[str, str, object, dict]]:
    """``[(name, kind, type, options)]`` in widgets_values order, as ComfyUI's page lays the
    widgets out; kind is "value", "control" (the control_after_generate entry after a seed) or
    "upload" (the image upload button value).

    A DynamicCombo's chosen option puts its own widgets (``format.codec``) right after it, in the
    option's required-then-optional order (frontend 1.49 ``dynamicWidgets.ts``); ``chosen(name,
    index, type, options)`` gives the combo's value at widgets_values position ``index`` (default:
    the combo's default)."""
    out = []

    def walk(specs, prefix):
        for name, (typ, opts) in specs:
            full = prefix + name
            if not is_widget(typ, opts):
                continue
            out.append((full, "value", typ, opts))
            index = len(out) - 1
            if opts.get("control_after_generate"):
                out.append((full, "control", typ, opts))
            if opts.get("image_upload") or opts.get("video_upload") or opts.get("audio_upload"):
                out.append((full, "upload", typ, opts))
            if typ == DYNAMIC_COMBO:
                key = chosen(full, index, typ, opts) if chosen else default_value(typ, opts)
                option = next((o.get("inputs") or {} for o in opts.get("options", []) if o["key"] == key), {})
                walk([(k, _spec(v)) for group in ("required", "optional")
                      for k, v in (option.get(group) or {}).items()], full + ".")

    walk([(name, input_spec(info, name)) for name in ordered_inputs(info)], "")
    return out


def widget_layout(info: dict) -> list[tuple[str, str]]:
    """``[(input_name, kind)]`` of :func:`widget_slots` with every DynamicCombo at its default."""
    return [(name, kind) for name, kind, _, _ in widget_slots(info)]


def loaded_widgets(info: dict, values: list) -> tuple[list[tuple[str, str, object, dict, object]], int]:
    """What the page makes of a node's saved ``widgets_values`` (assigned in order; a widget past
    the end keeps its default, as when a newer release adds one): ``([(name, kind, type, options,
    value)], number of values left over)``."""
    slots = widget_slots(info, lambda name, i, typ, opts: values[i] if i < len(values) else default_value(typ, opts))
    out = []
    for i, (name, kind, typ, opts) in enumerate(slots):
        if i < len(values):
            value = values[i]
        elif kind == "value":
            value = default_value(typ, opts)
        else:
            value = "fixed" if kind == "control" else "image"
        out.append((name, kind, typ, opts, value))
    return out, max(0, len(values) - len(slots))


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
            def value(name, typ, opts, n=n):
                return n.widgets[name] if name in n.widgets else default_value(typ, opts)
            slots = widget_slots(n.info, lambda name, i, typ, opts: value(name, typ, opts))
            for name, kind, typ, opts in slots:
                if kind == "value":
                    values.append(value(name, typ, opts))
                elif kind == "control":
                    values.append("fixed")
                else:
                    values.append("image")
            n_w = sum(1 for _, k, _, _ in slots if k != "control")
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
FOX = "a red fox reading a newspaper in a cozy cafe, morning light, 35mm photo"
# the negative prompt of a table row, when it is not a prompt: ConditioningZeroOut of the positive
# as the sampler gets it (after any guidance node), or of the encoded prompt (before guidance)
ZERO = "<ConditioningZeroOut of the positive>"
ZERO_TEXT = "<ConditioningZeroOut of the encoded prompt>"


def node(type_: str, **widgets) -> tuple[str, dict]:
    """A stock node and its widget values, as a table cell: ``node("ModelSamplingSD3", shift=8.0)``."""
    return type_, widgets


def output(x, slot=0):
    """A node's output (``(node, slot)``), or ``x`` itself when it is one already."""
    return x.out(slot) if isinstance(x, Node) else x


def teacache(g, model, title=None, rel_l1_thresh=-1.0, coefficients="auto"):
    return g.add("DitCache_TeaCachePatch", title=title, model=output(model),
                 rel_l1_thresh=rel_l1_thresh, start_percent=0.0, end_percent=1.0, coefficients=coefficients,
                 cache_device="main", max_consecutive_skips=0)


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


def encode_kandinsky5(g, clip, text):
    return g.add("CLIPTextEncodeKandinsky5", clip=clip, clip_l=text, qwen25_7b=text).out(0)


def encode_joyimage(g, clip, text):
    return g.add("TextEncodeJoyImageEdit", clip=clip, prompt=text).out(0)


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


def save(g, patched, latent, vae, prefix, fps=None, title=None):
    """Cache Stats, decode and save: an image, or with ``fps`` an animated WEBP."""
    return stats_then_decode(g, patched, latent, vae, save="image" if fps is None else "video",
                             prefix=f"dit-cache/{prefix}", fps=fps or 16.0, title=title)


# ------------------------------------------------------------------ builders
# A builder draws one kind of graph from the parameters of a table row. The order in which it adds
# nodes becomes the node and link ids of the file, so a change to a builder keeps that order (the
# generated files are compared byte for byte: tests/host/test_workflows.py).

def t2i(g, prefix, *, prompt, steps, cfg, unet=None, checkpoint=None, clip=None, clip_type=None,
        clip_options=None, vae=None, sampling=None, l2c=None, neg=NEG, guidance=None, encoder=encode,
        conditioning=None, latent=node("EmptySD3LatentImage", width=1024, height=1024), sampler="euler",
        scheduler="simple", fps=None, compare=False):
    """Text to image (or, with ``fps``, to video): the graph most families share. Its nodes, in
    the order they are added (their order in the file):

    * the model: ``unet`` (UNETLoader) or ``checkpoint`` (CheckpointLoaderSimple, which also gives
      the VAE and, without ``clip``, the text encoder);
    * ``clip``: one to four text-encoder files (``clip_loader``) of ``clip_type``;
      ``clip_options``: a node applied to them (T5TokenizerOptions);
    * ``vae``: VAELoader;
    * ``sampling``: a model-sampling node (the shift); ``l2c``: an L2C Schedule Loader node (and a
      Preview Any of its schedule); TeaCache Patch;
    * ``prompt`` through ``encoder`` (CLIPTextEncode), then ``guidance`` (FluxGuidance); ``neg``:
      a negative prompt, ``ZERO`` or ``ZERO_TEXT``; ``conditioning``: a node taking and giving
      positive/negative (LTXVConditioning);
    * ``latent`` (batch 1); KSampler (``steps``, ``cfg``, ``sampler``, ``scheduler``, seed 42);
      Cache Stats; VAE Decode; SaveImage, or with ``fps`` SaveAnimatedWEBP, as ``dit-cache/<prefix>``.

    With ``compare``: the TeaCache Patch, two samplers (without and with it), Cache Stats and Cache
    Compare of ``compare_graph`` instead of the one sampler."""
    ck = g.add("CheckpointLoaderSimple", ckpt_name=checkpoint) if checkpoint else None
    model = ck.out("MODEL") if ck else g.add("UNETLoader", unet_name=unet, weight_dtype="default").out(0)
    text = clip_loader(g, clip, clip_type).out(0) if clip else ck.out("CLIP")
    if clip_options:
        text = g.add(clip_options[0], clip=text, **clip_options[1]).out(0)
    decoder = g.add("VAELoader", vae_name=vae).out(0) if vae else ck.out("VAE")
    if sampling:
        model = g.add(sampling[0], model=model, **sampling[1]).out(0)
    if l2c:
        schedule = g.add(l2c[0], model=model, **l2c[1])
        g.add("PreviewAny", source=schedule.out(1))
        model = schedule.out(0)
    tc = None if compare else teacache(g, model)
    prompted = encoder(g, text, prompt)
    pos = g.add("FluxGuidance", conditioning=prompted, guidance=guidance).out(0) if guidance is not None else prompted
    if neg in (ZERO, ZERO_TEXT):
        negative = g.add("ConditioningZeroOut", conditioning=pos if neg == ZERO else prompted).out(0)
    else:
        negative = encoder(g, text, neg)
    if conditioning:
        cond = g.add(conditioning[0], positive=pos, negative=negative, **conditioning[1])
        pos, negative = cond.out("positive"), cond.out("negative")
    lat = g.add(latent[0], batch_size=1, **latent[1]).out(0)
    if compare:
        compare_graph(g, model, pos, negative, lat, steps=steps, cfg=cfg, sampler=sampler, scheduler=scheduler,
                      vae=decoder, prefix=f"dit-cache/{prefix}")
        return
    ks = ksampler(g, tc, pos, negative, lat, steps=steps, cfg=cfg, sampler=sampler, scheduler=scheduler)
    save(g, tc, ks.out(0), decoder, prefix, fps)


def image_edit(g, prefix, *, unet, clip, clip_type, vae, scale, prompt, steps, cfg, reference="latent",
               sampling=None, guidance=None, neg=""):
    """An input image edited by a prompt: ``example.png`` scaled by the ``scale`` node, then

    * ``reference="latent"`` (Flux Kontext, Flux.2 klein): the VAE-encoded image is the start
      latent and, by ReferenceLatent, part of the positive (then ``guidance``) and of a negative
      prompt (``neg=ZERO_TEXT``: the zeroed prompt instead);
    * ``reference="qwen_edit"`` (Qwen-Image-Edit): TextEncodeQwenImageEditPlus encodes the image
      into the positive and the negative prompt; the VAE-encoded image is the start latent."""
    model = g.add("UNETLoader", unet_name=unet, weight_dtype="default").out(0)
    text = clip_loader(g, clip, clip_type).out(0)
    decoder = g.add("VAELoader", vae_name=vae).out(0)
    img = g.add("LoadImage", image="example.png")
    scaled = g.add(scale[0], image=img.out(0), **scale[1]).out(0)
    enc = g.add("VAEEncode", pixels=scaled, vae=decoder).out(0) if reference == "latent" else None
    if sampling:
        model = g.add(sampling[0], model=model, **sampling[1]).out(0)
    tc = teacache(g, model)
    if reference == "latent":
        prompted = encode(g, text, prompt)
        pos = g.add("ReferenceLatent", conditioning=prompted, latent=enc).out(0)
        if guidance is not None:
            pos = g.add("FluxGuidance", conditioning=pos, guidance=guidance).out(0)
        if neg == ZERO_TEXT:
            negative = g.add("ConditioningZeroOut", conditioning=prompted).out(0)
        else:
            negative = g.add("ReferenceLatent", conditioning=encode(g, text, neg), latent=enc).out(0)
    else:
        pos, negative = (g.add("TextEncodeQwenImageEditPlus", clip=text, prompt=p, vae=decoder, image1=scaled).out(0)
                         for p in (prompt, neg))
        enc = g.add("VAEEncode", pixels=scaled, vae=decoder).out(0)
    ks = ksampler(g, tc, pos, negative, enc, steps=steps, cfg=cfg)
    save(g, tc, ks.out(0), decoder, prefix)


def start_image(name):
    """A Wan conditioning input: ``example.png`` as ``name``, with its CLIP vision encoding."""
    def add(g):
        cv = g.add("CLIPVisionLoader", clip_name="clip_vision_h.safetensors")
        img = g.add("LoadImage", image="example.png")
        cvo = g.add("CLIPVisionEncode", clip_vision=cv.out(0), image=img.out(0), crop="none")
        return {"clip_vision_output": cvo.out(0), name: img.out(0)}
    return add


def ref_image(name="ref_image"):
    """A Wan conditioning input: ``example.png`` as ``name``."""
    return lambda g: {name: g.add("LoadImage", image="example.png").out(0)}


def video_frames(name, file):
    """A Wan conditioning input: the frames of the video ``file`` as ``name``."""
    return lambda g: {name: g.add("GetVideoComponents", video=g.add("LoadVideo", file=file).out(0)).out("images")}


def sound(encoder_file):
    """A Wan conditioning input: ``speech.wav`` encoded by the audio encoder ``encoder_file``."""
    def add(g):
        enc = g.add("AudioEncoderLoader", audio_encoder_name=encoder_file)
        audio = g.add("LoadAudio", audio="speech.wav")
        encoded = g.add("AudioEncoderEncode", audio_encoder=enc.out(0), audio=audio.out(0))
        return {"audio_encoder_output": encoded.out(0)}
    return add


def _wan_text(g, clip_file="umt5_xxl_fp8_e4m3fn_scaled.safetensors"):
    clip = g.add("CLIPLoader", clip_name=clip_file, type="wan")
    vae = g.add("VAELoader", vae_name="wan_2.1_vae.safetensors")
    pos = encode(g, clip.out(0), "a corgi running along a beach at sunset, waves, slow motion, cinematic")
    neg = encode(g, clip.out(0), VIDEO_NEG)
    return pos, neg, vae


def wan(g, prefix, *, unet, shift, steps, cfg, sampler="euler", fps=16.0, latent=None, conditioning=None,
        inputs=(), trim_reference=False):
    """Wan (2.1, 2.2 single expert, and the models built on it): the model with its shift and
    TeaCache, the Wan text, then either ``latent`` (text to video) or a ``conditioning`` node
    (WanImageToVideo, WanSoundImageToVideo, ...; width/height/length/batch 1) that takes the
    prompts, the VAE and ``inputs`` (each adds its loaders and names the inputs it feeds, in
    order: ``start_image``, ``ref_image``, ``video_frames``, ``sound``) and gives the latent.
    ``trim_reference``: the reference image is the latent's first frame, dropped before decoding."""
    unet_node = g.add("UNETLoader", unet_name=unet, weight_dtype="default")
    tc = teacache(g, g.add("ModelSamplingSD3", model=unet_node.out(0), shift=shift))
    pos, neg, vae = _wan_text(g)
    if conditioning is None:
        lat = g.add(latent[0], batch_size=1, **latent[1])
        ks = ksampler(g, tc, pos, neg, lat.out(0), steps=steps, cfg=cfg, sampler=sampler)
    else:
        extra = {}
        for add in inputs:
            extra.update(add(g))
        cond = g.add(conditioning[0], positive=pos, negative=neg, vae=vae.out(0), batch_size=1, **conditioning[1],
                     **extra)
        ks = ksampler(g, tc, cond.out("positive"), cond.out("negative"), cond.out("latent"), steps=steps, cfg=cfg,
                      sampler=sampler)
    latent_out = ks.out(0)
    if trim_reference:
        latent_out = g.add("TrimVideoLatent", title="Trim the reference frame", samples=latent_out,
                           trim_amount=1).out(0)
    save(g, tc, latent_out, vae.out(0), prefix, fps)


def wan22_experts(g, prefix, *, high, low, shift, steps, switch, cfg, fps=16.0):
    """Wan 2.2 A14B: the ``high``-noise expert for the steps before ``switch``, the ``low``-noise
    expert after; each expert has its own TeaCache Patch and Cache Stats."""
    hi = g.add("UNETLoader", title="Wan 2.2 high-noise expert", unet_name=high, weight_dtype="default")
    lo = g.add("UNETLoader", title="Wan 2.2 low-noise expert", unet_name=low, weight_dtype="default")
    ms_hi = g.add("ModelSamplingSD3", model=hi.out(0), shift=shift)
    ms_lo = g.add("ModelSamplingSD3", model=lo.out(0), shift=shift)
    tc_hi = teacache(g, ms_hi, title="TeaCache Patch (high noise)")
    tc_lo = teacache(g, ms_lo, title="TeaCache Patch (low noise)")
    pos, neg, vae = _wan_text(g)
    lat = g.add("EmptyHunyuanLatentVideo", width=832, height=480, length=33, batch_size=1)
    k1 = g.add("KSamplerAdvanced", model=tc_hi.out(0), add_noise="enable", noise_seed=42, steps=steps, cfg=cfg,
               sampler_name="euler", scheduler="simple", positive=pos, negative=neg, latent_image=lat.out(0),
               start_at_step=0, end_at_step=switch, return_with_leftover_noise="enable")
    s1 = g.add("DitCache_CacheStats", title="Cache Stats (high noise)", model=tc_hi.out(0), passthrough=k1.out(0))
    k2 = g.add("KSamplerAdvanced", model=tc_lo.out(0), add_noise="disable", noise_seed=42, steps=steps, cfg=cfg,
               sampler_name="euler", scheduler="simple", positive=pos, negative=neg, latent_image=s1.out(0),
               start_at_step=switch, end_at_step=10000, return_with_leftover_noise="disable")
    save(g, tc_lo, k2.out(0), vae.out(0), prefix, fps, title="Cache Stats (low noise)")


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


def minimax_h3(g):
    """MiniMax-H3: one sampler over the joined video + audio latent; TeaCache decides for both at
    once. Its template guides without CFG (BasicGuider): here KSampler at cfg 1."""
    unet = g.add("UNETLoader", unet_name="minimax_h3_fl2va_pruned_int8_convrot.safetensors", weight_dtype="default")
    clip = g.add("CLIPLoader", clip_name="qwen3vl_32b_minimax_h3_nvfp4_awq.safetensors", type="minimax")
    vvae = g.add("VAELoader", vae_name="minimax_h3_video_vae_int8_convrot.safetensors")
    avae = g.add("VAELoader", vae_name="minimax_h3_audio_vae_fp32.safetensors")
    tc = teacache(g, unet)
    av = g.add("MiniMaxH3ImageToVideo", clip=clip.out(0), vae=vvae.out(0), width=1344, height=768, length=124,
               prompt="a street drummer plays on upturned buckets at dusk, the beat echoes off the walls")
    neg = g.add("ConditioningZeroOut", conditioning=av.out(0))
    ks = ksampler(g, tc, av.out(0), neg.out(0), av.out(1), steps=20, cfg=1.0, sampler="res_multistep")
    stats = g.add("DitCache_CacheStats", model=tc.out(0), passthrough=ks.out(0))
    frames = g.add("VAEDecode", samples=stats.out(0), vae=vvae.out(0))
    g.add("SaveAnimatedWEBP", images=frames.out(0), filename_prefix="dit-cache/minimax_h3", fps=24.0, lossless=False,
          quality=90, method="default")
    sound = g.add("VAEDecodeAudio", samples=stats.out(0), vae=avae.out(0))
    g.add("SaveAudio", audio=sound.out(0), filename_prefix="dit-cache/minimax_h3")


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


# ------------------------------------------------------------------ the table

class Workflow(NamedTuple):
    """One row: ``workflows/<file>.json`` is ``build(graph, **params)``; ``needs``: the first
    ComfyUI release that has the family (its nodes and model code), None for every tested one."""
    file: str
    build: Callable[..., None]
    params: dict
    needs: str | None = None


def row(file: str, build: Callable[..., None], needs: str | None = None, **params) -> Workflow:
    return Workflow(file, build, params, needs)


FLUX_DEV = dict(unet="flux1-dev.safetensors", clip=("clip_l.safetensors", "t5xxl_fp16.safetensors"), clip_type="flux",
                vae="ae.safetensors")
FLUX_SHIFT = node("ModelSamplingFlux", max_shift=1.15, base_shift=0.5, width=1024, height=1024)
CHROMA_TEXT = dict(clip="t5xxl_fp8_e4m3fn_scaled.safetensors", clip_type="chroma",
                   clip_options=node("T5TokenizerOptions", min_padding=1, min_length=0))
QWEN_VL = "qwen_2.5_vl_7b_fp8_scaled.safetensors"
WAN_SIZE = dict(width=832, height=480)
LUMINA2_SYSTEM = ("You are an assistant designed to generate superior images with the superior degree of image-text "
                  "alignment based on textual prompts or user prompts. <Prompt Start> ")

# One row per workflow file, in the order the files were first added. A new family is one row:
# a builder above and its parameters (the builder's docstring says what each one draws).
TABLE: list[Workflow] = [
    row("flux_t2i_teacache", t2i, prefix="flux", **FLUX_DEV, sampling=FLUX_SHIFT, prompt=FOX, guidance=3.5, neg=ZERO,
        steps=28, cfg=1.0),
    row("flux_kontext_edit_teacache", image_edit, prefix="flux_kontext",
        unet="flux1-dev-kontext_fp8_scaled.safetensors", clip_type="flux", vae="ae.safetensors",
        clip=("clip_l.safetensors", "t5xxl_fp8_e4m3fn_scaled.safetensors"), scale=node("FluxKontextImageScale"),
        prompt="make it a watercolor painting, keep the composition", guidance=2.5, neg=ZERO_TEXT, steps=20, cfg=1.0),
    row("chroma_teacache", t2i, prefix="chroma", unet="chroma-unlocked-v37.safetensors", **CHROMA_TEXT,
        vae="ae.safetensors", prompt="a lighthouse on a cliff during a storm, dramatic clouds, oil painting",
        steps=26, cfg=4.0, scheduler="beta"),
    row("wan21_t2v_teacache", wan, prefix="wan21_t2v", unet="wan2.1_t2v_1.3B_fp16.safetensors", shift=8.0,
        latent=node("EmptyHunyuanLatentVideo", **WAN_SIZE, length=33), steps=30, cfg=6.0, sampler="uni_pc"),
    row("wan21_i2v_teacache", wan, prefix="wan21_i2v", unet="wan2.1_i2v_480p_14B_fp16.safetensors", shift=8.0,
        conditioning=node("WanImageToVideo", **WAN_SIZE, length=33), inputs=(start_image("start_image"),),
        steps=20, cfg=6.0, sampler="uni_pc"),
    row("wan22_t2v_a14b_teacache", wan22_experts, prefix="wan22_t2v",
        high="wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", low="wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
        shift=8.0, steps=20, switch=10, cfg=3.5),
    row("hunyuan_video_teacache", t2i, prefix="hunyuan_video", unet="hunyuan_video_t2v_720p_bf16.safetensors",
        clip=("clip_l.safetensors", "llava_llama3_fp8_scaled.safetensors"), clip_type="hunyuan_video",
        vae="hunyuan_video_vae_bf16.safetensors", sampling=node("ModelSamplingSD3", shift=7.0),
        prompt="a cat walks on the grass, realistic style, daylight", guidance=6.0, neg=ZERO_TEXT,
        latent=node("EmptyHunyuanLatentVideo", width=848, height=480, length=73), steps=30, cfg=1.0, fps=24.0),
    row("ltxv_teacache", t2i, prefix="ltxv", checkpoint="ltx-video-2b-v0.9.5.safetensors",
        clip="t5xxl_fp16.safetensors", clip_type="ltxv",
        prompt="a woman with long brown hair smiles at the camera, soft window light, the camera slowly pushes in",
        neg="low quality, worst quality, deformed, distorted, disfigured, motion smear, motion artifacts, "
            "fused fingers, bad anatomy, weird hand, ugly",
        conditioning=node("LTXVConditioning", frame_rate=25.0),
        latent=node("EmptyLTXVLatentVideo", width=768, height=512, length=97), steps=30, cfg=3.0, fps=24.0),
    row("sd35_teacache", t2i, prefix="sd35", checkpoint="sd3.5_large.safetensors",
        clip=("clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors"),
        sampling=node("ModelSamplingSD3", shift=3.0),
        prompt="a glass teapot with blooming tea flowers, studio photo, soft shadows", steps=28, cfg=4.5,
        scheduler="sgm_uniform"),
    row("lumina2_teacache", t2i, prefix="lumina2", checkpoint="lumina_2.safetensors",
        sampling=node("ModelSamplingAuraFlow", shift=6.0),
        prompt=LUMINA2_SYSTEM + "a snowy mountain village at night, warm lights in windows",
        neg="You are an assistant designed to generate low-quality images based on textual prompts <Prompt Start> "
            "blurry, worst quality, low quality",
        steps=25, cfg=4.0, sampler="res_multistep"),
    row("qwen_image_teacache", t2i, prefix="qwen_image", unet="qwen_image_fp8_e4m3fn.safetensors", clip=QWEN_VL,
        clip_type="qwen_image", vae="qwen_image_vae.safetensors", sampling=node("ModelSamplingAuraFlow", shift=3.1),
        prompt='a vintage shop sign that reads "Tea & Cache", hand-painted letters', neg="",
        latent=node("EmptySD3LatentImage", width=1328, height=1328), steps=20, cfg=2.5),
    row("hidream_teacache", t2i, prefix="hidream", unet="hidream_i1_full_fp16.safetensors",
        clip=("clip_l_hidream.safetensors", "clip_g_hidream.safetensors", "t5xxl_fp8_e4m3fn_scaled.safetensors",
              "llama_3.1_8b_instruct_fp8_scaled.safetensors"), vae="ae.safetensors",
        sampling=node("ModelSamplingSD3", shift=3.0),
        prompt="an origami crane on a wooden desk, macro photo, shallow depth of field", steps=50, cfg=5.0,
        sampler="uni_pc"),
    row("cosmos_predict2_teacache", t2i, prefix="cosmos_predict2", unet="cosmos_predict2_2B_t2i.safetensors",
        clip="oldt5_xxl_fp8_e4m3fn_scaled.safetensors", clip_type="cosmos", vae="wan_2.1_vae.safetensors",
        prompt="a robot arm stacking colorful wooden blocks on a table, studio lighting", steps=35, cfg=4.0),
    # the L2C schedule decides which layers reuse on each step, TeaCache skips whole steps;
    # Cache Stats reports both
    row("flux_l2c_teacache", t2i, prefix="flux_l2c", **FLUX_DEV,
        l2c=node("DitCache_L2CScheduleLoader", schedule="flux1-dev_l2c.safetensors", threshold=0.1),
        prompt=FOX, guidance=3.5, neg=ZERO_TEXT, steps=28, cfg=1.0),
    row("flux_compare_teacache", t2i, prefix="flux_compare", **FLUX_DEV, sampling=FLUX_SHIFT, prompt=FOX,
        guidance=3.5, neg=ZERO, steps=28, cfg=1.0, compare=True),
    row("flux_digits_teacache_compare", flux_digits_compare),
    # shift 5.0: the shift LightX2V fitted 480p t2v at
    row("hunyuan_video15_teacache", t2i, "0.29.0", prefix="hunyuan_video15",
        unet="hunyuanvideo1.5_480p_t2v_fp16.safetensors", clip=(QWEN_VL, "byt5_small_glyphxl_fp16.safetensors"),
        clip_type="hunyuan_video_15", vae="hunyuanvideo15_vae_fp16.safetensors",
        sampling=node("ModelSamplingSD3", shift=5.0),
        prompt="a paper boat drifting down a rainy street gutter, close-up, cinematic", neg="",
        latent=node("EmptyHunyuanVideo15Latent", width=848, height=480, length=61), steps=50, cfg=6.0, fps=24.0),
    row("hunyuan_image21_teacache", t2i, prefix="hunyuan_image21", unet="hunyuanimage2.1_bf16.safetensors",
        clip=("qwen_2.5_vl_7b.safetensors", "byt5_small_glyphxl_fp16.safetensors"), clip_type="hunyuan_image",
        vae="hunyuan_image_2.1_vae_fp16.safetensors",
        prompt="a bakery window at dawn with a chalkboard that reads \"fresh bread\"", neg="",
        latent=node("EmptyHunyuanImageLatent", width=2048, height=2048), steps=20, cfg=3.5),
    row("ltx2_av_teacache", ltx2_av, "0.29.0"),
    row("kandinsky5_video_teacache", t2i, "0.29.0", prefix="kandinsky5_video",
        unet="kandinsky5lite_t2v_sft_5s.safetensors", clip=(QWEN_VL, "clip_l.safetensors"), clip_type="kandinsky5",
        vae="hunyuan_video_vae_bf16.safetensors", sampling=node("ModelSamplingSD3", shift=10.0),
        encoder=encode_kandinsky5, prompt="a hummingbird hovers at a red flower, slow motion, shallow depth of field",
        neg=VIDEO_NEG, latent=node("EmptyHunyuanLatentVideo", width=768, height=512, length=121), steps=50, cfg=5.0,
        fps=24.0),
    row("kandinsky5_image_teacache", t2i, "0.29.0", prefix="kandinsky5_image", unet="kandinsky5lite_t2i.safetensors",
        clip=(QWEN_VL, "clip_l.safetensors"), clip_type="kandinsky5_image", vae="ae.safetensors",
        sampling=node("ModelSamplingSD3", shift=3.0), encoder=encode_kandinsky5,
        prompt="an isometric illustration of a tiny island with a lighthouse, pastel colors", steps=50, cfg=3.5),
    # the sound, a reference image and (optionally) a pose video steer the video
    row("wan22_s2v_teacache", wan, prefix="wan22_s2v", unet="wan2.2_s2v_14B_bf16.safetensors", shift=8.0,
        conditioning=node("WanSoundImageToVideo", **WAN_SIZE, length=77),
        inputs=(ref_image(), sound("wav2vec2_large_english_fp16.safetensors")), steps=20, cfg=6.0),
    # HuMo: the sound and a reference image of the subject steer the video
    row("wan21_humo_teacache", wan, prefix="wan21_humo", unet="humo_17B_fp8_e4m3fn.safetensors", shift=5.0,
        conditioning=node("WanHuMoImageToVideo", **WAN_SIZE, length=97),
        inputs=(ref_image(), sound("whisper_large_v3_fp16.safetensors")), steps=30, cfg=5.0, fps=25.0),
    # a reference character moved by a pose video and a face video
    row("wan22_animate_teacache", wan, prefix="wan22_animate", unet="wan2.2_animate_14B_bf16.safetensors", shift=8.0,
        conditioning=node("WanAnimateToVideo", **WAN_SIZE, length=77),
        inputs=(start_image("reference_image"), video_frames("pose_video", "pose.mp4"),
                video_frames("face_video", "face.mp4")), steps=20, cfg=1.0, trim_reference=True),
    # a control video (depth, pose, edges) in the conditioning latent
    row("wan21_fun_control_teacache", wan, prefix="wan21_fun_control", unet="wan2.1_fun_control_1.3B_bf16.safetensors",
        shift=8.0, conditioning=node("WanFunControlToVideo", **WAN_SIZE, length=81),
        inputs=(video_frames("control_video", "control.mp4"),), steps=30, cfg=6.0, sampler="uni_pc"),
    row("flux2_dev_teacache", t2i, "0.29.0", prefix="flux2_dev", unet="flux2_dev_fp8mixed.safetensors",
        clip="mistral_3_small_flux2_fp8.safetensors", clip_type="flux2", vae="flux2-vae.safetensors",
        prompt="a hand-lettered bakery menu board, chalk on slate, warm morning light", guidance=4.0, neg=ZERO,
        latent=node("EmptyFlux2LatentImage", width=1024, height=1024), steps=28, cfg=1.0),
    # Flux.2 klein (base, with CFG): the input image as a reference latent on both conditionings
    row("flux2_klein_edit_teacache", image_edit, "0.29.0", prefix="flux2_klein_edit",
        unet="flux-2-klein-base-4b.safetensors", clip="qwen_3_4b.safetensors", clip_type="flux2",
        vae="flux2-vae.safetensors", scale=node("ImageScaleToTotalPixels", upscale_method="lanczos", megapixels=1.0),
        prompt="turn the scene into a snowy winter evening", steps=28, cfg=4.0),
    row("z_image_teacache", t2i, "0.29.0", prefix="z_image", unet="z_image_turbo_bf16.safetensors",
        clip="qwen_3_4b.safetensors", clip_type="lumina2", vae="ae.safetensors",
        sampling=node("ModelSamplingAuraFlow", shift=3.0),
        prompt="a red tram crossing a rainy city street at dusk, reflections on wet cobblestones", neg=ZERO,
        steps=9, cfg=1.0, sampler="res_multistep"),
    # Qwen-Image-Edit-2511 (2509 the same graph); FluxKontextImageScale: about 1 megapixel, as the
    # model was trained
    row("qwen_image_edit_teacache", image_edit, prefix="qwen_image_edit", unet="qwen_image_edit_2511_bf16.safetensors",
        clip=QWEN_VL, clip_type="qwen_image", vae="qwen_image_vae.safetensors", scale=node("FluxKontextImageScale"),
        reference="qwen_edit", sampling=node("ModelSamplingAuraFlow", shift=3.1),
        prompt="make the jacket bright yellow", steps=40, cfg=4.0),
    # pixel space: the "pixel_space" VAE and its own empty latent
    row("chroma_radiance_teacache", t2i, prefix="chroma_radiance", unet="chroma-radiance.safetensors", **CHROMA_TEXT,
        vae="pixel_space", prompt="a paper boat on a puddle after rain, macro photo",
        latent=node("EmptyChromaRadianceLatentImage", width=1024, height=1024), steps=30, cfg=4.0),
    row("longcat_image_teacache", t2i, "0.29.0", prefix="longcat_image", unet="longcat_image_bf16.safetensors",
        clip=QWEN_VL, clip_type="longcat_image", vae="ae.safetensors",
        prompt='a neon sign that reads "OPEN LATE" above a noodle bar', steps=50, cfg=4.5),
    row("ovis_image_teacache", t2i, "0.29.0", prefix="ovis_image", unet="ovis_image_bf16.safetensors",
        clip="ovis_2.5.safetensors", clip_type="ovis", vae="ae.safetensors",
        prompt='a minimalist concert poster with the title "NIGHT SIGNALS" in bold letters', steps=50, cfg=5.0),
    # the 2026 families
    row("ernie_image_teacache", t2i, "0.29.0", prefix="ernie_image", unet="ernie-image.safetensors",
        clip="ministral-3-3b.safetensors", clip_type="flux2", vae="flux2-vae.safetensors",
        prompt="a summer fashion infographic, three outfits on a pastel background, clean layout", neg="",
        latent=node("EmptyFlux2LatentImage", width=1024, height=1024), steps=20, cfg=4.0),
    row("lens_teacache", t2i, "0.29.0", prefix="lens", unet="lens_bf16.safetensors",
        clip="gpt_oss_20b_nvfp4.safetensors", clip_type="lens", vae="flux2-vae.safetensors",
        prompt="a cluster of wild cosmos flowers swaying in a summer breeze, soft backlight", neg="",
        latent=node("EmptyLatentImage", width=1440, height=1440), steps=20, cfg=5.0),
    row("krea2_teacache", t2i, "0.29.0", prefix="krea2", unet="krea2_turbo_fp8_scaled.safetensors",
        clip="qwen3vl_4b_fp8_scaled.safetensors", clip_type="krea2", vae="qwen_image_vae.safetensors",
        prompt="a surreal digital illustration of a lighthouse made of glass, dusk", neg=ZERO,
        latent=node("EmptyLatentImage", width=1024, height=1024), steps=8, cfg=1.0),
    # Ideogram 4's own template guides with a second, unconditional model (DualModelGuider); this
    # graph samples the conditional model alone
    row("ideogram4_teacache", t2i, "0.29.0", prefix="ideogram4", unet="ideogram4_fp8_scaled.safetensors",
        clip="qwen3vl_8b_fp8_scaled.safetensors", clip_type="ideogram4", vae="flux2-vae.safetensors",
        prompt='a streetwear poster with the words "TEA CACHE" in bold letters', neg=ZERO,
        latent=node("EmptyFlux2LatentImage", width=1024, height=1024), steps=20, cfg=1.0),
    row("boogu_teacache", t2i, "0.29.0", prefix="boogu", unet="boogu_image_turbo_fp8_scaled.safetensors",
        clip="qwen3vl_8b_fp8_scaled.safetensors", clip_type="boogu", vae="ae.safetensors",
        prompt="an abstract close-up portrait in bold brush strokes", neg=ZERO,
        latent=node("EmptyLatentImage", width=1024, height=1024), steps=4, cfg=1.0, sampler="lcm"),
    row("anima_teacache", t2i, "0.29.0", prefix="anima", unet="anima-base-v1.0.safetensors",
        clip="qwen_3_06b_base.safetensors", clip_type="stable_diffusion", vae="qwen_image_vae.safetensors",
        prompt="an anime portrait of a cyberpunk courier, monochrome, rain", neg="worst quality, low quality",
        latent=node("EmptyLatentImage", width=1024, height=1024), steps=30, cfg=4.0),
    row("joyimage_teacache", t2i, "0.29.0", prefix="joyimage", unet="joyai_image_edit_int8_convrot.safetensors",
        clip="qwen3vl_8b_joyimage_edit_int8_convrot.safetensors", clip_type="joyimage", vae="wan_2.1_vae.safetensors",
        encoder=encode_joyimage, prompt="a perfume bottle on a glacier, product photo", neg="", steps=40, cfg=4.0),
    row("mage_flow_teacache", t2i, "0.29.0", prefix="mage_flow", unet="mage_flow_int8_convrot.safetensors",
        clip="qwen3vl_4b_bf16.safetensors", clip_type="mage", vae="mage_flow_vae_bf16.safetensors",
        prompt="an analog film photograph of a wide mountain landscape", neg="",
        latent=node("EmptyFlux2LatentImage", width=1024, height=1024), steps=30, cfg=5.0),
    row("minimax_h3_teacache", minimax_h3, "0.33.0"),
    # a reference character moved by a pose video, through Animate 2's own pose branch
    row("wan22_animate2_teacache", wan, "0.33.0", prefix="wan22_animate2", unet="wan_animate_2_int8_convrot.safetensors",
        shift=5.0, conditioning=node("WanAnimate2ToVideo", **WAN_SIZE, length=81),
        inputs=(start_image("reference_image"), video_frames("pose_video", "pose.mp4")), steps=20, cfg=5.0,
        trim_reference=True),
]
WORKFLOWS: dict[str, Workflow] = {
    w.file: w for w in TABLE
}
# The files are generated against one tested ComfyUI release (its stock node definitions: widget
# orders, output slots); the other releases load them too (tests/host/test_workflows.py checks each
# file as that release's page loads it). Workflows for families that exist only in newer releases
# are listed here with that release, and are generated with it (``generated_with``).
GENERATED_WITH = "0.29.0"
NEEDS_RELEASE: dict[str, str] = {w.file: w.needs for w in TABLE if w.needs}


def release_tuple(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split(".")[:3])


def available(name: str, version: str) -> bool:
    """Whether workflow ``name`` (no ``.json``) can be built and loaded in ComfyUI ``version``."""
    need = NEEDS_RELEASE.get(name)
    return need is None or release_tuple(version) >= release_tuple(need)


def generated_with(name: str) -> str:
    """The ComfyUI release workflow ``name`` is generated with: ``GENERATED_WITH``, or the newer
    release the family needs."""
    need = NEEDS_RELEASE.get(name, GENERATED_WITH)
    return max(need, GENERATED_WITH, key=release_tuple)


def build_all(infos: dict, version: str = GENERATED_WITH) -> dict[str, str]:
    """``{file name: JSON text}`` of every workflow buildable in ComfyUI ``version``."""
    out = {}
    for w in TABLE:
        if not available(w.file, version):
            continue
        g = Graph(infos, w.file)
        w.build(g, **w.params)
        out[w.file + ".json"] = json.dumps(g.to_json(), indent=2, ensure_ascii=False) + "\n"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = ap.parse_args(argv)
    ns = _comfy()
    releases = sorted({generated_with(name) for name in WORKFLOWS}, key=release_tuple)
    if ns.version not in releases:
        print(f"the workflows are generated with ComfyUI {' and '.join(releases)}, this is {ns.version}: "
              f"set COMFYUI_PATH to such a checkout (tests/hosts.py --setup-only gives its Python)")
        return 2
    infos, _ = object_info(ns)
    files = {f: t for f, t in build_all(infos, ns.version).items() if generated_with(f[:-len(".json")]) == ns.version}
    changed = []
    for fname, text in files.items():
        path = HERE / fname
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            changed.append(fname)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    stale = sorted(p.name for p in HERE.glob("*.json") if p.stem not in WORKFLOWS)
    others = [r for r in releases if r != ns.version]
    elsewhere = f" (the others are generated with ComfyUI {' and '.join(others)})" if others else ""
    if args.check:
        if changed or stale:
            print("out of date:", ", ".join(changed + stale))
            return 1
        print(f"{len(files)} workflows up to date{elsewhere}")
        return 0
    print(f"wrote {len(changed)} of {len(files)} workflows{elsewhere}" + (f"; not generated by this script: {stale}" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
