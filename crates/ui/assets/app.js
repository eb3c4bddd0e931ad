// OFMon dashboard: plain JS, no build step. Pages are hash-routed:
//   #/             fleet
//   #/device/ID    one device (charts, events, actions)
//   #/settings     settings
// Everything shown comes from the JSON API under /api/.
"use strict";

const ofmon = (window.ofmon = { charts: {}, jobs: [] });
const main = document.getElementById("main");
const COLORS = ["#0b5394", "#b45309", "#6d28d9"];
const PHASE_COLORS = ["#0b5394", "#b45309", "#6d28d9"];

// ---------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(path, opts) {
  const r = await fetch(path, opts);
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const msg = (body && body.error) || `${r.status} ${r.statusText}`;
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return body;
}

const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const nf2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

function fmtW(w) {
  if (w === null || w === undefined) return "–";
  return Math.abs(w) >= 1000 ? `${nf2.format(w / 1000)} kW` : `${nf0.format(w)} W`;
}
function fmtWh(wh) {
  if (wh === null || wh === undefined) return "–";
  return Math.abs(wh) >= 1000 ? `${nf1.format(wh / 1000)} kWh` : `${nf0.format(wh)} Wh`;
}
function fmtBytes(b) {
  if (b >= 1048576) return `${nf2.format(b / 1048576)} MiB`;
  if (b >= 1024) return `${nf1.format(b / 1024)} KiB`;
  return `${nf0.format(b)} B`;
}
function fmtAge(s) {
  if (s === null || s === undefined) return "never";
  if (s < 90) return `${nf0.format(s)} s ago`;
  if (s < 5400) return `${nf0.format(s / 60)} min ago`;
  if (s < 172800) return `${nf1.format(s / 3600)} h ago`;
  return `${nf1.format(s / 86400)} d ago`;
}
function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${nf0.format(ms)} ms`;
  if (ms < 120000) return `${nf1.format(ms / 1000)} s`;
  if (ms < 7200000) return `${nf0.format(ms / 60000)} min`;
  return `${nf1.format(ms / 3600000)} h`;
}
function fmtTime(ms) {
  if (ms === null || ms === undefined) return "time unknown";
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
function deviceTitle(d) { return d.ssid || d.id; }
function layoutName(d) {
  const l = { single_phase: "single-phase", three_phase: "three-phase", three_phase_virtual: "three-phase (1 V, 3 CT)" };
  return `${l[d.layout] || d.layout || "unknown layout"}, ${d.cts} CT`;
}

function setNav(which) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === which) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function showError(where, e) {
  where.replaceChildren(el("p", { class: "error", role: "alert" }, e.message || String(e)));
}

// ---------------------------------------------------------------- jobs

// Runs an action and shows its live progress (server-sent events) in `box`.
// Resolves with the final event ("done" or "failed").
async function runAction(name, body, box, query = "") {
  const state = el("span", { class: "state" }, "starting…");
  const bar = el("progress", { max: 1, "aria-label": `${name} progress` });
  const msg = el("span", {}, "");
  const log = el("ul", { "aria-label": `${name} log` });
  const panel = el("div", { class: "job", "data-action": name, "data-state": "running", role: "status", "aria-live": "polite" },
    el("div", {}, el("strong", {}, `${name}: `), state, " ", msg), bar, log);
  box.prepend(panel);
  let started;
  try {
    // The firmware upload goes as raw bytes, everything else as JSON.
    started = body instanceof Blob
      ? await api(`/api/actions/${name}${query}`, {
        method: "POST",
        headers: { "Content-Type": "application/octet-stream" },
        body,
      })
      : await api(`/api/actions/${name}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body || {}),
      });
  } catch (e) {
    panel.dataset.state = "failed";
    state.textContent = "refused";
    state.classList.add("failed");
    msg.textContent = e.message;
    bar.remove();
    return { kind: "failed", message: e.message };
  }
  ofmon.jobs.push(started.job);
  return new Promise((resolve) => {
    const es = new EventSource(started.events);
    const onEvent = (ev) => {
      let d;
      try { d = JSON.parse(ev.data); } catch (_) { return; }
      if (d.kind === "progress") {
        state.textContent = "running";
        if (d.total) { bar.max = d.total; bar.value = d.done; } else { bar.removeAttribute("value"); }
        msg.textContent = d.message;
      } else if (d.kind === "log") {
        log.append(el("li", {}, d.message));
      } else {
        es.close();
        panel.dataset.state = d.kind;
        state.textContent = d.kind === "done" ? "done" : "failed";
        state.classList.add(d.kind);
        msg.textContent = d.message;
        bar.max = 1; bar.value = 1;
        resolve(d);
      }
    };
    for (const k of ["progress", "log", "done", "failed"]) es.addEventListener(k, onEvent);
    es.onerror = () => {
      if (panel.dataset.state === "running") {
        es.close();
        panel.dataset.state = "failed";
        state.textContent = "lost connection";
        state.classList.add("failed");
        resolve({ kind: "failed", message: "lost connection to the dashboard server" });
      }
    };
  });
}

// ---------------------------------------------------------------- fleet

function warningsList(ws) {
  if (!ws.length) return el("span", { class: "none" }, "none");
  return el("ul", { class: "warnings" }, ws.map((w) => el("li", {}, w)));
}

function fleetRow(d) {
  const storage = d.storage
    ? `${nf0.format(d.storage.fraction * 100)} % (${fmtBytes(d.storage.used_bytes)} of ${fmtBytes(d.storage.total_bytes)})`
    : "–";
  const clock = d.clock.state === "set"
    ? `set, ±${fmtMs(d.clock.uncertainty_ms)}`
    : d.clock.state;
  return el("tr", { "data-device-id": d.id },
    el("td", { "data-label": "Device" },
      el("div", {},
        el("a", { class: "ssid", href: `#/device/${encodeURIComponent(d.id)}` }, deviceTitle(d)),
        el("div", { class: "id" }, `id ${d.id}`),
        el("div", { class: "muted" }, layoutName(d)))),
    el("td", { "data-label": "ThingsBoard" },
      el("div", {}, d.name || "–"), el("div", { class: "muted" }, d.tb_server || "no server")),
    el("td", { "data-label": "Paired" },
      el("span", { class: `badge ${d.paired ? "ok" : "bad"}` }, d.paired ? "paired" : "not paired")),
    el("td", { "data-label": "Last collected" },
      el("div", {}, fmtAge(d.last_collect_age_s)),
      el("div", { class: "muted" }, d.last_collect_ms ? fmtTime(d.last_collect_ms) : "")),
    el("td", { "data-label": "Records", class: "num" }, `${nf0.format(d.records)}`),
    el("td", { "data-label": "Pending sync", class: "num" }, `${nf0.format(d.pending_sync)} readings`),
    el("td", { "data-label": "Device storage", class: "num" }, storage),
    el("td", { "data-label": "Clock" }, clock),
    el("td", { "data-label": "Warnings" }, warningsList(d.warnings)));
}

async function fleetPage() {
  setNav("fleet");
  const jobs = el("div", { id: "jobs" });
  const tableBox = el("div", { id: "fleet-box" }, el("p", { class: "muted" }, "Loading devices…"));
  const collectAll = el("button", { id: "collect-all", type: "button" }, "Collect all");
  const syncAll = el("button", { id: "sync-all", type: "button", class: "secondary" }, "Sync all to ThingsBoard");
  const pairForm = el("form", { class: "settings", id: "pair-form" },
    el("label", {}, "Device URL", el("span", { class: "help" }, "On its access point: http://10.0.0.1"),
      el("input", { name: "device", required: true, value: "http://10.0.0.1", inputmode: "url" })),
    el("label", {}, "ThingsBoard access token", el("input", { name: "token", required: true, autocomplete: "off" })),
    el("label", {}, "ThingsBoard device name (optional)", el("input", { name: "name" })),
    el("div", {}, el("button", { type: "submit" }, "Pair")));
  main.replaceChildren(
    el("h1", { tabindex: "-1" }, "Fleet"),
    el("div", { class: "toolbar", role: "group", "aria-label": "Fleet actions" }, collectAll, syncAll),
    jobs,
    tableBox,
    el("details", { class: "card" }, el("summary", {}, "Pair a new device"), pairForm));
  const load = async () => {
    try {
      const f = await api("/api/fleet");
      ofmon.fleet = f;
      if (!f.devices.length) {
        tableBox.replaceChildren(el("p", {}, "No devices yet. Pair one below, or run ", el("code", {}, "ofmon collect"), "."));
        return;
      }
      const head = ["Device", "ThingsBoard", "Paired", "Last collected", "Records", "Pending sync", "Device storage", "Clock", "Warnings"];
      tableBox.replaceChildren(el("table", { class: "fleet", id: "fleet-table" },
        el("caption", {}, `${f.devices.length} device(s) · updated ${new Date(f.now_ms).toLocaleTimeString()}`),
        el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, f.devices.map(fleetRow))));
    } catch (e) { showError(tableBox, e); }
  };
  collectAll.addEventListener("click", async () => {
    collectAll.disabled = true;
    await runAction("collect", { device: "all" }, jobs);
    collectAll.disabled = false;
    load();
  });
  syncAll.addEventListener("click", async () => {
    await runAction("sync", { device: "all" }, jobs);
    load();
  });
  pairForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fd = new FormData(pairForm);
    await runAction("pair", { device: fd.get("device"), token: fd.get("token"), name: fd.get("name") || null }, jobs);
    load();
  });
  await load();
  return setInterval(load, 15000);
}

// ---------------------------------------------------------------- device

function chartWidth(box) { return Math.max(280, box.clientWidth); }

function timeAxis() {
  return { label: "Time (local)", labelSize: 20, stroke: "#4a5560", grid: { stroke: "#e3e8ee" } };
}
// A y axis; `fmt` formats tick values (default: uPlot's, with as many
// decimals as the tick spacing needs).
function valueAxis(label, fmt, side) {
  const a = {
    label, labelSize: 22, side: side || 3, size: 64, stroke: "#4a5560",
    grid: { stroke: "#e3e8ee", show: side !== 1 }, scale: side === 1 ? "hz" : "y",
  };
  if (fmt) a.values = (u, splits) => splits.map(fmt);
  return a;
}

function makeCharts(d, box) {
  const powerBox = el("div", { class: "chart", id: "chart-power", role: "img", "aria-label": "Real power per CT in watts over time" });
  const voltBox = el("div", { class: "chart", id: "chart-voltage", role: "img", "aria-label": "Voltage in volts and frequency in hertz over time" });
  const energyBox = el("div", { class: "chart", id: "chart-energy", role: "img", "aria-label": "Daily energy imported and exported in kilowatt-hours" });
  const rangeBtns = el("div", { class: "toolbar", role: "group", "aria-label": "Time range" });
  const status = el("p", { class: "hint", "aria-live": "polite" }, "");
  box.append(
    el("section", { class: "card", "aria-labelledby": "h-power" },
      el("div", { class: "chart-head" }, el("h2", { id: "h-power" }, "Power per CT (W)"), rangeBtns),
      el("p", { class: "hint" }, "Drag across the chart to zoom in; use the buttons to zoom out. Negative power is export."),
      powerBox, status),
    el("section", { class: "card", "aria-labelledby": "h-volt" },
      el("h2", { id: "h-volt" }, "Voltage (V) and frequency (Hz)"), voltBox),
    el("section", { class: "card", "aria-labelledby": "h-energy" },
      el("h2", { id: "h-energy" }, "Daily energy (kWh per day)"), energyBox));

  let full = null; // [from, to] of all data, ms
  let range = null;
  let power = null, volt = null, energy = null;

  const sync = uPlot.sync(`dev-${d.id}`);
  const onSelect = (u) => {
    if (u.select.width < 4) return;
    const a = u.posToVal(u.select.left, "x") * 1000;
    const b = u.posToVal(u.select.left + u.select.width, "x") * 1000;
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    load(Math.floor(a), Math.ceil(b));
  };
  const cursor = { drag: { x: true, y: false, setScale: false }, sync: { key: sync.key } };

  async function load(from, to) {
    status.textContent = "Loading…";
    const q = new URLSearchParams({ points: String(Math.min(2000, chartWidth(powerBox) * 2)) });
    if (from !== undefined && from !== null) q.set("from", from);
    if (to !== undefined && to !== null) q.set("to", to);
    let s;
    try {
      s = await api(`/api/devices/${encodeURIComponent(d.id)}/series?${q}`);
    } catch (e) { status.textContent = e.message; return; }
    if (full === null && s.t.length) full = [s.from_ms, s.to_ms];
    range = [s.from_ms, s.to_ms];
    const pData = [s.t, ...s.power_w];
    const vData = [s.t, ...s.voltage_v, s.frequency_hz];
    if (!power) {
      const w = chartWidth(powerBox);
      power = new uPlot({
        width: w, height: 300, cursor, hooks: { setSelect: [onSelect] },
        scales: { x: { time: true } },
        series: [{ label: "Time" }, ...s.power_w.map((_, i) => ({
          label: `CT${i + 1} (W)`, stroke: COLORS[i], width: 1.5,
          value: (u, v) => fmtW(v),
        }))],
        axes: [timeAxis(), valueAxis("Power (W)", (v) => nf0.format(v))],
      }, pData, powerBox);
      volt = new uPlot({
        width: w, height: 240, cursor, hooks: { setSelect: [onSelect] },
        scales: { x: { time: true }, hz: { auto: true } },
        series: [{ label: "Time" },
          ...s.voltage_v.map((_, i) => ({
            label: s.voltage_v.length > 1 ? `V${i + 1} (V)` : "Voltage (V)", stroke: PHASE_COLORS[i], width: 1.5, scale: "y",
            value: (u, v) => (v === null ? "–" : `${nf1.format(v)} V`),
          })),
          { label: "Frequency (Hz)", stroke: "#1e6b2f", width: 1, scale: "hz", dash: [4, 3],
            value: (u, v) => (v === null ? "–" : `${nf2.format(v)} Hz`) }],
        axes: [timeAxis(), valueAxis("Voltage (V)"), valueAxis("Frequency (Hz)", null, 1)],
      }, vData, voltBox);
      ofmon.charts.power = power;
      ofmon.charts.voltage = volt;
    } else {
      power.setData(pData);
      volt.setData(vData);
    }
    const span = s.to_ms - s.from_ms;
    status.textContent = s.t.length
      ? `${fmtTime(s.from_ms)} – ${fmtTime(s.to_ms)} · ${nf0.format(s.records)} records · one point per ${fmtMs(s.bucket_ms)}${span < (full ? full[1] - full[0] : span) ? " (zoomed)" : ""}`
      : "No timed records in this range yet.";
  }

  const mk = (label, f) => el("button", { type: "button", class: "secondary", onclick: f }, label);
  rangeBtns.append(
    mk("6 h", () => full && load(full[1] - 6 * 3600e3, full[1])),
    mk("1 day", () => full && load(full[1] - 86400e3, full[1])),
    mk("Zoom out", () => {
      if (!range || !full) return load();
      const c = (range[0] + range[1]) / 2, h = range[1] - range[0];
      load(Math.max(full[0], c - h), Math.min(full[1], c + h));
    }),
    mk("All", () => load()));

  async function loadEnergy() {
    let days;
    try {
      days = await api(`/api/devices/${encodeURIComponent(d.id)}/energy?tz_offset_min=${-new Date().getTimezoneOffset()}`);
    } catch (e) { showError(energyBox, e); return; }
    const t = days.map((x) => x.day_start_s + 43200);
    const imp = days.map((x) => x.import_wh / 1000);
    const exp = days.map((x) => x.export_wh / 1000);
    const bars = (align) => uPlot.paths.bars({ size: [0.4, 60], align });
    // Replace the old chart only now: two reloads may overlap.
    if (energy) energy.destroy();
    energy = new uPlot({
      width: chartWidth(energyBox), height: 220,
      scales: { x: { time: true, range: (u, a, b) => [a - 43200, b + 43200] }, y: { range: (u, a, b) => [0, Math.max(b, 0.1) * 1.1] } },
      series: [{ label: "Day", value: (u, v) => (v === null ? "–" : new Date(v * 1000).toLocaleDateString()) },
        { label: "Import (kWh)", fill: "#0b5394", stroke: "#0b5394", paths: bars(-1), points: { show: false }, value: (u, v) => (v === null ? "–" : `${nf2.format(v)} kWh`) },
        { label: "Export (kWh)", fill: "#b45309", stroke: "#b45309", paths: bars(1), points: { show: false }, value: (u, v) => (v === null ? "–" : `${nf2.format(v)} kWh`) }],
      axes: [{ label: "Day (local)", labelSize: 20, stroke: "#4a5560", grid: { show: false },
        // One tick per bar (thinned out when there are many days).
        splits: (u) => { const d = u.data[0]; const step = Math.ceil(d.length / Math.max(1, Math.floor(u.bbox.width / devicePixelRatio / 70))); return d.filter((_, i) => i % step === 0); },
        values: (u, splits) => splits.map((v) => new Date(v * 1000).toLocaleDateString(undefined, { month: "short", day: "numeric" })) },
      valueAxis("Energy (kWh)")],
    }, [t, imp, exp], energyBox);
    ofmon.charts.energy = energy;
  }

  const onResize = () => {
    for (const [c, b] of [[power, powerBox], [volt, voltBox], [energy, energyBox]]) {
      if (c) c.setSize({ width: chartWidth(b), height: c.height });
    }
  };
  window.addEventListener("resize", onResize);
  return {
    ready: Promise.all([load(), loadEnergy()]),
    reload: () => Promise.all([load(range && range[0], range && range[1]), loadEnergy()]),
    destroy: () => {
      window.removeEventListener("resize", onResize);
      for (const c of [power, volt, energy]) if (c) c.destroy();
    },
  };
}

function tiles(d) {
  const t = (k, v) => el("li", { class: "tile" }, el("span", { class: "k" }, k), el("span", { class: "v" }, v));
  return el("ul", { class: "tiles", "aria-label": "Device state" },
    t("Last collected", fmtAge(d.last_collect_age_s)),
    t("Records stored here", nf0.format(d.records)),
    t("Pending sync", `${nf0.format(d.pending_sync)} readings`),
    t("Device storage", d.storage ? `${nf1.format(d.storage.fraction * 100)} % of ${fmtBytes(d.storage.total_bytes)}` : "–"),
    t("Device clock", d.clock.state === "set" ? `set, ±${fmtMs(d.clock.uncertainty_ms)}` : d.clock.state),
    t("Interval", d.interval_s ? `${nf0.format(d.interval_s)} s` : "–"),
    t("Firmware", d.firmware || "–"),
    t("ThingsBoard", d.name ? `${d.name}${d.tb_server ? " @ " + d.tb_server : ""}` : "not set"));
}

async function loadEvents(d, box) {
  let evs;
  try { evs = await api(`/api/devices/${encodeURIComponent(d.id)}/events?limit=100`); }
  catch (e) { showError(box, e); return; }
  if (!evs.length) { box.replaceChildren(el("p", { class: "muted" }, "No events yet.")); return; }
  box.replaceChildren(el("ol", { class: "timeline", id: "events" }, evs.map((e) =>
    el("li", { "data-kind": e.kind },
      el("time", e.ts_ms ? { datetime: new Date(e.ts_ms).toISOString() } : {},
        fmtTime(e.ts_ms), e.time_source === "estimated" ? " (est.)" : ""),
      el("span", {}, el("span", { class: "kind" }, e.kind.replace(/_/g, " ")), " — ", e.summary)))));
}

async function devicePage(id) {
  setNav("fleet");
  let d;
  try { d = await api(`/api/devices/${encodeURIComponent(id)}`); }
  catch (e) {
    main.replaceChildren(el("h1", { tabindex: "-1" }, "Device"), el("p", {}, el("a", { href: "#/" }, "← Fleet")));
    showError(main.appendChild(el("div")), e);
    return null;
  }
  const jobs = el("div", { id: "jobs" });
  const tileBox = el("div", {}, tiles(d));
  const warnBox = el("div", {}, d.warnings.length ? el("section", { "aria-label": "Warnings" }, warningsList(d.warnings)) : "");
  const chartsBox = el("div");
  const eventsBox = el("div", {}, el("p", { class: "muted" }, "Loading events…"));
  const btn = (id, label, cls) => el("button", { id, type: "button", class: cls }, label);
  const collectBtn = btn("collect-btn", "Collect now");
  const timeBtn = btn("time-btn", "Set clock", "secondary");
  const syncBtn = btn("sync-btn", "Sync to ThingsBoard", "secondary");
  const otaFile = el("input", { type: "file", id: "ota-file", accept: ".bin,.img,application/octet-stream" });
  const otaBtn = btn("ota-btn", "Upload firmware", "secondary");
  main.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← Fleet")),
    el("h1", { tabindex: "-1" }, deviceTitle(d), " ", el("span", { class: "id" }, `id ${d.id}`)),
    el("p", { class: "muted" }, `${layoutName(d)} · `, el("span", { class: `badge ${d.paired ? "ok" : "bad"}` }, d.paired ? "paired" : "not paired")),
    warnBox,
    el("div", { class: "toolbar", role: "group", "aria-label": "Device actions" }, collectBtn, timeBtn, syncBtn),
    jobs,
    tileBox,
    chartsBox,
    el("section", { class: "card", "aria-labelledby": "h-events" }, el("h2", { id: "h-events" }, "Events"), eventsBox),
    el("details", { class: "card" }, el("summary", {}, "Firmware update (OTA)"),
      el("p", { class: "hint" }, "Signed images only; the device refuses bad signatures, downgrades and other boards."),
      el("label", { for: "ota-file" }, "Firmware image "), otaFile, " ", otaBtn));
  const charts = makeCharts(d, chartsBox);
  ofmon.device = charts;
  loadEvents(d, eventsBox);
  const refresh = async () => {
    try {
      d = await api(`/api/devices/${encodeURIComponent(id)}`);
      tileBox.replaceChildren(tiles(d));
      warnBox.replaceChildren(d.warnings.length ? el("section", { "aria-label": "Warnings" }, warningsList(d.warnings)) : "");
    } catch (_) { /* keep the old view */ }
    await charts.reload();
    loadEvents(d, eventsBox);
  };
  const act = (b, name, body) => b.addEventListener("click", async () => {
    b.disabled = true;
    await runAction(name, body, jobs);
    b.disabled = false;
    refresh();
  });
  act(collectBtn, "collect", { device: d.id });
  act(timeBtn, "time", { device: d.id });
  act(syncBtn, "sync", { device: d.id });
  otaBtn.addEventListener("click", async () => {
    const f = otaFile.files && otaFile.files[0];
    if (!f) { otaFile.focus(); return; }
    otaBtn.disabled = true;
    await runAction("ota", f, jobs, `?device=${encodeURIComponent(d.id)}`);
    otaBtn.disabled = false;
    refresh();
  });
  await charts.ready;
  return () => charts.destroy();
}

// ---------------------------------------------------------------- settings

async function settingsPage() {
  setNav("settings");
  main.replaceChildren(el("h1", { tabindex: "-1" }, "Settings"));
  let s;
  try { s = await api("/api/settings"); } catch (e) { showError(main.appendChild(el("div")), e); return; }
  const v = s.settings;
  const result = el("p", { role: "status", "aria-live": "polite" });
  const form = el("form", { class: "settings", id: "settings-form" },
    el("label", {}, "ThingsBoard URL",
      el("span", { class: "help" }, "http(s)://host:port for HTTP, mqtt(s)://host:port for MQTT. Empty: no sync."),
      el("input", { name: "thingsboard_url", value: v.thingsboard_url || "", inputmode: "url", placeholder: "https://thingsboard.example.com" })),
    el("label", {}, "Transport",
      el("select", { name: "transport" },
        el("option", { value: "http", selected: v.transport === "http" }, "HTTP device API"),
        el("option", { value: "mqtt", selected: v.transport === "mqtt" }, "MQTT device API"))),
    el("label", {}, "Fleet key file",
      el("span", { class: "help" }, `The operator's fleet secret (64 hex digits). Empty: ${s.home}/fleet.key`),
      el("input", { name: "fleet_key_path", value: v.fleet_key_path || "" })),
    el("label", {}, "Collect automatically every (minutes)",
      el("span", { class: "help" }, "0 = only when asked. Devices keep months of data, so this can be rare."),
      el("input", { name: "collect_every_min", type: "number", min: 0, max: 1440, step: 1, value: v.collect_every_min })),
    el("div", {}, el("button", { type: "submit" }, "Save")),
    result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fd = new FormData(form);
    const body = {
      thingsboard_url: fd.get("thingsboard_url").trim() || null,
      transport: fd.get("transport"),
      fleet_key_path: fd.get("fleet_key_path").trim() || null,
      collect_every_min: Number(fd.get("collect_every_min") || 0),
    };
    try {
      const r = await api("/api/settings", { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      result.className = "";
      result.textContent = `Saved. Fleet key ${r.fleet_key_present ? "found" : "NOT found"} at ${r.fleet_key_file}.`;
    } catch (e) { result.className = "error"; result.textContent = e.message; }
  });
  main.append(
    el("section", { class: "card" }, form),
    el("section", { class: "card", "aria-labelledby": "h-paths" },
      el("h2", { id: "h-paths" }, "Files"),
      el("dl", { class: "paths" },
        el("dt", {}, "Home"), el("dd", {}, s.home),
        el("dt", {}, "Database"), el("dd", {}, s.database),
        el("dt", {}, "Fleet key"), el("dd", {}, `${s.fleet_key_file} (${s.fleet_key_present ? "present" : "missing"})`),
        el("dt", {}, "Sync engine"), el("dd", {}, s.sync_available ? "available" : "not in this build"))));
}

// ---------------------------------------------------------------- router

let cleanup = null;
async function route() {
  if (typeof cleanup === "function") cleanup();
  else if (typeof cleanup === "number") clearInterval(cleanup);
  cleanup = null;
  const h = location.hash.replace(/^#/, "") || "/";
  const m = h.match(/^\/device\/([^/]+)$/);
  ofmon.ready = false;
  if (m) cleanup = await devicePage(decodeURIComponent(m[1]));
  else if (h === "/settings") await settingsPage();
  else cleanup = await fleetPage();
  const h1 = main.querySelector("h1");
  if (h1 && document.activeElement !== document.body) h1.focus();
  document.title = `${h1 ? h1.firstChild.textContent.trim() : "OFMon"} · OFMon`;
  ofmon.ready = true;
}
window.addEventListener("hashchange", route);
route();
