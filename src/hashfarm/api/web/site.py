"""The dashboard's shared pieces: the Jinja2 environment, page registration, HTML answers.

A page module (`web/pages_*.py`) defines `add_routes(app, site)` and registers each page with
`site.page(path, handler, nav="Label", order=N)` (a nav entry when `nav` is given) and each
htmx fragment or JSON route with plain `app.router.add_get`. Handlers answer
`site.render(request, "name.html", key=value, ...)`: the template extends `base.html` and gets
the keyword arguments plus `site`, `nav`, `path` and the filters below. Templates autoescape;
pages load no inline script (the Content-Security-Policy below forbids it): data for charts
travels as JSON from a route named in a `data-src` attribute.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from hashfarm.api.live import LiveHub
from hashfarm.api.readmodel import ReadModel
from hashfarm.api.web.feed import LiveFeed
from hashfarm.units import format_hashrate, sats_to_btc

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
VENDOR_FILES = ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css")  # copied by `make setup`
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HTML_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class NavItem:
    """One entry of the top navigation."""

    path: str
    label: str
    order: int


class Site:
    """What every page handler shares; one per app, at `request.app[SITE_KEY]`."""

    def __init__(self, app: web.Application, model_key: web.AppKey[ReadModel], hub: LiveHub,
                 feed: LiveFeed) -> None:  # fmt: skip
        self.app = app
        self.model_key = model_key
        self.hub = hub  # `site.hub.publish("alert", {...})` reaches every open page
        self.feed = feed  # hashrate history, retarget projection, block luck (web/feed.py)
        self.nav: list[NavItem] = []
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("hashfarm.api.web", "templates"),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
            undefined=jinja2.StrictUndefined,  # a misspelt name fails the test, not the page
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            hashrate=hashrate,
            btc=lambda sats: f"{sats_to_btc(sats):.8f}",
            number=number,
            difficulty=difficulty,
            percent=percent,
            utc=utc,
            ago=ago,
            wait=wait,
            short=short_hash,
        )
        self.env.globals["static"] = self.static
        self._static_urls: dict[str, str] = {}
        self.vendor_missing = [f for f in VENDOR_FILES if not (STATIC_DIR / "vendor" / f).exists()]

    def static(self, name: str) -> str:
        """The URL of static file `name` (under web/static/) with its content's hash appended,
        so browsers may cache it until it changes."""
        url = self._static_urls.get(name)
        if url is None:
            url = str(self.app.router["static"].url_for(filename=name))
            self._static_urls[name] = url
        return url

    def model(self, request: web.Request) -> ReadModel:
        """The pool's read model (the same one the JSON API answers from)."""
        return request.app[self.model_key]

    def page(self, path: str, handler: Handler, *, nav: str | None = None, order: int = 100,
             name: str | None = None) -> None:  # fmt: skip
        """Serve `handler` at GET `path`; list it in the navigation as `nav` when given."""
        self.app.router.add_get(path, handler, name=name)
        if nav is not None:
            self.nav.append(NavItem(path, nav, order))
            self.nav.sort(key=lambda item: (item.order, item.label))

    def render(self, request: web.Request, template: str, *, status: int = 200,
               **context: Any) -> web.Response:  # fmt: skip
        """The template rendered with `context` as an HTML answer with the site's headers."""
        html = self.env.get_template(template).render(
            site=self, nav=self.nav, path=request.path, now=time.time(), **context
        )
        return web.Response(
            text=html, status=status, content_type="text/html", headers=HTML_HEADERS
        )

    def not_found(self, request: web.Request, message: str) -> web.Response:
        """A 404 page that says what was not found."""
        return self.render(request, "error.html", status=404, title="Not found", message=message)


# -- filters (also importable by page modules for their JSON) -------------------------------


def hashrate(hps: float | None) -> str:
    """`format_hashrate` (1.23 TH/s), with two decimals under 10 H/s: a regtest miner or a
    demo's capped one runs at fractions of a hash per second."""
    if hps is None:
        return "—"
    return f"{hps:.2f} H/s" if abs(hps) < 10 else format_hashrate(hps)


def number(value: float | int | None, digits: int = 0) -> str:
    """`1,234,567` (or with `digits` decimals); a dash for None."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def difficulty(value: float | None) -> str:
    """A difficulty as miners write it: 3 significant digits and a k/M/G/T/P/E suffix."""
    if value is None or not math.isfinite(value):
        return "—"
    for factor, suffix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"),
                           (1e3, "k")):  # fmt: skip
        if abs(value) >= factor:
            return f"{value / factor:.3g} {suffix}"
    return f"{value:.3g}"


def percent(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage; tiny odds in scientific notation rather than 0.00 %."""
    if value is None or not math.isfinite(value):
        return "—"
    pct = value * 100
    if pct != 0 and abs(pct) < 10**-digits:
        return f"{pct:.2e} %"
    return f"{pct:.{digits}f} %"


def utc(ts: float | None) -> str:
    """UNIX seconds as `2026-12-03 12:34:56 UTC`."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(ts: float | None, now: float | None = None) -> str:
    """How long ago `ts` was: `42 s`, `5 min`, `3 h`, `2 d`."""
    if ts is None:
        return "never"
    seconds = max(0.0, (time.time() if now is None else now) - ts)
    for span, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= span:
            return f"{seconds / span:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def wait(days: float | None) -> str:
    """An expected wait in the unit a person reads it in: `8 s`, `12 min`, `5.0 h`,
    `45 days`, `3.2 years`, `1,234 years`."""
    if days is None or not math.isfinite(days):
        return "—"
    seconds = days * 86400
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if days < 1:
        return f"{seconds / 3600:.1f} h"
    if days < 365:
        return f"{days:.0f} days"
    years = days / 365
    return f"{years:.1f} years" if years < 100 else f"{years:,.0f} years"


def short_hash(value: str, keep: int = 12) -> str:
    """The start and end of a long hex string or address: `0000000abc…def012`."""
    if len(value) <= 2 * keep + 1:
        return value
    return f"{value[:keep]}…{value[-6:]}"
