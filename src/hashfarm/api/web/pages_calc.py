"""The calculator page (`/calc`): payback chart with P10/P50/P90 bands, machines compared,
halvings and the difficulty scenario; its URL is the shareable form of its inputs.

The page is a GET form: its query string is the same as `/api/calc`'s (`api/calc.py`), so a
link to `/calc?...` reproduces the calculation and `/api/calc?...` is its JSON twin. The form
shows every input actually used (the defaults filled in), the summary and the comparison
table are rendered from the very document `/api/calc` answers, and the chart
(`static/js/calc.js`, uPlot) reads that document from the URL in its `data-src`. With htmx
the result is swapped in place when an input changes and the address bar follows.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from hashfarm.api import calc
from hashfarm.api.params import BadRequest
from hashfarm.api.web.site import Site
from hashfarm.economics import catalog

__all__ = ["add_routes", "form_values"]

FIELDS = (*calc.PARAMS, *calc.INTS, *calc.TEXT)


def defaults() -> dict[str, str]:
    """Every input's default as the form shows it: what `parse_inputs` uses when a parameter
    is absent (`calc.EXAMPLE`, else the command line's defaults)."""
    latest = catalog.difficulty_epochs()[-1]
    return {
        "model": calc.DEFAULT_MODEL, "hashrate_ths": "", "power_w": "", "machine_price": "0",
        "count": "1", "power_price": "0", "hosting": "0", "pool_fee": "0", "dev_fee": "0",
        "uptime": "100", "btc_price": "", "price_growth": "0",
        "difficulty": repr(latest.difficulty), "height": str(latest.start_height),
        "fees_btc": "0", "difficulty_growth": repr(catalog.recent_growth_per_epoch() * 100),
        "difficulty_path": "", "horizon_days": str(3 * 365), "paths": "1000", "seed": "0",
        "price_vol": "60", "growth_sd": "3", "compare": "", "fair_price_days": "0",
        **calc.EXAMPLE,
    }  # fmt: skip


def form_values(pairs: Any) -> dict[str, str]:
    """The form's values: the defaults, overridden by the query (an empty model means a
    custom machine). Unknown or repeated parameters are a BadRequest, as on `/api/calc`."""
    values = defaults()
    seen: set[str] = set()
    for name, value in pairs:
        if name not in values:
            raise BadRequest(f"unknown query parameter {name!r} (see /api/calc)")
        if name in seen:
            raise BadRequest(f"query parameter {name!r} given more than once")
        seen.add(name)
        values[name] = value.strip()
    return values


def given(values: dict[str, str]) -> list[tuple[str, str]]:
    """The non-empty values, in the form's order: the query both `/calc` and `/api/calc`
    are asked with."""
    return [(k, v) for k, v in values.items() if v]


def add_routes(app: web.Application, site: Site) -> None:
    """The calculator page, and the JSON routes it reads (`api/calc.py`)."""
    calc.add_routes(app)

    async def page(request: web.Request) -> web.Response:
        values = form_values(request.query.items())
        query = given(values)
        models = [m for m in catalog.machine_models() if m.complete]
        context: dict[str, Any] = {"title": "Payback calculator", "values": values,
                                   "models": models, "doc": None, "error": None,
                                   "query": urlencode(query)}  # fmt: skip
        try:
            inputs = calc.parse_inputs(query)
            doc = await calc.calculator(request.app).answer(inputs)
        except BadRequest as exc:
            # htmx swaps only 2xx answers: the message must reach the page it is editing
            status = 200 if request.headers.get("HX-Request") else 400
            context["error"] = str(exc)
            return site.render(request, "calc.html", status=status, **context)
        if doc is None:
            context["error"] = "The calculator is busy; try again in a moment."
            return site.render(request, "calc.html", status=503, **context)
        context["doc"] = doc
        return site.render(request, "calc.html", **context)

    site.page("/calc", page, nav="Calculator", order=80)
