"""L2C Schedule Loader node."""
from __future__ import annotations

import math

from comfy_api.latest import io

from ..cache_core.forecast import reuse_order
from ..cache_core.l2c import ScheduleError, load_any
from . import folders
from .adapters import detect
from .runtime import patch_model
from .teacache_node import reuse_input


# the only option while models/l2c_schedules/ is empty (an empty combo shows "undefined" in the page)
NO_SCHEDULE = "no schedule yet: learn one (L2C Learn Schedule) or put one in models/l2c_schedules"


def no_schedule_message() -> str:
    import folder_paths
    where = ", ".join(folder_paths.get_folder_paths(folders.SCHEDULES))
    return (f"No L2C schedule to load: {where} holds none. Make one with the L2C Learn Schedule node (it saves "
            "it there), or copy a .safetensors schedule or an official L2C router checkpoint (.pt / .pth) into "
            "that folder; then refresh the page (R) and pick it in L2C Schedule Loader's schedule list.")


def schedule_choices() -> list[str]:
    return folders.listing(folders.SCHEDULES) or [NO_SCHEDULE]


def load_schedule_for(adapter, name: str, threshold: float):
    if threshold is None or math.isnan(threshold) or math.isinf(threshold) or not (0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be between 0 and 1, got {threshold!r}; 0.1 is the paper's value")
    path = folders.resolve(folders.SCHEDULES, name)
    sched = load_any(path, threshold)  # never runs pickle code; raises ScheduleError with the reason
    sched.validate_for(adapter.name, adapter.n_blocks)
    if tuple(sched.branches) != tuple(adapter.branches):
        raise ScheduleError(f"{name}: schedule branches {list(sched.branches)} do not match what "
                            f"{adapter.display} exposes {list(adapter.branches)}; learn a schedule for this model")
    return sched


class L2CScheduleLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DitCache_L2CScheduleLoader",
            display_name="L2C Schedule Loader",
            category="dit-cache",
            description="Applies a Learning-to-Cache schedule (arXiv 2406.01733): at each step, the layers the "
                        "schedule marks as cached reuse their last computed residual.",
            inputs=[
                io.Model.Input("model", tooltip="The model to apply the schedule to; it must be the family and "
                                                "depth the schedule was learned for."),
                io.Combo.Input("schedule", options=schedule_choices(),
                               tooltip="A schedule in ComfyUI's models/l2c_schedules folder: a .safetensors file "
                                       "made by L2C Learn Schedule, or router logits. While the folder is empty "
                                       "the list says so; refresh the page (R) after adding a file."),
                io.Float.Input("threshold", default=0.1, min=0.0, max=1.0, step=0.01,
                               tooltip="For files holding router logits: a layer computes where sigmoid(logit) > "
                                       "threshold. Higher = more reuse. Ignored for finished schedules."),
                reuse_input("cached layer"),
            ],
            outputs=[io.Model.Output(tooltip="The model with the L2C schedule."),
                     io.String.Output(display_name="summary", tooltip="What the schedule computes and reuses.")],
        )

    @classmethod
    def execute(cls, model, schedule, threshold, reuse="cached") -> io.NodeOutput:
        reuse_order(reuse)  # a clear error before anything is loaded
        if schedule == NO_SCHEDULE:
            raise ValueError(no_schedule_message())
        adapter = detect(model)
        sched = load_schedule_for(adapter, schedule, threshold)
        patched, _ = patch_model(model, lambda m: adapter, l2c=sched, l2c_label=schedule, l2c_reuse=reuse,
                                 node="L2C Schedule Loader")
        return io.NodeOutput(patched, sched.describe())
