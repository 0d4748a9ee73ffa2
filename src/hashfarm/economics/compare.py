"""Several machines side by side, and what a used machine is worth today.

A used machine's fair price is the price at which it pays back in exactly the target time:
the cash it earns by then under the same honest simulation (difficulty growth, halvings,
switched off on losing days). That is what buyers of used S9s needed and rarely got.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hashfarm.economics.machine import Costs, Machine, MachineEconomics, machine_economics
from hashfarm.economics.payback import PaybackResult, simulate
from hashfarm.economics.scenario import Scenario, Start
from hashfarm.units import SATS_PER_BTC

__all__ = ["Comparison", "compare_machines", "fair_price"]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One machine's row in a comparison, with its ranks (1 = best)."""

    economics: MachineEconomics
    payback: PaybackResult
    rank_payback: int  # by simulated payback day; machines that never pay back by ROI
    rank_profit: int  # by today's profit per day


def compare_machines(
    machines: list[Machine], costs: Costs, start: Start, scenario: Scenario, subsidy_sats: int
) -> list[Comparison]:
    """Simulate every machine under the same costs and scenario; rows in input order."""
    reward = subsidy_sats / SATS_PER_BTC + start.fees_btc
    econ = [machine_economics(m, costs, start.difficulty, reward, start.price) for m in machines]
    runs = [simulate(m, costs, start, scenario) for m in machines]

    def payback_key(i: int) -> tuple[float, float]:
        day = runs[i].payback_day
        # among machines that never pay back, the one losing the smallest share of its price
        return (math.inf if day is None else day, -runs[i].roi)

    by_payback = sorted(range(len(machines)), key=payback_key)
    by_profit = sorted(range(len(machines)), key=lambda i: -econ[i].profit_per_day)
    return [
        Comparison(econ[i], runs[i], by_payback.index(i) + 1, by_profit.index(i) + 1)
        for i in range(len(machines))
    ]


def fair_price(
    machine: Machine, costs: Costs, start: Start, scenario: Scenario, target_days: int
) -> float:
    """The per-machine price at which the batch pays back within `target_days` (>= 0).

    Cash earned by day d is independent of the price paid, so payback by `target_days` holds
    exactly when the price is at most the best cumulative operating cash up to that day.
    """
    horizon = max(target_days, 1)
    free = replace(machine, price=0.0)
    run = simulate(free, costs, start, replace(scenario, horizon_days=horizon))
    best = max(0.0, *(row.cumulative for row in run.rows))
    return best / machine.count
