"""Monte Carlo payback: many price and difficulty-growth paths at once (numpy, seeded).

Each path draws a difficulty growth per epoch (the scenario's value plus a normal shock,
clipped to what the retarget rule allows) and a log-price random walk with daily steps
around the scenario's daily price path (median-preserving: with zero volatility the path *is*
the scenario).
With both spreads at zero every path equals `payback.simulate`, which the tests check.

Vectorized over paths, arrays day-major (shape (days, paths)): the revenue rate is piecewise
constant in time, so each path's daily BTC comes from a difference array - one rate jump per
boundary (retarget or halving), split across the day it lands in - and a running sum. Then
one fused pass over blocks of days that fit in cache does everything else (running sums,
prices, the switch-off rule, cash, the payback day): the work is memory-bound, so touching
each byte once matters more than the arithmetic. Price shocks are daily, in antithetic
pairs, drawn per block inside that pass as float32 normals by inverse transform on a 16-bit
grid (a table lookup: ~4x faster than numpy's ziggurat); same seed and chunk size, same answer.

The same pass can also keep each path's cumulative cash on chosen days (`band_days`), whose
10th, 50th and 90th percentiles are the bands a chart draws (`cash_bands`; the web
calculator's): one model, one set of paths for the odds and the bands. Only the chosen days
are kept (days x paths floats), so a chart's few hundred days cost little.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from statistics import NormalDist
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from hashfarm.chain.subsidy import block_subsidy
from hashfarm.economics.hashprice import SECONDS_PER_DAY, btc_per_th_day
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

__all__ = [
    "CashBands",
    "MonteCarloResult",
    "Uncertainty",
    "cash_bands",
    "daily_revenue_btc",
    "run_monte_carlo",
]

Array = npt.NDArray[np.float64]
_F = TypeVar("_F", np.float32, np.float64)


@dataclass(frozen=True, slots=True)
class Uncertainty:
    """How wide the future is spread; spreads of zero give the deterministic case."""

    paths: int = 10_000  # number of simulated paths
    seed: int = 0  # seed of numpy's default generator; same seed, same answer
    price_vol_per_year: float = 0.6  # annualized volatility of the log BTC price
    growth_sd_per_epoch: float = 0.03  # standard deviation of difficulty growth per epoch
    chunk: int = 4096  # paths simulated together (memory ~ chunk * days * 8 bytes)

    def __post_init__(self) -> None:
        if self.paths < 1 or self.chunk < 1:
            raise ConfigError("paths: must be at least 1")
        if self.price_vol_per_year < 0 or self.growth_sd_per_epoch < 0:
            raise ConfigError("volatility and growth spread must not be negative")


@dataclass(frozen=True, slots=True)
class CashBands:
    """The batch's cumulative cash (display currency, after the purchase) on chosen days, at
    the 10th, 50th and 90th percentile over the paths: one value per day in `days`."""

    days: tuple[int, ...]  # day indexes: 0 is the end of the first day, as payback.rows[0]
    p10: Array = field(repr=False)
    p50: Array = field(repr=False)
    p90: Array = field(repr=False)


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
    bands: CashBands | None = None  # when run_monte_carlo was given band_days


def run_monte_carlo(
    machine: Machine,
    costs: Costs,
    start: Start,
    scenario: Scenario,
    unc: Uncertainty,
    band_days: Sequence[int] | None = None,
) -> MonteCarloResult:
    """Simulate `unc.paths` paths of the batch's cash flow and summarize them.

    `band_days` (increasing day indexes below the horizon): also the cumulative cash
    percentiles on those days (`result.bands`), from the same paths as the odds.
    """
    rng = np.random.default_rng(unc.seed)
    days = scenario.horizon_days
    work = _Workspace(days, min(unc.chunk, unc.paths), start, scenario)
    payback, cash = np.empty(unc.paths), np.empty(unc.paths)
    kept, record = None, np.empty((0, unc.paths))  # the band days, and each path's cash on them
    if band_days is not None:
        kept = _band_days(band_days, days)
        record = np.empty((kept.size, unc.paths))
    for first in range(0, unc.paths, unc.chunk):
        n = min(unc.chunk, unc.paths - first)
        grid = work.grid(n)
        _revenue_jumps(rng, grid, machine, costs, start, scenario, unc)
        part = slice(first, first + n)
        keep = None if kept is None else (kept, record[:, part])
        payback[part], cash[part] = _cash_flow(rng, grid, work, machine, costs, unc, keep)
    p10, p50, p90 = np.quantile(payback, (0.1, 0.5, 0.9), method="inverted_cdf")
    c10, c50, c90 = np.quantile(cash, (0.1, 0.5, 0.9))
    bands = None
    if kept is not None:  # the same quantiles as cumulative_end's, day by day
        b10, b50, b90 = np.quantile(record, (0.1, 0.5, 0.9), axis=1)
        bands = CashBands(tuple(int(d) for d in kept), b10, b50, b90)
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
        bands=bands,
    )


def cash_bands(
    machine: Machine,
    costs: Costs,
    start: Start,
    scenario: Scenario,
    unc: Uncertainty,
    days: Sequence[int] | None = None,
) -> CashBands:
    """Cumulative cash at the 10th, 50th and 90th percentile over `unc.paths` paths on each of
    `days` (increasing day indexes; every day of the horizon when None).

    The paths are `run_monte_carlo`'s (same seed, same paths, same odds): with both spreads
    at zero every percentile is `payback.simulate`'s cumulative cash on that day. Memory is
    len(days) x paths floats: ask for the days a chart shows rather than every day.
    """
    chosen = range(scenario.horizon_days) if days is None else days
    bands = run_monte_carlo(machine, costs, start, scenario, unc, band_days=chosen).bands
    assert bands is not None  # band_days was given
    return bands


def _band_days(days: Sequence[int], horizon: int) -> npt.NDArray[np.intp]:
    """`days` as an index array, checked: increasing, each from 0 to horizon - 1."""
    raw = np.asarray(days).reshape(-1)
    out = raw.astype(np.intp)
    if raw.size and (
        not np.issubdtype(raw.dtype, np.integer)
        or out[0] < 0
        or out[-1] >= horizon
        or np.any(np.diff(out) <= 0)
    ):
        raise ConfigError(f"band days: increasing day indexes from 0 to {horizon - 1}")
    return out


_BLOCK_CELLS = 42 * 4096  # path-days per cache block of the fused pass (1.3 MB of float64)


class _Workspace:
    """The one big buffer, reused by every chunk, and the per-day constants."""

    def __init__(self, days: int, paths: int, start: Start, scenario: Scenario) -> None:
        self.days = days
        self.width = days + 2  # the horizon, plus two rows that catch spill
        # zeros from the start; the fused pass re-zeroes what it used, for the next chunk
        self._grid = np.zeros(self.width * paths)
        prices = np.asarray(daily_prices(start, scenario), dtype=np.float64)
        self.prices = prices[:, None]
        # the stochastic case prices in float32 (log-price + shock, then exp); a price of 0
        # is a log of -inf, which exp turns back into 0
        with np.errstate(divide="ignore"):
            self.log_prices = np.log(prices).astype(np.float32)[:, None]
        half = (paths + 1) // 2
        self.block = min(days, max(1, _BLOCK_CELLS // paths))  # days per block
        self.shocks = np.empty((self.block, half), dtype=np.float32)  # cumulative log shocks
        self.factor = np.empty((self.block, paths), dtype=np.float32)  # price per path and day

    def grid(self, n: int) -> Array:
        """A contiguous (width, n) view for a chunk of n paths (day-major)."""
        return self._grid[: self.width * n].reshape(self.width, n)


def _accumulate(rows: npt.NDArray[_F], op: np.ufunc, first: npt.NDArray[_F]) -> npt.NDArray[_F]:
    """In place along rows: rows[0] = op(first, rows[0]), rows[i] = op(rows[i-1], rows[i]).

    numpy's cumsum/cumprod along axis 0 walk the array with a stride; a vector op per row
    is several times faster.
    """
    op(first, rows[0], out=rows[0])
    for i in range(1, rows.shape[0]):
        op(rows[i - 1], rows[i], out=rows[i])
    return rows


def _antithetic(rng: np.random.Generator, n: int, count: int) -> Array:
    """Standard normals of shape (count, n) in antithetic pairs: column i + n//2 = -column i.

    Pairs halve the normals drawn and reduce the variance of averages; an odd n gets one
    unpaired column.
    """
    half = (n + 1) // 2
    z = _normal_quantiles()[_normal_words(rng.bit_generator, count, half)].astype(np.float64)
    return np.concatenate((z, -z[:, : n - half]), axis=1)


def _normal_words(bits: np.random.BitGenerator, rows: int, cols: int) -> npt.NDArray[np.uint16]:
    """Random indices into `_normal_quantiles()`, shape (rows, cols): 16 bits each.

    Inverse transform on a 16-bit grid: a table lookup instead of numpy's ziggurat (~4x
    faster, in float32); the tails are cut at 4.3 sd, which a sum over days or a clipped
    growth shock does not notice.
    """
    words = bits.random_raw(-(-rows * cols // 4)).view(np.uint16)[: rows * cols]
    return words.reshape(rows, cols)


def daily_revenue_btc(
    rng: np.random.Generator,
    n: int,
    machine: Machine,
    costs: Costs,
    start: Start,
    scenario: Scenario,
    unc: Uncertainty,
) -> Array:
    """BTC the batch mines each day on n random difficulty paths: shape (days, n)."""
    days = scenario.horizon_days
    grid = np.zeros((days + 2, n))
    _revenue_jumps(rng, grid, machine, costs, start, scenario, unc)
    _accumulate(grid, np.add, np.zeros(n))
    return grid[:days]


def _revenue_jumps(
    rng: np.random.Generator,
    grid: Array,
    machine: Machine,
    costs: Costs,
    start: Start,
    scenario: Scenario,
    unc: Uncertainty,
) -> None:
    """Write the difference array of daily BTC into the zeroed `grid` (one column per path).

    Rows from `days` on catch jumps past the horizon. Boundaries are taken `_BATCH` at a
    time until every path has passed the horizon.
    """
    n, days = grid.shape[1], scenario.horizon_days
    ths = machine.hashrate_ths * costs.hash_factor * machine.count
    per_day = btc_per_th_day(1.0, 1.0) * ths  # BTC/day at difficulty 1 and reward 1 BTC
    walker = _PathState(rng, n, start, scenario, unc, per_day)
    grid[0] = walker.rate
    flat = grid.reshape(-1)  # a view: grid is C-contiguous (see _Workspace.grid)
    columns = np.arange(n)
    bounds = boundaries(start.height, start.network)
    while walker.t.min() < days:
        at_day, jump = walker.advance(list(itertools.islice(bounds, _BATCH)))
        day = np.minimum(np.floor(at_day), days).astype(np.intp)
        frac = at_day - day  # share of the landing day already past at the jump
        index = (day * n + columns).ravel()  # 1-D indices: numpy's fast add.at path
        np.add.at(flat, index, (jump * (1 - frac)).ravel())
        np.add.at(flat, index + n, (jump * frac).ravel())


_BATCH = 16  # boundaries per vectorized step (small: the last step overshoots the horizon)


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
        # the same arithmetic, in the same order, as scenario.schedule
        at_day = _accumulate(
            blocks * (spacing / (1 + seg_growth)) / SECONDS_PER_DAY, np.add, self.t
        )
        step = np.where(retarget[:, None], 1 + seg_growth, 1.0)
        difficulty = _accumulate(step, np.multiply, self.difficulty)
        subsidy = np.asarray([block_subsidy(int(h), self.start.network) for h in heights])
        rate = self.per_day * (subsidy[:, None] / SATS_PER_BTC + self.start.fees_btc) / difficulty
        jump = np.diff(rate, axis=0, prepend=self.rate[None])
        self.t, self.difficulty, self.rate = at_day[-1], difficulty[-1], rate[-1]
        self.growth, self.height = growths[-1], int(heights[-1])
        self.epoch += new_epochs
        return at_day, jump


def _cash_flow(
    rng: np.random.Generator,
    grid: Array,
    work: _Workspace,
    machine: Machine,
    costs: Costs,
    unc: Uncertainty,
    keep: tuple[npt.NDArray[np.intp], Array] | None = None,
) -> tuple[Array, Array]:
    """Payback day (inf if never) and final cash per path, from the revenue jumps in `grid`.

    One pass over blocks of `work.block` days; each block is summed, priced, switched off where
    it loses money, summed again and searched for the payback day while it sits in cache,
    then zeroed for the next chunk. `keep` = (day indexes, out): the cumulative cash of every
    path on those days is written to `out` (one row per day, one column per path).
    """
    n, days = grid.shape[1], work.days
    walk = None
    if unc.price_vol_per_year > 0:
        walk = _PriceWalk(rng, work, n, unc.price_vol_per_year)
    power = machine.power_w / 1000 * 24 * costs.uptime * machine.count * costs.power_price_kwh
    hosting = costs.hosting_per_month / DAYS_PER_MONTH * machine.count
    day_numbers = np.arange(1, days + 1, dtype=np.float64)
    # cash is reached when the running sum of max(revenue, power) covers this
    fixed = machine.capex + (power + hosting) * day_numbers
    btc_carry, cash_carry = np.zeros(n), np.zeros(n)
    payback = np.full(n, np.inf)
    for d0 in range(0, days, work.block):
        d1 = min(d0 + work.block, days)
        rows = grid[d0:d1]
        _accumulate(rows, np.add, btc_carry)  # daily BTC
        btc_carry = rows[-1].copy()
        if walk is None:
            rows *= work.prices[d0:d1]  # revenue on the scenario's price path
        else:
            rows *= walk.prices(d0, d1)  # ... or on this path's prices
        np.maximum(rows, power, out=rows)  # switched off on days that would lose money
        _accumulate(rows, np.add, cash_carry)
        cash_carry = rows[-1].copy()
        _first_paid(rows, fixed[d0:d1], day_numbers[d0:d1], payback)
        if keep is not None:
            _keep_cash(rows, fixed, d0, *keep)
        rows.fill(0.0)
    grid[days:].fill(0.0)  # the spill rows
    return payback, cash_carry - fixed[days - 1]


def _keep_cash(rows: Array, fixed: Array, d0: int, kept: npt.NDArray[np.intp], out: Array) -> None:
    """Cumulative cash on the kept days that fall in this block (rows = days d0..) into out."""
    lo, hi = np.searchsorted(kept, (d0, d0 + rows.shape[0]))
    if hi > lo:
        at = kept[lo:hi]
        np.subtract(rows[at - d0], fixed[at, None], out=out[lo:hi])


def _first_paid(rows: Array, fixed: Array, day_numbers: Array, payback: Array) -> None:
    """Set payback to the first day with rows >= fixed, on the paths not paid back before.

    Costs are never negative, so both the running sum in `rows` and `fixed` never fall: a path
    can only pay back in this block if its last day covers the block's first `fixed`. That
    one-row test leaves the few paths whose days have to be searched.
    """
    cols = np.flatnonzero((rows[-1] >= fixed[0]) & np.isinf(payback))
    if cols.size:
        paid = rows[:, cols] >= fixed[:, None]
        hit = paid.any(axis=0)
        payback[cols[hit]] = day_numbers[paid[:, hit].argmax(axis=0)]


class _PriceWalk:
    """Daily log-price shocks for n paths, drawn a block of days at a time.

    Path i + half is the antithetic twin of path i (its shocks negated), so only half the
    shocks are drawn and summed.
    """

    def __init__(self, rng: np.random.Generator, work: _Workspace, n: int, vol: float) -> None:
        self.bits, self.work, self.n = rng.bit_generator, work, n
        self.half = (n + 1) // 2
        self.table = _normal_quantiles() * np.float32(vol * math.sqrt(1 / 365))
        self.level = np.zeros(self.half, dtype=np.float32)  # log shock so far (day 0 = today)

    def prices(self, d0: int, d1: int) -> npt.NDArray[np.float32]:
        """Price on days d0..d1-1 of every path: shape (d1 - d0, n), float32."""
        k, half = d1 - d0, self.half
        words = _normal_words(self.bits, k, half)
        shocks = np.take(self.table, words, out=self.work.shocks[:k, :half])
        if d0 == 0:
            shocks[0] = 0.0  # today's price is known
        _accumulate(shocks, np.add, self.level)
        self.level = shocks[-1].copy()
        out = self.work.factor[:k, : self.n]
        log_prices = self.work.log_prices[d0:d1]
        np.add(log_prices, shocks, out=out[:, :half])
        np.subtract(log_prices, shocks[:, : self.n - half], out=out[:, half:])
        priced: npt.NDArray[np.float32] = np.exp(out, out=out)
        return priced


@cache
def _normal_quantiles() -> npt.NDArray[np.float32]:
    """N(0, 1) at the midpoints of 65,536 equal-probability cells, scaled to unit variance."""
    q = np.asarray([NormalDist().inv_cdf((i + 0.5) / 65536) for i in range(65536)])
    table: npt.NDArray[np.float32] = (q / q.std()).astype(np.float32)
    return table


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
