"""Where the network goes: difficulty per retarget epoch, halvings at their heights, dates.

The model ties block times to the difficulty path the way the retarget rule does: if the
difficulty of the epoch after epoch k is D_k * (1 + g_k), then the hashrate during epoch k
made its 2016 blocks in 1/(1 + g_k) of the two weeks, so its blocks came every
600 / (1 + g_k) seconds. That maps every height - and so every halving - to a date.

A `Segment` is a stretch of blocks with one difficulty and one subsidy; its revenue per TH/s
per day is constant. Both the day-by-day reference (`payback`) and the vectorized Monte
Carlo (`montecarlo`) walk the same `boundaries`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

from hashfarm.chain.networks import Network
from hashfarm.chain.subsidy import block_subsidy
from hashfarm.economics.hashprice import SECONDS_PER_DAY, btc_per_th_day
from hashfarm.errors import ConfigError
from hashfarm.units import SATS_PER_BTC

__all__ = [
    "MAX_GROWTH",
    "MIN_GROWTH",
    "Scenario",
    "Segment",
    "Start",
    "boundaries",
    "daily_prices",
    "schedule",
]

MIN_GROWTH = -0.75  # the retarget rule cannot lower difficulty by more than 4x per epoch
MAX_GROWTH = 3.0  # ... nor raise it by more than 4x


@dataclass(frozen=True, slots=True)
class Start:
    """The network state a projection starts from."""

    network: Network
    height: int  # the next block to be mined
    difficulty: float  # difficulty of the epoch containing `height`
    fees_btc: float  # average fees per block, assumed to stay constant
    price: float  # BTC price today, display currency


@dataclass(frozen=True, slots=True)
class Scenario:
    """Assumptions about the future; all growth rates are fractions (0.02 = 2 %)."""

    horizon_days: int = 3 * 365  # length of the simulation
    difficulty_growth: tuple[float, ...] = (0.0,)  # per epoch from now; the last value repeats
    price_growth_per_year: float = 0.0  # compounded; ignored when `price_points` is given
    price_points: tuple[tuple[float, float], ...] = ()  # (day, price) knots, linear between

    def __post_init__(self) -> None:
        if self.horizon_days < 1:
            raise ConfigError("horizon: must be at least one day")
        if not self.difficulty_growth:
            raise ConfigError("difficulty growth: give at least one value per epoch")
        for g in self.difficulty_growth:
            if not MIN_GROWTH <= g <= MAX_GROWTH:
                raise ConfigError(
                    f"difficulty growth {g:+.2%} per epoch is outside what the retarget rule "
                    f"allows ({MIN_GROWTH:+.0%} .. {MAX_GROWTH:+.0%})"
                )
        if self.price_growth_per_year <= -1:
            raise ConfigError("price growth: must be above -100 % per year")
        days = [d for d, _ in self.price_points]
        if days != sorted(days) or any(p < 0 for _, p in self.price_points):
            raise ConfigError("price path: days must increase and prices must not be negative")

    def growth(self, epoch: int) -> float:
        """Difficulty growth at the end of epoch `epoch` (0 = the current epoch)."""
        return self.difficulty_growth[min(epoch, len(self.difficulty_growth) - 1)]


@dataclass(frozen=True, slots=True)
class Segment:
    """Blocks [start_height, end_height) at one difficulty and subsidy."""

    epoch: int  # 0 = the current epoch
    start_height: int
    end_height: int
    start_day: float
    end_day: float
    difficulty: float
    subsidy_sats: int
    block_interval_s: float

    def btc_per_th_day(self, fees_btc: float) -> float:
        """Revenue rate of one TH/s during this segment."""
        return btc_per_th_day(self.difficulty, self.subsidy_sats / SATS_PER_BTC + fees_btc)


def boundaries(height: int, network: Network) -> Iterator[tuple[int, bool, bool]]:
    """Heights after `height` where something changes: (height, retarget?, halving?)."""
    interval, halving = network.retarget_interval, network.halving_interval
    next_epoch = (height // interval + 1) * interval
    next_halving = (height // halving + 1) * halving
    while True:
        at = min(next_epoch, next_halving)
        yield at, at == next_epoch, at == next_halving
        if at == next_epoch:
            next_epoch += interval
        if at == next_halving:
            next_halving += halving


def schedule(start: Start, scenario: Scenario) -> list[Segment]:
    """Segments from `start.height` until past the horizon."""
    retargets = not start.network.no_retargeting
    segments: list[Segment] = []
    height, day, difficulty, epoch = start.height, 0.0, start.difficulty, 0
    for at, is_retarget, _ in boundaries(start.height, start.network):
        growth = scenario.growth(epoch) if retargets else 0.0
        interval = start.network.target_spacing / (1 + growth)
        end_day = day + (at - height) * interval / SECONDS_PER_DAY
        subsidy = block_subsidy(height, start.network)
        segments.append(Segment(epoch, height, at, day, end_day, difficulty, subsidy, interval))
        if end_day >= scenario.horizon_days:
            return segments
        height, day = at, end_day
        if is_retarget:
            difficulty *= 1 + growth
            epoch += 1
    raise AssertionError("unreachable: boundaries() is infinite")


def daily_prices(start: Start, scenario: Scenario) -> list[float]:
    """The BTC price on each simulated day (day 0 = today)."""
    days = range(scenario.horizon_days)
    if not scenario.price_points:
        drift = math.log1p(scenario.price_growth_per_year) / 365
        return [start.price * math.exp(drift * d) for d in days]
    return [_interpolate(scenario.price_points, d) for d in days]


def _interpolate(points: tuple[tuple[float, float], ...], day: float) -> float:
    """Linear interpolation between knots, flat beyond the first and last."""
    if day <= points[0][0]:
        return points[0][1]
    for (d0, p0), (d1, p1) in itertools.pairwise(points):
        if day <= d1:
            return p0 + (p1 - p0) * (day - d0) / (d1 - d0) if d1 > d0 else p1
    return points[-1][1]
