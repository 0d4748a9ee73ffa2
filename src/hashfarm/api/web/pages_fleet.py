"""The fleet pages: every machine sorted by what is wrong, a per-board heat map, one machine.

`/fleet` reads the fleet store the JSON API reads (`api/fleet.py`: the same `FleetStore` at
`FLEET_STORE_KEY`, the same `machine_rank` order as `/api/fleet/machines`) and shows, per
machine, what is wrong in words; the heat map colours each hash board by its hottest chip
against the fault thresholds (`fleet.faults.FaultThresholds`). `/fleet/machines/{id}` is one
machine with its boards and open alerts (its series: `/api/fleet/machines/{id}?history=S`).
Without a fleet store the page says so and how to get one.
The table, totals and heat map are also served alone (`/fleet/fragments/table`), which the
page fetches again every 30 s and on a live `alert` event, so a failing machine shows up
without a reload.

`fleet_view` and `heat_level` are pure (rows in, rows out) so the unit tests check them
without a server.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from hashfarm.api.fleet import FLEET_STORE_KEY, machine_rank
from hashfarm.api.params import query_args
from hashfarm.api.web.site import Site
from hashfarm.errors import LedgerError
from hashfarm.fleet.alerts import Alert
from hashfarm.fleet.faults import FaultThresholds
from hashfarm.fleet.store import FleetSql
from hashfarm.units import format_hashrate

__all__ = ["BoardCell", "MachineRow", "add_routes", "fleet_view", "heat_level", "wrong_text"]

ALERTS_SHOWN = 1000  # open alerts read for the page (the API's own cap per request)
NO_STORE = ("No fleet store: this server was started without one. Run "
            "`hashfarm fleet watch --store sqlite:///fleet.db` and give the pool the same "
            "store to see the farm's machines here.")  # fmt: skip
WARM_MARGIN_C = 10.0  # a chip this close to the limit is shown as warm


@dataclass(frozen=True, slots=True)
class BoardCell:
    """One hash board in the heat map."""

    slot: int
    present: bool
    chip_temp_c: float | None
    level: str  # "absent", "unknown", "cool", "warm", "hot"
    label: str  # what a screen reader and a tooltip say


@dataclass(frozen=True, slots=True)
class MachineRow:
    """One machine as the fleet table shows it (the API's figures, and what is wrong)."""

    id: str
    model: str | None
    ok: bool
    state: str | None
    wrong: str  # "" when nothing is
    faults: tuple[str, ...]
    live_hs: float | None
    nominal_hs: float | None
    hashrate_ratio: float | None  # live / nominal
    power_w: float | None
    chip_temp_max_c: float | None
    fan_min_rpm: int | None
    boards_present: int | None
    boards_expected: int | None
    last_ok_at: float | None
    alerts: int
    boards: tuple[BoardCell, ...] = field(default=())


def heat_level(temp: float | None, present: bool, limits: FaultThresholds) -> str:
    """The heat map's colour class of a board: its hottest chip against the fault limit."""
    if not present:
        return "absent"
    if temp is None:
        return "unknown"
    if temp >= limits.chip_temp_max_c:
        return "hot"
    if temp >= limits.chip_temp_max_c - WARM_MARGIN_C:
        return "warm"
    return "cool"


def wrong_text(doc: dict[str, Any], alerts: int, limits: FaultThresholds) -> str:
    """What is wrong with a machine, in words, worst first; "" when nothing is."""
    parts = []
    if doc.get("error"):
        parts.append(f"not answering: {doc['error']}")
    faults = [f for f in (doc.get("faults") or "").split(",") if f]
    if faults:
        parts.append("faults: " + ", ".join(f.replace("_", " ") for f in faults))
    live, nominal = doc.get("live_hs"), doc.get("nominal_hs")
    if not doc.get("error") and live is not None and nominal:
        ratio = live / nominal
        if ratio < limits.hashrate_min_ratio:
            parts.append(f"hashing at {ratio:.0%} of nominal")
    present, expected = doc.get("boards_present"), doc.get("boards_expected")
    if present is not None and expected and present < expected:
        parts.append(f"{present} of {expected} boards")
    if alerts and not parts:
        parts.append(f"{alerts} open alert{'s' if alerts != 1 else ''}")
    return "; ".join(parts)


def _boards(rows: Iterable[dict[str, Any]], limits: FaultThresholds) -> tuple[BoardCell, ...]:
    cells = []
    for b in rows:
        present, temp = bool(b.get("present")), b.get("chip_temp_max_c")
        level = heat_level(temp, present, limits)
        if not present:
            label = f"board {b['slot']}: absent"
        elif temp is None:
            label = f"board {b['slot']}: no chip temperature"
        else:
            label = f"board {b['slot']}: hottest chip {temp:g} °C ({level})"
        cells.append(BoardCell(int(b["slot"]), present, temp, level, label))
    return tuple(cells)


def fleet_view(
    machines: Sequence[dict[str, Any]],
    boards: Sequence[dict[str, Any]],
    alerts: Sequence[Alert],
    limits: FaultThresholds | None = None,
) -> list[MachineRow]:
    """The fleet table: machines in the API's order (worst first), each with its boards."""
    limits = limits or FaultThresholds()
    by_machine: dict[str, list[dict[str, Any]]] = {}
    for b in boards:
        by_machine.setdefault(str(b["machine_id"]), []).append(b)
    open_alerts: dict[str, int] = {}
    for a in alerts:
        if a.cleared_at is None:
            open_alerts[a.machine_id] = open_alerts.get(a.machine_id, 0) + 1
    rows = []
    for doc in sorted(machines, key=machine_rank):
        mid = str(doc["id"])
        live, nominal = doc.get("live_hs"), doc.get("nominal_hs")
        count = open_alerts.get(mid, 0)
        rows.append(MachineRow(
            id=mid, model=doc.get("model"), ok=doc.get("error") is None, state=doc.get("state"),
            wrong=wrong_text(doc, count, limits),
            faults=tuple(f for f in (doc.get("faults") or "").split(",") if f),
            live_hs=live, nominal_hs=nominal,
            hashrate_ratio=live / nominal if live is not None and nominal else None,
            power_w=doc.get("power_w"), chip_temp_max_c=doc.get("chip_temp_max_c"),
            fan_min_rpm=doc.get("fan_min_rpm"), boards_present=doc.get("boards_present"),
            boards_expected=doc.get("boards_expected"), last_ok_at=doc.get("last_ok_at"),
            alerts=count, boards=_boards(by_machine.get(mid, ()), limits),
        ))  # fmt: skip
    return rows


def totals(rows: Sequence[MachineRow]) -> dict[str, Any]:
    """The figures above the table: machines, how many are wrong, hashrate and power."""
    return {
        "machines": len(rows),
        "wrong": sum(1 for r in rows if r.wrong),
        "unreachable": sum(1 for r in rows if not r.ok),
        "live_hs": sum(r.live_hs or 0.0 for r in rows),
        "power_w": sum(r.power_w or 0.0 for r in rows),
    }


# -- the pages ---------------------------------------------------------------------------------


async def _read(request: web.Request, fn: Any) -> Any:
    return await request.app[FLEET_STORE_KEY].call(fn)


async def _context(request: web.Request) -> tuple[dict[str, Any], int]:
    """What the fleet page and its live fragment show, and the status to answer with."""
    base: dict[str, Any] = {"title": "Fleet", "rows": [], "totals": None,
                            "hashrate": format_hashrate}  # fmt: skip
    if FLEET_STORE_KEY not in request.app:
        return base | {"available": False, "message": NO_STORE}, 200

    def read(sql: FleetSql) -> tuple[Any, Any, Any]:
        return sql.machines(), sql.boards(), sql.alerts(active_only=True, limit=ALERTS_SHOWN)

    try:
        machines, boards, alerts = await _read(request, read)
    except LedgerError:
        message = "The fleet store cannot be read right now; try again."
        return base | {"available": False, "message": message}, 503
    rows = fleet_view(machines, boards, alerts)
    message = "" if rows else "The fleet store holds no machine yet: none has been polled."
    return base | {"available": True, "message": message, "rows": rows,
                   "totals": totals(rows)}, 200  # fmt: skip


async def _fleet(request: web.Request, site: Site) -> web.Response:
    query_args(request.query.items(), ())
    context, status = await _context(request)
    return site.render(request, "fleet.html", status=status, **context)


async def _fragment(request: web.Request, site: Site) -> web.Response:
    """The table, totals and heat map alone: what the page swaps in on an alert or a timer."""
    query_args(request.query.items(), ())
    context, status = await _context(request)
    if not context["available"]:
        return site.render(request, "fleet_empty.html", status=status, **context)
    return site.render(request, "fleet_table.html", status=status, **context)


async def _machine(request: web.Request, site: Site) -> web.Response:
    if FLEET_STORE_KEY not in request.app:
        return site.not_found(request, NO_STORE)
    machine_id = request.match_info["id"]
    if len(machine_id) > 300:
        return site.not_found(request, "no such machine")

    def read(sql: FleetSql) -> tuple[Any, Any]:
        return sql.machine(machine_id), sql.alerts(active_only=True, limit=ALERTS_SHOWN,
                                                   machine_id=machine_id)  # fmt: skip

    doc, alerts = await _read(request, read)
    if doc is None:
        return site.not_found(request, f"No machine {machine_id!r} has been polled.")
    boards = [{**b, "machine_id": machine_id} for b in doc.pop("boards")]
    (row,) = fleet_view([doc], boards, alerts)
    return site.render(request, "fleet_machine.html", title=f"Machine {machine_id}", row=row,
                       doc=doc, doc_boards=boards, alerts=alerts,
                       hashrate=format_hashrate)  # fmt: skip


def add_routes(app: web.Application, site: Site) -> None:
    """The fleet pages (always listed: without a store the page says how to get one)."""
    site.page("/fleet", functools.partial(_fleet, site=site), nav="Fleet", order=60)
    site.page("/fleet/machines/{id}", functools.partial(_machine, site=site))
    app.router.add_get("/fleet/fragments/table", functools.partial(_fragment, site=site))
