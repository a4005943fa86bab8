"""Cache Stats node: the last run's report and plot for a patched model."""
from __future__ import annotations

from comfy_api.latest import io, ui

from .plot import stats_plot
from .runtime import get_holder


def report_for(model) -> tuple[str, list, dict | None, float | None]:
    holder = get_holder(model.model_options)
    if holder is None:
        return ("This model has no dit-cache node (TeaCache Patch or L2C Schedule Loader) applied.", [], None, None)
    thr = holder.teacache.rel_l1_thresh if holder.teacache is not None else None
    if holder.last_summary is None:
        return ("No sampling run has finished with this model yet.", [], None, thr)
    return holder.last_report, holder.last_records, holder.last_summary, thr


class CacheStats(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DitCache_CacheStats",
            display_name="Cache Stats",
            category="dit-cache",
            description="Reports what caching did in the last run of a patched model: evaluations computed and "
                        "reused per step and stream, relative L1 against the threshold, layers reused, speed-up.",
            inputs=[
                io.Model.Input("model", tooltip="The patched model that the sampler used."),
                io.AnyType.Input("passthrough", tooltip="Connect the sampler's output (LATENT, IMAGE, ...) so this "
                                                        "node runs after sampling; it is passed on unchanged."),
            ],
            outputs=[io.AnyType.Output(display_name="passthrough", tooltip="The passthrough input, unchanged."),
                     io.String.Output(display_name="report", tooltip="The text report of the last run."),
                     io.Image.Output(display_name="plot", tooltip="Per-step plot of the last run.")],
            is_output_node=True,
        )

    @classmethod
    def fingerprint_inputs(cls, model, passthrough):
        holder = get_holder(model.model_options)
        return holder.runs_finished if holder is not None else 0

    @classmethod
    def execute(cls, model, passthrough) -> io.NodeOutput:
        report, records, summary, thr = report_for(model)
        plot = stats_plot(records, thr, summary if summary else "dit-cache: no run yet")
        preview = ui.PreviewImage(plot, cls=cls).as_dict()
        payload = {"text": (report,), "images": preview["images"]}
        if summary is not None:
            payload["dit_cache"] = [{k: summary[k] for k in ("run_id", "reuse", "computed", "evaluations",
                                                             "layers_computed",
                                                             "layers_reused", "estimated_speedup",
                                                             "measured_speedup", "notes", "stream_names")}]
            payload["dit_cache"][0]["headline"] = report.splitlines()[0]
        return io.NodeOutput(passthrough, report, plot, ui=payload)
