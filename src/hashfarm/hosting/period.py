"""Billing periods (calendar months in UTC) and the times rows carry (ISO 8601 or unix seconds)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from hashfarm.hosting.errors import HostingError

SECONDS_PER_DAY = 86_400
_PERIOD = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """One calendar month in UTC: `start` inclusive, `end` exclusive, as unix seconds."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not (1 <= self.month <= 12 and 1970 <= self.year <= 9998):
            raise HostingError(f"period {self.year}-{self.month:02d} is not a month")

    @classmethod
    def parse(cls, text: str) -> Period:
        """A period from "YYYY-MM"."""
        m = _PERIOD.fullmatch(text.strip())
        if not m:
            raise HostingError(f"period {text!r}: expected YYYY-MM, e.g. 2026-11")
        return cls(int(m.group(1)), int(m.group(2)))

    @property
    def start(self) -> int:
        return _unix(dt.datetime(self.year, self.month, 1, tzinfo=dt.UTC))

    @property
    def end(self) -> int:
        nxt = (self.year + self.month // 12, self.month % 12 + 1)
        return _unix(dt.datetime(nxt[0], nxt[1], 1, tzinfo=dt.UTC))

    @property
    def seconds(self) -> int:
        return self.end - self.start

    def days(self) -> list[int]:
        """The unix second each UTC day of the month starts at."""
        return list(range(self.start, self.end, SECONDS_PER_DAY))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def _unix(when: dt.datetime) -> int:
    return int(when.timestamp())


def parse_time(text: str, what: str = "time") -> int:
    """Unix seconds from an integer or ISO 8601 text ("2026-11-01", "2026-11-01T06:00:00Z").

    A date is its 00:00 UTC; a time without an offset is UTC.
    """
    s = str(text).strip()
    if re.fullmatch(r"-?\d+", s):
        return int(s)
    try:
        when = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise HostingError(f"{what}: {text!r} is neither unix seconds nor ISO 8601") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return _unix(when)


def fmt_time(unix: int) -> str:
    """Unix seconds as ISO 8601 UTC ("2026-11-01T00:00:00Z")."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_day(unix: int) -> str:
    """Unix seconds as the UTC date ("2026-11-01")."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d")
