"""The hosting farm's HTTP routes: customers, invoices and bill runs over a `HostingStore`.

Customers' bills are private, so every route needs the admin token, checked as the ban
routes check it (`api/admin.py`: `Authorization: Bearer TOKEN`, constant-time compare; 403
with no token configured, 401 for a missing or wrong one). Routes:

- `GET /api/admin/hosting/customers`; `GET /api/admin/hosting/customers/{id}` (contracts,
  machines' assignments, prepayment left, invoices);
- `GET /api/admin/hosting/invoices?period=YYYY-MM&customer=ID` (both optional);
- `GET /api/admin/hosting/invoices/{number}`: lines and totals in integer cents (and sats),
  kWh and other exact quantities as exact text (`exact`);
- `GET /api/admin/hosting/invoices/{number}.csv`: the CSV of `hashfarm bill export`;
- `POST /api/admin/hosting/bill-runs` `{"period": "2026-11"}`: the idempotent bill run of
  `hashfarm bill run`, over the power source (and mined sats, prices, curtailment) the
  `HostingSource` was given;
- `POST /api/admin/hosting/invoices/{number}/issue` and `.../pay`: the lifecycle's legal
  transitions; any other is a 409 naming the states allowed;
- `GET /api/admin/hosting/report?as_of=YYYY-MM-DD&customer=ID&machine=ID&life_days=N`: the
  seller's promise against reality, the JSON of `hashfarm farm report --json` (no charts),
  over the mined satoshis (or accepted work) and prices of the `HostingSource`'s `report`;
  without one a 503.

The store is synchronous (sqlite3 or psycopg), so every call runs on one thread of its own,
never on the event loop; the store is opened there on first use and closed with the app.
Query parameters and bodies are strict (`api/params.py`): 400 naming the parameter; an
unknown customer or invoice is a 404; an illegal transition a 409; a bill run over bad
inputs a 422 (nothing written); no power source, or a database that cannot be used, a 503.
`hashfarm farm serve` (cli/farm_serve.py) serves them with `make_hosting_app`; the pool's
`make_app(..., hosting_store=)` can mount them too. The report's promise (the calculator's
payback) is wired in `cli`, which passes its `reports` function in (`ReportSource.build`):
api never imports cli, and there is one implementation.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeVar

import orjson
from aiohttp import web

from hashfarm.api.admin import _Guard, error, respond
from hashfarm.api.params import BadRequest, int_arg, json_object, query_args, shown
from hashfarm.hosting import billing
from hashfarm.hosting.errors import HostingError, StateError
from hashfarm.hosting.export import to_csv
from hashfarm.hosting.money import fmt_decimal, to_text
from hashfarm.hosting.period import SECONDS_PER_DAY, Period, fmt_day, fmt_time, parse_time
from hashfarm.hosting.power import PowerSource
from hashfarm.hosting.promise import DEFAULT_LIFE_DAYS, MachineReport
from hashfarm.hosting.sources import BtcPrices, Curtailment, MinedSats
from hashfarm.hosting.store import HostingStore, InvoiceRecord, check_id, connect

__all__ = [
    "HOSTING_KEY",
    "HostingSource",
    "ReportSource",
    "add_routes",
    "exact",
    "invoice_json",
    "make_hosting_app",
]

log = logging.getLogger("hashfarm.api.hosting")

PREFIX = "/api/admin/hosting"
_PERIOD = re.compile(r"[0-9]{4}-[0-9]{2}")
T = TypeVar("T")


@dataclass(frozen=True)
class ReportSource:
    """What the report route reads: `build(store, as_of, mined, prices, customer=,
    machine=, life_days=)` is `cli.farm.reports` (the calculator's promise is wired there),
    over `mined` and `prices`; `earned_from` says which source (as the CLI's JSON does)."""

    build: Callable[..., list[MachineReport]]
    mined: MinedSats
    prices: BtcPrices
    earned_from: str


@dataclass(frozen=True)
class HostingSource:
    """What the hosting routes serve: the hosting database (`sqlite:///PATH` or
    `postgresql://...`) and what a bill run reads. Without `power`, bill runs answer 503;
    `mined`, `prices` and `curtailment` are used as `billing.run_period` uses them. The
    sources are called from the hosting thread only; `clock` is "now" for runs and states."""

    url: str
    power: PowerSource | None = None
    mined: MinedSats | None = None
    prices: BtcPrices | None = None
    curtailment: Curtailment | None = None
    max_hold_s: int = billing.DEFAULT_MAX_HOLD_S
    clock: Callable[[], float] = time.time
    report: ReportSource | None = None


class _Worker:
    """The hosting store on one thread of its own: opened there on first use."""

    def __init__(self, source: HostingSource) -> None:
        self.source = source
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hashfarm-hosting")
        self._store: HostingStore | None = None

    def _run(self, fn: Callable[[HostingStore], T]) -> T:
        if self._store is None:
            try:
                self._store = connect(self.source.url)
            except HostingError as exc:
                raise _Unavailable(str(exc)) from exc
        return fn(self._store)

    async def call(self, fn: Callable[[HostingStore], T]) -> T:
        """`fn(store)` on the hosting thread. The database away or failing is a 503; any
        other HostingError (bad power samples in a bill run, ...) a 422 with its message;
        a StateError passes through for the handler to answer (409)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._run, fn)
        except StateError:
            raise
        except (HostingError, _Unavailable) as exc:
            log.warning("hosting: %s", exc)
            if isinstance(exc, _Unavailable) or _from_database(exc):
                raise web.HTTPServiceUnavailable(
                    reason="the hosting database cannot be used right now"
                ) from exc
            raise web.HTTPUnprocessableEntity(reason=str(exc)) from exc

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close)
        self._pool.shutdown(wait=True)


HOSTING_KEY = web.AppKey("hosting", _Worker)


class _Unavailable(Exception):
    """The hosting database could not be opened."""


def _from_database(exc: BaseException) -> bool:
    """Whether a HostingError wraps a driver error (sqlite3 or psycopg), not a bad request."""
    cause = exc.__cause__
    return isinstance(cause, sqlite3.Error) or (
        cause is not None and type(cause).__module__.startswith("psycopg")
    )


def exact(value: Fraction) -> str:
    """An exact value as text: plain decimal when it has one ("2232.5"), else "n/d"."""
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return fmt_decimal(value) if d == 1 else to_text(value)


def _when(unix: int | None) -> str | None:
    return None if unix is None else fmt_time(unix)


def brief_json(r: InvoiceRecord) -> dict[str, Any]:
    """An invoice's heading: number, customer, period, state, totals in cents and sats."""
    return {"number": r.number, "customer": r.customer_id, "period": r.period, "kind": r.kind,
            "revision": r.revision, "state": str(r.state), "total_cents": r.total_cents,
            "total_sats": r.total_sats, "prepaid_cents": r.prepaid_cents,
            "issued_at": _when(r.issued_at), "due_at": _when(r.due_at),
            "paid_at": _when(r.paid_at), "credits": r.credits_number}  # fmt: skip


def invoice_json(r: InvoiceRecord) -> dict[str, Any]:
    """One invoice in full: heading, lines (cents, sats), usage per machine (exact kWh)."""
    inv = r.invoice
    lines = [{"kind": x.kind, "machine": x.machine_id, "description": x.description,
              "quantity": exact(x.quantity), "unit": x.unit, "unit_price": exact(x.unit_price),
              "cents": x.cents, "sats": x.sats} for x in inv.lines]  # fmt: skip
    usage = []
    for u in inv.usage:
        var, up = u.variance_kwh, u.uptime
        usage.append({
            "machine": u.machine_id, "contract": u.contract_id, "method": u.method,
            "from": fmt_time(u.start), "to": fmt_time(u.end),
            "billed_kwh": exact(u.billed_kwh), "calculated_kwh": exact(u.calculated_kwh),
            "metered_kwh": None if u.metered_kwh is None else exact(u.metered_kwh),
            "variance_kwh": None if var is None else exact(var),
            "running_s": u.running_s, "curtailed_s": u.curtailed_s, "down_s": u.down_s,
            "uptime": None if up is None else exact(up),
        })  # fmt: skip
    return {**brief_json(r), "currency": inv.currency, "deposit_cents": inv.deposit_cents,
            "net_days": inv.net_days, "lines": lines, "usage": usage}  # fmt: skip


def _worker(request: web.Request) -> _Worker:
    return request.app[HOSTING_KEY]


def _number(request: web.Request) -> str:
    number = request.match_info["number"]
    if len(number) > 100:
        raise BadRequest(f"invoice number {shown(number)} is too long")
    return number


def _no_invoice(number: str) -> web.Response:
    return error(404, f"no invoice {shown(number)}")


async def _customers(request: web.Request) -> web.Response:
    query_args(request.query.items(), ())
    rows = await _worker(request).call(lambda s: s.customers())
    return respond({"customers": [{"id": c.id, "name": c.name, "email": c.email} for c in rows]})


async def _customer(request: web.Request) -> web.Response:
    query_args(request.query.items(), ())
    cid = request.match_info["id"]

    def read(s: HostingStore) -> dict[str, Any] | None:
        c = s.customer(cid)
        if c is None:
            return None
        spans = [{"machine": a.machine_id, "contract": a.contract_id, "from": fmt_time(a.start),
                  "to": _when(a.end)} for a in s.assignments() if a.customer_id == cid]  # fmt: skip
        return {
            "id": c.id, "name": c.name, "email": c.email,
            "prepaid_available_cents": s.prepaid_available(cid),
            "contracts": [{"id": k.id, "method": k.terms.method.value,
                           "terms": k.terms.describe()} for k in s.contracts(cid)],
            "assignments": spans,
            "invoices": [brief_json(r) for r in s.invoices(customer_id=cid)],
        }  # fmt: skip

    doc = await _worker(request).call(read)
    if doc is None:
        return error(404, f"no customer {shown(cid)}")
    return respond(doc)


def _period_arg(raw: object) -> Period:
    if not isinstance(raw, str) or _PERIOD.fullmatch(raw) is None:
        raise BadRequest(f"period must be YYYY-MM (e.g. 2026-11), not {shown(raw)}")
    try:
        return Period.parse(raw)
    except HostingError:
        raise BadRequest(f"period {shown(raw)} is not a month") from None


async def _invoices(request: web.Request) -> web.Response:
    args = query_args(request.query.items(), ("period", "customer"))
    period = None if "period" not in args else str(_period_arg(args["period"]))
    customer = args.get("customer")
    if customer is not None:
        try:
            check_id("customer", customer)
        except HostingError as exc:
            raise BadRequest(str(exc)) from None
    rows = await _worker(request).call(lambda s: s.invoices(period, customer))
    return respond({"invoices": [brief_json(r) for r in rows]})


async def _invoice(request: web.Request) -> web.Response:
    query_args(request.query.items(), ())
    number = _number(request)
    rec = await _worker(request).call(lambda s: s.invoice(number))
    return _no_invoice(number) if rec is None else respond(invoice_json(rec))


async def _invoice_csv(request: web.Request) -> web.Response:
    query_args(request.query.items(), ())
    number = _number(request)
    rec = await _worker(request).call(lambda s: s.invoice(number))
    if rec is None:
        return _no_invoice(number)
    return web.Response(text=to_csv(rec), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{rec.number}.csv"'})  # fmt: skip


async def _body(request: web.Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    raw = await request.read()
    if not raw and not allowed:
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    return json_object(doc, allowed)


async def _bill_run(request: web.Request) -> web.Response:
    query_args(request.query.items(), ())
    doc = await _body(request, ("period",))
    if "period" not in doc:
        raise BadRequest('the body needs a "period" field (YYYY-MM)')
    period = _period_arg(doc["period"])
    src = _worker(request).source
    power = src.power
    if power is None:
        return error(503, "bill runs are off: this API was started without a power source "
                          "(run `hashfarm bill run` instead)")  # fmt: skip
    now = int(src.clock())

    def run(s: HostingStore) -> billing.RunReport:
        return billing.run_period(
            s, period, power, now=now, mined=src.mined, prices=src.prices,
            curtailment=src.curtailment, max_hold_s=src.max_hold_s,
        )  # fmt: skip

    r = await _worker(request).call(run)
    log.warning("admin bill run %s: %d drafted, %d unchanged, %d closed, %d errors "
                "(request from %s)", r.period, len(r.written), len(r.unchanged), len(r.closed),
                len(r.errors), request.remote)  # fmt: skip
    return respond({"period": r.period, "written": r.written, "unchanged": r.unchanged,
                    "closed": r.closed, "errors": r.errors})  # fmt: skip


def _transition(
    action: Callable[[HostingStore, str, int], InvoiceRecord],
) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        query_args(request.query.items(), ())
        await _body(request, ())
        number = _number(request)
        now = int(_worker(request).source.clock())

        def change(s: HostingStore) -> InvoiceRecord | None:
            return None if s.invoice(number) is None else action(s, number, now)

        try:
            rec = await _worker(request).call(change)
        except StateError as exc:
            return error(409, str(exc))
        if rec is None:
            return _no_invoice(number)
        log.warning("admin: %s is now %s (request from %s)", number, rec.state, request.remote)
        return respond(invoice_json(rec))

    return handler


def _day_arg(raw: str, name: str) -> int:
    try:
        t = parse_time(raw, name)
    except HostingError as exc:
        raise BadRequest(str(exc)) from None
    if t % SECONDS_PER_DAY or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
        raise BadRequest(f"{name} must be a day, YYYY-MM-DD, not {shown(raw)}")
    return t


def _id_arg(args: dict[str, str], name: str) -> str | None:
    value = args.get(name)
    if value is not None:
        try:
            check_id(name, value)
        except HostingError as exc:
            raise BadRequest(str(exc)) from None
    return value


async def _report(request: web.Request) -> web.Response:
    args = query_args(request.query.items(), ("as_of", "customer", "machine", "life_days"))
    if "as_of" not in args:
        raise BadRequest("the report needs as_of=YYYY-MM-DD (the day it runs up to, exclusive)")
    end = _day_arg(args["as_of"], "as_of")
    customer, machine = _id_arg(args, "customer"), _id_arg(args, "machine")
    life_days = int_arg(args, "life_days", DEFAULT_LIFE_DAYS, 1, 50 * 365)
    rs = _worker(request).source.report
    if rs is None:
        return error(503, "the report is off: this API was started without mined satoshis "
                          "(or accepted work) and prices (run `hashfarm farm report`)")  # fmt: skip

    def build(s: HostingStore) -> list[MachineReport]:
        return rs.build(s, end, rs.mined, rs.prices, customer=customer, machine=machine,
                        life_days=life_days)  # fmt: skip

    rows = await _worker(request).call(build)
    return respond({"as_of": fmt_day(end), "earned_from": rs.earned_from,
                    "machines": [r.to_dict() for r in rows], "charts": {}})  # fmt: skip


def make_hosting_app(source: HostingSource, token: bytes | None) -> web.Application:
    """An application serving only the hosting routes (for `hashfarm farm serve`), with
    the pool API's JSON errors and body limit."""
    from hashfarm.api.server import BODY_MAX, _json_errors

    app = web.Application(middlewares=[_json_errors], client_max_size=BODY_MAX)
    add_routes(app, source, token)
    return app


def add_routes(app: web.Application, source: HostingSource, token: bytes | None) -> None:
    """Register the hosting routes on `app`, each behind the admin token `token`."""
    worker = _Worker(source)
    app[HOSTING_KEY] = worker

    async def close(_: web.Application) -> None:
        await worker.close()

    app.on_cleanup.append(close)
    guard = _Guard(token)
    app.router.add_get(f"{PREFIX}/customers", guard(_customers))
    app.router.add_get(f"{PREFIX}/customers/{{id}}", guard(_customer))
    app.router.add_get(f"{PREFIX}/invoices", guard(_invoices))
    app.router.add_get(f"{PREFIX}/invoices/{{number}}.csv", guard(_invoice_csv))
    app.router.add_get(f"{PREFIX}/invoices/{{number}}", guard(_invoice))
    app.router.add_post(f"{PREFIX}/invoices/{{number}}/issue", guard(_transition(billing.issue)))
    app.router.add_post(f"{PREFIX}/invoices/{{number}}/pay", guard(_transition(billing.pay)))
    app.router.add_post(f"{PREFIX}/bill-runs", guard(_bill_run))
    app.router.add_get(f"{PREFIX}/report", guard(_report))
