"""`hashfarm calc ...`: the honest payback calculator and network analytics.

Every command builds one `Output` (a summary plus optional rows, see `render`) from the
options in `options`; the `command` decorator prints it as a Rich table, `--json` or `--csv`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import click

from hashfarm.chain.networks import Network, get_network
from hashfarm.chain.pow import (
    bits_to_difficulty,
    difficulty_to_target,
    next_work_required,
    target_to_bits,
)
from hashfarm.economics import catalog, odds, report, retarget
from hashfarm.economics.compare import compare_machines, fair_price
from hashfarm.economics.hashprice import Currency, hashprice
from hashfarm.economics.machine import machine_economics
from hashfarm.economics.montecarlo import MonteCarloResult, Uncertainty, run_monte_carlo
from hashfarm.economics.payback import PaybackResult, simulate
from hashfarm.units import SATS_PER_BTC

from .options import (
    RpcChain,
    build_costs,
    build_machine,
    build_scenario,
    cost_options,
    machine_options,
    machine_spec,
    network_options,
    network_state,
    node_client,
    output_options,
    scenario_options,
    start_of,
)
from .render import Output, command

__all__ = ["calc"]


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
    machine, costs = build_machine(kw)
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
    machine, costs = build_machine(kw)
    scenario = build_scenario(kw, currency)
    start = start_of(state, currency.from_usd(kw["price"]))
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
    machines = [machine_spec(spec, kw["count"]) for spec in kw["machines"]]
    costs = build_costs(kw)
    start = start_of(state, currency.from_usd(kw["price"]))
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
    try:
        bits = int(kw["bits"], 16)
    except ValueError as exc:
        raise click.BadParameter("compact bits in hex, e.g. 1d00ffff", param_hint="--bits") from exc
    if kw["last_time"] is not None:
        return _next_retarget(bits, kw["epoch_start_time"], kw["last_time"], network)
    if kw["height"] is None or kw["tip_time"] is None:
        raise click.UsageError("a projection needs --height and --tip-time")
    p = retarget.project_retarget(
        kw["height"], bits, kw["epoch_start_time"], kw["tip_time"], network
    )
    return Output("Retarget projection", dataclasses.asdict(p))


def _next_retarget(bits: int, first_time: int, last_time: int, network: Network) -> Output:
    """The exact bits after a finished epoch (Core's CalculateNextWorkRequired)."""
    new = next_work_required(bits, first_time, last_time, network)
    summary = {
        "bits": bits,
        "difficulty": bits_to_difficulty(bits),
        "next_bits": new,
        "next_difficulty": bits_to_difficulty(new),
        "timespan_s": last_time - first_time,
    }
    summary["change"] = summary["next_difficulty"] / summary["difficulty"] - 1
    return Output("Next retarget (Core's rule)", summary)


def _retarget_from_node(kw: dict[str, Any]) -> Output:
    """A projection of the next retarget from the node's tip and its epoch's first block."""

    async def fetch() -> retarget.RetargetProjection:
        network = get_network(kw["network"])
        async with node_client(kw) as client:
            chain = RpcChain(client)
            height = await chain.tip_height()
            tip = await chain.block_summary(height)
            first = await chain.block_summary(height - height % network.retarget_interval)
            bits = first.bits if network.enforce_bip94 else tip.bits  # Core's BIP 94 rule
            return retarget.project_retarget(height, bits, first.time, tip.time, network)

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
    hs0 = state.hashrate_from_difficulty_hs
    if kw["hashrate_ehs"] is not None:  # 0 is refused by arms_race, not read as "not given"
        hs0 = kw["hashrate_ehs"] * 1e18
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
