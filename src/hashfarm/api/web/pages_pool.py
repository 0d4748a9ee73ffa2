"""The pool overview (`/`): hashrate and its chart, workers, blocks, difficulty and retarget.

Figures come from `ReadModel.pool_json()`, `workers_json()` and `blocks_json()`, the very
documents `/api/pool`, `/api/workers` and `/api/blocks` answer. The chart reads
`/api/pool/hashrate?range=1h|24h|7d` (the feed's bounded history). The page's sections are
also served alone as htmx fragments, which the live events refresh.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from hashfarm.api.admin import respond
from hashfarm.api.params import BadRequest, query_args
from hashfarm.api.web.feed import RANGES
from hashfarm.api.web.site import Site
from hashfarm.errors import LedgerError

log = logging.getLogger("hashfarm.api.web")

WORKERS_SHOWN = 25  # busiest workers on the overview (the miner page has an address's all)
BLOCKS_SHOWN = 10


def add_routes(app: web.Application, site: Site) -> None:
    """Register the overview, its fragments and its chart's JSON."""

    async def overview(request: web.Request) -> web.Response:
        query_args(request.query.items(), ())
        return site.render(request, "pool.html", title="Pool", **await _context(site, request))

    async def summary(request: web.Request) -> web.Response:
        return site.render(request, "pool_summary.html", **_summary(site, request))

    async def workers(request: web.Request) -> web.Response:
        return site.render(request, "pool_workers.html", **_workers(site, request))

    async def blocks(request: web.Request) -> web.Response:
        return site.render(request, "blocks_table.html", **await _blocks(site, request))

    async def hashrate(request: web.Request) -> web.Response:
        args = query_args(request.query.items(), ("range",))
        name = args.get("range", "1h")
        if name not in RANGES:
            raise BadRequest(f"range must be one of {', '.join(RANGES)}")
        step, kept, window = RANGES[name]
        return respond({
            "range": name,
            "step_s": step,
            "points_max": kept,
            "window": window,
            "points": site.feed.history.series(name),
        })  # fmt: skip

    site.page("/", overview, nav="Pool", order=10)
    app.router.add_get("/pool/fragments/summary", summary)
    app.router.add_get("/pool/fragments/workers", workers)
    app.router.add_get("/pool/fragments/blocks", blocks)
    app.router.add_get("/api/pool/hashrate", hashrate)


async def _context(site: Site, request: web.Request) -> dict[str, Any]:
    return _summary(site, request) | _workers(site, request) | await _blocks(site, request)


def _summary(site: Site, request: web.Request) -> dict[str, Any]:
    feed = site.feed
    return {
        "pool": feed.pool_doc(site.model(request)),
        "retarget": feed.retarget,
        "tip_height": feed.tip_height,
        "network_difficulty": feed.network_difficulty,
    }


def _workers(site: Site, request: web.Request) -> dict[str, Any]:
    """The busiest workers as `/api/workers` lists them (its first WORKERS_SHOWN entries),
    at the cost of WORKERS_SHOWN snapshots, shared by every viewer for a second or two."""
    model = site.model(request)
    busiest = site.feed.busiest(model, WORKERS_SHOWN)
    return {"workers": busiest, "workers_total": model.stats.pool().workers}


async def _blocks(site: Site, request: web.Request, limit: int = BLOCKS_SHOWN) -> dict[str, Any]:
    """The newest blocks as `/api/blocks` has them, with confirmations from the tip."""
    try:
        blocks = await site.feed.recent_blocks(site.model(request), limit)
    except LedgerError as exc:
        log.warning("web: blocks: %s", exc)
        return {"blocks": [], "blocks_error": "The ledger cannot be read right now."}
    return {"blocks": [site.feed.block_view(b) for b in blocks], "blocks_error": None}
