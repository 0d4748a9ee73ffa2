"""`hashfarm customer|contract|meter`: a hosting farm's customers, contracts and meter readings.

`hashfarm bill` (the invoices) is `cli/bill.py`; the options and helpers both share are here.

Every command opens the hosting database (`--db`, a SQLite file in the working directory
unless told; `postgresql://...` works the same) and does one transaction. Amounts are given
and shown in currency units with two decimals (stored as integer cents), rates as decimal
text, percentages as percent. Times are ISO 8601 (UTC) or unix seconds; `--at` stands in for
"now" where a command records a time. A bill run reads the machines' power samples from the
fleet poller's store (`--fleet-db URL`, its 5-min or hourly rollups: `cli/hosting_fleet.py`)
or from `--samples FILE.csv` (`machine_id,time,watts,state`).
Errors exit 1 with one line; a malformed CSV lists its bad lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import orjson

from hashfarm.errors import HashfarmError
from hashfarm.hosting import billing
from hashfarm.hosting.contracts import Method, Terms, parse_bands
from hashfarm.hosting.inputs import (
    parse_meter_csv,
    read_text,
)
from hashfarm.hosting.invoice import Machine
from hashfarm.hosting.money import fmt_cents, parse_cents, parse_decimal
from hashfarm.hosting.money import parse_percent_bps as pct
from hashfarm.hosting.period import fmt_day, fmt_time, parse_time
from hashfarm.hosting.store import Contract, Customer, HostingStore, InvoiceRecord, connect

DEFAULT_DB = "sqlite:///hashfarm-hosting.sqlite3"

db_option = click.option(
    "--db", default=DEFAULT_DB, show_default=True, envvar="HASHFARM_HOSTING_DB",
    metavar="URL", help="Hosting database: sqlite:///PATH or postgresql://...",
)  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
at_option = click.option("--at", "at", default=None, metavar="TIME", help="When (default: now).")


@contextmanager
def open_store(url: str) -> Iterator[HostingStore]:
    try:
        store = connect(url)
    except HashfarmError as exc:
        raise click.ClickException(_redact(str(exc), url)) from None
    try:
        yield store
    except HashfarmError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def _redact(text: str, url: str) -> str:
    from urllib.parse import urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    return text.replace(password, "***") if password else text


def when(at: str | None) -> int:
    try:
        return int(time.time()) if at is None else parse_time(at, "--at")
    except HashfarmError as exc:
        raise click.BadParameter(str(exc)) from None


def checked(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except HashfarmError as exc:
        raise click.ClickException(str(exc)) from None


def emit(data: Any, as_json: bool, text: list[str]) -> None:
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo("\n".join(text))


# -- customers ------------------------------------------------------------------------------


@click.group("customer")
def customer() -> None:
    """Hosting customers: add, list, show, prepay."""


@customer.command("add")
@click.argument("customer_id")
@click.option("--name", required=True, help="The customer's name.")
@click.option("--email", default="", help="Where invoices go.")
@db_option
@at_option
def customer_add(customer_id: str, name: str, email: str, db: str, at: str | None) -> None:
    """Add a customer."""
    with open_store(db) as s, s.tx():
        s.add_customer(Customer(customer_id, name, email), when(at))
    click.echo(f"customer {customer_id} added")


@customer.command("list")
@db_option
@json_option
def customer_list(db: str, as_json: bool) -> None:
    """Every customer."""
    with open_store(db) as s:
        rows = s.customers()
    data = [{"id": c.id, "name": c.name, "email": c.email} for c in rows]
    emit(data, as_json, [f"{c.id:<20} {c.name:<30} {c.email}" for c in rows] or ["(none)"])


@customer.command("show")
@click.argument("customer_id")
@db_option
@json_option
def customer_show(customer_id: str, db: str, as_json: bool) -> None:
    """A customer's contracts, machines, prepayment left and invoices."""
    with open_store(db) as s:
        c = s.customer(customer_id)
        if c is None:
            raise click.ClickException(f"no customer {customer_id!r}")
        contracts = s.contracts(customer_id)
        machines = [a for a in s.assignments() if a.customer_id == customer_id]
        prepaid = s.prepaid_available(customer_id)
        invoices = s.invoices(customer_id=customer_id)
    spans = [{"machine": a.machine_id, "contract": a.contract_id, "from": fmt_time(a.start),
              "to": None if a.end is None else fmt_time(a.end)} for a in machines]  # fmt: skip
    data = {
        "id": c.id, "name": c.name, "email": c.email, "prepaid_available": fmt_cents(prepaid),
        "contracts": [{"id": k.id, "terms": k.terms.describe()} for k in contracts],
        "assignments": spans,
        "invoices": [brief(r) for r in invoices],
    }  # fmt: skip
    text = [f"{c.id}: {c.name} <{c.email}>", f"prepaid available: {fmt_cents(prepaid)}"]
    text += [f"contract {k.id}: {k.terms.describe()}" for k in contracts]
    text += [f"machine {a['machine']} ({a['contract']}) {a['from']} .. {a['to'] or 'now'}"
             for a in spans]  # fmt: skip
    text += [brief_line(r) for r in invoices]
    emit(data, as_json, text)


@customer.command("prepay")
@click.argument("customer_id")
@click.argument("amount")
@click.option("--note", default="", help="A reference (bank transfer id, ...).")
@db_option
@at_option
def customer_prepay(customer_id: str, amount: str, note: str, db: str, at: str | None) -> None:
    """Record a prepayment, applied to the customer's next invoices."""
    cents = checked(lambda: parse_cents(amount, "amount"))
    with open_store(db) as s, s.tx():
        s.add_prepayment(customer_id, cents, when(at), note)
    click.echo(f"{customer_id}: prepayment {fmt_cents(cents)} recorded")


# -- contracts and machines -------------------------------------------------------------------


@click.group("contract")
def contract() -> None:
    """Hosting contracts and the machines assigned under them."""


@contract.command("add")
@click.argument("contract_id")
@click.option("--customer", "customer_id", required=True)
@click.option("--method", type=click.Choice([m.value for m in Method]), required=True)
@click.option("--rate", help="Per kWh (nameplate, metered, rated_markup), e.g. 0.065.")
@click.option("--markup", default="0", help="rated_markup: overhead on rated power, percent.")
@click.option("--bands", default="", help="btc_indexed: FLOOR_USD:RATE,... e.g. 0:0.055,90000:0.07")
@click.option("--share", default="0", help="revenue_share: the farm's share, percent.")
@click.option("--hosting-fee", default="0", help="Per machine per month.")
@click.option("--sla", default=None, help="Uptime promised, percent (credit below it).")
@click.option("--deposit", default="0", help="Held by the farm (shown, never applied).")
@click.option("--net-days", default=15, show_default=True, type=int, help="Payment terms.")
@click.option("--currency", default="USD", show_default=True)
@db_option
@at_option
def contract_add(
    contract_id: str, customer_id: str, method: str, rate: str | None, markup: str, bands: str,
    share: str, hosting_fee: str, sla: str | None, deposit: str, net_days: int,
    currency: str, db: str, at: str | None,
) -> None:  # fmt: skip
    """Add a contract for a customer."""
    terms = checked(
        lambda: Terms(
            Method(method),
            None if rate is None else parse_decimal(rate, "--rate"),
            pct(markup, "--markup"),
            parse_bands(bands) if bands else (),
            pct(share, "--share"),
            parse_cents(hosting_fee, "--hosting-fee"),
            None if sla is None else pct(sla, "--sla"),
            parse_cents(deposit, "--deposit"),
            net_days,
            currency.upper(),
        )
    )
    with open_store(db) as s, s.tx():
        s.add_contract(Contract(contract_id, customer_id, terms), when(at))
    click.echo(f"contract {contract_id} added: {terms.describe()}")


@contract.command("list")
@click.option("--customer", "customer_id", default=None)
@db_option
@json_option
def contract_list(customer_id: str | None, db: str, as_json: bool) -> None:
    """Every contract (of one customer)."""
    with open_store(db) as s:
        rows = s.contracts(customer_id)
    data = [{"id": c.id, "customer": c.customer_id, "terms": c.terms.describe()} for c in rows]
    text = [f"{c.id:<20} {c.customer_id:<20} {c.terms.describe()}" for c in rows]
    emit(data, as_json, text or ["(none)"])


@contract.command("show")
@click.argument("contract_id")
@db_option
@json_option
def contract_show(contract_id: str, db: str, as_json: bool) -> None:
    """A contract's terms and its machines."""
    with open_store(db) as s:
        c = s.contract(contract_id)
        if c is None:
            raise click.ClickException(f"no contract {contract_id!r}")
        assigned = [a for a in s.assignments() if a.contract_id == contract_id]
    t = c.terms
    spans = [{"machine": a.machine_id, "from": fmt_time(a.start),
              "to": None if a.end is None else fmt_time(a.end)} for a in assigned]  # fmt: skip
    data = {
        "id": c.id, "customer": c.customer_id, "method": str(t.method), "describe": t.describe(),
        "hosting_fee": fmt_cents(t.hosting_fee_cents), "currency": t.currency,
        "sla_percent": None if t.sla_bps is None else t.sla_bps / 100,
        "deposit": fmt_cents(t.deposit_cents), "net_days": t.net_days,
        "machines": spans,
    }  # fmt: skip
    text = [f"{c.id} ({c.customer_id}): {t.describe()}",
            f"hosting fee {fmt_cents(t.hosting_fee_cents)} {t.currency}/machine/month, "
            f"SLA {'-' if t.sla_bps is None else f'{t.sla_bps / 100:g}%'}, "
            f"deposit {fmt_cents(t.deposit_cents)}, net {t.net_days} days"]  # fmt: skip
    text += [f"machine {m['machine']} {m['from']} .. {m['to'] or 'now'}" for m in spans]
    emit(data, as_json, text)


@contract.command("assign")
@click.argument("machine_id")
@click.argument("contract_id")
@click.option(
    "--from", "start", required=True, metavar="TIME", help="From when (a date: 00:00 UTC)."
)
@click.option("--model", default=None, help="Catalog model (fills the watts), e.g. 'S19 Pro'.")
@click.option("--nameplate-w", type=int, default=None, help="Nameplate watts.")
@click.option("--rated-w", type=int, default=None, help="Rated watts (default: nameplate).")
@db_option
def contract_assign(
    machine_id: str, contract_id: str, start: str, model: str | None,
    nameplate_w: int | None, rated_w: int | None, db: str,
) -> None:  # fmt: skip
    """Host MACHINE_ID under CONTRACT_ID from --from on (moves it if assigned elsewhere)."""
    since = when(start)
    with open_store(db) as s, s.tx():
        known = s.machine(machine_id)
        machine = _machine(machine_id, known, model, nameplate_w, rated_w)
        s.put_machine(machine)
        a = s.assign(machine_id, contract_id, since)
    click.echo(f"{machine_id} -> {a.customer_id} ({contract_id}) from {fmt_time(since)}")


def _machine(mid: str, known: Machine | None, model: str | None, np_w: int | None,
             rated_w: int | None) -> Machine:  # fmt: skip
    name = model or (known.model if known else "")
    if model and np_w is None:
        from hashfarm.economics.catalog import find_model

        found = checked(lambda: find_model(model))
        if found.power_w is None:
            raise click.ClickException(
                f"{found.model}: the catalog has no power; give --nameplate-w"
            )
        np_w, name = int(found.power_w), found.model
    np_w = np_w or (known.nameplate_w if known else None)
    if np_w is None or np_w <= 0:
        raise click.ClickException(f"{mid}: a new machine needs --model or --nameplate-w")
    rated = rated_w or (known.rated_w if known and not model else np_w)
    return Machine(mid, name, np_w, rated)


@contract.command("unassign")
@click.argument("machine_id")
@click.option("--at", "at", required=True, metavar="TIME", help="When it leaves the farm.")
@db_option
def contract_unassign(machine_id: str, at: str, db: str) -> None:
    """End a machine's hosting (it leaves the farm)."""
    with open_store(db) as s, s.tx():
        s.unassign(machine_id, when(at))
    click.echo(f"{machine_id}: hosting ends {fmt_time(when(at))}")


# -- meter readings -----------------------------------------------------------------------------


@click.group("meter")
def meter() -> None:
    """PDU and sub-meter readings."""


@meter.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
def meter_import(file: Path, db: str) -> None:
    """Import cumulative kWh readings (machine_id,time,kwh): all rows or none."""
    readings = checked(lambda: parse_meter_csv(read_text(file.read_bytes(), str(file))))
    with open_store(db) as s:
        new = billing.import_meter(s, readings)
    click.echo(f"{file}: {len(readings)} readings, {new} new")


def brief(r: InvoiceRecord) -> dict[str, Any]:
    return {"number": r.number, "customer": r.customer_id, "period": r.period, "kind": r.kind,
            "state": str(r.state), "total": fmt_cents(r.total_cents), "sats": r.total_sats,
            "due": None if r.due_at is None else fmt_day(r.due_at)}  # fmt: skip


def brief_line(r: InvoiceRecord) -> str:
    return (f"{r.number:<28} {r.customer_id:<14} {r.period} {r.state:<9} "
            f"{fmt_cents(r.total_cents):>14} {r.total_sats:>12,} sats")  # fmt: skip
