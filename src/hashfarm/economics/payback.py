"""Payback over time, day by day: the reference simulation (plain Python, one path).

Each day earns the integral of the revenue rate over the segments it overlaps, so a day in
which a halving or a retarget lands is split exactly. The machine runs on a day only if that
day's revenue covers its power bill; the fixed hosting fee is paid either way. The Monte
Carlo in `montecarlo` is checked against this function.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from hashfarm.economics.machine import DAYS_PER_MONTH, Costs, Machine
from hashfarm.economics.scenario import Scenario, Segment, Start, daily_prices, schedule
from hashfarm.units import SATS_PER_BTC

__all__ = ["DayRow", "PaybackResult", "daily_btc_per_th", "simulate", "static_payback_days"]


@dataclass(frozen=True, slots=True)
class DayRow:
    """One simulated day of a batch of machines."""

    day: int
    difficulty: float  # at the start of the day
    subsidy_btc: float  # at the start of the day
    price: float
    running: bool  # False: switched off because revenue would not cover power
    btc_mined: float
    revenue: float
    power_cost: float
    hosting: float
    profit: float
    cumulative: float  # cash position including the purchase (starts at -capex)


@dataclass(frozen=True, slots=True)
class PaybackResult:
    """Outcome of one simulated path; money in the display currency."""

    machine: str
    count: int
    capex: float
    horizon_days: int
    payback_day: int | None  # days until cumulative cash first reaches zero; None = never
    static_payback_days: float | None  # capex / today's profit, today's state forever
    cumulative_end: float  # cash position at the horizon
    roi: float  # cumulative_end / capex (inf when capex is 0 and cash is positive)
    btc_mined: float
    days_off: int
    halving_days: tuple[float, ...]  # when (in days from now) each halving happens
    segments: tuple[Segment, ...]
    rows: tuple[DayRow, ...]


def daily_btc_per_th(segments: list[Segment], fees_btc: float, days: int) -> list[float]:
    """BTC earned by one TH/s on each day: the rate integrated over overlapping segments."""
    out = [0.0] * days
    for seg in segments:
        rate = seg.btc_per_th_day(fees_btc)
        first, last = int(seg.start_day), min(math.ceil(seg.end_day), days)
        for day in range(first, last):
            overlap = min(seg.end_day, day + 1) - max(seg.start_day, day)
            out[day] += rate * overlap
    return out


def static_payback_days(capex: float, profit_per_day: float) -> float | None:
    """The naive answer: capex over today's daily profit, today's network forever."""
    if capex <= 0:
        return 0.0
    return capex / profit_per_day if profit_per_day > 0 else None


def _operate(
    day: int, seg: Segment, btc: float, price: float, power: float, hosting: float, cash: float
) -> DayRow:
    """One day of the batch: it runs only when the BTC it mines pays for its power; hosting
    is due either way. `cash` is the cumulative cash before the day."""
    running = btc * price >= power
    btc_kept = btc if running else 0.0
    revenue = btc_kept * price
    cost = power if running else 0.0
    profit = revenue - cost - hosting
    return DayRow(
        day=day,
        difficulty=seg.difficulty,
        subsidy_btc=seg.subsidy_sats / SATS_PER_BTC,
        price=price,
        running=running,
        btc_mined=btc_kept,
        revenue=revenue,
        power_cost=cost,
        hosting=hosting,
        profit=profit,
        cumulative=cash + profit,
    )


def _halving_days(segments: list[Segment]) -> tuple[float, ...]:
    """Days on which the subsidy changes."""
    pairs = itertools.pairwise(segments)
    return tuple(b.start_day for a, b in pairs if b.subsidy_sats != a.subsidy_sats)


def simulate(machine: Machine, costs: Costs, start: Start, scenario: Scenario) -> PaybackResult:
    """Simulate a batch of machines day by day over the scenario's horizon."""
    days = scenario.horizon_days
    segments = schedule(start, scenario)
    per_th = daily_btc_per_th(segments, start.fees_btc, days)
    prices = daily_prices(start, scenario)
    ths = machine.hashrate_ths * costs.hash_factor * machine.count
    power = machine.power_w / 1000 * 24 * costs.uptime * machine.count * costs.power_price_kwh
    hosting = costs.hosting_per_month / DAYS_PER_MONTH * machine.count
    rows: list[DayRow] = []
    cash, payback = -machine.capex, None
    seg_iter = iter(segments)
    seg = next(seg_iter)
    for day in range(days):
        while seg.end_day <= day:
            seg = next(seg_iter)
        row = _operate(day, seg, per_th[day] * ths, prices[day], power, hosting, cash)
        cash = row.cumulative
        if payback is None and cash >= 0:
            payback = day + 1
        rows.append(row)
    today = segments[0].btc_per_th_day(start.fees_btc) * ths * prices[0] - power - hosting
    return PaybackResult(
        machine=machine.name,
        count=machine.count,
        capex=machine.capex,
        horizon_days=days,
        payback_day=payback,
        static_payback_days=static_payback_days(machine.capex, today),
        cumulative_end=cash,
        roi=cash / machine.capex if machine.capex > 0 else math.inf,
        btc_mined=sum(r.btc_mined for r in rows),
        days_off=sum(not r.running for r in rows),
        halving_days=_halving_days(segments),
        segments=tuple(segments),
        rows=tuple(rows),
    )
