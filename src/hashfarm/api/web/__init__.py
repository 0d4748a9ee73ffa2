"""The web dashboard: server-rendered pages (Jinja2 + htmx + uPlot) on the API's own app.

`add_routes(app, model_key)` is the one call `api/server.py` makes: it creates the `Site`
(templates, navigation), the live hub (`/events`, Server-Sent Events) and the feed that
publishes what changed in the pool, serves `/static/`, and lets every `web/pages_*.py`
module register its pages (`add_routes(app, site)` in each; see `web/site.py`). Data the
pages show comes from the same producers as the JSON API (`ReadModel`, the accounting,
fleet and hosting sources), so a page's figures are the API's. See docs/web.md.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from types import ModuleType

from aiohttp import web

from hashfarm.api import accounts
from hashfarm.api.live import LiveHub
from hashfarm.api.readmodel import ReadModel
from hashfarm.api.web.feed import LiveFeed
from hashfarm.api.web.site import STATIC_DIR, Site

log = logging.getLogger("hashfarm.api.web")

SITE_KEY = web.AppKey("site", Site)


def add_routes(
    app: web.Application, model_key: web.AppKey[ReadModel], *, hub: LiveHub | None = None
) -> Site:
    """Mount the dashboard on `app` (whose `model_key` holds the ReadModel); its Site."""
    hub = hub or LiveHub()
    feed = LiveFeed(lambda: app[model_key], hub, ledger_url=lambda: _ledger_url(app))
    site = Site(app, model_key, hub, feed)
    app[SITE_KEY] = site
    if site.vendor_missing:
        log.warning("web: %s missing under %s/vendor: run `make setup` (charts and live "
                    "fragments need them)", ", ".join(site.vendor_missing), STATIC_DIR)  # fmt: skip
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=True)
    app.router.add_get("/events", hub.stream)
    for module in _page_modules():
        module.add_routes(app, site)  # every pages_* module defines add_routes(app, site)
    app.on_startup.append(_start_feed)
    app.on_shutdown.append(_close_streams)
    app.on_cleanup.append(_stop_feed)
    return site


def _ledger_url(app: web.Application) -> str | None:
    """The pool's ledger URL, when the API was given one (`ApiServer(ledger_url=...)`)."""
    source = app.get(accounts.SOURCE_KEY)
    return None if source is None or not source.url else source.url


def _page_modules() -> list[ModuleType]:
    """Every `hashfarm.api.web.pages_*` module, in name order."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("pages_"))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


async def _start_feed(app: web.Application) -> None:
    app[SITE_KEY].feed.start()


async def _close_streams(app: web.Application) -> None:
    app[SITE_KEY].hub.close()  # open streams end now: shutdown need not wait for them


async def _stop_feed(app: web.Application) -> None:
    await app[SITE_KEY].feed.stop()
