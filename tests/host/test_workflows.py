"""The example workflows in ``workflows/`` against a real ComfyUI and this pack.

For every ``workflows/*.json`` (ComfyUI UI / litegraph format):

* every node type exists: stock ones in ComfyUI's node registry (with comfy_extras loaded),
  ours in this pack's ``comfy_entrypoint()`` node list;
* links are consistent (each link id is in its origin output's ``links`` and is its target
  input's ``link``; slot types match the declared output / input types);
* required inputs are connected; input slot names are current input names of the node;
* ``widgets_values`` has exactly the node's widget inputs, in ``/object_info`` ``input_order``,
  each inside its declared range / combo options (file-list combos may name absent files), as
  this release's page assigns them (``make_workflows.loaded_widgets``: a V3 DynamicCombo's option
  widgets follow it; a stock widget that a newer release added keeps its default);
* every workflow patches its model with TeaCache Patch at the recommended threshold (-1) or
  an L2C schedule, and has a Cache Stats node whose model comes from a patched model;
* a workflow with Cache Compare samples the same seed, conditioning and latent on the unpatched
  model (its reference) and through TeaCache Patch (its cached input);
* ``workflows/make_workflows.py`` reproduces the files exactly (no hand edits drift) when run
  against the release it generates them with (``generated_with``); against the other releases,
  every file it can build there has the same nodes, links and loaded widget values (only stock
  output slots that a newer release added may differ).
* A workflow for a family that only newer releases have (``NEEDS_RELEASE``) is collected and
  checked on those releases only.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WF_DIR = REPO / "workflows"
OURS_PATCH = {"DitCache_TeaCachePatch", "DitCache_L2CScheduleLoader"}
COMPARE = "DitCache_CacheCompare"
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}


def _gen():
    spec = importlib.util.spec_from_file_location("dit_cache_make_workflows", WF_DIR / "make_workflows.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _this_release(files):
    """The workflows this ComfyUI release runs (``make_workflows.NEEDS_RELEASE``); the others are
    not collected here and are checked against the releases that have their model. All of them
    when ComfyUI cannot be imported (then every test here skips, saying why)."""
    try:
        import comfy_env
        version = comfy_env.import_comfy().version
        gen = _gen()
        return [p for p in files if gen.available(p.stem, version)]
    except Exception:
        return files


FILES = _this_release(sorted(WF_DIR.glob("*.json")))


@pytest.fixture(scope="module")
def gen():
    return _gen()


@pytest.fixture(scope="module")
def registry(comfy, gen):
    infos, ours = gen.object_info(comfy)
    return infos, ours


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_workflows():
    # every file on disk, whichever release runs this
    names = {p.stem for p in WF_DIR.glob("*.json")}
    for fam in ("flux_t2i", "flux_kontext", "chroma", "wan21_t2v", "wan21_i2v", "wan22", "hunyuan_video", "ltxv",
                "sd35", "lumina2", "qwen_image", "hidream", "cosmos_predict2", "l2c", "hunyuan_video15",
                "hunyuan_image21", "ltx2_av", "kandinsky5_video", "kandinsky5_image", "wan22_s2v", "wan21_humo",
                "wan22_animate", "wan21_fun_control", "flux2_dev", "flux2_klein_edit", "z_image", "qwen_image_edit",
                "chroma_radiance", "longcat_image", "ovis_image", "flux_digits", "ernie_image", "lens", "krea2",
                "ideogram4", "boogu", "anima", "joyimage", "mage_flow", "minimax_h3", "wan22_animate2"):
        assert any(fam in n for n in names), f"no workflow for {fam}"


def test_our_nodes_are_registered(registry):
    infos, ours = registry
    assert {"DitCache_TeaCachePatch", "DitCache_L2CScheduleLoader", "DitCache_CacheStats", COMPARE} <= ours
    assert infos["DitCache_TeaCachePatch"]["display_name"] == "TeaCache Patch"


def _compatible(out_type: str, in_type) -> bool:
    if not isinstance(in_type, str):
        in_type = "COMBO"
    if out_type == "*" or in_type == "*":
        return True
    return bool(set(out_type.split(",")) & set(in_type.split(",")))


def _check_value(gen, node_type, name, typ, opts, value, problems):
    where = f"{node_type}.{name}"
    choices = gen.combo_options(typ, opts)
    if choices is not None:
        if value in choices:
            return
        if gen.is_file_combo(name, opts) and isinstance(value, str) and value.lower().endswith(gen.FILE_EXTS):
            return  # a model / input file that is not installed here
        problems.append(f"{where}: {value!r} not among {choices[:12]}")
        return
    if typ == "INT":
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{where}: {value!r} is not an int")
            return
    elif typ == "FLOAT":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            problems.append(f"{where}: {value!r} is not a finite number")
            return
    elif typ == "STRING":
        if not isinstance(value, str):
            problems.append(f"{where}: {value!r} is not a string")
        return
    elif typ == "BOOLEAN":
        if not isinstance(value, bool):
            problems.append(f"{where}: {value!r} is not a boolean")
        return
    lo, hi = opts.get("min"), opts.get("max")
    if lo is not None and value < lo:
        problems.append(f"{where}: {value} < min {lo}")
    if hi is not None and value > hi:
        problems.append(f"{where}: {value} > max {hi}")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_workflow_against_registry(path, registry, gen):
    infos, ours = registry
    wf = _load(path)
    nodes = {n["id"]: n for n in wf["nodes"]}
    problems = []

    # node types
    for n in wf["nodes"]:
        if n["type"] not in infos:
            problems.append(f"node {n['id']}: unknown type {n['type']}")
    assert not problems, "\n".join(problems)
    assert any(n["type"] in ours for n in wf["nodes"])

    # links
    link_ids = set()
    for lid, o, os_, t, ts, typ in wf["links"]:
        assert lid not in link_ids, f"duplicate link id {lid}"
        link_ids.add(lid)
        src, dst = nodes.get(o), nodes.get(t)
        if src is None or dst is None:
            problems.append(f"link {lid}: missing node {o if src is None else t}")
            continue
        if os_ >= len(src["outputs"]) or lid not in (src["outputs"][os_].get("links") or []):
            problems.append(f"link {lid}: not in {src['type']} output {os_} links")
        if ts >= len(dst["inputs"]) or dst["inputs"][ts].get("link") != lid:
            problems.append(f"link {lid}: not the link of {dst['type']} input {ts}")
            continue
        declared_out = infos[src["type"]]["output"][os_]
        if typ != declared_out:
            problems.append(f"link {lid}: type {typ} but {src['type']} output {os_} is {declared_out}")
        in_name = dst["inputs"][ts]["name"]
        in_type, _ = gen.input_spec(infos[dst["type"]], in_name)
        if not _compatible(declared_out, in_type):
            problems.append(f"link {lid}: {src['type']} {declared_out} -> {dst['type']}.{in_name} {in_type}")
    for n in wf["nodes"]:
        for o in n["outputs"]:
            for lid in o.get("links") or []:
                if lid not in link_ids:
                    problems.append(f"{n['type']} output {o['name']}: dangling link {lid}")
        for i in n["inputs"]:
            if i.get("link") is not None and i["link"] not in link_ids:
                problems.append(f"{n['type']} input {i['name']}: dangling link {i['link']}")
    assert wf["last_link_id"] >= max(link_ids, default=0)
    assert wf["last_node_id"] >= max(nodes)

    # inputs and widgets
    for n in wf["nodes"]:
        info = infos[n["type"]]
        names = gen.ordered_inputs(info)
        required = info["input_order"].get("required", [])
        slots = {i["name"]: i for i in n["inputs"]}
        for s in n["inputs"]:
            if s["name"] not in names:
                problems.append(f"{n['type']}: input {s['name']!r} is not an input (has {names})")
            w = s.get("widget")
            if w and w.get("name") not in names:
                problems.append(f"{n['type']}: widget input {w!r} is not an input")
        linked_widgets = set()
        for name in names:
            typ, opts = gen.input_spec(info, name)
            if gen.is_widget(typ, opts):
                if name in slots and slots[name].get("link") is not None:
                    linked_widgets.add(name)
                continue
            if name in required and (name not in slots or slots[name].get("link") is None):
                problems.append(f"{n['type']} (node {n['id']}): required input {name!r} not connected")
        if n["type"] in ours:
            want = {nm for nm in names if not gen.is_widget(*gen.input_spec(info, nm))}
            if set(slots) - {nm for nm in names} or not want <= set(slots):
                problems.append(f"{n['type']}: input slots {sorted(slots)}, current schema {sorted(want)}")
        values = n.get("widgets_values", [])
        if isinstance(values, dict):
            problems.append(f"{n['type']}: widgets_values as a dict is not supported here")
            continue
        # as this release's page assigns them: in order, a widget past the end keeps its default
        # (a stock node that gained widgets here, e.g. SaveVideo's DynamicCombo in 0.33.0); our own
        # nodes' files are regenerated whenever their inputs change, so they must match exactly
        loaded, extra = gen.loaded_widgets(info, values)
        if extra or (n["type"] in ours and len(values) != len(loaded)):
            problems.append(f"{n['type']} (node {n['id']}): {len(values)} widget values, "
                            f"expected {len(loaded)} {[f'{a}:{k}' for a, k, *_ in loaded]}")
            continue
        for name, kind, typ, opts, value in loaded:
            if name in linked_widgets:
                continue
            if kind == "control":
                if value not in CONTROL_VALUES:
                    problems.append(f"{n['type']}.{name}: control_after_generate {value!r}")
            elif kind == "value":
                _check_value(gen, n["type"], name, typ, opts, value, problems)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def _upstream_patch(wf, node, slot_name="model"):
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {l[0]: l for l in wf["links"]}
    cur, seen = node, set()
    while True:
        slot = next((i for i in cur["inputs"] if i["name"] == slot_name or i["type"] == "MODEL"), None)
        if slot is None or slot.get("link") is None:
            return None
        up = nodes[links[slot["link"]][1]]
        if up["id"] in seen:
            return None
        seen.add(up["id"])
        if up["type"] in OURS_PATCH:
            return up
        cur, slot_name = up, "model"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_workflow_uses_cache_nodes(path, registry, gen):
    infos, _ = registry
    wf = _load(path)
    tcs = [n for n in wf["nodes"] if n["type"] == "DitCache_TeaCachePatch"]
    assert tcs, "no TeaCache Patch"
    layout = [nm for nm, k in gen.widget_layout(infos["DitCache_TeaCachePatch"]) if k == "value"]
    for n in tcs:
        vals = dict(zip(layout, n["widgets_values"]))
        assert vals["rel_l1_thresh"] == -1.0, "use the recommended threshold (-1)"
        assert vals["coefficients"] == "auto"
    stats = [n for n in wf["nodes"] if n["type"] == "DitCache_CacheStats"]
    assert stats, "no Cache Stats"
    for s in stats:
        assert _upstream_patch(wf, s) is not None, "Cache Stats' model is not a patched model"
        pt = next(i for i in s["inputs"] if i["name"] == "passthrough")
        assert pt.get("link") is not None, "Cache Stats' passthrough should carry the sampler output"
    samplers = [n for n in wf["nodes"] if n["type"] in ("KSampler", "KSamplerAdvanced")]
    assert samplers
    references = {_upstream_sampler(wf, c, "reference")["id"] for c in wf["nodes"] if c["type"] == COMPARE}
    for k in samplers:
        if k["id"] not in references:  # Cache Compare's reference is the uncached run
            assert _upstream_patch(wf, k) is not None, f"{k['type']} {k['id']} samples an unpatched model"
    if "a14b" in path.stem:  # two experts, each patched and sampled on its own
        assert len(tcs) == 2 and len([k for k in samplers if k["type"] == "KSamplerAdvanced"]) == 2
    if "l2c" in path.stem:
        assert any(n["type"] == "DitCache_L2CScheduleLoader" for n in wf["nodes"])


def _upstream_sampler(wf, node, slot_name):
    """The sampler whose output reaches ``node``'s input ``slot_name`` (through Cache Stats'
    passthrough, VAE Decode or any other node's first linked input)."""
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {l[0]: l for l in wf["links"]}
    cur, seen = node, set()
    while True:
        slot = next((i for i in cur["inputs"] if i["name"] == slot_name), None) if slot_name else \
            next((i for i in cur["inputs"] if i.get("link") is not None), None)
        assert slot is not None and slot.get("link") is not None, f"{cur['type']}.{slot_name} is not connected"
        up = nodes[links[slot["link"]][1]]
        assert up["id"] not in seen
        seen.add(up["id"])
        if up["type"] in ("KSampler", "KSamplerAdvanced"):
            return up
        cur, slot_name = up, ("passthrough" if up["type"] == "DitCache_CacheStats" else None)


COMPARES = [p for p in FILES if any(n["type"] == COMPARE for n in _load(p)["nodes"])]


def test_there_is_a_compare_workflow():
    assert COMPARES, "no workflow with Cache Compare"


@pytest.mark.parametrize("path", COMPARES, ids=[p.stem for p in COMPARES])
def test_compare_workflow_same_seed_with_and_without_cache(path):
    _check_compare(_load(path))


def test_compare_graph_with_a_decoder(registry, gen):
    """``compare_graph`` with ``to_image``: Cache Compare gets the two decoded IMAGEs and the
    cached picture is saved."""
    infos, _ = registry
    g = gen.Graph(infos, "compare_graph_test")
    unet = g.add("UNETLoader", unet_name="model.safetensors", weight_dtype="default")
    clip = g.add("CLIPLoader", clip_name="clip_l.safetensors", type="stable_diffusion")
    vae = g.add("VAELoader", vae_name="vae.safetensors")
    pos = gen.encode(g, clip.out(0), "a digit")
    neg = g.add("ConditioningZeroOut", conditioning=pos)
    lat = g.add("EmptySD3LatentImage", width=64, height=64, batch_size=1)
    decoders = []

    def to_image(graph, latent):
        decoders.append(graph.add("VAEDecode", samples=latent, vae=vae.out(0)))
        return decoders[-1].out(0)
    nodes = gen.compare_graph(g, unet, pos, neg.out(0), lat.out(0), steps=25, cfg=3.0, to_image=to_image)
    wf = g.to_json()
    _check_compare(wf)
    links = {l[0]: l for l in wf["links"]}
    cmp = next(n for n in wf["nodes"] if n["id"] == nodes["compare"].id)
    origins = {i["name"]: links[i["link"]][1] for i in cmp["inputs"] if i.get("link") is not None}
    assert {origins["reference"], origins["cached"]} == {d.id for d in decoders} and "vae" not in origins
    save = next(n for n in wf["nodes"] if n["type"] == "SaveImage")
    assert links[save["inputs"][0]["link"]][1] == origins["cached"]


def _check_compare(wf):
    """Cache Compare's reference is the same sampling as its cached input, on the unpatched model."""
    links = {l[0]: l for l in wf["links"]}
    for c in (n for n in wf["nodes"] if n["type"] == COMPARE):
        ref, cached = _upstream_sampler(wf, c, "reference"), _upstream_sampler(wf, c, "cached")
        assert ref["id"] != cached["id"]
        assert _upstream_patch(wf, ref) is None, "the reference samples a patched model"
        patch = _upstream_patch(wf, cached)
        assert patch is not None and patch["type"] == "DitCache_TeaCachePatch"
        assert (_upstream_patch(wf, c) or {}).get("id") == patch["id"], "Cache Compare's model is not the cached run's"
        assert ref["widgets_values"] == cached["widgets_values"]  # seed, steps, cfg, sampler, scheduler
        origin = lambda k, name: links[next(i for i in k["inputs"] if i["name"] == name)["link"]][1:3]  # noqa: E731
        for name in ("positive", "negative", "latent_image"):
            assert origin(ref, name) == origin(cached, name), name
        ref_model = origin(ref, "model")
        tc_model = links[next(i for i in patch["inputs"] if i["name"] == "model")["link"]][1:3]
        assert ref_model == tc_model, "the reference and TeaCache Patch sample different models"


def _comparable(wf: dict, gen, infos) -> dict:
    """What must agree between releases: nodes with their inputs, the widget values this release's
    page loads them with (defaults filled in where a file predates a widget) and links."""
    def widgets(n):
        loaded, extra = gen.loaded_widgets(infos[n["type"]], n.get("widgets_values") or [])
        return [(name, kind, value) for name, kind, _, _, value in loaded], extra
    return {"nodes": [(n["id"], n["type"], [(i["name"], i.get("link")) for i in n.get("inputs", [])],
                       widgets(n)) for n in wf["nodes"]],
            "links": wf["links"]}


def test_generator_reproduces_files(registry, gen, comfy):
    infos, _ = registry
    built = gen.build_all(infos, comfy.version)
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in FILES if gen.available(p.stem, comfy.version)}
    assert set(built) == set(on_disk), "run python workflows/make_workflows.py"
    exact = [k for k in built if gen.generated_with(k[:-len(".json")]) == comfy.version]
    stale = [k for k in exact if built[k] != on_disk[k]]
    stale += [k for k in built if k not in exact
              and _comparable(json.loads(built[k]), gen, infos) != _comparable(json.loads(on_disk[k]), gen, infos)]
    assert not stale, ("out of date (run python workflows/make_workflows.py with the ComfyUI release "
                       f"make_workflows.generated_with names): {stale}")
