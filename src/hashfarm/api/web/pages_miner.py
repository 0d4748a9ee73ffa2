"""A miner's own page by address (`/miner/{address}`), public-pool's most used view.

Everything the pool's statistics hold about one account (the part of the Stratum user name
before the first "."; in solo mode the payout address): its workers as `/api/workers` has
them (`PoolStats.of_account`: snapshots of its workers only), hashrates summed per window,
shares, rejects by reason, the best share, blocks found (from the ledger), and the solo odds
of a block per day, month and year at the account's hourly hashrate against the network
difficulty the pool's template carries (`hashfarm.economics.odds.solo_odds`).
`/api/miners/{address}` is the same document as JSON.

Best share and rejects are the pool's in-memory statistics: since the pool started, and a
worker silent for 24 hours is forgotten (`PoolStats.forget_idle`), so its best share goes
with it; blocks found come from the ledger and survive restarts.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any
from urllib.parse import quote

from aiohttp import web

from hashfarm.api.admin import error, respond
from hashfarm.api.params import query_args, shown
from hashfarm.api.readmodel import ReadModel, worker_json
from hashfarm.api.web.feed import LiveFeed, current_template
from hashfarm.api.web.site import Site
from hashfarm.economics.odds import solo_odds
from hashfarm.errors import LedgerError
from hashfarm.pool.stats import WINDOWS
from hashfarm.units import format_hashrate

log = logging.getLogger("hashfarm.api.web")

ACCOUNT_MAX = 256  # characters of a user name the pool accepts (pool/session.py)
BLOCKS_SCANNED = 200  # newest ledger blocks searched for the account's finds
ODDS_WINDOW = "1h"  # the hashrate the odds are computed at


def add_routes(app: web.Application, site: Site) -> None:
    """Register the miner page, its lookup form, its fragment and its JSON."""

    async def lookup(request: web.Request) -> web.StreamResponse:
        args = query_args(request.query.items(), ("address",))
        raw = args.get("address", "").strip()
        if not raw:
            return site.render(request, "miner_lookup.html", title="Miner", problem=None)
        account = account_of(raw)
        if account is None:
            return site.render(request, "miner_lookup.html", title="Miner", status=400,
                               problem=f"{shown(raw)} is not an address or user name "
                                       "this pool could have seen")  # fmt: skip
        raise web.HTTPSeeOther(f"/miner/{quote(account, safe='')}")

    async def page(request: web.Request) -> web.Response:
        query_args(request.query.items(), ())
        account = account_of(request.match_info["address"])
        if account is None:
            return site.not_found(request, "That is not an address or user name.")
        doc = await miner_json(site.model(request), site.feed, account)
        return site.render(request, "miner.html", title=f"Miner {account[:16]}", miner=doc)

    async def fragment(request: web.Request) -> web.Response:
        account = account_of(request.match_info["address"]) or ""
        doc = await miner_json(site.model(request), site.feed, account)
        return site.render(request, "miner_body.html", miner=doc)

    async def api(request: web.Request) -> web.Response:
        query_args(request.query.items(), ())
        account = account_of(request.match_info["address"])
        if account is None:
            return error(400, f"address: printable, without '/', at most {ACCOUNT_MAX} characters")
        return respond(await miner_json(site.model(request), site.feed, account))

    site.page("/miner", lookup, nav="Miner", order=20)
    site.page("/miner/{address}", page)
    app.router.add_get("/miner/{address}/fragment", fragment)
    app.router.add_get("/api/miners/{address}", api)


def account_of(raw: str) -> str | None:
    """The account a user name or address names (the part before the first "."), or None
    when it cannot be one."""
    account = raw.strip().split(".", 1)[0]
    ok = 0 < len(account) <= ACCOUNT_MAX and account.isprintable() and "/" not in account
    return account if ok else None


async def miner_json(model: ReadModel, feed: LiveFeed, account: str) -> dict[str, Any]:
    """The `/api/miners/{address}` document: the account's workers (as `/api/workers`), their
    sums, its blocks (from the ledger) and its solo odds."""
    workers = [worker_json(w) for w in model.stats.of_account(account)]
    hashrate = {name: sum(w["hashrate"][name] for w in workers) for name, _ in WINDOWS}
    rejects: Counter[str] = Counter()
    for w in workers:
        rejects.update(w["shares_rejected"])
    template = current_template(model)
    difficulty = template.difficulty if template is not None else None
    blocks, blocks_error = [], None
    try:
        blocks = [feed.block_view(b) for b in await feed.recent_blocks(model, BLOCKS_SCANNED)
                  if b["finder_account"] == account]  # fmt: skip
    except LedgerError as exc:
        log.warning("web: miner %s: %s", account, exc)
        blocks_error = "The ledger cannot be read right now: blocks are not shown."
    last = [w["last_share"] for w in workers if w["last_share"] is not None]
    return {
        "account": account,
        "seen": bool(workers),
        "workers": workers,
        "hashrate": hashrate,
        "hashrate_text": {k: format_hashrate(v) for k, v in hashrate.items()},
        "shares_accepted": sum(w["shares_accepted"] for w in workers),
        "shares_rejected": dict(sorted(rejects.items())),
        "rejected_total": sum(rejects.values()),
        "best_share": max((w["best_share"] for w in workers), default=0.0),
        "last_share": max(last, default=None),
        "blocks_found": sum(w["blocks_found"] for w in workers),
        "blocks": blocks,
        "blocks_error": blocks_error,
        "odds": odds_json(hashrate[ODDS_WINDOW], difficulty),
    }


def odds_json(hashrate_hs: float, difficulty: float | None) -> dict[str, Any]:
    """Solo odds at `hashrate_hs` against network `difficulty` (None: no job yet)."""
    base: dict[str, Any] = {"window": ODDS_WINDOW, "hashrate": hashrate_hs,
                            "network_difficulty": difficulty}  # fmt: skip
    if difficulty is None or hashrate_hs <= 0:
        why = "no hashrate in the last hour" if difficulty else "no job from the node yet"
        return base | {"probability": None, "note": why}
    odds = solo_odds(hashrate_hs, difficulty)
    return base | {
        "probability": {k: odds.probability[k] for k in ("day", "month", "year")},
        "blocks_per_day": odds.blocks_per_day,
        "expected_days_to_block": odds.expected_days_to_block,
        "share_of_network": odds.share_of_network,
        "note": None,
    }
