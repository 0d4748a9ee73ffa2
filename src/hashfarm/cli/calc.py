"""`hashfarm calc ...`: the honest payback calculator and network analytics.

Every command builds one `Output` (a summary plus optional rows) and prints it as a Rich
table, `--json` or `--csv`. Money: `--price` is the BTC price in USD; with `--fx CODE=RATE`
every other amount (power price, machine price, hosting) is read, and every result shown,
in CODE. Percentages are given as percent (`--pool-fee 2` is 2 %). Network figures come
from `--rpc-url` (a node), from flags, or from the data shipped with the package.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from hashfarm.chain.block import Block
from hashfarm.chain.networks import get_network
from hashfarm.chain.pow import (
    bits_to_difficulty,
    difficulty_to_target,
    next_work_required,
    target_to_bits,
)
from hashfarm.economics import catalog, odds, report, retarget
from hashfarm.economics.compare import compare_machines, fair_price
from hashfarm.economics.hashprice import Currency, hashprice
from hashfarm.economics.machine import Costs, Machine, machine_economics
from hashfarm.economics.montecarlo import MonteCarloResult, Uncertainty, run_monte_carlo
from hashfarm.economics.network import (
    BlockSummary,
    NetworkState,
    fetch_network_state,
    network_state_from_figures,
)
from hashfarm.economics.payback import PaybackResult, simulate
from hashfarm.economics.scenario import Scenario, Start
from hashfarm.errors import HashfarmError
from hashfarm.units import SATS_PER_BTC

F = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Output:
    """What a command prints: a titled summary and optional rows."""

    title: str
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    rows_title: str = ""


# ---------------------------------------------------------------- rendering


def emit(out: Output, fmt: str, currency: str) -> None:
    """Print `out` as Rich tables, JSON or CSV."""
    if fmt == "json":
        doc = {k: report.plain(v, k) for k, v in out.summary.items()}
        if out.rows:
            doc["rows"] = [{k: report.plain(v, k) for k, v in row.items()} for row in out.rows]
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "csv":
        rows = out.rows or [{"key": k, "value": report.plain(v, k)} for k, v in out.summary.items()]
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: report.plain(v, k) for k, v in row.items()} for row in rows)
    else:
        console = Console(width=None if sys.stdout.isatty() else 200)  # pipes: no wrapping
        table = Table(title=out.title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(justify="right")
        for key, value in out.summary.items():
            table.add_row(report.label(key, currency), report.format_value(key, value))
        console.print(table)
        if out.rows:
            grid = Table(title=out.rows_title, title_justify="left")
            for key in out.rows[0]:
                grid.add_column(report.label(key, currency), justify="right")
            for row in out.rows:
                grid.add_row(*(report.format_value(k, v) for k, v in row.items()))
            console.print(grid)


# ---------------------------------------------------------------- options


def _stack(*opts: Callable[[F], F]) -> Callable[[F], F]:
    """Apply click decorators in reading order."""
    return lambda f: functools.reduce(lambda acc, opt: opt(acc), reversed(opts), f)


def output_options(f: F) -> F:
    """--json, --csv and --fx."""
    f = click.option("--json", "fmt", flag_value="json", help="Print JSON.")(f)
    f = click.option("--csv", "fmt", flag_value="csv", help="Print CSV (rows, or the summary).")(f)
    return click.option(
        "--fx", default="USD", show_default=True, help="Display currency as CODE=UNITS_PER_USD."
    )(f)


network_options = _stack(
    click.option("--rpc-url", help="Read the network state from this node (JSON-RPC URL)."),
    click.option("--rpc-user", help="RPC user name."),
    click.option("--rpc-password", help="RPC password (bcoin: its api-key)."),
    click.option("--rpc-cookie", type=click.Path(dir_okay=False), help="Core cookie file."),
    click.option("--network", default="mainnet", show_default=True, help="Chain params."),
    click.option("--difficulty", type=float, help="Network difficulty [shipped: latest]."),
    click.option("--height", type=int, help="Tip height [shipped: latest epoch start]."),
    click.option("--fees-btc", type=float, help="Average fees per block, BTC [0 or node]."),
    click.option("--fee-window", default=144, show_default=True, help="Blocks for fees."),
    click.option("--hashrate-window", default=1008, show_default=True,
                 help="Blocks for the chainwork hashrate."),
)  # fmt: skip


class _RpcChain:
    """The node, seen through the economics `ChainSource` protocol."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def tip_height(self) -> int:
        return int(await self.client.getblockcount())

    async def block_summary(self, height: int) -> BlockSummary:
        block_hash = await self.client.getblockhash(height)
        header = await self.client.getblockheader(block_hash)
        block = Block.parse(await self.client.getrawblock(block_hash))
        coinbase = sum(out.value for out in block.transactions[0].outputs)
        # time and bits from the block itself: nodes disagree on their JSON types
        chainwork = int(header["chainwork"], 16)
        return BlockSummary(height, block.header.time, block.header.bits, chainwork, coinbase)


def _client(kw: dict[str, Any]) -> Any:
    """An RPC client for --rpc-url (imported here: other commands never pay for aiohttp)."""
    from hashfarm.node.rpc import RPCClient

    return RPCClient(kw["rpc_url"], user=kw["rpc_user"], password=kw["rpc_password"],
                     cookie_file=kw["rpc_cookie"], retries=2)  # fmt: skip


async def _from_node(kw: dict[str, Any]) -> NetworkState:
    async with _client(kw) as client:
        return await fetch_network_state(
            _RpcChain(client),
            get_network(kw["network"]),
            fee_window=kw["fee_window"],
            hashrate_window=kw["hashrate_window"],
        )


def network_state(kw: dict[str, Any]) -> NetworkState:
    """The state from --rpc-url, else from flags falling back to the shipped data."""
    if kw.get("rpc_url"):
        return asyncio.run(_from_node(kw))
    latest = catalog.difficulty_epochs()[-1]
    return network_state_from_figures(
        get_network(kw["network"]),
        kw["height"] if kw.get("height") is not None else latest.start_height,
        kw["difficulty"] or latest.difficulty,
        kw.get("fees_btc") or 0.0,
    )


machine_options = _stack(
    click.argument("model", required=False),
    click.option("--hashrate-ths", type=float, help="Custom machine: TH/s."),
    click.option("--power-w", type=float, help="Custom machine: watts at the wall."),
    click.option("--machine-price", default=0.0, show_default=True, help="Per machine."),
)
cost_options = _stack(
    click.option("--count", default=1, show_default=True, help="Identical machines."),
    click.option("--power-price", default=0.0, show_default=True, help="Per kWh."),
    click.option("--hosting", default=0.0, show_default=True, help="Per machine per month."),
    click.option("--pool-fee", default=0.0, show_default=True, help="Percent of hashrate."),
    click.option("--dev-fee", default=0.0, show_default=True, help="Firmware fee, percent."),
    click.option("--uptime", default=100.0, show_default=True, help="Percent of the day."),
)


def build_costs(kw: dict[str, Any]) -> Costs:
    """The Costs described by cost_options (percentages become fractions)."""
    return Costs(kw["power_price"], kw["hosting"], kw["pool_fee"] / 100, kw["dev_fee"] / 100,
                 kw["uptime"] / 100)  # fmt: skip


def build_machine(kw: dict[str, Any], currency: Currency) -> tuple[Machine, Costs]:
    """The machine and costs described by machine_options and cost_options."""
    name = kw.get("model")
    if name:
        model = catalog.find_model(name)
        rate = kw["hashrate_ths"] or model.hashrate_ths
        watts = kw["power_w"] or model.power_w
        if rate is None or watts is None:
            raise click.UsageError(
                f"{model.model}: the catalog states no TH/s or watts; "
                "give --hashrate-ths and --power-w"
            )
        machine = Machine(model.model, rate, watts, kw["machine_price"], kw["count"])
    elif kw["hashrate_ths"] and kw["power_w"]:
        machine = Machine(
            "custom", kw["hashrate_ths"], kw["power_w"], kw["machine_price"], kw["count"]
        )
    else:
        raise click.UsageError(
            "give a MODEL (see `hashfarm calc models`) or both --hashrate-ths and --power-w"
        )
    return machine, build_costs(kw)


scenario_options = _stack(
    click.option("--horizon-days", default=3 * 365, show_default=True, help="Days."),
    click.option("--difficulty-growth", type=float,
                 help="Percent per epoch [shipped history: last 52 epochs]."),
    click.option("--difficulty-path", help="Percent per epoch, comma separated; last repeats."),
    click.option("--price-growth", default=0.0, show_default=True, help="Percent per year."),
    click.option("--price-path", type=click.Path(exists=True, dir_okay=False),
                 help="CSV with columns day,price_usd (linear between, flat after)."),
)  # fmt: skip


def build_scenario(kw: dict[str, Any], currency: Currency) -> Scenario:
    """The Scenario described by scenario_options."""
    if kw.get("difficulty_path"):
        try:
            growth = tuple(float(x) / 100 for x in kw["difficulty_path"].split(","))
        except ValueError as exc:
            raise click.BadParameter(
                "comma-separated percentages", param_hint="--difficulty-path"
            ) from exc
    elif kw.get("difficulty_growth") is not None:
        growth = (kw["difficulty_growth"] / 100,)
    else:
        growth = (catalog.recent_growth_per_epoch(),)
    points: tuple[tuple[float, float], ...] = ()
    if kw.get("price_path"):
        with Path(kw["price_path"]).open(newline="") as fh:
            points = tuple(
                (float(r["day"]), currency.from_usd(float(r["price_usd"])))
                for r in csv.DictReader(fh)
            )
    return Scenario(kw["horizon_days"], growth, kw["price_growth"] / 100, points)


def _start(state: NetworkState, price_fiat: float) -> Start:
    return Start(
        state.network, state.height + 1, state.difficulty, state.fees_btc_per_block, price_fiat
    )


def command(f: F) -> F:
    """Run a command body, turning hashfarm errors into clean CLI errors, then print."""

    @functools.wraps(f)
    def wrapper(**kw: Any) -> None:
        try:
            currency = Currency.parse(kw.pop("fx", "USD"))
            fmt = kw.get("fmt") or "table"
            out = f(currency=currency, **kw)
        except HashfarmError as exc:
            raise click.ClickException(str(exc)) from exc
        emit(out, fmt, currency.code)

    return wrapper


@click.group()
def calc() -> None:
    """The honest payback calculator: difficulty per epoch, halvings, shutdown, odds."""


# ---------------------------------------------------------------- commands


@calc.command("hashprice")
@network_options
@click.option("--subsidy-btc", type=float, help="Block subsidy, BTC [from the height].")
@click.option("--price", type=float, default=0.0, help="BTC price in USD.")
@output_options
@command
def hashprice_cmd(currency: Currency, **kw: Any) -> Output:
    """BTC and fiat earned per TH/s and PH/s per day."""
    state = network_state(kw)
    subsidy = kw["subsidy_btc"]
    if subsidy is None:
        subsidy = state.next_subsidy_sats / SATS_PER_BTC
    hp = hashprice(
        state.difficulty,
        subsidy,
        state.fees_btc_per_block,
        currency.from_usd(kw["price"]),
        currency.code,
    )
    summary = {**report.state_summary(state), **dataclasses.asdict(hp)}
    summary["subsidy_btc"] = subsidy
    return Output("Hashprice", summary)


@calc.command("machine")
@machine_options
@cost_options
@network_options
@click.option("--price", type=float, required=True, help="BTC price in USD.")
@output_options
@command
def machine_cmd(currency: Currency, **kw: Any) -> Output:
    """Today's economics of a machine: profit, break-even, shutdown point, cost per BTC."""
    state = network_state(kw)
    machine, costs = build_machine(kw, currency)
    reward = state.next_subsidy_sats / SATS_PER_BTC + state.fees_btc_per_block
    econ = machine_economics(
        machine, costs, state.difficulty, reward, currency.from_usd(kw["price"])
    )
    return Output(
        f"{machine.name} x{machine.count} today",
        {**dataclasses.asdict(econ), "currency": currency.code, **report.state_summary(state)},
    )


def _save_plot(
    path: str, runs: list[PaybackResult], currency: str, mc: MonteCarloResult | None = None
) -> None:
    from hashfarm.economics.charts import payback_figure  # matplotlib only when asked

    payback_figure(runs, currency, mc).savefig(path, dpi=110)


@calc.command("payback")
@machine_options
@cost_options
@network_options
@scenario_options
@click.option("--price", type=float, required=True, help="BTC price in USD today.")
@click.option("--paths", default=0, show_default=True, help="Monte Carlo paths (0: none).")
@click.option("--seed", default=0, show_default=True, help="Monte Carlo seed.")
@click.option("--price-vol", default=60.0, show_default=True, help="Percent per year.")
@click.option("--growth-sd", default=3.0, show_default=True, help="Percent per epoch.")
@click.option("--daily", is_flag=True, help="One row per day instead of per 30 days.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG chart here.")
@output_options
@command
def payback_cmd(currency: Currency, **kw: Any) -> Output:
    """Payback over time: difficulty per epoch, halvings, shutdown days, optional odds."""
    state = network_state(kw)
    machine, costs = build_machine(kw, currency)
    scenario = build_scenario(kw, currency)
    start = _start(state, currency.from_usd(kw["price"]))
    run = simulate(machine, costs, start, scenario)
    summary = {
        **report.payback_summary(run),
        "currency": currency.code,
        "difficulty_growth_per_epoch": scenario.difficulty_growth[0],
    }
    mc = None
    if kw["paths"] > 0:
        unc = Uncertainty(kw["paths"], kw["seed"], kw["price_vol"] / 100, kw["growth_sd"] / 100)
        mc = run_monte_carlo(machine, costs, start, scenario, unc)
        summary.update(report.mc_summary(mc))
    if kw["plot"]:
        _save_plot(kw["plot"], [run], currency.code, mc)
    rows = report.payback_rows(run, 1 if kw["daily"] or kw.get("fmt") else 30)
    return Output(f"Payback of {machine.name} x{machine.count}", summary, rows, "Cash flow")


def _machine_spec(spec: str, count: int) -> Machine:
    """`MODEL[=PRICE]` from the compare command line."""
    name, _, price = spec.partition("=")
    model = catalog.find_model(name)
    try:
        return Machine.from_model(model, float(price) if price else 0.0, count)
    except ValueError as exc:
        raise click.BadParameter(f"{spec!r}: price must be a number") from exc


@calc.command("compare")
@click.argument("machines", nargs=-1, required=True)
@cost_options
@click.option("--fair-price-days", type=int, help="Also show the price that pays back in N days.")
@network_options
@scenario_options
@click.option("--price", type=float, required=True, help="BTC price in USD today.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG chart here.")
@output_options
@command
def compare_cmd(currency: Currency, **kw: Any) -> Output:
    """Compare MODEL[=PRICE] ... side by side, ranked by payback and by profit."""
    state = network_state(kw)
    machines = [_machine_spec(spec, kw["count"]) for spec in kw["machines"]]
    costs = build_costs(kw)
    start = _start(state, currency.from_usd(kw["price"]))
    scenario = build_scenario(kw, currency)
    rows = []
    results = compare_machines(machines, costs, start, scenario, state.next_subsidy_sats)
    for machine, c in zip(machines, results, strict=True):
        row = report.comparison_row(c)
        if kw["fair_price_days"]:
            fair = fair_price(machine, costs, start, scenario, kw["fair_price_days"])
            row[f"fair_price_{kw['fair_price_days']}d_fiat"] = fair
        rows.append(row)
    if kw["plot"]:
        runs = [simulate(m, costs, start, scenario) for m in machines]
        _save_plot(kw["plot"], runs, currency.code)
    summary = {
        **report.state_summary(state),
        "btc_price_fiat": start.price,
        "currency": currency.code,
        "horizon_days": scenario.horizon_days,
        "difficulty_growth_per_epoch": scenario.difficulty_growth[0],
    }
    return Output("Comparison", summary, rows, "Machines (rank 1 = best)")


@calc.command("odds")
@click.option("--hashrate-ths", type=float, required=True, help="Your hashrate, TH/s.")
@network_options
@output_options
@command
def odds_cmd(currency: Currency, **kw: Any) -> Output:
    """Solo mining odds: the chance of a block per day, month, year; the expected wait."""
    state = network_state(kw)
    o = odds.solo_odds(kw["hashrate_ths"] * 1e12, state.difficulty)
    summary = report.odds_summary(o)
    return Output("Solo mining odds", summary)


@calc.command("attack")
@click.option("--q", type=float, required=True, help="Attacker's share of the hashrate.")
@click.option("--z", type=int, help="Blocks the attacker is behind [a table of z].")
@click.option("--z-max", default=10, show_default=True, help="Table: largest z.")
@click.option("--z-step", default=1, show_default=True, help="Table: step of z.")
@output_options
@command
def attack_cmd(currency: Currency, **kw: Any) -> Output:
    """Whitepaper section 11: P(an attacker with share q ever catches up from z behind)."""
    q = kw["q"]
    if kw["z"] is not None:
        summary: dict[str, Any] = {
            "q": q,
            "z": kw["z"],
            "probability": odds.attacker_success(q, kw["z"]),
        }
        return Output("Attacker success (Nakamoto 2008, section 11)", summary)
    zs = range(0, kw["z_max"] + 1, max(kw["z_step"], 1))
    rows = [{"z": z, "probability": odds.attacker_success(q, z)} for z in zs]
    summary = {"q": q}
    if q < 0.5:
        summary["confirmations_for_below_0.1%"] = odds.confirmations_needed(q)
    return Output("Attacker success (Nakamoto 2008, section 11)", summary, rows, f"q = {q}")


@calc.command("retarget")
@click.option("--bits", help="Current bits (hex) [node or shipped latest epoch].")
@click.option("--epoch-start-time", type=int, help="Time of the epoch's first block (unix).")
@click.option("--tip-time", type=int, help="Time of the tip block (unix).")
@click.option("--last-time", type=int, help="With --epoch-start-time: the epoch's last block.")
@network_options
@output_options
@command
def retarget_cmd(currency: Currency, **kw: Any) -> Output:
    """The next retarget: exact bits for a finished epoch, or a projection mid-epoch."""
    network = get_network(kw["network"])
    if kw["rpc_url"]:
        return _retarget_from_node(kw)
    if not kw["bits"] or kw["epoch_start_time"] is None:
        raise click.UsageError(
            "give --rpc-url, or --bits and --epoch-start-time with "
            "--last-time (finished epoch) or --height and --tip-time"
        )
    bits = int(kw["bits"], 16)
    if kw["last_time"] is not None:
        new = next_work_required(bits, kw["epoch_start_time"], kw["last_time"], network)
        summary = {
            "bits": bits,
            "difficulty": bits_to_difficulty(bits),
            "next_bits": new,
            "next_difficulty": bits_to_difficulty(new),
            "timespan_s": kw["last_time"] - kw["epoch_start_time"],
        }
        summary["change"] = summary["next_difficulty"] / summary["difficulty"] - 1
        return Output("Next retarget (Core's rule)", summary)
    if kw["height"] is None or kw["tip_time"] is None:
        raise click.UsageError("a projection needs --height and --tip-time")
    p = retarget.project_retarget(
        kw["height"], bits, kw["epoch_start_time"], kw["tip_time"], network
    )
    return Output("Retarget projection", dataclasses.asdict(p))


def _retarget_from_node(kw: dict[str, Any]) -> Output:
    async def fetch() -> retarget.RetargetProjection:
        network = get_network(kw["network"])
        async with _client(kw) as client:
            chain = _RpcChain(client)
            height = await chain.tip_height()
            tip = await chain.block_summary(height)
            first = await chain.block_summary(height - height % network.retarget_interval)
            return retarget.project_retarget(height, tip.bits, first.time, tip.time, network)

    return Output("Retarget projection", dataclasses.asdict(asyncio.run(fetch())))


@calc.command("race")
@click.option("--hashrate-ehs", type=float, help="Network hashrate today, EH/s [difficulty].")
@click.option("--growth", default=3.0, show_default=True, help="Hashrate growth, % per month.")
@click.option("--days", default=365, show_default=True, help="Length of the hashrate path.")
@click.option("--price", type=float, default=0.0, help="BTC price in USD (for fiat columns).")
@network_options
@output_options
@command
def race_cmd(currency: Currency, **kw: Any) -> Output:
    """Arms race: a hashrate path in; difficulty, block times and revenue per TH/s out."""
    state = network_state(kw)
    network = state.network
    bits = state.bits or target_to_bits(difficulty_to_target(state.difficulty))
    hs0 = kw["hashrate_ehs"] * 1e18 if kw["hashrate_ehs"] else state.hashrate_from_difficulty_hs
    daily = (1 + kw["growth"] / 100) ** (12 / 365)
    path = [hs0 * daily**d for d in range(kw["days"])]
    price = currency.from_usd(kw["price"])
    epochs = retarget.arms_race(path, state.height + 1, bits, network, state.fees_btc_per_block)
    rows = [
        {
            **dataclasses.asdict(e),
            "mean_hashrate_ehs": e.mean_hashrate_hs / 1e18,
            "fiat_per_ph_day": e.btc_per_th_day * 1000 * price,
        }
        for e in epochs
    ]
    for row in rows:
        del row["mean_hashrate_hs"]
    summary = {
        "start_hashrate_ehs": hs0 / 1e18,
        "growth_per_month": kw["growth"] / 100,
        "days": kw["days"],
        "epochs": len(epochs),
        "currency": currency.code,
    }
    return Output("Arms race", summary, rows, "Epochs")


@calc.command("models")
@output_options
@command
def models_cmd(currency: Currency, **kw: Any) -> Output:
    """The machine catalog shipped with hashfarm (figures as stated by their sources)."""
    rows = [
        {
            "vendor": m.vendor,
            "model": m.model,
            "hashrate_ths": m.hashrate_ths,
            "power_w": m.power_w,
            "j_per_th": m.efficiency_j_per_th,
            "release_year": m.release_year,
        }
        for m in catalog.machine_models()
    ]
    if kw.get("fmt"):
        for row, m in zip(rows, catalog.machine_models(), strict=True):
            row["source"] = m.source
    return Output("Catalog", {"models": len(rows)}, rows, "asic_models.csv")
