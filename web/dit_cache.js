// dit-cache frontend extension (plain ES module, no build step).
//
// * Cache Stats: shows the last run's report in a read-only text box and keeps it in the
//   saved workflow (node.properties.dit_cache_report), so it survives save / load.
//   The plot is shown by ComfyUI itself from the `images` of the node's UI message; the node
//   grows to PLOT_MIN_SIZE when its first plot arrives, so the plot's text stays readable.
// * The patched-model node feeding Cache Stats' `model` input (TeaCache Patch, L2C Schedule
//   Loader, found by following MODEL links upstream) gets a small badge:
//   "computed C/N · S×" (evaluations computed of total, measured speed-up), stored in
//   node.properties.dit_cache_badge and drawn in onDrawForeground.
// * Cache Compare: its report (PSNR, SSIM, largest difference, run id) in the same kind of text
//   box, kept in the saved workflow the same way; ComfyUI shows its side-by-side image.
//
// Every hook CHAINS the existing one (onExecuted, onConfigure, onNodeCreated, onDrawForeground).
import { app } from "../../scripts/app.js";

const STATS_TYPE = "DitCache_CacheStats";
const COMPARE_TYPE = "DitCache_CacheCompare";
const REPORT_TYPES = new Set([STATS_TYPE, COMPARE_TYPE]);
const PATCH_TYPES = new Set(["DitCache_TeaCachePatch", "DitCache_L2CScheduleLoader"]);
const REPORT_PROP = "dit_cache_report";
const BADGE_PROP = "dit_cache_badge";
const WIDGET_NAME = "dit_cache_report";
const MAX_HOPS = 32;
const PLOT_MIN_SIZE = [560, 640]; // Cache Stats with its report and a readable plot

function chain(proto, name, fn) {
  const orig = proto[name];
  proto[name] = function (...args) {
    const r = orig?.apply(this, args);
    try {
      fn.apply(this, args);
    } catch (e) {
      console.warn(`[dit_cache] ${name} hook failed`, e);
    }
    return r;
  };
}

function first(v) {
  return Array.isArray(v) ? v[0] : v;
}

export function badgeText(s) {
  if (!s || typeof s !== "object") return null;
  const parts = [];
  if (Number.isFinite(s.computed) && Number.isFinite(s.evaluations)) {
    parts.push(`computed ${s.computed}/${s.evaluations}`);
  }
  if (Number.isFinite(s.measured_speedup) && s.measured_speedup > 0) {
    parts.push(`${s.measured_speedup.toFixed(2)}×`);
  } else if (Number.isFinite(s.estimated_speedup) && s.estimated_speedup > 0) {
    parts.push(`~${s.estimated_speedup.toFixed(2)}× est.`);
  }
  return parts.length ? parts.join(" · ") : null;
}

// The report text box: a multiline STRING widget when the frontend offers one, never sent
// with the prompt and never written into widgets_values (the text lives in properties).
function reportWidget(node) {
  let w = node.widgets?.find((x) => x.name === WIDGET_NAME);
  if (w) return w;
  const ComfyWidgets = globalThis.comfyAPI?.widgets?.ComfyWidgets;
  if (ComfyWidgets?.STRING) {
    w = ComfyWidgets.STRING(node, WIDGET_NAME, ["STRING", { multiline: true }], app).widget;
    if (w.inputEl) {
      w.inputEl.readOnly = true;
      w.inputEl.style.opacity = 0.85;
      w.inputEl.style.fontFamily = "monospace";
      w.inputEl.style.fontSize = "10px";
    }
  } else {
    w = node.addWidget("text", WIDGET_NAME, "", () => {}, {});
  }
  w.serialize = false; // not in widgets_values
  w.options = w.options || {};
  w.options.serialize = false; // not an input of the API prompt
  return w;
}

function showReport(node, text) {
  if (typeof text !== "string") return;
  node.properties = node.properties || {};
  node.properties[REPORT_PROP] = text;
  const w = reportWidget(node);
  w.value = text;
  if (w.inputEl) w.inputEl.value = text;
  const sz = node.computeSize?.();
  if (sz && node.size) node.setSize?.([Math.max(node.size[0], sz[0]), Math.max(node.size[1], sz[1])]);
  node.setDirtyCanvas?.(true, true);
}

function graphOf(node) {
  return node.graph ?? app.graph;
}

// Follow the MODEL link upstream from Cache Stats' `model` input to the nearest dit-cache
// patch node (through LoRA loaders, reroutes, ...), or the direct upstream node if none.
export function findPatchNode(node) {
  const graph = graphOf(node);
  if (!graph) return null;
  const getLink = (id) => (graph.links?.get ? graph.links.get(id) : graph.links?.[id]);
  let slot = node.inputs?.findIndex((i) => i.name === "model");
  if (slot == null || slot < 0) return null;
  let cur = node;
  let firstUp = null;
  const seen = new Set();
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    const linkId = cur.inputs?.[slot]?.link;
    if (linkId == null) break;
    const link = getLink(linkId);
    if (!link) break;
    const up = graph.getNodeById(link.origin_id);
    if (!up || seen.has(up.id)) break;
    seen.add(up.id);
    firstUp = firstUp ?? up;
    if (PATCH_TYPES.has(up.type) || (up.type?.startsWith("DitCache_") && !REPORT_TYPES.has(up.type))) return up;
    // keep walking through the node's MODEL (or first) input
    let next = up.inputs?.findIndex((i) => i.type === "MODEL" && i.link != null);
    if (next == null || next < 0) next = up.inputs?.findIndex((i) => i.link != null);
    if (next == null || next < 0) break;
    cur = up;
    slot = next;
  }
  return firstUp;
}

function setBadge(node, text) {
  if (!node) return;
  node.properties = node.properties || {};
  if (text) node.properties[BADGE_PROP] = text;
  else delete node.properties[BADGE_PROP];
  node.setDirtyCanvas?.(true, true);
}

function drawBadge(node, ctx) {
  const text = node.properties?.[BADGE_PROP];
  if (!text || node.flags?.collapsed || !ctx) return;
  const titleH = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  ctx.save();
  ctx.font = "11px sans-serif";
  const w = ctx.measureText(text).width + 12;
  const h = 16;
  const x = node.size[0] - w - 4;
  const y = -titleH - h - 4;
  ctx.fillStyle = "rgba(30, 110, 60, 0.9)";
  ctx.beginPath();
  if (ctx.roundRect) ctx.roundRect(x, y, w, h, 6);
  else ctx.rect(x, y, w, h);
  ctx.fill();
  ctx.fillStyle = "#fff";
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  ctx.fillText(text, x + 6, y + h / 2 + 0.5);
  ctx.restore();
}

app.registerExtension({
  name: "dit_cache.stats",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData?.name;
    if (REPORT_TYPES.has(name)) {
      chain(nodeType.prototype, "onExecuted", function (message) {
        const text = first(message?.text);
        if (typeof text === "string") showReport(this, text);
      });
      chain(nodeType.prototype, "onConfigure", function () {
        const text = this.properties?.[REPORT_PROP];
        if (typeof text === "string" && text) showReport(this, text);
      });
    }
    if (name === STATS_TYPE) {
      chain(nodeType.prototype, "onExecuted", function (message) {
        // the plot (nodes/plot.py) is drawn for about 540 px of width: a smaller node would shrink
        // its text below reading size, so grow the node once (never shrink what the user set)
        if (message?.images?.length && this.size && this.size[0] < PLOT_MIN_SIZE[0]) {
          this.setSize?.([PLOT_MIN_SIZE[0], Math.max(this.size[1], PLOT_MIN_SIZE[1])]);
        }
        const summary = first(message?.dit_cache);
        const up = findPatchNode(this);
        if (up) setBadge(up, badgeText(summary));
      });
    }
    if (name && name.startsWith("DitCache_") && !REPORT_TYPES.has(name)) {
      chain(nodeType.prototype, "onDrawForeground", function (ctx) {
        drawBadge(this, ctx);
      });
    }
  },
});
