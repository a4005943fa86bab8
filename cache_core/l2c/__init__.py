"""Learning-to-Cache (arXiv 2406.01733): static per-step layer caching schedules.

Never imports ComfyUI; host integration lives elsewhere.
"""

from .schedule import L2CSchedule, ScheduleError
from .routers import RouterFile, load_any, read_router_file, save_logits
from .apply import BranchCache
from .train import RouterBatch, RouterTrainable, RouterTrainer

__all__ = ["L2CSchedule", "ScheduleError", "RouterFile", "load_any", "read_router_file",
           "save_logits", "BranchCache", "RouterBatch", "RouterTrainable", "RouterTrainer"]
