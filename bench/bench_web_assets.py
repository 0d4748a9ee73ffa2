"""The dashboard's front-end stack, measured: what the browser downloads, and the chart.

The evidence behind docs/web.md's choice (server-rendered Jinja2 + htmx + uPlot):

1. bytes of each browser file as served (raw and gzip -9), against Chart.js, the usual
   alternative (an npm devDependency kept for this comparison only, never served);
2. the time to draw a 7-day hashrate chart (`--points`, one a minute: 10,080) in Debian's
   chromium, uPlot against Chart.js on the same data: median of `--runs` fresh pages, and
   the ratio Chart.js / uPlot measured in the same run.

    .venv/bin/python bench/bench_web_assets.py [--points 10080] [--runs 9]

Needs `make setup` (node_modules, /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "node_modules"
CHROMIUM = "/usr/bin/chromium"
SERVED = {  # what the dashboard's pages load (copied to api/web/static/vendor by make)
    "htmx 2 (htmx.min.js)": "htmx.org/dist/htmx.min.js",
    "uPlot (uPlot.iife.min.js)": "uplot/dist/uPlot.iife.min.js",
    "uPlot CSS": "uplot/dist/uPlot.min.css",
}
REFERENCE = {"Chart.js 4 (chart.umd.min.js)": "chart.js/dist/chart.umd.min.js"}
SITE = ROOT / "src/hashfarm/api/web/static"

DATA_JS = """
const n = %d, xs = new Float64Array(n), ys = new Float64Array(n);
for (let i = 0; i < n; i++) { xs[i] = 1.7e9 + 60 * i; ys[i] = 1e12 * (1.2 + Math.sin(i / 200)); }
"""
UPLOT_PAGE = """<!doctype html><html><head><link rel=stylesheet href="uPlot.min.css">
<script src="uPlot.iife.min.js"></script></head><body><div id=c></div><script>%s
const t0 = performance.now();
new uPlot({width: 800, height: 300, series: [{}, {label: "H/s", stroke: "blue"}]},
          [xs, ys], document.getElementById("c"));
requestAnimationFrame(() => { window.drawMs = performance.now() - t0; });
</script></body></html>"""
CHARTJS_PAGE = """<!doctype html><html><head><script src="chart.umd.min.js"></script></head>
<body><div style="width:800px;height:300px"><canvas id=c></canvas></div><script>%s
const points = Array.from(xs, (x, i) => ({x: x, y: ys[i]}));
const t0 = performance.now();
new Chart(document.getElementById("c"), {type: "line",
  data: {datasets: [{label: "H/s", data: points, pointRadius: 0, borderWidth: 1}]},
  options: {animation: false, parsing: false, normalized: true,
            scales: {x: {type: "linear"}}}});
requestAnimationFrame(() => { window.drawMs = performance.now() - t0; });
</script></body></html>"""


def sizes() -> None:
    print("browser files (bytes): raw, gzip -9")
    served = 0
    for label, rel in {**SERVED, **REFERENCE}.items():
        data = (NODE_MODULES / rel).read_bytes()
        gz = len(gzip.compress(data, 9))
        if label in SERVED:
            served += gz
        print(f"  {label:32s} {len(data):>8,} {gz:>8,}")
    for own in sorted(SITE.glob("*/*.*")):
        if own.parent.name == "vendor":
            continue
        data = own.read_bytes()
        served += len(gzip.compress(data, 9))
        print(f"  {'ours: ' + own.parent.name + '/' + own.name:32s} {len(data):>8,} "
              f"{len(gzip.compress(data, 9)):>8,}")  # fmt: skip
    print(f"  everything under /static/ (ours and vendor), gzip: {served:,} bytes")


async def draw_times(points: int, runs: int) -> dict[str, float]:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rel in (*SERVED.values(), *REFERENCE.values()):
            (folder / Path(rel).name).write_bytes((NODE_MODULES / rel).read_bytes())
        data = DATA_JS % points
        (folder / "uplot.html").write_text(UPLOT_PAGE % data)
        (folder / "chartjs.html").write_text(CHARTJS_PAGE % data)
        medians: dict[str, float] = {}
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM)
            times: dict[str, list[float]] = {"uplot": [], "chartjs": []}
            for _ in range(runs):  # interleaved: both libraries see the same machine state
                for name in times:
                    page = await browser.new_page()
                    await page.goto(f"file://{folder}/{name}.html")
                    await page.wait_for_function("window.drawMs !== undefined")
                    times[name].append(await page.evaluate("window.drawMs"))
                    await page.close()
            await browser.close()
        for name, values in times.items():
            medians[name] = statistics.median(values)
        return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=7 * 24 * 60)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    sizes()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (make setup installs it): chart drawing not measured")
        return
    medians = asyncio.run(draw_times(args.points, args.runs))
    print(f"line chart of {args.points:,} points in chromium, median of {args.runs} pages:")
    print(f"  uPlot    {medians['uplot']:7.1f} ms")
    print(f"  Chart.js {medians['chartjs']:7.1f} ms (reference)")
    print(f"  ratio Chart.js / uPlot: {medians['chartjs'] / medians['uplot']:.2f}")


if __name__ == "__main__":
    main()
