"""`hashfarm bill`: run a month's invoices, show and export them, move them through their states.

`bill run --period 2026-11` drafts every customer's invoice from the machines' power samples
(the fleet poller's store with `--fleet-db URL`, or `--samples FILE.csv`), mined satoshis
(`--mined`) and BTC prices (`--prices`); closed invoices are never recomputed (`bill
reissue` credits one explicitly). Shared options and helpers live in `cli/hosting.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import orjson

from hashfarm.cli.hosting import (
    at_option,
    brief,
    brief_line,
    checked,
    db_option,
    emit,
    json_option,
    open_store,
    when,
)
from hashfarm.hosting import billing
from hashfarm.hosting.inputs import (
    parse_curtailment_csv,
    parse_mined_csv,
    parse_prices_csv,
    parse_samples_csv,
    read_text,
)
from hashfarm.hosting.invoice import Charge
from hashfarm.hosting.money import fmt_cents, fmt_fraction, parse_cents
from hashfarm.hosting.period import Period, fmt_day
from hashfarm.hosting.power import PowerSource
from hashfarm.hosting.sources import (
    CurtailmentWindows,
    DailyMined,
    DailyPrices,
    SeriesPowerSource,
)
from hashfarm.hosting.store import HostingStore, InvoiceRecord


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
@click.option("--curtailment", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Farm switch-offs: machine_id,start,end (* = all).")  # fmt: skip
@click.option("--max-hold", default=billing.DEFAULT_MAX_HOLD_S, show_default=True, type=int,
              help="Seconds a power sample speaks for (no data after).")  # fmt: skip
@db_option
@at_option
@json_option
def bill_run(
    period: str, samples: Path | None, fleet_db: str | None, fleet_resolution: str,
    mined: Path | None, prices: Path | None, curtailment: Path | None, max_hold: int,
    db: str, at: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Draft every customer's invoice for a period (closed invoices are left alone).

    Power samples come from --samples FILE.csv or from the fleet poller's --fleet-db.
    """
    if (samples is None) == (fleet_db is None):
        raise click.UsageError("give one of --samples FILE.csv or --fleet-db URL")
    p = checked(lambda: Period.parse(period))
    mined_src = DailyMined(checked(lambda: parse_mined_csv(_read(mined)))) if mined else None
    price_src = DailyPrices(checked(lambda: parse_prices_csv(_read(prices)))) if prices else None
    off = (CurtailmentWindows(checked(lambda: parse_curtailment_csv(_read(curtailment))))
           if curtailment else None)  # fmt: skip
    with _power(samples, fleet_db, int(fleet_resolution)) as power, open_store(db) as s:
        r = billing.run_period(s, p, power, now=when(at), mined=mined_src, prices=price_src,
                               curtailment=off, max_hold_s=max_hold)  # fmt: skip
    data = {"period": r.period, "written": r.written, "unchanged": r.unchanged,
            "closed": r.closed, "errors": r.errors}  # fmt: skip
    text = [f"{r.period}: {len(r.written)} drafted, {len(r.unchanged)} unchanged, "
            f"{len(r.closed)} closed (not recomputed), {len(r.errors)} errors"]  # fmt: skip
    text += [f"closed: {c} (use `bill reissue` to change it)" for c in r.closed]
    text += [f"error: {c}: {e}" for c, e in r.errors.items()]
    emit(data, as_json, text)
    if r.errors:
        raise SystemExit(1)


@contextmanager
def _power(samples: Path | None, fleet_db: str | None, resolution: int) -> Iterator[PowerSource]:
    if samples is not None:
        yield SeriesPowerSource(checked(lambda: parse_samples_csv(_read(samples))))
        return
    from hashfarm.cli.hosting_fleet import FleetPowerSource
    from hashfarm.fleet.store import connect as fleet_connect

    assert fleet_db is not None
    fleet = checked(lambda: fleet_connect(fleet_db))
    try:
        yield FleetPowerSource(fleet, resolution)
    finally:
        fleet.close()


def _read(path: Path | None) -> str:
    assert path is not None
    return read_text(path.read_bytes(), str(path))


@bill.command("list")
@click.option("--period", default=None)
@click.option("--customer", "customer_id", default=None)
@db_option
@json_option
def bill_list(period: str | None, customer_id: str | None, db: str, as_json: bool) -> None:
    """Invoices and credit notes."""
    with open_store(db) as s:
        rows = s.invoices(period, customer_id)
    emit([brief(r) for r in rows], as_json, [brief_line(r) for r in rows] or ["(none)"])


def _find(s: HostingStore, number: str) -> InvoiceRecord:
    rec = s.invoice(number)
    if rec is None:
        raise click.ClickException(f"no invoice {number!r} (see `hashfarm bill list`)")
    return rec


@bill.command("show")
@click.argument("number")
@db_option
@json_option
def bill_show(number: str, db: str, as_json: bool) -> None:
    """One invoice: lines, kWh by method with the metered variance, uptime, totals."""
    from hashfarm.hosting.export import to_csv

    with open_store(db) as s:
        rec = _find(s, number)
    inv = rec.invoice
    if as_json:
        click.echo(orjson.dumps({**brief(rec), "document": orjson.loads(rec.document)},
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
@db_option
def bill_export(number: str, fmt: str, output: Path, db: str) -> None:
    """Write an invoice as CSV or PDF (PDF needs the `pdf` extra)."""
    from hashfarm.hosting.export import to_csv, to_pdf

    with open_store(db) as s:
        rec = _find(s, number)
        cust = s.customer(rec.customer_id)
    if fmt == "csv":
        output.write_text(to_csv(rec))
    else:
        output.write_bytes(checked(lambda: to_pdf(rec, cust.name if cust else "")))
    click.echo(f"{number} -> {output}")


@bill.command("issue")
@click.argument("numbers", nargs=-1)
@click.option("--period", default=None, help="Issue every draft of this period.")
@db_option
@at_option
def bill_issue(numbers: tuple[str, ...], period: str | None, db: str, at: str | None) -> None:
    """Draft -> Issued (closed: later runs never recompute it)."""
    now = when(at)
    with open_store(db) as s:
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
@db_option
@at_option
def bill_pay(number: str, db: str, at: str | None) -> None:
    """Issued or Overdue -> Paid."""
    with open_store(db) as s:
        billing.pay(s, number, when(at))
    click.echo(f"{number}: paid")


@bill.command("overdue")
@db_option
@at_option
def bill_overdue(db: str, at: str | None) -> None:
    """Issued invoices past their due date -> Overdue."""
    with open_store(db) as s:
        done = billing.mark_overdue(s, when(at))
    click.echo("\n".join(f"{n}: overdue" for n in done) or "none overdue")


@bill.command("reissue")
@click.argument("customer_id")
@click.option("--period", required=True)
@db_option
@at_option
def bill_reissue(customer_id: str, period: str, db: str, at: str | None) -> None:
    """Credit a closed invoice in full (credit note); the next run drafts a new revision."""
    p = checked(lambda: Period.parse(period))
    with open_store(db) as s:
        note = billing.reissue(s, customer_id, p, when(at))
    click.echo(
        f"{note.number}: credit note {fmt_cents(note.total_cents)} for {note.credits_number}"
    )


@bill.command("charge")
@click.argument("customer_id")
@click.argument("amount")
@click.option("--description", required=True, help="What it is for (a repair, parts).")
@click.option("--machine", "machine_id", default="", help="The machine it concerns.")
@db_option
@at_option
def bill_charge(customer_id: str, amount: str, description: str, machine_id: str, db: str,
                at: str | None) -> None:  # fmt: skip
    """Add a one-off line (a repair) to the invoice of the period containing --at."""
    cents = checked(lambda: parse_cents(amount, "amount"))
    now = when(at)
    with open_store(db) as s, s.tx():
        s.add_charge(Charge(customer_id, machine_id, now, description, cents))
    click.echo(f"{customer_id}: {fmt_cents(cents)} {description!r} on {fmt_day(now)}")
