"""The other inputs a bill run reads, as protocols the consumer (billing) declares, and the
in-memory implementations `cli` fills from CSV files (or tests from recorded data).

A daily source counts a whole UTC day to the window holding the day's first second, so the
satoshis of a machine moved mid-day are never split (a satoshi is not divisible) and the
windows of a month still add up to the month.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Protocol

import numpy as np

from hashfarm.hosting.period import SECONDS_PER_DAY
from hashfarm.hosting.power import SampleSeries


class MinedSats(Protocol):
    """Satoshis a machine mined (for revenue share): from the pool's statements or a proxy."""

    def sats(self, machine_id: str, start: int, end: int) -> int:
        """Satoshis mined by `machine_id` over [start, end)."""
        ...


class BtcPrices(Protocol):
    """The BTC price in USD a BTC-indexed contract reads, one per UTC day."""

    def usd(self, day_start: int) -> Fraction | None:
        """The price for the UTC day starting at `day_start` (None: not known)."""
        ...


class Curtailment(Protocol):
    """When the farm switched machines off on purpose (demand response, heat, maintenance)."""

    def windows(self, machine_id: str, start: int, end: int) -> list[tuple[int, int]]:
        """The [from, to) windows overlapping [start, end) in which `machine_id` was curtailed."""
        ...


class CurtailmentWindows:
    """`Curtailment` from windows per machine id; the id "*" means every machine."""

    def __init__(self, windows: Mapping[str, list[tuple[int, int]]]) -> None:
        self._windows = {k: sorted(v) for k, v in windows.items()}

    def windows(self, machine_id: str, start: int, end: int) -> list[tuple[int, int]]:
        both = self._windows.get(machine_id, []) + self._windows.get("*", [])
        return [(a, b) for a, b in both if a < end and b > start]


class SeriesPowerSource:
    """A `PowerSource` over series held in memory (one per machine)."""

    def __init__(self, series: Mapping[str, SampleSeries]) -> None:
        self._series = dict(series)

    def samples(self, machine_id: str, start: int, end: int) -> SampleSeries:
        """The samples in [start, end) plus the last one before `start`."""
        s = self._series.get(machine_id)
        if s is None:
            return SampleSeries.of([])
        lo = max(int(np.searchsorted(s.times, start, side="right")) - 1, 0)
        hi = int(np.searchsorted(s.times, end, side="left"))
        return SampleSeries(s.times[lo:hi], s.watts[lo:hi], s.states[lo:hi])


class DailyMined:
    """`MinedSats` from per-(machine, day start) totals."""

    def __init__(self, per_day: Mapping[tuple[str, int], int]) -> None:
        self._days: dict[str, dict[int, int]] = {}
        for (mid, day), sats in per_day.items():
            self._days.setdefault(mid, {})[day] = sats

    def sats(self, machine_id: str, start: int, end: int) -> int:
        """The days whose first second lies in [start, end)."""
        first = -(-start // SECONDS_PER_DAY) * SECONDS_PER_DAY
        days = self._days.get(machine_id, {})
        return sum(days.get(d, 0) for d in range(first, end, SECONDS_PER_DAY))


class DailyPrices:
    """`BtcPrices` from a day start -> USD mapping."""

    def __init__(self, prices: Mapping[int, Fraction]) -> None:
        self._prices = dict(prices)

    def usd(self, day_start: int) -> Fraction | None:
        return self._prices.get(day_start)
