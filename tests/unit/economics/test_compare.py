"""Side-by-side comparison and a used machine's fair price."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hashfarm.chain.networks import MAINNET
from hashfarm.economics.catalog import find_model
from hashfarm.economics.compare import compare_machines, fair_price
from hashfarm.economics.machine import Costs, Machine
from hashfarm.economics.payback import simulate
from hashfarm.economics.scenario import Scenario, Start

START = Start(MAINNET, height=925_000, difficulty=1.2e14, fees_btc=0.03, price=100_000)
SCENARIO = Scenario(horizon_days=3 * 365, difficulty_growth=(0.02,))
COSTS = Costs(power_price_kwh=0.05, pool_fee=0.02)


def _fleet() -> list[Machine]:
    prices = {"S9": 30.0, "S19 Pro": 700.0, "S21": 3000.0, "A1466": 1800.0}
    return [Machine.from_model(find_model(n), price=p) for n, p in prices.items()]


def test_ranks_by_profit_and_by_payback() -> None:
    rows = compare_machines(_fleet(), COSTS, START, SCENARIO, 312_500_000)
    profit = {r.economics.machine: r.rank_profit for r in rows}
    # at 5 cents efficiency decides today's profit: S21 (17.5 J/TH) first, S9 (98) last
    assert profit["Antminer S21"] == 1
    assert profit["Antminer S9"] == 4
    assert sorted(r.rank_payback for r in rows) == [1, 2, 3, 4]
    for r in rows:  # each row is the plain simulation of that machine
        assert r.payback == simulate(
            Machine.from_model(find_model(r.economics.machine), price=r.payback.capex),
            COSTS, START, SCENARIO)  # fmt: skip
    paid = [r for r in rows if r.payback.payback_day is not None]
    never = [r for r in rows if r.payback.payback_day is None]
    assert all(p.rank_payback < n.rank_payback for p in paid for n in never)


def test_an_s9_at_five_cents_is_never_switched_on() -> None:
    s9 = next(r for r in compare_machines(_fleet(), COSTS, START, SCENARIO, 312_500_000)
              if r.economics.machine == "Antminer S9")  # fmt: skip
    assert s9.economics.profit_per_day < 0
    assert s9.payback.days_off == SCENARIO.horizon_days
    assert s9.payback.cumulative_end == pytest.approx(-30.0)  # it only costs its price


def test_fair_price_pays_back_exactly_at_the_target() -> None:
    used = Machine.from_model(find_model("S19 Pro"), count=2)
    price = fair_price(used, COSTS, START, SCENARIO, 365)
    assert price > 0
    at_fair = simulate(replace(used, price=price), COSTS, START, replace(SCENARIO,
                       horizon_days=365))  # fmt: skip
    assert at_fair.payback_day is not None
    assert at_fair.payback_day <= 365
    dearer = simulate(replace(used, price=price + 0.01), COSTS, START,
                      replace(SCENARIO, horizon_days=365))  # fmt: skip
    assert dearer.payback_day is None


def test_a_machine_that_never_earns_is_worth_nothing() -> None:
    s9 = Machine.from_model(find_model("S9"))
    assert fair_price(s9, COSTS, START, SCENARIO, 365) == 0.0
