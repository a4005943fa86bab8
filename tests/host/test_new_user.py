"""Small things a new user meets first (issue 18, item 5): the TeaCache Patch ``model`` tooltip
names every family the pack supports (from the adapter registry, not a hand list), and L2C
Schedule Loader with an empty ``models/l2c_schedules/`` says what to do instead of offering
nothing (the page showed ``schedule: undefined``)."""
from __future__ import annotations

import pytest
import torch

from helpers import holder_of, l2c, save_schedule, schedule_folder
from pack import sub


def _input(node_cls, name):
    return next(i for i in node_cls.define_schema().inputs if i.id == name)


def test_model_tooltip_names_every_supported_family(comfy):
    adapters = sub("nodes.adapters")
    tip = _input(sub("nodes.teacache_node").TeaCachePatch, "model").tooltip
    names = adapters.supported_names()
    assert tip == adapters.model_tooltip()
    for name in names:
        assert name in tip, (name, tip)
    # the registry's classes, not a list frozen in 2025: LTX-2 and the other 2026 families appear
    # on the releases that have them
    assert len(names) == len(adapters.adapter_classes()) >= 10
    if any(c.name == "ltxav" for c in adapters.adapter_classes()):
        assert "LTX-2 (audio + video)" in tip


def test_empty_schedule_folder_says_what_to_do(tiny_models):
    node = sub("nodes.l2c_node")
    flux = tiny_models("flux")
    with schedule_folder() as folder:
        assert _input(node.L2CScheduleLoader, "schedule").options == [node.NO_SCHEDULE]
        with pytest.raises(ValueError) as e:
            l2c(flux.patcher, node.NO_SCHEDULE)
        msg = str(e.value)
        assert f"No L2C schedule to load: {folder} holds none" in msg
        assert "L2C Learn Schedule" in msg and "refresh the page" in msg
        assert holder_of(flux.patcher) is None

        # once a schedule is there, the list is the files alone
        blocks = len(flux.block_modules(flux.patcher.model.diffusion_model))
        save_schedule(folder, "mine.safetensors", torch.ones(4, blocks, 1, dtype=torch.bool), "flux")
        import folder_paths
        if hasattr(folder_paths, "filename_list_cache"):
            folder_paths.filename_list_cache.clear()
        assert _input(node.L2CScheduleLoader, "schedule").options == ["mine.safetensors"]
