"""`hashfarm customer|contract|meter|bill`: a hosting farm's customers, contracts and bills.

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
    parse_mined_csv,
    parse_prices_csv,
    parse_samples_csv,
    read_text,
)
from hashfarm.hosting.invoice import Charge, Machine
from hashfarm.hosting.money import fmt_cents, fmt_fraction, parse_cents, parse_decimal
from hashfarm.hosting.money import parse_percent_bps as pct
from hashfarm.hosting.period import Period, fmt_day, fmt_time, parse_time
from hashfarm.hosting.power import PowerSource
from hashfarm.hosting.sources import DailyMined, DailyPrices, SeriesPowerSource
from hashfarm.hosting.store import Contract, Customer, HostingStore, InvoiceRecord, connect

DEFAULT_DB = "sqlite:///hashfarm-hosting.sqlite3"

_db = click.option(
    "--db", default=DEFAULT_DB, show_default=True, envvar="HASHFARM_HOSTING_DB",
    metavar="URL", help="Hosting database: sqlite:///PATH or postgresql://...",
)  # fmt: skip
_json = click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
_at = click.option("--at", "at", default=None, metavar="TIME", help="When (default: now).")


@contextmanager
def _store(url: str) -> Iterator[HostingStore]:
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


def _when(at: str | None) -> int:
    try:
        return int(time.time()) if at is None else parse_time(at, "--at")
    except HashfarmError as exc:
        raise click.BadParameter(str(exc)) from None


def _checked(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except HashfarmError as exc:
        raise click.ClickException(str(exc)) from None


def _out(data: Any, as_json: bool, text: list[str]) -> None:
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
@_db
@_at
def customer_add(customer_id: str, name: str, email: str, db: str, at: str | None) -> None:
    """Add a customer."""
    with _store(db) as s, s.tx():
        s.add_customer(Customer(customer_id, name, email), _when(at))
    click.echo(f"customer {customer_id} added")


@customer.command("list")
@_db
@_json
def customer_list(db: str, as_json: bool) -> None:
    """Every customer."""
    with _store(db) as s:
        rows = s.customers()
    data = [{"id": c.id, "name": c.name, "email": c.email} for c in rows]
    _out(data, as_json, [f"{c.id:<20} {c.name:<30} {c.email}" for c in rows] or ["(none)"])


@customer.command("show")
@click.argument("customer_id")
@_db
@_json
def customer_show(customer_id: str, db: str, as_json: bool) -> None:
    """A customer's contracts, machines, prepayment left and invoices."""
    with _store(db) as s:
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
        "invoices": [_brief(r) for r in invoices],
    }  # fmt: skip
    text = [f"{c.id}: {c.name} <{c.email}>", f"prepaid available: {fmt_cents(prepaid)}"]
    text += [f"contract {k.id}: {k.terms.describe()}" for k in contracts]
    text += [f"machine {a['machine']} ({a['contract']}) {a['from']} .. {a['to'] or 'now'}"
             for a in spans]  # fmt: skip
    text += [_brief_line(r) for r in invoices]
    _out(data, as_json, text)


@customer.command("prepay")
@click.argument("customer_id")
@click.argument("amount")
@click.option("--note", default="", help="A reference (bank transfer id, ...).")
@_db
@_at
def customer_prepay(customer_id: str, amount: str, note: str, db: str, at: str | None) -> None:
    """Record a prepayment, applied to the customer's next invoices."""
    cents = _checked(lambda: parse_cents(amount, "amount"))
    with _store(db) as s, s.tx():
        s.add_prepayment(customer_id, cents, _when(at), note)
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
@_db
@_at
def contract_add(
    contract_id: str, customer_id: str, method: str, rate: str | None, markup: str, bands: str,
    share: str, hosting_fee: str, sla: str | None, deposit: str, net_days: int,
    currency: str, db: str, at: str | None,
) -> None:  # fmt: skip
    """Add a contract for a customer."""
    terms = _checked(
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
    with _store(db) as s, s.tx():
        s.add_contract(Contract(contract_id, customer_id, terms), _when(at))
    click.echo(f"contract {contract_id} added: {terms.describe()}")


@contract.command("list")
@click.option("--customer", "customer_id", default=None)
@_db
@_json
def contract_list(customer_id: str | None, db: str, as_json: bool) -> None:
    """Every contract (of one customer)."""
    with _store(db) as s:
        rows = s.contracts(customer_id)
    data = [{"id": c.id, "customer": c.customer_id, "terms": c.terms.describe()} for c in rows]
    text = [f"{c.id:<20} {c.customer_id:<20} {c.terms.describe()}" for c in rows]
    _out(data, as_json, text or ["(none)"])


@contract.command("show")
@click.argument("contract_id")
@_db
@_json
def contract_show(contract_id: str, db: str, as_json: bool) -> None:
    """A contract's terms and its machines."""
    with _store(db) as s:
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
    _out(data, as_json, text)


@contract.command("assign")
@click.argument("machine_id")
@click.argument("contract_id")
@click.option(
    "--from", "start", required=True, metavar="TIME", help="From when (a date: 00:00 UTC)."
)
@click.option("--model", default=None, help="Catalog model (fills the watts), e.g. 'S19 Pro'.")
@click.option("--nameplate-w", type=int, default=None, help="Nameplate watts.")
@click.option("--rated-w", type=int, default=None, help="Rated watts (default: nameplate).")
@_db
def contract_assign(
    machine_id: str, contract_id: str, start: str, model: str | None,
    nameplate_w: int | None, rated_w: int | None, db: str,
) -> None:  # fmt: skip
    """Host MACHINE_ID under CONTRACT_ID from --from on (moves it if assigned elsewhere)."""
    when = _when(start)
    with _store(db) as s, s.tx():
        known = s.machine(machine_id)
        machine = _machine(machine_id, known, model, nameplate_w, rated_w)
        s.put_machine(machine)
        a = s.assign(machine_id, contract_id, when)
    click.echo(f"{machine_id} -> {a.customer_id} ({contract_id}) from {fmt_time(when)}")


def _machine(mid: str, known: Machine | None, model: str | None, np_w: int | None,
             rated_w: int | None) -> Machine:  # fmt: skip
    name = model or (known.model if known else "")
    if model and np_w is None:
        from hashfarm.economics.catalog import find_model

        found = _checked(lambda: find_model(model))
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
@_db
def contract_unassign(machine_id: str, at: str, db: str) -> None:
    """End a machine's hosting (it leaves the farm)."""
    with _store(db) as s, s.tx():
        s.unassign(machine_id, _when(at))
    click.echo(f"{machine_id}: hosting ends {fmt_time(_when(at))}")


# -- meter readings -----------------------------------------------------------------------------


@click.group("meter")
def meter() -> None:
    """PDU and sub-meter readings."""


@meter.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_db
def meter_import(file: Path, db: str) -> None:
    """Import cumulative kWh readings (machine_id,time,kwh): all rows or none."""
    readings = _checked(lambda: parse_meter_csv(read_text(file.read_bytes(), str(file))))
    with _store(db) as s:
        new = billing.import_meter(s, readings)
    click.echo(f"{file}: {len(readings)} readings, {new} new")


# -- bills --------------------------------------------------------------------------------------


@click.group("bill")
def bill() -> None:
    """Monthly invoices: run, list, show, export, issue, pay, overdue, reissue, charge."""


@bill.command("run")
@click.option("--period", required=True, help="YYYY-MM")
@click.option("--samples", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Power samples CSV: machine_id,time,watts,state.")  # fmt: skip
@click.option("--fleet-db", metavar="URL", help="Or: the fleet poller's store (its rollups).")
@click.option("--fleet-resolution", type=click.Choice(["300", "3600"]), default="3600",
              show_default=True, help="Which fleet rollups to read, seconds.")  # fmt: skip
@click.option("--mined", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Revenue share: machine_id,day,sats.")  # fmt: skip
@click.option("--prices", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="BTC-indexed: day,btc_usd.")  # fmt: skip
@click.option("--max-hold", default=billing.DEFAULT_MAX_HOLD_S, show_default=True, type=int,
              help="Seconds a power sample speaks for (no data after).")  # fmt: skip
@_db
@_at
@_json
def bill_run(
    period: str, samples: Path | None, fleet_db: str | None, fleet_resolution: str,
    mined: Path | None, prices: Path | None, max_hold: int, db: str, at: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Draft every customer's invoice for a period (closed invoices are left alone).

    Power samples come from --samples FILE.csv or from the fleet poller's --fleet-db.
    """
    if (samples is None) == (fleet_db is None):
        raise click.UsageError("give one of --samples FILE.csv or --fleet-db URL")
    p = _checked(lambda: Period.parse(period))
    mined_src = DailyMined(_checked(lambda: parse_mined_csv(_text(mined)))) if mined else None
    price_src = DailyPrices(_checked(lambda: parse_prices_csv(_text(prices)))) if prices else None
    with _power(samples, fleet_db, int(fleet_resolution)) as power, _store(db) as s:
        r = billing.run_period(s, p, power, now=_when(at), mined=mined_src, prices=price_src,
                               max_hold_s=max_hold)  # fmt: skip
    data = {"period": r.period, "written": r.written, "unchanged": r.unchanged,
            "closed": r.closed, "errors": r.errors}  # fmt: skip
    text = [f"{r.period}: {len(r.written)} drafted, {len(r.unchanged)} unchanged, "
            f"{len(r.closed)} closed (not recomputed), {len(r.errors)} errors"]  # fmt: skip
    text += [f"closed: {c} (use `bill reissue` to change it)" for c in r.closed]
    text += [f"error: {c}: {e}" for c, e in r.errors.items()]
    _out(data, as_json, text)
    if r.errors:
        raise SystemExit(1)


@contextmanager
def _power(samples: Path | None, fleet_db: str | None, resolution: int) -> Iterator[PowerSource]:
    if samples is not None:
        yield SeriesPowerSource(_checked(lambda: parse_samples_csv(_text(samples))))
        return
    from hashfarm.cli.hosting_fleet import FleetPowerSource
    from hashfarm.fleet.store import connect as fleet_connect

    assert fleet_db is not None
    fleet = _checked(lambda: fleet_connect(fleet_db))
    try:
        yield FleetPowerSource(fleet, resolution)
    finally:
        fleet.close()


def _text(path: Path | None) -> str:
    assert path is not None
    return read_text(path.read_bytes(), str(path))


@bill.command("list")
@click.option("--period", default=None)
@click.option("--customer", "customer_id", default=None)
@_db
@_json
def bill_list(period: str | None, customer_id: str | None, db: str, as_json: bool) -> None:
    """Invoices and credit notes."""
    with _store(db) as s:
        rows = s.invoices(period, customer_id)
    _out([_brief(r) for r in rows], as_json, [_brief_line(r) for r in rows] or ["(none)"])


def _brief(r: InvoiceRecord) -> dict[str, Any]:
    return {"number": r.number, "customer": r.customer_id, "period": r.period, "kind": r.kind,
            "state": str(r.state), "total": fmt_cents(r.total_cents), "sats": r.total_sats,
            "due": None if r.due_at is None else fmt_day(r.due_at)}  # fmt: skip


def _brief_line(r: InvoiceRecord) -> str:
    return (f"{r.number:<28} {r.customer_id:<14} {r.period} {r.state:<9} "
            f"{fmt_cents(r.total_cents):>14} {r.total_sats:>12,} sats")  # fmt: skip


def _find(s: HostingStore, number: str) -> InvoiceRecord:
    rec = s.invoice(number)
    if rec is None:
        raise click.ClickException(f"no invoice {number!r} (see `hashfarm bill list`)")
    return rec


@bill.command("show")
@click.argument("number")
@_db
@_json
def bill_show(number: str, db: str, as_json: bool) -> None:
    """One invoice: lines, kWh by method with the metered variance, uptime, totals."""
    from hashfarm.hosting.export import to_csv

    with _store(db) as s:
        rec = _find(s, number)
    inv = rec.invoice
    if as_json:
        click.echo(orjson.dumps({**_brief(rec), "document": orjson.loads(rec.document)},
                                option=orjson.OPT_INDENT_2).decode())  # fmt: skip
        return
    click.echo(f"{rec.number} {rec.customer_id} {rec.period} {rec.state} ({inv.currency})")
    for x in inv.lines:
        amount = f"{x.sats:,} sats" if x.sats else fmt_cents(x.cents)
        click.echo(f"  {x.kind:<13} {x.machine_id:<10} {x.description:<44} "
                   f"{fmt_fraction(x.quantity)} {x.unit:<5} {amount:>14}")  # fmt: skip
    for line in to_csv(rec).splitlines():
        if line.startswith("usage,"):
            click.echo("  usage " + line[len("usage,") :])
    sats = f", {inv.total_sats:,} sats" if inv.total_sats else ""
    held = f"; deposit held {fmt_cents(inv.deposit_cents)}" if inv.deposit_cents else ""
    click.echo(f"  total {fmt_cents(inv.total_cents)} {inv.currency}{sats}{held}")


@bill.command("export")
@click.argument("number")
@click.option("--format", "fmt", type=click.Choice(["csv", "pdf"]), default="csv")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@_db
def bill_export(number: str, fmt: str, output: Path, db: str) -> None:
    """Write an invoice as CSV or PDF (PDF needs the `pdf` extra)."""
    from hashfarm.hosting.export import to_csv, to_pdf

    with _store(db) as s:
        rec = _find(s, number)
        cust = s.customer(rec.customer_id)
    if fmt == "csv":
        output.write_text(to_csv(rec))
    else:
        output.write_bytes(_checked(lambda: to_pdf(rec, cust.name if cust else "")))
    click.echo(f"{number} -> {output}")


@bill.command("issue")
@click.argument("numbers", nargs=-1)
@click.option("--period", default=None, help="Issue every draft of this period.")
@_db
@_at
def bill_issue(numbers: tuple[str, ...], period: str | None, db: str, at: str | None) -> None:
    """Draft -> Issued (closed: later runs never recompute it)."""
    now = _when(at)
    with _store(db) as s:
        todo = list(numbers)
        if period:
            todo += [r.number for r in s.invoices(period) if r.state == "draft"]
        if not todo:
            raise click.ClickException("nothing to issue: give invoice numbers or --period")
        for number in todo:
            rec = billing.issue(s, number, now)
            click.echo(f"{number}: issued, due {fmt_day(rec.due_at or now)}")


@bill.command("pay")
@click.argument("number")
@_db
@_at
def bill_pay(number: str, db: str, at: str | None) -> None:
    """Issued or Overdue -> Paid."""
    with _store(db) as s:
        billing.pay(s, number, _when(at))
    click.echo(f"{number}: paid")


@bill.command("overdue")
@_db
@_at
def bill_overdue(db: str, at: str | None) -> None:
    """Issued invoices past their due date -> Overdue."""
    with _store(db) as s:
        done = billing.mark_overdue(s, _when(at))
    click.echo("\n".join(f"{n}: overdue" for n in done) or "none overdue")


@bill.command("reissue")
@click.argument("customer_id")
@click.option("--period", required=True)
@_db
@_at
def bill_reissue(customer_id: str, period: str, db: str, at: str | None) -> None:
    """Credit a closed invoice in full (credit note); the next run drafts a new revision."""
    p = _checked(lambda: Period.parse(period))
    with _store(db) as s:
        note = billing.reissue(s, customer_id, p, _when(at))
    click.echo(
        f"{note.number}: credit note {fmt_cents(note.total_cents)} for {note.credits_number}"
    )


@bill.command("charge")
@click.argument("customer_id")
@click.argument("amount")
@click.option("--description", required=True, help="What it is for (a repair, parts).")
@click.option("--machine", "machine_id", default="", help="The machine it concerns.")
@_db
@_at
def bill_charge(customer_id: str, amount: str, description: str, machine_id: str, db: str,
                at: str | None) -> None:  # fmt: skip
    """Add a one-off line (a repair) to the invoice of the period containing --at."""
    cents = _checked(lambda: parse_cents(amount, "amount"))
    now = _when(at)
    with _store(db) as s, s.tx():
        s.add_charge(Charge(customer_id, machine_id, now, description, cents))
    click.echo(f"{customer_id}: {fmt_cents(cents)} {description!r} on {fmt_day(now)}")
