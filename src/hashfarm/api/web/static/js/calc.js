// hashfarm calculator page: the cash chart (P10/P50/P90 bands, one line per machine, halvings)
// and the difficulty scenario, drawn with uPlot from the /api/calc document named in data-src.
// Redrawn whenever htmx swaps in a new result (an input changed). No inline script (CSP).
"use strict";
(function () {
  const COLORS = ["#1f5fa8", "#b35900", "#2f7d32", "#7b3fa0", "#8a1c1c", "#006d75"];
  const BAND = "#5a6b7d";
  const HEIGHT = 300;

  function money(v) {
    if (v == null) return "—";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(2) + " M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + " k";
    return v.toFixed(0);
  }

  function sci(v) {
    return v == null ? "—" : v.toExponential(3);
  }

  // Vertical lines at the halving days and a zero line, drawn over the plot.
  function marks(halvings, zero) {
    return {
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.strokeStyle = "#000";
          halvings.forEach((day) => {
            const x = Math.round(u.valToPos(day, "x", true));
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          });
          if (zero) {
            ctx.strokeStyle = "#767676";
            const y = Math.round(u.valToPos(0, "y", true));
            ctx.beginPath();
            ctx.moveTo(u.bbox.left, y);
            ctx.lineTo(u.bbox.left + u.bbox.width, y);
            ctx.stroke();
          }
          ctx.restore();
        }],
      },
    };
  }

  function chart(el, opts, data) {
    const width = () => Math.max(260, el.clientWidth || 600);
    if (el._chart) el._chart.destroy();
    el.textContent = "";
    el._chart = new uPlot(Object.assign({ width: width(), height: HEIGHT }, opts), data, el);
    if (!el._resizes) {
      el._resizes = true;
      window.addEventListener("resize", () => el._chart && el._chart.setSize({ width: width(), height: HEIGHT }));
    }
  }

  function cashChart(el, doc) {
    const c = doc.chart;
    const series = [{ label: "day" }];
    const data = [c.day];
    const opts = { scales: { x: { time: false } }, plugins: [marks(doc.halving_days, true)] };
    if (c.bands) {
      series.push({ label: "P10", stroke: BAND, width: 1, dash: [4, 4], value: (u, v) => money(v) });
      series.push({ label: "P50 (median)", stroke: BAND, width: 2, value: (u, v) => money(v) });
      series.push({ label: "P90", stroke: BAND, width: 1, dash: [4, 4], value: (u, v) => money(v) });
      data.push(c.bands.p10, c.bands.p50, c.bands.p90);
      opts.bands = [{ series: [3, 1], fill: "rgba(90, 107, 125, 0.18)" }];
    }
    doc.machines.forEach((m, i) => {
      series.push({ label: m.summary.machine, stroke: COLORS[i % COLORS.length], width: 2, value: (u, v) => money(v) });
      data.push(m.cumulative);
    });
    opts.series = series;
    opts.axes = [{ label: "day" }, { size: 70, values: (u, vals) => vals.map(money) }];
    chart(el, opts, data);
    // what the browser test compares before and after an input changes
    el.dataset.signature = data.slice(1).map((s) => s[s.length - 1].toFixed(2)).join("|");
  }

  function difficultyChart(el, doc) {
    const c = doc.chart;
    const stepped = uPlot.paths && uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined;
    chart(el, {
      scales: { x: { time: false } },
      plugins: [marks(doc.halving_days, false)],
      series: [{ label: "day" }, { label: "difficulty", stroke: COLORS[0], width: 2, paths: stepped, value: (u, v) => sci(v) }],
      axes: [{ label: "day" }, { size: 80, values: (u, vals) => vals.map(sci) }],
    }, [c.day, c.difficulty]);
    el.dataset.signature = c.difficulty[c.difficulty.length - 1].toExponential(6);
  }

  const cache = new Map(); // data-src -> the document's promise (both charts read one URL)

  async function draw(el) {
    const url = el.dataset.src;
    if (!cache.has(url)) {
      cache.clear();
      cache.set(url, fetch(url, { headers: { Accept: "application/json" } }).then((r) => {
        if (!r.ok) throw new Error(String(r.status));
        return r.json();
      }));
    }
    try {
      const doc = await cache.get(url);
      if (el.dataset.calcChart === "cash") cashChart(el, doc);
      else difficultyChart(el, doc);
      el.dataset.loaded = "chart";
    } catch (e) {
      cache.delete(url);
      el.textContent = "The chart's data could not be loaded (" + e.message + ").";
      el.dataset.loaded = "error";
    }
  }

  function init(root) {
    root.querySelectorAll("[data-calc-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", () => init(document));
  document.addEventListener("htmx:afterSettle", () => init(document));
})();
