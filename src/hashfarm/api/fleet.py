"""The fleet's HTTP routes: read models over the fleet store (`fleet.store.FleetStore`).

Routes, all read-only and public like the pool's (they show machines' addresses and state,
no secrets):
- `GET /api/fleet/machines`: every machine's latest state, worst first;
- `GET /api/fleet/machines/{id}?history=S&resolution=R`: one machine (id `host:port`), its
  boards, and its series over the last S seconds (default 3600) at resolution R: 0 raw
  polls (default), 300 or 3600 rollups;
- `GET /api/fleet/alerts?active=1&limit=N`: open alerts (active=0: the newest N of all);
- `GET /metrics/fleet` (and `/metrics` on the fleet-only app): Prometheus text, per machine
  and per board (`metrics.render_fleet`).

Query parameters are strict (`api/params.py`): an unknown or malformed one is a 400 naming
it. A store that cannot be read answers 503, and the API lives on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from hashfarm.api import metrics
from hashfarm.api.admin import error, respond
from hashfarm.api.params import BadRequest, int_arg, query_args, shown
from hashfarm.errors import LedgerError
from hashfarm.fleet.store import FleetSql, FleetStore

__all__ = ["FLEET_STORE_KEY", "add_routes", "machine_rank", "make_fleet_app"]

log = logging.getLogger("hashfarm.api.fleet")

FLEET_STORE_KEY = web.AppKey("fleet_store", FleetStore)
Clock = Callable[[], float]
CLOCK_KEY: web.AppKey[Clock] = web.AppKey("fleet_clock")
HISTORY_MAX_S = 365 * 86_400  # the longest series one request may ask for
RESOLUTIONS = (0, 300, 3600)  # raw polls, 5-minute and hourly rollups
ALERTS_LIMIT_MAX = 1000


def machine_rank(doc: dict[str, Any]) -> tuple[int, int, str]:
    """Sort key, worst first: unreachable or failing polls, then most faults, then id."""
    failing = 0 if doc.get("error") else 1
    faults = doc.get("faults") or ""
    return (failing, -len([f for f in faults.split(",") if f]), str(doc.get("id")))


def _machine_json(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    out["faults"] = [f for f in (doc.get("faults") or "").split(",") if f]
    out["ok"] = doc.get("error") is None
    return out


async def _read(request: web.Request, fn: Callable[[FleetSql], Any]) -> Any:
    try:
        return await request.app[FLEET_STORE_KEY].call(fn)
    except LedgerError as exc:
        log.warning("API %s: %s", request.path, exc)
        raise web.HTTPServiceUnavailable(reason="the fleet store cannot be read right now") from exc


async def _machines(request: web.Request) -> web.Response:
    query_args(request.query.items(), ())
    docs = await _read(request, lambda sql: sql.machines())
    return respond({"machines": [_machine_json(d) for d in sorted(docs, key=machine_rank)]})


async def _machine(request: web.Request) -> web.Response:
    args = query_args(request.query.items(), ("history", "resolution"))
    history = int_arg(args, "history", 3600, 0, HISTORY_MAX_S)
    resolution = int_arg(args, "resolution", 0, 0, 3600)
    if resolution not in RESOLUTIONS:
        raise BadRequest(f"resolution must be one of 0, 300, 3600, not {shown(resolution)}")
    machine_id = request.match_info["id"]
    since = request.app[CLOCK_KEY]() - history

    def read(sql: FleetSql) -> dict[str, Any] | None:
        doc = sql.machine(machine_id)
        if doc is not None:
            doc["history"] = sql.history(machine_id, since, resolution)
            alerts = sql.alerts(active_only=True, limit=1000, machine_id=machine_id)
            doc["alerts"] = [a.as_json() for a in alerts]
        return doc

    doc = await _read(request, read)
    if doc is None:
        return error(404, f"no machine {shown(machine_id)} has been polled")
    out = _machine_json(doc)
    out["resolution"] = resolution
    return respond(out)


async def _alerts(request: web.Request) -> web.Response:
    args = query_args(request.query.items(), ("active", "limit"))
    active = int_arg(args, "active", 1, 0, 1) == 1
    limit = int_arg(args, "limit", 100, 1, ALERTS_LIMIT_MAX)
    alerts = await _read(request, lambda sql: sql.alerts(active_only=active, limit=limit))
    return respond({"active_only": active, "alerts": [a.as_json() for a in alerts]})


async def _metrics(request: web.Request) -> web.Response:
    query_args(request.query.items(), ())

    def read(sql: FleetSql) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
        return sql.machines(), sql.boards(), sql.alerts(active_only=True, limit=100_000)

    machines, boards, alerts = await _read(request, read)
    text = metrics.render_fleet(machines, boards, alerts)
    return web.Response(text=text, headers={"Content-Type": metrics.CONTENT_TYPE})


def add_routes(
    app: web.Application, store: FleetStore, clock: Callable[[], float] = time.time
) -> None:
    """Register the fleet routes on `app` (the pool's API or a fleet-only one)."""
    app[FLEET_STORE_KEY] = store
    app[CLOCK_KEY] = clock
    app.router.add_get("/api/fleet/machines", _machines)
    app.router.add_get("/api/fleet/machines/{id}", _machine)
    app.router.add_get("/api/fleet/alerts", _alerts)
    app.router.add_get("/metrics/fleet", _metrics)


def make_fleet_app(store: FleetStore, clock: Callable[[], float] = time.time) -> web.Application:
    """An application serving only the fleet (for `hashfarm fleet watch --api-port`), with
    the pool API's JSON errors; `/metrics` is the fleet's there."""
    from hashfarm.api.server import BODY_MAX, _json_errors

    app = web.Application(middlewares=[_json_errors], client_max_size=BODY_MAX)
    add_routes(app, store, clock)
    app.router.add_get("/metrics", _metrics)
    return app
