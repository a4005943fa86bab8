"""``CacheController.replay``, the generic route's first-run check: the evaluation just computed,
run again with every block reused from the residual it stored, changes no state and records nothing."""
import torch

from cache_core.teacache import TeaCacheConfig
from cache_core.steps import StepLocator
from dit_reference.model import ReferenceConfig, ReferenceDiT
from dit_reference.sampling import make_controller


def test_replay_reuses_the_stored_residual_and_records_nothing():
    torch.manual_seed(0)
    m = ReferenceDiT(ReferenceConfig(width=64, depth=3, heads=2))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    m.eval()
    ctl = make_controller(m, TeaCacheConfig(0.1, "raw"))
    x, y = torch.randn(2, m.cfg.channels, m.cfg.image_size, m.cfg.image_size), torch.tensor([1, 2])
    t = torch.full((2,), 0.9)
    ran = []
    hook = lambda i, inp, run: ctl.block(i, inp, lambda a: ran.append(i) or run(a))  # noqa: E731
    ctl.recorder.start(4)
    ctl.begin(StepLocator([0.9, 0.6, 0.3, 0.1, 0.0]).locate(0.9), ["cond", "uncond"])
    with torch.no_grad():
        out = m(x, t, y, block_hook=hook)
        state = {k: (s.accumulated, s.prev_indicator) for k, s in ctl.tc_states.items()}
        again, reused = ctl.replay(lambda: m(x, t, y, block_hook=hook))
    assert reused and ran == [0, 1, 2]  # no block ran on the replay
    assert torch.allclose(again, out, rtol=1e-5, atol=1e-5)
    assert {k: (s.accumulated, s.prev_indicator) for k, s in ctl.tc_states.items()} == state
    ctl.end()
    assert len(ctl.recorder.records) == 2  # the computed evaluation of both streams, not the replay
