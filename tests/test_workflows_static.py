"""Structure of workflows/*.json without ComfyUI: valid litegraph JSON, consistent links, acyclic,
and our nodes' slots and widget counts as the current schemas define them (a static list; the
host test tests/host/test_workflows.py checks everything against the live definitions)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

FILES = sorted((Path(__file__).resolve().parents[1] / "workflows").glob("*.json"))

# node id -> (link input names, number of widgets_values)
OURS = {
    "DitCache_TeaCachePatch": (["model"], 10),
    "DitCache_L2CScheduleLoader": (["model"], 4),
    "DitCache_CacheStats": (["model", "passthrough"], 0),
    "DitCache_FluxDigitsLoader": ([], 1),
    "DitCache_DigitConditioning": ([], 1),
    "DitCache_DigitDecode": (["samples"], 1),
    "DitCache_CacheCompare": (["reference", "cached", "vae", "model"], 0),
}


def test_files_exist():
    assert len(FILES) >= 14


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_structure_and_links(path):
    wf = json.loads(path.read_text(encoding="utf-8"))
    for key in ("last_node_id", "last_link_id", "nodes", "links", "version"):
        assert key in wf
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert len(nodes) == len(wf["nodes"]), "duplicate node ids"
    for n in wf["nodes"]:
        for key in ("id", "type", "pos", "size", "inputs", "outputs", "widgets_values", "mode", "order"):
            assert key in n, f"node {n.get('id')} lacks {key}"
        assert len(n["pos"]) == 2 and len(n["size"]) == 2
    ids = [l[0] for l in wf["links"]]
    assert len(ids) == len(set(ids))
    parents = {i: set() for i in nodes}
    for lid, o, os_, t, ts, typ in wf["links"]:
        assert lid in nodes[o]["outputs"][os_]["links"]
        assert nodes[t]["inputs"][ts]["link"] == lid
        assert typ == nodes[o]["outputs"][os_]["type"]
        parents[t].add(o)
    for n in wf["nodes"]:
        for out in n["outputs"]:
            for lid in out["links"] or []:
                assert lid in ids
        for i in n["inputs"]:
            assert i["link"] is None or i["link"] in ids
    # acyclic, and "order" is a topological order
    order = {n["id"]: n["order"] for n in wf["nodes"]}
    for t, ps in parents.items():
        for p in ps:
            assert order[p] < order[t], f"node {p} must run before {t}"
    assert sorted(order.values()) == list(range(len(order)))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_our_nodes_match_schema(path):
    wf = json.loads(path.read_text(encoding="utf-8"))
    found = set()
    for n in wf["nodes"]:
        if n["type"] in OURS:
            found.add(n["type"])
            slots, n_widgets = OURS[n["type"]]
            assert [i["name"] for i in n["inputs"]] == slots
            assert len(n["widgets_values"]) == n_widgets
        elif n["type"].startswith("DitCache_"):
            pytest.fail(f"unknown node of ours: {n['type']}")
    assert "DitCache_TeaCachePatch" in found and "DitCache_CacheStats" in found


def _generator():
    import importlib.util
    spec = importlib.util.spec_from_file_location("dit_cache_make_workflows", FILES[0].parent / "make_workflows.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generator_table_rows():
    """One row of make_workflows.TABLE per file, each naming a builder that takes its parameters
    (the host test builds them against ComfyUI's own node definitions and compares bytes)."""
    import inspect
    gen = _generator()
    names = [w.file for w in gen.TABLE]
    assert len(names) == len(set(names)), "a workflow file has two rows"
    assert sorted(names) == [p.stem for p in FILES], "every workflows/*.json needs one TABLE row, and back"
    for w in gen.TABLE:
        try:
            inspect.signature(w.build).bind(None, **w.params)
        except TypeError as e:
            pytest.fail(f"{w.file}: {w.build.__name__} does not take these parameters: {e}")
        if w.needs is not None:
            assert gen.release_tuple(w.needs) > gen.release_tuple("0.3.64"), f"{w.file}: needs {w.needs}"
