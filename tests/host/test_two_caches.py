"""Two caches on one model (issue 11, part 3).

ComfyUI's own EasyCache and LazyCache with TeaCache Patch or an L2C schedule, in either order, are
refused with a message that names the node to remove (both would skip work on the same steps and
reuse each other's approximations). TeaCache Patch twice on one chain is one cache with the later
node's settings, said in the log and in every run's stats.
"""
from __future__ import annotations

import logging

import pytest
import torch

import tiny_models as tm
from helpers import holder_of, l2c, save_schedule, schedule_folder, summary, teacache
from pack import sub

STEPS = 6


@pytest.fixture(scope="module")
def flux(tiny_models):
    return tiny_models("flux")


def other(model, node):
    from comfy_extras.nodes_easycache import EasyCacheNode, LazyCacheNode
    cls = {"EasyCache": EasyCacheNode, "LazyCache": LazyCacheNode}[node]
    return cls.execute(model, 0.2, 0.15, 0.95, False).args[0]


def conflict():
    return sub("nodes.other_caches").CacheConflictError


@pytest.mark.parametrize("node", ["EasyCache", "LazyCache"])
def test_other_cache_before_teacache_is_refused(flux, node):
    with pytest.raises(conflict(), match=rf"TeaCache Patch cannot be applied to a model that ComfyUI's {node} "
                                         rf"node already caches.*Remove the {node} node, or remove TeaCache Patch"):
        teacache(other(flux.patcher, node), 0.4)


@pytest.mark.parametrize("node", ["EasyCache", "LazyCache"])
def test_other_cache_after_teacache_is_refused_at_sampling(flux, node):
    m = teacache(flux.patcher, 0.4)
    both = other(m, node)
    with pytest.raises(conflict(), match=rf"both TeaCache Patch \(dit-cache\) and ComfyUI's {node} node, applied "
                                         rf"after it.*Remove the {node} node, or remove TeaCache Patch"):
        tm.sample(flux, steps=STEPS, model=both)
    # the model without the other node still samples, as a fresh patch does
    assert torch.equal(tm.sample(flux, steps=STEPS, model=m),
                       tm.sample(flux, steps=STEPS, model=teacache(flux.patcher, 0.4)))
    assert holder_of(m)._active is None


def test_other_cache_with_l2c_is_refused_in_either_order(flux):
    n = sub("nodes.adapters").detect(flux.patcher).n_blocks
    with schedule_folder() as d:
        save_schedule(d, "two.safetensors", torch.ones(STEPS, n, 1, dtype=torch.bool), "flux")
        with pytest.raises(conflict(), match="L2C Schedule Loader cannot be applied.*Remove the EasyCache node"):
            l2c(other(flux.patcher, "EasyCache"), "two.safetensors")
        m, _ = l2c(flux.patcher, "two.safetensors")
        with pytest.raises(conflict(), match="L2C Schedule Loader \\(dit-cache\\) and ComfyUI's LazyCache"):
            tm.sample(flux, steps=STEPS, model=other(m, "LazyCache"))


def test_teacache_twice_is_one_cache_with_the_later_settings(flux, caplog):
    first = teacache(flux.patcher, 0.3)
    with caplog.at_level(logging.WARNING):
        twice = teacache(first, 1000.0)
    assert any("TeaCache Patch is applied twice" in r.getMessage() for r in caplog.records)
    out = tm.sample(flux, steps=STEPS, model=twice)
    assert torch.equal(out, tm.sample(flux, steps=STEPS, model=teacache(flux.patcher, 1000.0)))
    s = summary(twice)
    assert s["computed"] == 2 * len(s["streams"])  # the later node's threshold: first and last step only
    assert "t1000" in s["run_id"] and "t0.3" not in s["run_id"]
    assert any("replaced the earlier node's TC(t0.3" in n for n in s["notes"])
    # the earlier node's model, on its own branch, keeps its own settings and says nothing
    alone = tm.sample(flux, steps=STEPS, model=first)
    assert torch.equal(alone, tm.sample(flux, steps=STEPS, model=teacache(flux.patcher, 0.3)))
    assert not any("twice" in n for n in summary(first)["notes"])


def test_teacache_twice_keeps_the_l2c_schedule_between(flux):
    n = sub("nodes.adapters").detect(flux.patcher).n_blocks
    compute = torch.ones(STEPS, n, 1, dtype=torch.bool)
    compute[1:-1:2, 1:-1] = False
    with schedule_folder() as d:
        save_schedule(d, "between.safetensors", compute, "flux")
        m, _ = l2c(teacache(flux.patcher, 0.3), "between.safetensors")
        twice = teacache(m, 0.5)
        once, _ = l2c(flux.patcher, "between.safetensors")
        once = teacache(once, 0.5)
        assert torch.equal(tm.sample(flux, steps=STEPS, model=twice), tm.sample(flux, steps=STEPS, model=once))
    assert "L2C(between.safetensors" in summary(twice)["run_id"]
