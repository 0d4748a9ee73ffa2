"""Machines' power samples in, exact energy and uptime over any window out.

The fleet poller (or any other source) hands billing each machine's samples through the
`PowerSource` protocol declared here: the consumer owns the interface, `cli` wires the
implementation. A sample says "from `time` on, this machine drew `watts` and was in `state`"
and holds until the next sample, but never longer than `max_hold_s`: time no sample speaks for
is *no data* and counts as down (a silent machine is not a running one).

Times are integer unix seconds and power whole watts, so energy is an exact integer number of
joules (watt-seconds) and kWh an exact `Fraction` (J / 3,600,000). `Integrator` answers any
window in O(log n) from prefix sums (numpy int64, exact: watts and spans are bounded so no sum
can reach 2**63); `integrate_reference` is the plain per-sample loop it is checked against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from fractions import Fraction
from typing import Protocol

import numpy as np
import numpy.typing as npt

from hashfarm.hosting.errors import HostingError
from hashfarm.hosting.money import JOULES_PER_KWH

MAX_WATTS = 1_000_000  # a sample above 1 MW for one machine is a unit error, not a reading
MAX_HOLD_S = 86_400  # the longest a sample may speak for (one day)
MAX_SPAN_S = 20 * 366 * 86_400  # samples of one series span at most 20 years


class State(IntEnum):
    """What a machine was doing, as far as billing is concerned."""

    RUNNING = 0  # hashing
    CURTAILED = 1  # switched off by the farm on purpose (demand response, heat): not downtime
    DOWN = 2  # not hashing for any other reason


@dataclass(frozen=True, slots=True)
class SampleSeries:
    """One machine's samples, in columns: strictly increasing times, watts, states."""

    times: npt.NDArray[np.int64]
    watts: npt.NDArray[np.int64]
    states: npt.NDArray[np.int8]

    @classmethod
    def of(cls, rows: Sequence[tuple[int, int, State | int]]) -> SampleSeries:
        """A series from `(time, watts, state)` rows (sorted here; duplicates refused)."""
        rows = sorted(rows)
        return cls(
            np.array([r[0] for r in rows], dtype=np.int64),
            np.array([r[1] for r in rows], dtype=np.int64),
            np.array([int(r[2]) for r in rows], dtype=np.int8),
        )

    def __len__(self) -> int:
        return len(self.times)

    def check(self) -> None:
        """Refuse what the exact integer sums could not carry (HostingError says what)."""
        t, w, s = self.times, self.watts, self.states
        if not len(t) == len(w) == len(s):
            raise HostingError("sample columns differ in length")
        if len(t) == 0:
            return
        if len(t) > 1 and not bool(np.all(np.diff(t) > 0)):
            raise HostingError("sample times must be strictly increasing")
        if int(t[-1]) - int(t[0]) > MAX_SPAN_S:
            raise HostingError("samples span more than 20 years")
        if int(w.min()) < 0 or int(w.max()) > MAX_WATTS:
            raise HostingError(f"sample watts must be within 0..{MAX_WATTS}")
        if int(s.min()) < 0 or int(s.max()) > max(State):
            raise HostingError("sample state is not running/curtailed/down")


class PowerSource(Protocol):
    """What billing needs from the fleet: one machine's samples for a window."""

    def samples(self, machine_id: str, start: int, end: int) -> SampleSeries:
        """Every sample with start <= time < end, plus the last one before `start` if any."""
        ...


@dataclass(frozen=True, slots=True)
class Usage:
    """A machine over one window: exact energy and where its seconds went."""

    seconds: int
    energy_j: int
    running_s: int
    curtailed_s: int
    down_s: int  # reported down plus no data

    @property
    def kwh(self) -> Fraction:
        return Fraction(self.energy_j, JOULES_PER_KWH)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.seconds + other.seconds,
            self.energy_j + other.energy_j,
            self.running_s + other.running_s,
            self.curtailed_s + other.curtailed_s,
            self.down_s + other.down_s,
        )


NO_USAGE = Usage(0, 0, 0, 0, 0)


class Integrator:
    """Prefix sums over one series: energy and per-state seconds at any instant, exactly."""

    def __init__(self, series: SampleSeries, max_hold_s: int) -> None:
        if not 0 < max_hold_s <= MAX_HOLD_S:
            raise HostingError(f"max_hold_s must be within 1..{MAX_HOLD_S}")
        series.check()
        t, w, s = series.times, series.watts, series.states
        self._t, self._w, self._s = t, w, s
        nxt = np.empty_like(t)
        nxt[:-1] = t[1:]
        if len(t):
            nxt[-1] = t[-1] + max_hold_s
        self._seg = np.minimum(nxt - t, max_hold_s)
        zero = np.zeros(1, dtype=np.int64)
        self._cum_e = np.concatenate([zero, np.cumsum(w * self._seg)])
        self._cum_s = [
            np.concatenate([zero, np.cumsum(np.where(s == st, self._seg, 0))]) for st in State
        ]

    def at(self, points: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], ...]:
        """Cumulative (energy J, running s, curtailed s, reported-down s) up to each point."""
        k = np.searchsorted(self._t, points, side="right") - 1
        valid = k >= 0
        kk = np.where(valid, k, 0)
        if len(self._t) == 0:
            z = np.zeros(len(points), dtype=np.int64)
            return z, z, z, z
        part = np.where(valid, np.clip(points - self._t[kk], 0, self._seg[kk]), 0)
        energy = np.where(valid, self._cum_e[kk] + self._w[kk] * part, 0)
        by_state = [
            np.where(valid, cum[kk] + np.where(self._s[kk] == st, part, 0), 0)
            for st, cum in zip(State, self._cum_s, strict=True)
        ]
        return energy, by_state[0], by_state[1], by_state[2]

    def windows(self, bounds: Sequence[int]) -> list[Usage]:
        """The usage over each window between consecutive `bounds` (non-decreasing)."""
        pts = np.asarray(bounds, dtype=np.int64)
        spans = np.diff(pts).tolist()
        if any(x < 0 for x in spans):
            raise HostingError("window bounds must not decrease")
        energy, run, curt = (np.diff(a).tolist() for a in self.at(pts)[:3])
        return [
            Usage(sp, e, r, c, sp - r - c)
            for sp, e, r, c in zip(spans, energy, run, curt, strict=True)
        ]


def integrate_reference(
    rows: Sequence[tuple[int, int, int]], start: int, end: int, max_hold_s: int
) -> Usage:
    """The plain loop `Integrator` is checked against: each sample's held span, clipped."""
    rows = sorted(rows)
    energy = running = curtailed = 0
    for i, (t, w, s) in enumerate(rows):
        until = t + max_hold_s
        if i + 1 < len(rows):
            until = min(until, rows[i + 1][0])
        lo, hi = max(t, start), min(until, end)
        if hi <= lo:
            continue
        energy += w * (hi - lo)
        if s == State.RUNNING:
            running += hi - lo
        elif s == State.CURTAILED:
            curtailed += hi - lo
    seconds = end - start
    return Usage(seconds, energy, running, curtailed, seconds - running - curtailed)
