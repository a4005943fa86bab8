"""Pure-PyTorch caching engine for diffusion transformers: TeaCache, Learning-to-Cache and run
statistics. Never imports ComfyUI; the ComfyUI nodes in ``nodes/`` are thin adapters over it."""
from .coefficients import CoefficientProfile, get_profile, published_profiles
from .stack import CacheController, StackHooks
from .stats import RunRecorder, make_run_id
from .steps import StepInfo, StepLocator
from .teacache import Decision, TeaCacheConfig, TeaCacheState, decide, forced_reason, rel_l1

__all__ = ["CoefficientProfile", "get_profile", "published_profiles", "CacheController", "StackHooks",
           "RunRecorder", "make_run_id", "StepInfo", "StepLocator", "Decision", "TeaCacheConfig",
           "TeaCacheState", "decide", "forced_reason", "rel_l1"]
__version__ = "0.1.0"
