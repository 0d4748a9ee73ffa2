"""CSV inputs, parsed whole or not at all: every malformed row is reported by its line number.

* meter readings (`machine_id,time,kwh`): a PDU outlet's or sub-meter's cumulative register,
  in kWh as decimal text; a register that goes backwards for a machine is an error.
* power samples (`machine_id,time,watts,state`): what the fleet poller records; state is
  running, curtailed or down.
* mined satoshis (`machine_id,day,sats`) and BTC prices (`day,btc_usd`): what revenue-share
  and BTC-indexed contracts read, one row per machine-day and per day.
* curtailment windows (`machine_id,start,end`, `*` for every machine): when the farm
  switched machines off on purpose.

Times are unix seconds or ISO 8601 (UTC when no offset is given). Line 1 is the header; its
columns are found by name, extra columns are ignored. `InputError` lists every bad line and
nothing from the file is used.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import TypeVar

from hashfarm.hosting.errors import HostingError, InputError
from hashfarm.hosting.money import fmt_fraction, parse_decimal
from hashfarm.hosting.period import SECONDS_PER_DAY, parse_time
from hashfarm.hosting.power import MAX_WATTS, SampleSeries, State

MAX_ROW_CHARS = 4096  # a longer line is not a reading; refuse it rather than parse it
MAX_ID_CHARS = 128

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MeterReading:
    """A cumulative register: `kwh` counted by the machine's meter up to `time`."""

    machine_id: str
    time: int
    kwh: Fraction
    line: int = 0  # where it came from (0: not from a file)


def _rows(text: str, columns: tuple[str, ...], what: str) -> Iterator[tuple[int, dict[str, str]]]:
    lines = text.splitlines()
    if not lines:
        raise InputError(what, [(1, "the file is empty (expected a header)")])
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(what, [(1, f"header lacks column(s) {', '.join(missing)}")])
    idx = {c: header.index(c) for c in columns}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if len(line) > MAX_ROW_CHARS:
            yield n, {"": f"row longer than {MAX_ROW_CHARS} characters"}
            continue
        cells = next(csv.reader([line]))
        if len(cells) < len(header):
            yield n, {"": f"{len(cells)} cell(s), the header has {len(header)}"}
            continue
        yield n, {c: cells[i].strip() for c, i in idx.items()}


def _parse(
    text: str, columns: tuple[str, ...], what: str, build: Callable[[int, dict[str, str]], T]
) -> list[T]:
    out: list[T] = []
    problems: list[tuple[int, str]] = []
    for n, row in _rows(text, columns, what):
        if "" in row:
            problems.append((n, row[""]))
            continue
        try:
            out.append(build(n, row))
        except HostingError as exc:
            problems.append((n, str(exc)))
    if problems:
        raise InputError(what, problems)
    return out


def _machine(row: dict[str, str]) -> str:
    mid = row["machine_id"]
    if not mid or len(mid) > MAX_ID_CHARS:
        raise HostingError(f"machine_id must be 1..{MAX_ID_CHARS} characters")
    return mid


def parse_meter_csv(text: str) -> list[MeterReading]:
    """Meter readings from CSV text; InputError lists every bad line (nothing is returned)."""

    def build(n: int, row: dict[str, str]) -> MeterReading:
        kwh = parse_decimal(row["kwh"], "kwh")
        if kwh < 0:
            raise HostingError(f"kwh {row['kwh']} is negative")
        return MeterReading(_machine(row), parse_time(row["time"]), kwh, n)

    readings = _parse(text, ("machine_id", "time", "kwh"), "meter readings", build)
    problems = register_problems(readings)
    if problems:
        raise InputError("meter readings", problems)
    return readings


def register_problems(readings: list[MeterReading]) -> list[tuple[int, str]]:
    """Lines where a machine's register goes backwards or one instant has two values."""
    by_machine: dict[str, list[MeterReading]] = defaultdict(list)
    for r in readings:
        by_machine[r.machine_id].append(r)
    problems: list[tuple[int, str]] = []
    for mid, rs in by_machine.items():
        rs.sort(key=lambda r: (r.time, r.line))
        for a, b in pairwise(rs):
            line = b.line or a.line  # a stored reading has no line: name the file's
            if b.time == a.time and b.kwh != a.kwh:
                problems.append((line, f"{mid}: a second, different reading at that time"))
            elif b.kwh < a.kwh:
                was, now = fmt_fraction(a.kwh), fmt_fraction(b.kwh)
                problems.append((line, f"{mid}: register went backwards ({was} -> {now})"))
    return sorted(problems)


def parse_samples_csv(text: str) -> dict[str, SampleSeries]:
    """Power samples from CSV text, one series per machine."""
    states = {s.name.lower(): s for s in State}

    def build(n: int, row: dict[str, str]) -> tuple[str, int, int, State]:
        try:
            watts = int(row["watts"])
        except ValueError:
            raise HostingError(f"watts {row['watts']!r} is not a whole number") from None
        if not 0 <= watts <= MAX_WATTS:
            raise HostingError(f"watts {watts} is not within 0..{MAX_WATTS}")
        state = states.get(row["state"].lower())
        if state is None:
            raise HostingError(f"state {row['state']!r} is not running/curtailed/down")
        return _machine(row), parse_time(row["time"]), watts, state

    rows = _parse(text, ("machine_id", "time", "watts", "state"), "power samples", build)
    grouped: dict[str, dict[int, tuple[int, int, State]]] = defaultdict(dict)
    for mid, t, w, s in rows:
        grouped[mid][t] = (t, w, s)  # a repeated instant: the later line wins
    return {mid: SampleSeries.of(list(v.values())) for mid, v in grouped.items()}


def parse_mined_csv(text: str) -> dict[tuple[str, int], int]:
    """Satoshis mined per (machine, UTC day start) from CSV text."""

    def build(n: int, row: dict[str, str]) -> tuple[str, int, int]:
        day = _day(row["day"])
        try:
            sats = int(row["sats"])
        except ValueError:
            raise HostingError(f"sats {row['sats']!r} is not a whole number") from None
        if sats < 0:
            raise HostingError("sats is negative")
        return _machine(row), day, sats

    out: dict[tuple[str, int], int] = {}
    for mid, day, sats in _parse(text, ("machine_id", "day", "sats"), "mined sats", build):
        out[(mid, day)] = out.get((mid, day), 0) + sats
    return out


def parse_prices_csv(text: str) -> dict[int, Fraction]:
    """BTC price in USD per UTC day start from CSV text."""

    def build(n: int, row: dict[str, str]) -> tuple[int, Fraction]:
        price = parse_decimal(row["btc_usd"], "btc_usd")
        if price <= 0:
            raise HostingError("btc_usd must be positive")
        return _day(row["day"]), price

    return dict(_parse(text, ("day", "btc_usd"), "BTC prices", build))


def parse_curtailment_csv(text: str) -> dict[str, list[tuple[int, int]]]:
    """Curtailment windows (`machine_id,start,end`; machine_id `*` is every machine)."""

    def build(n: int, row: dict[str, str]) -> tuple[str, int, int]:
        start, end = parse_time(row["start"], "start"), parse_time(row["end"], "end")
        if end <= start:
            raise HostingError("end is not after start")
        return _machine(row), start, end

    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for mid, start, end in _parse(text, ("machine_id", "start", "end"), "curtailment", build):
        out[mid].append((start, end))
    return dict(out)


def _day(text: str) -> int:
    t = parse_time(text, "day")
    if t % SECONDS_PER_DAY:
        raise HostingError(f"day {text!r} is not 00:00 UTC")
    return t


def read_text(data: bytes, what: str) -> str:
    """UTF-8 text (a BOM allowed) or an InputError naming the first bad line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(what, [(line, "not UTF-8 text")]) from None


def interpolate(readings: list[MeterReading], at: int) -> Fraction | None:
    """The register at `at`, linear between the readings around it (None: not covered)."""
    lo = hi = None
    for r in readings:  # sorted by time
        if r.time <= at:
            lo = r
        if r.time >= at:
            hi = r
            break
    if lo is None or hi is None:
        return None
    if hi.time == lo.time:
        return lo.kwh
    return lo.kwh + (hi.kwh - lo.kwh) * Fraction(at - lo.time, hi.time - lo.time)
