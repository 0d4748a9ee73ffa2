"""`hashfarm farm`: the seller's promise against reality for every hosted machine.

`farm purchase MACHINE ...` records what the customer paid and what the seller's payback
calculation assumed on the purchase day (difficulty, BTC price, fees, power rate, hosting);
`farm report --as-of DAY --mined FILE --prices FILE` sets each machine's mined satoshis
(valued at each day's price) less its bills beside that promise. The promise is
`economics.payback.simulate` with the purchase day's network held constant, which is what
`hashfarm calc payback` prints for that day; hosting cannot import economics (siblings in
layer 4), so this module wires it to `hosting.promise.Promise`. The rules are in
`hosting/promise.py` and docs/hosting.md ("Promise against reality").
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from hashfarm.chain.networks import get_network
from hashfarm.cli.farm_serve import farm_serve
from hashfarm.cli.hosting import checked, db_option, emit, json_option, open_store
from hashfarm.economics.catalog import difficulty_epochs
from hashfarm.economics.machine import Costs, Machine
from hashfarm.economics.payback import simulate
from hashfarm.economics.scenario import Scenario, Start
from hashfarm.errors import ConfigError
from hashfarm.hosting.inputs import parse_mined_csv, parse_prices_csv, read_text
from hashfarm.hosting.money import CENTS_PER_UNIT, fmt_cents, parse_cents, parse_decimal
from hashfarm.hosting.period import SECONDS_PER_DAY, fmt_day, parse_time
from hashfarm.hosting.promise import (
    DEFAULT_LIFE_DAYS,
    MachineReport,
    Purchase,
    WorkMined,
    build_report,
    machine_bills,
    parse_network_csv,
    parse_work_csv,
)
from hashfarm.hosting.schema import INVOICE_STATES
from hashfarm.hosting.sources import BtcPrices, DailyMined, DailyPrices, MinedSats
from hashfarm.hosting.store import HostingStore

_CREDITED = INVOICE_STATES[-1]


class PaybackPromise:
    """`hosting.promise.Promise` from the calculator: the purchase day's network forever."""

    def positions(self, purchase: Purchase, days: int) -> list[float]:
        machine = Machine(
            purchase.machine_id,
            float(purchase.hashrate_ths),
            float(purchase.power_w),
            price=purchase.price_cents / CENTS_PER_UNIT,
        )
        costs = Costs(
            power_price_kwh=float(purchase.power_rate),
            hosting_per_month=purchase.hosting_cents_month / CENTS_PER_UNIT,
        )
        start = Start(
            get_network("mainnet"),
            purchase.height,
            float(purchase.difficulty),
            float(purchase.fees_btc),
            float(purchase.btc_price),
        )
        result = simulate(machine, costs, start, Scenario(horizon_days=days))
        return [row.cumulative * CENTS_PER_UNIT for row in result.rows]


def _day(text: str, what: str) -> int:
    t = parse_time(text, what)
    if t % SECONDS_PER_DAY:
        raise click.BadParameter(f"{text!r} is not 00:00 UTC", param_hint=what)
    return t


@click.group("farm")
def farm() -> None:
    """The seller's promise against reality: purchases and the per-machine report."""


farm.add_command(farm_serve)


@farm.command("purchase")
@click.argument("machine_id")
@click.option("--day", required=True, help="Purchase day, YYYY-MM-DD (UTC).")
@click.option("--price", required=True, help="What the customer paid, e.g. 3500.00.")
@click.option("--currency", default="USD", show_default=True)
@click.option("--hashrate-ths", required=True, help="The machine's hashrate the seller used.")
@click.option("--power-w", required=True, type=int, help="Its power at the wall, W.")
@click.option("--difficulty", default=None,
              help="The network difficulty on the purchase day [default: the shipped mainnet "
                   "epoch data's difficulty at --height].")  # fmt: skip
@click.option("--btc-price", required=True,
              help="BTC price on the purchase day (currency/BTC); no price history is shipped, "
                   "so it is always given.")  # fmt: skip
@click.option("--fees-btc", default="0", show_default=True, help="Average fees per block.")
@click.option("--power-rate", required=True, help="Power price per kWh the seller assumed.")
@click.option("--hosting-fee", default="0", show_default=True, help="Hosting per month assumed.")
@click.option("--height", required=True, type=int, help="The next block on the purchase day.")
@db_option
def farm_purchase(machine_id: str, day: str, price: str, currency: str, hashrate_ths: str,
                  power_w: int, difficulty: str, btc_price: str, fees_btc: str, power_rate: str,
                  hosting_fee: str, height: int, db: str) -> None:  # fmt: skip
    """Record a machine's purchase and the seller's purchase-day inputs (replaces any).

    Without --difficulty the difficulty is the one in force at --height (the next block on
    the purchase day) in the shipped mainnet epoch data; a height past the data needs
    --difficulty."""
    if difficulty is None:
        difficulty, where = epoch_difficulty(height)
    else:
        where = "as given (--difficulty)"
    p = checked(
        lambda: Purchase(
            machine_id, _day(day, "--day"), parse_cents(price, "price"), currency.upper(),
            parse_decimal(hashrate_ths, "hashrate"), power_w,
            parse_decimal(difficulty, "difficulty"), parse_decimal(btc_price, "btc price"),
            parse_decimal(fees_btc, "fees"), parse_decimal(power_rate, "power rate"),
            parse_cents(hosting_fee, "hosting fee"), height,
        )
    )  # fmt: skip
    with open_store(db) as store, store.tx():
        store.put_purchase(p)
    click.echo(f"{machine_id}: bought {fmt_day(p.day)} for {fmt_cents(p.price_cents)} {currency}")
    click.echo(f"{machine_id}: network difficulty {difficulty} {where}")


def epoch_difficulty(height: int) -> tuple[str, str]:
    """The difficulty in force at mainnet `height` from the shipped epoch data
    (`hashfarm/data/difficulty_epochs.csv`), as decimal text, and a line saying where it
    came from. The data has heights, not dates: --height ties it to the purchase day.
    A height before 0 or past the last shipped epoch: a usage error asking for --difficulty."""
    epochs = difficulty_epochs()
    last = epochs[-1]
    if not 0 <= height <= last.end_height:
        raise click.UsageError(
            f"--height {height:,} is outside the shipped difficulty data (mainnet heights "
            f"0 to {last.end_height:,}, epoch {last.epoch}): give the purchase day's "
            "network difficulty with --difficulty"
        )
    e = epochs[height // 2016]
    assert e.start_height <= height <= e.end_height, "epoch data out of order"
    text = format(Decimal(repr(e.difficulty)), "f")
    where = (
        f"from the shipped mainnet epoch data: epoch {e.epoch} (heights "
        f"{e.start_height:,}-{e.end_height:,}, bits {e.bits:08x}), the epoch of --height "
        f"{height:,}; the data has no dates, so --height must be the purchase day's"
    )
    return text, where


def _customer(store: HostingStore, machine_id: str, as_of: int) -> str:
    history = [a for a in store.assignments(machine_id) if a.start < as_of]
    return history[-1].customer_id if history else ""


def reports(
    store: HostingStore, as_of: int, mined: MinedSats, prices: BtcPrices, *,
    customer: str | None = None, machine: str | None = None,
    life_days: int = DEFAULT_LIFE_DAYS, halvings: tuple[int, ...] = (),
) -> list[MachineReport]:  # fmt: skip
    """One report per purchased machine (of one customer / one machine)."""
    invoices = [
        (r.invoice, r.state.value != _CREDITED) for r in store.invoices() if r.kind == "invoice"
    ]
    out: list[MachineReport] = []
    for mid, purchase in store.purchases().items():
        if (machine is not None and mid != machine) or purchase.day >= as_of:
            continue  # not asked for, or bought on or after the report's end: nothing yet
        cid = _customer(store, mid, as_of)
        if customer is not None and cid != customer:
            continue
        bills = machine_bills(invoices, mid, purchase.currency)
        out.append(
            build_report(
                purchase,
                cid,
                as_of,
                mined,
                prices,
                bills,
                PaybackPromise(),
                life_days=life_days,
                halvings=halvings,
            )
        )
    return out


def _row(r: MachineReport) -> list[str]:
    pb = r.payback
    promised_pb = "-" if r.promised_payback_day is None else fmt_day(r.promised_payback_day)
    return [
        r.customer_id, r.machine_id, fmt_day(r.purchase.day), str(r.days),
        f"{r.earned_sats:,}", fmt_cents(r.earned_cents),
        fmt_cents(r.bills_cents + r.bills_sats_cents), fmt_cents(r.net_cents),
        fmt_cents(r.position_cents), fmt_cents(r.promised_cents), fmt_cents(r.gap_cents),
        promised_pb, f"{pb.status} {fmt_day(pb.day) if pb.day is not None else ''}".strip(),
    ]  # fmt: skip


HEADERS = ["customer", "machine", "bought", "days", "earned sats", "earned", "bills", "net",
           "position", "promised*", "gap", "promised payback*", "payback"]  # fmt: skip


@farm.command("report")
@click.option("--as-of", "as_of", required=True, help="Report up to this day (exclusive).")
@click.option("--mined", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Mined satoshis CSV: machine_id,day,sats.")  # fmt: skip
@click.option("--work", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Or accepted work CSV: machine_id,day,work (share difficulties).")  # fmt: skip
@click.option("--network", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --work: day,difficulty,reward_sats (subsidy + fees).")  # fmt: skip
@click.option("--prices", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="BTC prices CSV: day,btc_usd (the purchase currency per BTC).")  # fmt: skip
@click.option("--customer", default=None, help="Only this customer's machines.")
@click.option("--machine", default=None, help="Only this machine.")
@click.option("--life-days", type=click.IntRange(1, 50 * 365), default=DEFAULT_LIFE_DAYS,
              show_default=True, help="A machine's life from its purchase day.")  # fmt: skip
@click.option("--halving", "halvings", multiple=True, metavar="DAY",
              help="A halving day the projection halves earnings on (repeatable).")  # fmt: skip
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write one PNG chart per machine into this folder (extra `plot`).")  # fmt: skip
@db_option
@json_option
def farm_report(as_of: str, mined: Path | None, work: Path | None, network: Path | None,
                prices: Path, customer: str | None, machine: str | None, life_days: int,
                halvings: tuple[str, ...], plot_dir: Path | None, db: str,
                as_json: bool) -> None:  # fmt: skip
    """Per customer and machine: BTC earned less bills beside the purchase-day promise.

    Earned comes from --mined (satoshis per machine per day) or, where only accepted work
    exists, from --work valued at each day's hashprice (--network: difficulty and reward)."""
    end = _day(as_of, "--as-of")
    halving_days = tuple(_day(h, "--halving") for h in halvings)
    mined_src: MinedSats
    if (mined is None) == (work is None):
        raise click.UsageError("give one of --mined or --work (with --network)")
    if mined is not None:
        source = "mined satoshis (--mined)"
        mined_src = DailyMined(
            checked(lambda: parse_mined_csv(read_text(mined.read_bytes(), "mined sats")))
        )
    else:
        assert work is not None
        if network is None:
            raise click.UsageError("--work needs --network (day,difficulty,reward_sats)")
        source = "accepted work x each day's hashprice (--work, --network)"
        mined_src = WorkMined(
            checked(lambda: parse_work_csv(read_text(work.read_bytes(), "accepted work"))),
            checked(lambda: parse_network_csv(read_text(network.read_bytes(), "network"))),
        )
    price_src = DailyPrices(
        checked(lambda: parse_prices_csv(read_text(prices.read_bytes(), "BTC prices")))
    )
    with open_store(db) as store:
        rows = reports(store, end, mined_src, price_src, customer=customer, machine=machine,
                       life_days=life_days, halvings=halving_days)  # fmt: skip
    charts: dict[str, str] = {}
    chart_note = ""
    if plot_dir is not None:
        try:
            from hashfarm.hosting.promise_chart import promise_figure
        except ConfigError as exc:
            chart_note = str(exc)
        else:
            plot_dir.mkdir(parents=True, exist_ok=True)
            for r in rows:
                path = plot_dir / f"{r.machine_id}.png"
                promise_figure(r).savefig(path)
                charts[r.machine_id] = str(path)
    if as_json:
        data: dict[str, Any] = {
            "as_of": fmt_day(end),
            "earned_from": source,
            "machines": [r.to_dict() for r in rows],
            "charts": charts,
        }
        if chart_note:
            data["chart_error"] = chart_note
        emit(data, True, [])
        return
    table = Table(
        title=f"Promise against reality, up to {fmt_day(end)} (amounts in the purchase currency)"
    )
    for h in HEADERS:
        table.add_column(h, justify="left" if h in ("customer", "machine") else "right")
    for r in rows:
        table.add_row(*_row(r))
    console = Console(width=200, no_color=True, highlight=False, markup=False)
    console.print(table)
    for r in rows:
        console.print(f"{r.machine_id}: payback {r.payback.status}: {r.payback.reason}")
    console.print(f"earned from {source}")
    console.print("* the promise and the projected payback day are float projections")
    for mid, where in charts.items():
        console.print(f"chart {mid}: {where}")
    if chart_note:
        console.print(chart_note)
    if not rows:
        console.print("no purchased machines (record one with `hashfarm farm purchase`)")


__all__ = ["HEADERS", "PaybackPromise", "epoch_difficulty", "farm", "reports"]
