// hashfarm dashboard: live events (SSE) -> DOM events for htmx, the live log, and charts.
// No inline script anywhere (the pages' Content-Security-Policy forbids it).
"use strict";
(function () {
  const HF = (window.HF = window.HF || {});
  const LOG_MAX = 8;
  HF.refreshSpreadMs = 1500;

  // -- live events ------------------------------------------------------------------------
  // Each SSE event NAME becomes a DOM event "hf:NAME" on <body> (detail: the JSON data);
  // htmx fragments refresh on them: hx-trigger="hf:block from:body".
  HF.describe = {
    block: (d) => (d.accepted_by_node ? "Block " : "Refused block ") + d.height + " found by " + d.finder_worker,
    worker: (d) => d.new_count + " new worker" + (d.new_count === 1 ? "" : "s") + ": " + d.new.join(", "),
    tip: (d) => "New tip at height " + d.height,
    alert: (d) => "Alert: " + d.message,
  };

  function setStatus(state, text) {
    const el = document.getElementById("live-status");
    if (el) { el.dataset.state = state; el.textContent = "live: " + text; }
  }

  function logEvent(name, data) {
    const list = document.getElementById("live-log");
    const describe = HF.describe[name];
    if (!list || !describe) return;
    const muted = list.querySelector(".muted");
    if (muted) muted.remove();
    const item = document.createElement("li");
    item.dataset.event = name;
    item.className = name;
    item.textContent = new Date().toLocaleTimeString() + " " + describe(data);
    list.prepend(item);
    while (list.children.length > LOG_MAX) list.lastElementChild.remove();
  }

  HF.listen = function (names) {
    const url = document.body.dataset.events;
    if (!url || !window.EventSource) { setStatus("off", "not supported"); return; }
    const source = new EventSource(url);
    source.onopen = () => setStatus("on", "on");
    source.onerror = () => {
      // EventSource retries by itself unless the server refused (503: too many clients).
      if (source.readyState === EventSource.CLOSED) setStatus("off", "off (server busy: reload later)");
      else setStatus("connecting", "reconnecting");
    };
    names.forEach((name) => source.addEventListener(name, (ev) => {
      let data = {};
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      logEvent(name, data);
      // Fragments refresh after a random 0-1.5 s: when a block reaches 500 open pages at
      // once, their requests spread out instead of arriving together.
      setTimeout(() => document.body.dispatchEvent(new CustomEvent("hf:" + name, { detail: data })),
        Math.random() * HF.refreshSpreadMs);
    }));
    HF.source = source;
  };

  // -- charts (uPlot) ---------------------------------------------------------------------
  HF.formatHashrate = function (hs) {
    if (hs == null) return "—";
    const units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
    let i = 0;
    while (Math.abs(hs) >= 1000 && i < units.length - 1) { hs /= 1000; i++; }
    return hs.toFixed(hs < 10 ? 2 : 1) + " " + units[i];
  };

  // A line chart in `el` of series [[x...], [y...], ...]; `opts.labels` names the y series.
  HF.lineChart = function (el, data, opts) {
    opts = opts || {};
    const colors = ["#1f5fa8", "#b35900", "#2f7d32", "#7b3fa0"];
    const series = [{}].concat((opts.labels || ["value"]).map((label, i) => ({
      label: label, stroke: colors[i % colors.length], width: 2,
      value: (u, v) => (opts.format || String)(v),
    })));
    const width = () => Math.max(240, el.clientWidth || 600);
    if (el._chart) el._chart.destroy();
    el._chart = new uPlot({
      width: width(), height: opts.height || 260, series: series,
      axes: [{}, { size: 80, values: (u, vals) => vals.map((v) => (opts.format || String)(v)) }],
      scales: { x: { time: opts.time !== false } },
    }, data, el);
    if (!el._resizes) {
      el._resizes = true;
      window.addEventListener("resize", () => el._chart && el._chart.setSize({ width: width(), height: opts.height || 260 }));
    }
    return el._chart;
  };

  // Elements with data-chart="line" data-src="URL" data-range="1h": points [[t, v], ...].
  HF.loadLineChart = async function (el) {
    const url = el.dataset.src + (el.dataset.range ? "?range=" + encodeURIComponent(el.dataset.range) : "");
    const resp = await fetch(url, { headers: { Accept: "application/json" } });
    if (!resp.ok) { el.textContent = "The chart's data could not be loaded (" + resp.status + ")."; return; }
    const doc = await resp.json();
    const points = doc.points || [];
    el.dataset.points = String(points.length);
    if (points.length < 2) {  // a line needs two points
      el.textContent = "No samples yet: the chart fills as the pool runs (history starts when the pool starts).";
      el.dataset.loaded = "empty";
      return;
    }
    el.textContent = "";
    HF.lineChart(el, [points.map((p) => p[0]), points.map((p) => p[1])],
      { labels: ["hashrate"], format: HF.formatHashrate });
    el.dataset.loaded = "chart";
  };

  function initCharts(root) {
    root.querySelectorAll('[data-chart="line"]').forEach((el) => HF.loadLineChart(el));
  }

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("[data-chart-range]");
    if (!button) return;
    const el = document.getElementById(button.dataset.chartTarget);
    if (!el) return;
    el.dataset.range = button.dataset.chartRange;
    button.parentElement.querySelectorAll("button").forEach((b) =>
      b.setAttribute("aria-pressed", b === button ? "true" : "false"));
    HF.loadLineChart(el);
  });

  document.addEventListener("DOMContentLoaded", () => {
    initCharts(document);
    HF.listen(["block", "worker", "tip", "alert"]);
    // Charts refresh on a new block (their history moved on).
    document.body.addEventListener("hf:block", () => initCharts(document));
  });
})();
