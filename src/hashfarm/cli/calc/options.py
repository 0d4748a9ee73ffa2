"""The options `hashfarm calc` commands share, and the economics inputs built from them.

Money: `--price` is the BTC price in USD; with `--fx CODE=RATE` every other amount (power
price, machine price, hosting) is read in CODE. Percentages are given as percent
(`--pool-fee 2` is 2 %). Network figures come from `--rpc-url` (a node), from flags, or
from the data shipped with the package.
"""

from __future__ import annotations

import asyncio
import csv
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hashfarm.chain.block import Block
from hashfarm.chain.networks import get_network
from hashfarm.economics import catalog
from hashfarm.economics.hashprice import Currency
from hashfarm.economics.machine import Costs, Machine
from hashfarm.economics.network import (
    BlockSummary,
    NetworkState,
    fetch_network_state,
    network_state_from_figures,
)
from hashfarm.economics.scenario import Scenario, Start

from .render import F

__all__ = [
    "RpcChain",
    "build_costs",
    "build_machine",
    "build_scenario",
    "cost_options",
    "machine_options",
    "machine_spec",
    "network_options",
    "network_state",
    "node_client",
    "output_options",
    "scenario_options",
    "start_of",
]


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


class RpcChain:
    """The node, seen through the economics `ChainSource` protocol."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def tip_height(self) -> int:
        """Height of the node's best block."""
        return int(await self.client.getblockcount())

    async def block_summary(self, height: int) -> BlockSummary:
        """Time, bits, chainwork and coinbase value of the block at `height`."""
        block_hash = await self.client.getblockhash(height)
        header = await self.client.getblockheader(block_hash)
        block = Block.parse(await self.client.getrawblock(block_hash))
        coinbase = sum(out.value for out in block.transactions[0].outputs)
        # time and bits from the block itself: nodes disagree on their JSON types
        chainwork = int(header["chainwork"], 16)
        return BlockSummary(height, block.header.time, block.header.bits, chainwork, coinbase)


def node_client(kw: dict[str, Any]) -> Any:
    """An RPC client for --rpc-url (imported here: other commands never pay for aiohttp)."""
    from hashfarm.node.rpc import RPCClient

    return RPCClient(kw["rpc_url"], user=kw["rpc_user"], password=kw["rpc_password"],
                     cookie_file=kw["rpc_cookie"], retries=2)  # fmt: skip


async def _from_node(kw: dict[str, Any]) -> NetworkState:
    async with node_client(kw) as client:
        return await fetch_network_state(
            RpcChain(client),
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
        kw["difficulty"] if kw["difficulty"] is not None else latest.difficulty,
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


def build_machine(kw: dict[str, Any]) -> tuple[Machine, Costs]:
    """The machine and costs described by machine_options and cost_options."""
    name = kw.get("model")
    if name:
        model = catalog.find_model(name)
        rate = kw["hashrate_ths"] if kw["hashrate_ths"] is not None else model.hashrate_ths
        watts = kw["power_w"] if kw["power_w"] is not None else model.power_w
        if rate is None or watts is None:
            raise click.UsageError(
                f"{model.model}: the catalog states no TH/s or watts; "
                "give --hashrate-ths and --power-w"
            )
        machine = Machine(model.model, rate, watts, kw["machine_price"], kw["count"])
    elif kw["hashrate_ths"] is not None and kw["power_w"] is not None:
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
    points = _price_path(kw["price_path"], currency) if kw.get("price_path") else ()
    return Scenario(kw["horizon_days"], growth, kw["price_growth"] / 100, points)


def _price_path(path: str, currency: Currency) -> tuple[tuple[float, float], ...]:
    """(day, price in the display currency) points of a day,price_usd CSV file."""
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            return tuple(
                (float(r["day"]), currency.from_usd(float(r["price_usd"]))) for r in reader
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise click.BadParameter(
                f"{path}: line {reader.line_num}: need numbers in columns day,price_usd ({exc})",
                param_hint="--price-path",
            ) from exc


def start_of(state: NetworkState, price_fiat: float) -> Start:
    """Where a simulation starts: the block after the tip, at today's price."""
    return Start(
        state.network, state.height + 1, state.difficulty, state.fees_btc_per_block, price_fiat
    )


def machine_spec(spec: str, count: int) -> Machine:
    """`MODEL[=PRICE]` from the compare command line."""
    name, _, price = spec.partition("=")
    model = catalog.find_model(name)
    try:
        return Machine.from_model(model, float(price) if price else 0.0, count)
    except ValueError as exc:
        raise click.BadParameter(f"{spec!r}: price must be a number") from exc
