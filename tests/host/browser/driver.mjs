// Browser driver for tests/host/test_browser.py (headless system Chromium via playwright-core).
//
//   node driver.mjs config.json
//
// config: {url, workflow (litegraph JSON object), searches: [display names], screenshot (path),
//          chromium (executable), timeout_s, user_data_dir, report_types, load_only (optional:
//          [{name, workflow}] loaded one after the other, each reported as the page holds it)}
// Prints progress lines on stderr and ONE JSON object (the observations) as the last line of
// stdout; test_browser.py makes the assertions.  Exits 0 whenever it could report, 2 on a
// driver failure (the JSON then has "error").
//
// Every wait is for a state of the page (a box open, the typed text in it, a node added, an
// event received, an image decoded); timeout_s only bounds the whole run against a hang. A step
// whose state does not come (a busy machine can drop a double-click or a key) is done again.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const T = (cfg.timeout_s ?? 60) * 1000;
const t0 = Date.now();
const deadline = t0 + T;
const left = () => Math.max(1000, deadline - Date.now());
// one try of a step that is retried when its state does not come
const TRY_MS = Math.max(15000, T / 15);
const log = (...a) => console.error(`[driver ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const out = { searches: {}, console_errors: [], page_errors: [], dit_cache_warnings: [], steps: [] };
const step = (s) => { out.steps.push(s); log(s); };

const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage", "--no-default-browser-check", "--metrics-recording-only"];

let context;
try {
  step("launch");
  context = await chromium.launchPersistentContext(cfg.user_data_dir, {
    executablePath: cfg.chromium, headless: true, args: ARGS,
    viewport: { width: 1600, height: 1000 }, deviceScaleFactor: 1, timeout: left(),
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(T); // each wait below names its own bound; this one is the run's
  page.on("pageerror", (e) => { out.page_errors.push(String(e?.message ?? e)); out.page_error_stacks = [...(out.page_error_stacks ?? []), String(e?.stack ?? "").slice(0, 2000)]; });
  page.on("console", (m) => {
    const t = m.text();
    if (t.includes("dit_cache")) out.dit_cache_warnings.push(`${m.type()}: ${t}`);
    if (m.type() === "error") out.console_errors.push(t.slice(0, 300));
  });

  step("open page");
  await page.goto(cfg.url, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => {
    const app = window.comfyAPI?.app?.app ?? window.app;
    return !!(app?.graph && app?.canvas && window.LiteGraph?.registered_node_types?.DitCache_CacheStats
      && app.extensions?.some((e) => e.name === "dit_cache.stats"));
  });
  // frontend 1.2x exposes the app as window.app; 1.4x only as window.comfyAPI.app.app
  await page.evaluate(() => { window.__ditApp = window.comfyAPI?.app?.app ?? window.app; });
  out.frontend_version = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null);
  out.extensions = await page.evaluate(() => window.__ditApp.extensions.map((e) => e.name));
  await page.keyboard.press("Escape"); // any first-run dialog

  // ---- node search: double-click the empty canvas, type the display name, pick the result
  // the search box reads "Search Nodes…" in frontend 1.2x and "Add a node…" in 1.4x
  const SEARCH_INPUT = 'input[placeholder^="Search Nodes"], input[placeholder^="Add a node"]';
  const input = page.locator(SEARCH_INPUT).first();
  for (const name of cfg.searches) {
    step(`search ${name}`);
    for (let attempt = 1; ; attempt++) {
      try {
        out.searches[name] = await addBySearch(page, input, name);
        break;
      } catch (e) {
        if (attempt >= 6 || Date.now() + TRY_MS > deadline) throw e;
        log(`search ${name}: ${String(e?.message ?? e).split("\n")[0]} (attempt ${attempt}), again`);
      }
    }
  }

  // ---- load our workflow and queue it
  step("load workflow");
  await page.evaluate(async (wf) => { await window.__ditApp.loadGraphData(wf); }, cfg.workflow);
  out.loaded_nodes = await page.evaluate(() => window.__ditApp.graph._nodes.map((n) => ({ id: n.id, type: n.type })));
  out.api_prompt = await page.evaluate(async () => (await window.__ditApp.graphToPrompt()).output);

  step("queue");
  await page.evaluate(() => {
    const api = window.comfyAPI?.api?.api ?? window.__ditApp.api;
    window.__ditEvents = [];
    for (const ev of ["execution_start", "executed", "execution_success", "execution_error", "execution_interrupted"]) {
      api.addEventListener(ev, (e) => window.__ditEvents.push({ type: ev, detail: JSON.parse(JSON.stringify(e.detail ?? null)) }));
    }
  });
  await page.evaluate(() => window.__ditApp.queuePrompt(0, 1));
  const done = await page.waitForFunction(
    () => window.__ditEvents.find((e) => ["execution_success", "execution_error", "execution_interrupted"].includes(e.type)),
    null, { timeout: left(), polling: 200 });
  out.final_event = await done.jsonValue();
  out.events = await page.evaluate(() => window.__ditEvents.map((e) => e.type));
  step(`finished: ${out.final_event.type}`);

  if (out.final_event.type === "execution_success") {
    step("wait for report, chart and badge");
    // the report lands in properties on onExecuted; the chart is an <img> the frontend loads
    await page.waitForFunction(() => {
      const g = window.__ditApp.graph;
      const stats = g._nodes.find((n) => n.type === "DitCache_CacheStats");
      const patch = g._nodes.find((n) => n.type === "DitCache_TeaCachePatch");
      const img = stats?.imgs?.[0];
      return stats?.properties?.dit_cache_report && patch?.properties?.dit_cache_badge
        && img && img.complete && img.naturalWidth > 0;
    }, null, { timeout: left(), polling: 200 }).catch((e) => { out.wait_error = String(e.message ?? e); });

    await page.evaluate(() => {
      const app = window.__ditApp;
      const ds = app.canvas.ds;
      ds.scale = 0.8; ds.offset = [10, 60];
      app.canvas.setDirty(true, true);
      app.canvas.draw(true, true);
    });
    // two animation frames: the canvas and the DOM widgets have been painted at the new scale
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

    // where the frontend draws Cache Stats' plot: the size of its drawImage call (graph units),
    // or of the <img> when a frontend shows it in the DOM
    out.plot_drawn = await page.evaluate(async () => {
      const app = window.__ditApp;
      const stats = app.graph._nodes.find((n) => n.type === "DitCache_CacheStats");
      const img = stats?.imgs?.[0];
      if (!img) return null;
      const proto = CanvasRenderingContext2D.prototype;
      const orig = proto.drawImage;
      let drawn = null;
      proto.drawImage = function (im, ...a) {
        if (im === img || (im?.src && im.src === img.src)) {
          const wh = a.length >= 8 ? [a[6], a[7]] : (a.length >= 4 ? [a[2], a[3]] : [im.naturalWidth, im.naturalHeight]);
          drawn = { w: wh[0], h: wh[1], ctx_scale: this.getTransform().a };
        }
        return orig.call(this, im, ...a);
      };
      // frontend 1.4x draws node images in a deferred pass on the next animation frame
      const frame = () => new Promise((res) => requestAnimationFrame(() => res()));
      try {
        app.canvas.setDirty(true, true); app.canvas.draw(true, true);
        await frame(); await frame();
      } finally { proto.drawImage = orig; }
      const r = img.isConnected ? img.getBoundingClientRect() : null;
      const rects = stats.imageRects ?? null; // litegraph's record of where it drew the node's images
      return { drawn, rects: rects ? JSON.parse(JSON.stringify(rects)) : null,
               dom: r && r.width > 0 ? { w: r.width, h: r.height } : null, natural_w: img.naturalWidth,
               natural_h: img.naturalHeight, canvas_scale: app.canvas.ds.scale, node_size: [...stats.size] };
    });

    out.ui = await page.evaluate(() => {
      const app = window.__ditApp;
      const g = app.graph;
      const stats = g._nodes.find((n) => n.type === "DitCache_CacheStats");
      const patch = g._nodes.find((n) => n.type === "DitCache_TeaCachePatch");
      const w = stats?.widgets?.find((x) => x.name === "dit_cache_report");
      const el = w?.inputEl ?? w?.element;
      const rect = el?.getBoundingClientRect?.();
      const img = stats?.imgs?.[0];
      // sample the badge's pixels on the canvas: a green rounded box above the title bar
      let badge_pixels = null;
      try {
        const text = patch.properties.dit_cache_badge;
        const titleH = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
        const c = app.canvas.canvas;
        const ctx2 = c.getContext("2d");
        ctx2.save(); ctx2.font = "11px sans-serif";
        const bw = ctx2.measureText(text).width + 12; ctx2.restore();
        const lx = patch.pos[0] + patch.size[0] - 4 - bw / 2, ly = patch.pos[1] - titleH - 4 - 8;
        const [cx, cy] = app.canvas.ds.convertOffsetToCanvas([lx, ly]);
        const sx = c.width / c.clientWidth;
        let green = 0, total = 0;
        const d = ctx2.getImageData(Math.round(cx * sx) - 20, Math.round(cy * sx) - 3, 40, 6).data;
        for (let i = 0; i < d.length; i += 4) {
          total++;
          if (d[i + 1] > d[i] + 40 && d[i + 1] > d[i + 2] + 25) green++;
        }
        badge_pixels = { green, total, at: [cx, cy] };
      } catch (e) { badge_pixels = { error: String(e) }; }
      return {
        report: stats?.properties?.dit_cache_report ?? null,
        widget_value: w?.value ?? null,
        widget_dom: el ? { tag: el.tagName, value: el.value ?? null, visible: !!(rect && rect.width > 0 && rect.height > 0 && el.isConnected) } : null,
        image: img ? { src: img.src, width: img.naturalWidth, height: img.naturalHeight } : null,
        node_outputs: window.__ditApp.nodeOutputs?.[String(stats?.id)] ?? null,
        badge: patch?.properties?.dit_cache_badge ?? null,
        badge_pixels,
        serialized_stats_properties: stats?.serialize?.().properties ?? null,
      };
    });
  }
  // ---- other nodes with a dit-cache report (cfg.report_types, e.g. Cache Compare): the report
  // in properties and its text box, and the image ComfyUI shows from the node's UI message
  if (out.final_event?.type === "execution_success" && cfg.report_types?.length) {
    step("wait for other reports");
    const reportOf = (types) => Object.fromEntries(types.map((t) => {
      const n = window.__ditApp.graph._nodes.find((x) => x.type === t);
      const w = n?.widgets?.find((x) => x.name === "dit_cache_report");
      const el = w?.inputEl ?? w?.element;
      const rect = el?.getBoundingClientRect?.();
      const img = n?.imgs?.[0];
      return [t, {
        report: n?.properties?.dit_cache_report ?? null, widget_value: w?.value ?? null,
        widget_visible: !!(rect && rect.width > 0 && rect.height > 0 && el.isConnected),
        image: img && img.complete && img.naturalWidth > 0 ? { src: img.src, width: img.naturalWidth, height: img.naturalHeight } : null,
        serialized_report: n?.serialize?.().properties?.dit_cache_report ?? null,
      }];
    }));
    await page.waitForFunction((types) => types.every((t) => {
      const n = window.__ditApp.graph._nodes.find((x) => x.type === t);
      const img = n?.imgs?.[0];
      return n?.properties?.dit_cache_report && img && img.complete && img.naturalWidth > 0;
    }), cfg.report_types, { timeout: left(), polling: 200 }).catch((e) => { out.reports_wait_error = String(e.message ?? e); });
    out.reports = await page.evaluate(reportOf, cfg.report_types);
  }
  step("screenshot");
  await page.screenshot({ path: cfg.screenshot });
  out.screenshot = cfg.screenshot;
  if (cfg.screenshot_reports && out.final_event?.type === "execution_success") {
    // Cache Stats and Cache Compare side by side at 100% zoom (the README's picture)
    step("screenshot of the reports");
    const clip = await page.evaluate(() => {
      const app = window.__ditApp;
      const g = app.graph;
      const stats = g._nodes.find((n) => n.type === "DitCache_CacheStats");
      const cmp = g._nodes.find((n) => n.type === "DitCache_CacheCompare");
      if (cmp && stats) cmp.pos = [stats.pos[0] + stats.size[0] + 40, stats.pos[1]];
      app.canvas.ds.scale = 1;
      app.canvas.ds.offset = [-(stats?.pos[0] ?? 0) + 80, -(stats?.pos[1] ?? 0) + 140];
      app.canvas.setDirty(true, true);
      app.canvas.draw(true, true);
      // the two nodes' box on the page (title bars included), a little margin around it
      const box = app.canvas.canvas.getBoundingClientRect();
      const titleH = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
      const nodes = [stats, cmp].filter(Boolean);
      const [x0, y0] = app.canvas.ds.convertOffsetToCanvas([stats.pos[0], stats.pos[1] - titleH]);
      const x1 = Math.max(...nodes.map((n) => app.canvas.ds.convertOffsetToCanvas([n.pos[0] + n.size[0], 0])[0]));
      const y1 = Math.max(...nodes.map((n) => app.canvas.ds.convertOffsetToCanvas([0, n.pos[1] + n.size[1]])[1]));
      const x = Math.max(0, box.left + x0 - 12), y = Math.max(0, box.top + y0 - 12);
      return { x, y, width: Math.min(innerWidth - x, x1 - x0 + 24), height: Math.min(innerHeight - y, y1 - y0 + 24) };
    });
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    await page.screenshot({ path: cfg.screenshot_reports, clip });
    out.screenshot_reports = cfg.screenshot_reports;
  }
  // ---- (after the screenshots: these replace the graph) workflows only loaded: what the page made of each node's widgets_values, and the prompt
  out.loaded = {};
  for (const { name, workflow } of cfg.load_only ?? []) {
    step(`load ${name}`);
    out.loaded[name] = await page.evaluate(async (wf) => {
      const app = window.__ditApp;
      await app.loadGraphData(wf);
      const nodes = app.graph._nodes.map((n) => ({
        id: n.id, type: n.type,
        widgets: (n.widgets ?? []).map((w) => [w.name, w.value ?? null]),
        widgets_values: n.serialize().widgets_values ?? [],
      }));
      return { nodes, api_prompt: (await app.graphToPrompt()).output };
    }, workflow);
  }
  out.elapsed_s = (Date.now() - t0) / 1000;
  console.log(JSON.stringify(out));
  await context.close();
  process.exit(0);
} catch (e) {
  out.error = String(e?.stack ?? e);
  out.elapsed_s = (Date.now() - t0) / 1000;
  try {
    const page = context?.pages()[0];
    if (page && cfg.screenshot) { await page.screenshot({ path: cfg.screenshot, timeout: 5000 }); out.screenshot = cfg.screenshot; }
  } catch {}
  console.log(JSON.stringify(out));
  try { await context?.close(); } catch {}
  process.exit(2);
}

// One node added through the search box, each stage waiting for its state: a clean canvas with no
// box open; the box open after a double-click; exactly the typed name in it and that name among
// the results; after a click on that result, a node in the graph and the box closed.
async function addBySearch(page, input, name) {
  const opts = { timeout: TRY_MS, polling: 100 };
  if (await input.isVisible()) {
    await page.keyboard.press("Escape");
    await input.waitFor({ state: "hidden", timeout: TRY_MS });
  }
  await page.evaluate(() => {
    const app = window.__ditApp;
    app.canvas.deselectAll?.();
    app.graph.clear();
    app.canvas.setDirty(true, true);
  });
  await page.waitForFunction(() => window.__ditApp.graph._nodes.length === 0, null, opts);
  // a double-click on the empty canvas opens the box. Right after the box closed the canvas does not
  // have the focus and drops the first double-click (frontend 1.49): click it first, as a user
  // would, let a frame pass, double-click, and double-click again while no box opens
  const box = await page.locator("#graph-canvas").boundingBox();
  const [x, y] = [box.x + box.width / 2, box.y + box.height / 2];
  for (let open = 1; ; open++) {
    await page.mouse.click(x, y);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    await page.mouse.dblclick(x, y);
    try {
      await input.waitFor({ state: "visible", timeout: 5000 });
      // still open a frame later (on a busy machine the click and the double-click can merge into
      // a double-click and a click, which closes the box again)
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      if (!(await input.isVisible())) throw new Error("the search box closed again");
      break;
    } catch (e) {
      if (open >= 8) throw e;
      log(`search box did not open (double-click ${open}), again`);
      await page.keyboard.press("Escape");
    }
  }
  await input.click({ timeout: TRY_MS });
  await input.press("Control+A", { timeout: TRY_MS });
  await page.keyboard.type(name, { delay: 10 }); // as a user types (fill() confused the box)
  // results: <li role="option" aria-label="NAME"> in frontend 1.2x; <div role="option"> whose first
  // text line is the display name in 1.4x
  const box_el = await input.elementHandle();
  await page.waitForFunction(([el, n]) => {
    const label = (e) => e.getAttribute("aria-label") ?? e.innerText.split("\n")[0].trim();
    return el.value === n && [...document.querySelectorAll('[role="option"]')].some((e) => label(e) === n);
  }, [box_el, name], opts);
  const labels = await page.locator('[role="option"]').evaluateAll(
    (els) => els.map((e) => e.getAttribute("aria-label") ?? e.innerText.split("\n")[0].trim()));
  // pick our result with the mouse, as a user does (Enter raced the result list's debounce on a
  // loaded machine and added nothing); the node added must be ours
  // the result list may still re-render (its debounce): mark the element that is our result now
  // and click that one; a re-render detaches it and this try is done again
  await page.evaluate((n) => {
    const label = (e) => e.getAttribute("aria-label") ?? e.innerText.split("\n")[0].trim();
    document.querySelectorAll("[data-dit-pick]").forEach((e) => e.removeAttribute("data-dit-pick"));
    [...document.querySelectorAll('[role="option"]')].find((e) => label(e) === n)?.setAttribute("data-dit-pick", "1");
  }, name);
  await page.locator("[data-dit-pick]").click({ timeout: TRY_MS });
  await page.waitForFunction(() => window.__ditApp.graph._nodes.length > 0, null, opts);
  await input.waitFor({ state: "hidden", timeout: TRY_MS });
  const types = await page.evaluate(() => window.__ditApp.graph._nodes.map((n) => n.type));
  const want = cfg.search_types?.[name];
  if (want && !(types.length === 1 && types[0] === want)) {
    throw new Error(`picking "${name}" added ${JSON.stringify(types)} (the list changed under the click)`);
  }
  // what the new node shows: its widgets' values (an empty combo shows "undefined")
  const widgets = await page.evaluate(() => window.__ditApp.graph._nodes.map(
    (n) => (n.widgets ?? []).map((w) => [w.name, w.value === undefined ? "<undefined>" : w.value])));
  return { options: labels, added: types, widgets };
}
