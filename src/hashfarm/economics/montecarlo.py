"""Monte Carlo payback: many price and difficulty-growth paths at once (numpy, seeded).

Each path draws a difficulty growth per epoch (the scenario's value plus a normal shock,
clipped to what the retarget rule allows) and a daily log-price random walk around the
scenario's price path (median-preserving: with zero volatility the path *is* the scenario).
With both spreads at zero every path equals `payback.simulate`, which the tests check.

Vectorized over paths, arrays day-major (shape (days, paths)): the revenue rate is piecewise
constant in time, so each path's daily BTC comes from a difference array - one rate jump per
boundary (retarget or halving), split across the day it lands in - and a running sum. Running
sums go day by day over whole rows of paths, which numpy does four times faster than
`cumsum` along a row. Price shocks come once a week (the scenario's drift stays daily) and
in antithetic pairs; same seed and chunk size, same answer.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hashfarm.chain.subsidy import block_subsidy
from hashfarm.economics.hashprice import btc_per_th_day
from hashfarm.economics.machine import DAYS_PER_MONTH, Costs, Machine
from hashfarm.economics.scenario import (
    MAX_GROWTH,
    MIN_GROWTH,
    Scenario,
    Start,
    boundaries,
    daily_prices,
)
from hashfarm.errors import ConfigError
from hashfarm.units import SATS_PER_BTC

__all__ = ["MonteCarloResult", "Uncertainty", "daily_revenue_btc", "run_monte_carlo"]

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Uncertainty:
    """How wide the future is spread; spreads of zero give the deterministic case."""

    paths: int = 10_000  # number of simulated paths
    seed: int = 0  # seed of numpy's default generator; same seed, same answer
    price_vol_per_year: float = 0.6  # annualized volatility of the log BTC price
    growth_sd_per_epoch: float = 0.03  # standard deviation of difficulty growth per epoch
    chunk: int = 4096  # paths simulated together (memory ~ chunk * days * 11 bytes)

    def __post_init__(self) -> None:
        if self.paths < 1 or self.chunk < 1:
            raise ConfigError("paths: must be at least 1")
        if self.price_vol_per_year < 0 or self.growth_sd_per_epoch < 0:
            raise ConfigError("volatility and growth spread must not be negative")


@dataclass(frozen=True, slots=True)
class MonteCarloResult:
    """Distribution of outcomes; days of payback are inf on paths that never pay back."""

    paths: int
    seed: int
    horizon_days: int
    probability_payback: float  # share of paths that pay back within the horizon
    payback_p10: float | None  # days; None = not within the horizon at that percentile
    payback_p50: float | None
    payback_p90: float | None
    cumulative_end_p10: float  # cash position at the horizon, display currency
    cumulative_end_p50: float
    cumulative_end_p90: float
    payback_days: Array = field(repr=False)  # one per path
    cumulative_end: Array = field(repr=False)  # one per path


def run_monte_carlo(
    machine: Machine, costs: Costs, start: Start, scenario: Scenario, unc: Uncertainty
) -> MonteCarloResult:
    """Simulate `unc.paths` paths of the batch's cash flow and summarize them."""
    rng = np.random.default_rng(unc.seed)
    days = scenario.horizon_days
    work = _Workspace(days, min(unc.chunk, unc.paths), start, scenario)
    payback, cash = np.empty(unc.paths), np.empty(unc.paths)
    for first in range(0, unc.paths, unc.chunk):
        n = min(unc.chunk, unc.paths - first)
        btc = daily_revenue_btc(rng, work.grid(n), machine, costs, start, scenario, unc)
        part = slice(first, first + n)
        payback[part], cash[part] = _cash_flow(rng, btc, work, n, machine, costs, unc)
    p10, p50, p90 = np.quantile(payback, (0.1, 0.5, 0.9), method="inverted_cdf")
    c10, c50, c90 = np.quantile(cash, (0.1, 0.5, 0.9))
    return MonteCarloResult(
        paths=unc.paths,
        seed=unc.seed,
        horizon_days=days,
        probability_payback=float(np.isfinite(payback).mean()),
        payback_p10=_finite(p10),
        payback_p50=_finite(p50),
        payback_p90=_finite(p90),
        cumulative_end_p10=float(c10),
        cumulative_end_p50=float(c50),
        cumulative_end_p90=float(c90),
        payback_days=payback,
        cumulative_end=cash,
    )


_WEEK = 7  # days per price shock


class _Workspace:
    """Buffers reused by every chunk (fresh pages cost more than the arithmetic on them)."""

    def __init__(self, days: int, paths: int, start: Start, scenario: Scenario) -> None:
        self.days = days
        self.width = _WEEK * math.ceil((days + 2) / _WEEK)  # whole weeks, room for spill
        self._grid = np.empty(self.width * paths)  # day-major: one row per day
        self._first = np.empty(days * paths, dtype=np.int16)  # payback search scratch
        self._paid = np.empty(days * paths, dtype=np.bool_)
        prices = np.asarray(daily_prices(start, scenario), dtype=np.float64)
        self.prices = np.pad(prices, (0, self.width - days), mode="edge")[:, None]
        self.day_numbers = np.arange(1, days + 1, dtype=np.int16)[:, None]

    def grid(self, n: int) -> Array:
        """A contiguous (width, n) view for a chunk of n paths."""
        return self._grid[: self.width * n].reshape(self.width, n)

    def first(self, n: int) -> npt.NDArray[np.int16]:
        """A contiguous (days, n) int16 view."""
        return self._first[: self.days * n].reshape(self.days, n)

    def paid(self, n: int) -> npt.NDArray[np.bool_]:
        """A contiguous (days, n) bool view."""
        return self._paid[: self.days * n].reshape(self.days, n)


def _running_sum(grid: Array) -> None:
    """In-place cumulative sum over days (rows), one vector add per day."""
    for day in range(1, grid.shape[0]):
        np.add(grid[day], grid[day - 1], out=grid[day])


def _antithetic(rng: np.random.Generator, n: int, count: int) -> Array:
    """Standard normals of shape (count, n) in antithetic pairs: column i + n//2 = -column i.

    Pairs halve the normals drawn and reduce the variance of averages; an odd n gets one
    unpaired column.
    """
    half = (n + 1) // 2
    z = rng.standard_normal((count, half))
    return np.concatenate((z, -z[:, : n - half]), axis=1)


def daily_revenue_btc(
    rng: np.random.Generator,
    grid: Array,
    machine: Machine,
    costs: Costs,
    start: Start,
    scenario: Scenario,
    unc: Uncertainty,
) -> Array:
    """BTC the batch mines each day on random difficulty paths, one per column of `grid`.

    `grid` (shape (width, n), width >= days + 2) is scratch space, overwritten and returned;
    rows from `days` on are spill and padding, not part of the horizon.
    """
    n = grid.shape[1]
    days = scenario.horizon_days
    ths = machine.hashrate_ths * costs.hash_factor * machine.count
    per_day = btc_per_th_day(1.0, 1.0) * ths  # BTC/day at difficulty 1 and reward 1 BTC
    walker = _PathState(rng, n, start, scenario, unc, per_day)
    grid.fill(0.0)
    grid[0] = walker.rate
    flat = grid.reshape(-1)  # a view: grid is C-contiguous (see _Workspace.grid)
    columns = np.arange(n)
    bounds = boundaries(start.height, start.network)
    while walker.t.min() < days:
        at_day, jump = walker.advance(list(itertools.islice(bounds, _BATCH)))
        day = np.minimum(np.floor(at_day), days).astype(np.intp)
        frac = at_day - day  # share of the landing day already past at the jump
        np.add.at(flat, day * n + columns, jump * (1 - frac))
        np.add.at(flat, (day + 1) * n + columns, jump * frac)
    _running_sum(grid)
    return grid


_BATCH = 32  # boundaries handled per vectorized step


class _PathState:
    """Where each of n paths stands: time, difficulty, revenue rate, current epoch growth."""

    def __init__(
        self,
        rng: np.random.Generator,
        n: int,
        start: Start,
        scenario: Scenario,
        unc: Uncertainty,
        per_day: float,
    ) -> None:
        self.rng, self.n, self.start, self.scenario, self.unc = rng, n, start, scenario, unc
        self.per_day = per_day
        self.height, self.epoch = start.height, 0
        self.t = np.zeros(n)
        self.difficulty = np.full(n, start.difficulty)
        subsidy = block_subsidy(start.height, start.network) / SATS_PER_BTC
        self.rate = per_day * (subsidy + start.fees_btc) / self.difficulty
        self.growth = self._draw(0, 1)[0]

    def _draw(self, first_epoch: int, count: int) -> Array:
        """Growth of epochs first_epoch.. on every path: shape (count, n)."""
        if self.start.network.no_retargeting:
            return np.zeros((count, self.n))
        base = [self.scenario.growth(e) for e in range(first_epoch, first_epoch + count)]
        g = np.repeat(np.asarray(base)[:, None], self.n, axis=1)
        if self.unc.growth_sd_per_epoch > 0:
            g += self.unc.growth_sd_per_epoch * _antithetic(self.rng, self.n, count)
        out: Array = np.clip(g, MIN_GROWTH, MAX_GROWTH)
        return out

    def advance(self, batch: list[tuple[int, bool, bool]]) -> tuple[Array, Array]:
        """Cross the boundaries in `batch`: when (days) each is crossed, and the rate jump.

        Both results have shape (len(batch), n).
        """
        heights = np.asarray([b[0] for b in batch])
        retarget = np.asarray([b[1] for b in batch])
        new_epochs = int(retarget.sum())
        growths = np.concatenate((self.growth[None], self._draw(self.epoch + 1, new_epochs)))
        # the segment ending at boundary j belongs to the epoch after the retargets before j
        seg_growth = growths[np.concatenate(([0], np.cumsum(retarget)[:-1]))]
        blocks = np.diff(heights, prepend=self.height)[:, None]
        spacing = self.start.network.target_spacing
        at_day = self.t + np.cumsum(blocks * spacing / (1 + seg_growth), axis=0) / 86400
        step = np.where(retarget[:, None], 1 + seg_growth, 1.0)
        difficulty = self.difficulty * np.cumprod(step, axis=0)
        subsidy = np.asarray([block_subsidy(int(h), self.start.network) for h in heights])
        rate = self.per_day * (subsidy[:, None] / SATS_PER_BTC + self.start.fees_btc) / difficulty
        jump = np.diff(rate, axis=0, prepend=self.rate[None])
        self.t, self.difficulty, self.rate = at_day[-1], difficulty[-1], rate[-1]
        self.growth, self.height = growths[-1], int(heights[-1])
        self.epoch += new_epochs
        return at_day, jump


def _cash_flow(
    rng: np.random.Generator,
    btc: Array,
    work: _Workspace,
    n: int,
    machine: Machine,
    costs: Costs,
    unc: Uncertainty,
) -> tuple[Array, Array]:
    """Payback day (inf if never) and final cash per path; overwrites `btc`."""
    days, weeks = work.days, work.width // _WEEK
    btc *= work.prices  # now revenue per day on the scenario's price path
    if unc.price_vol_per_year > 0:
        factor = _weekly_price_factors(rng, n, weeks, unc.price_vol_per_year)
        btc.reshape(weeks, _WEEK, n)[...] *= factor[:, None, :]
    power = machine.power_w / 1000 * 24 * costs.uptime * machine.count * costs.power_price_kwh
    # switched off on days that would lose money: profit = max(revenue, power) - power
    np.maximum(btc, power, out=btc)
    _running_sum(btc)
    hosting = costs.hosting_per_month / DAYS_PER_MONTH * machine.count
    fixed = machine.capex + (power + hosting) * np.arange(1, days + 1)[:, None]
    paid = np.greater_equal(btc[:days], fixed, out=work.paid(n))
    # first day paid: the smallest day number where paid, days + 1 where never
    first = work.first(n)
    first.fill(days + 1)
    np.copyto(first, work.day_numbers, where=paid)
    day = first.min(axis=0).astype(np.float64)
    day[day > days] = np.inf
    return day, btc[days - 1] - fixed[-1, 0]


def _weekly_price_factors(rng: np.random.Generator, n: int, weeks: int, vol: float) -> Array:
    """exp(sigma * W_w) of shape (weeks, n): a weekly log-price walk from 0 (week 0 = today)."""
    z = _antithetic(rng, n, weeks)
    z[0] = 0.0
    z *= vol * math.sqrt(_WEEK / 365)
    np.cumsum(z, axis=0, out=z)
    out: Array = np.exp(z, out=z)
    return out


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
