"""Hosting contracts: how a customer's machines are charged, as found in real agreements.

Five pricing methods (`Method`), each with the terms it needs; every contract also has a
hosting fee per machine per month, an optional uptime SLA, a deposit and payment terms. All
amounts are exact (see `money`). The rules, stated once (docs/hosting.md has worked examples):

* **nameplate**: the machine's nameplate watts x the hours it is hosted for the customer,
  curtailment hours excluded (the farm switched it off), x the rate per kWh.
* **metered**: the kWh its PDU outlet or sub-meter counted (cumulative register readings,
  interpolated linearly at the period and assignment boundaries) x the rate per kWh.
* **rated_markup**: the machine's rated watts x (1 + markup) x the hours it ran, x the rate;
  the markup covers cooling and electrical losses (a PUE written as a percentage).
* **btc_indexed**: the kWh measured from the machine's power samples, day by day, each UTC
  day at the rate of the price band whose floor is the highest not above that day's BTC
  price in USD (bands like `0:0.055,60000:0.065,90000:0.075`).
* **revenue_share**: no power charge; the farm takes `share` of the satoshis the machine mined
  (per machine per period, rounded down, in the customer's favour).

**Hosting fee** is per machine per month, prorated by the seconds the machine was assigned to
the customer in the month. **SLA**: when a machine's uptime (running seconds over its hosted
seconds less curtailment) is below the SLA, the customer is credited, per machine, the share
of that machine's power and hosting charges for the downtime beyond what the SLA allows:
`charges x (down - (1 - sla) x eligible) / eligible`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from itertools import pairwise

from hashfarm.hosting.errors import HostingError
from hashfarm.hosting.money import BPS, fmt_decimal, parse_decimal

_CURRENCY_LEN = 3


class Method(StrEnum):
    """How power is charged."""

    NAMEPLATE = "nameplate"
    METERED = "metered"
    RATED_MARKUP = "rated_markup"
    BTC_INDEXED = "btc_indexed"
    REVENUE_SHARE = "revenue_share"


@dataclass(frozen=True, slots=True)
class Band:
    """A BTC-indexed rate: from `floor_usd` (inclusive) upwards, `rate` per kWh."""

    floor_usd: Fraction
    rate: Fraction


def parse_bands(text: str) -> tuple[Band, ...]:
    """Bands from "FLOOR:RATE,..." (the first floor must be 0, floors strictly increasing)."""
    bands: list[Band] = []
    for part in (p for p in text.split(",") if p.strip()):
        floor, sep, rate = part.partition(":")
        if not sep:
            raise HostingError(f"bands: {part!r} is not FLOOR_USD:RATE")
        bands.append(Band(parse_decimal(floor, "band floor"), parse_decimal(rate, "band rate")))
    if not bands or bands[0].floor_usd != 0:
        raise HostingError("bands: the first band must start at 0 USD")
    if any(b.floor_usd <= a.floor_usd for a, b in pairwise(bands)):
        raise HostingError("bands: floors must increase")
    if any(b.rate < 0 for b in bands):
        raise HostingError("bands: a rate is negative")
    return tuple(bands)


def band_rate(bands: tuple[Band, ...], price_usd: Fraction) -> Fraction:
    """The rate of the band whose floor is the highest not above `price_usd`."""
    rate = bands[0].rate
    for band in bands:
        if band.floor_usd <= price_usd:
            rate = band.rate
    return rate


@dataclass(frozen=True, slots=True)
class Terms:
    """A contract's terms; validated when built (HostingError names the bad term)."""

    method: Method
    rate: Fraction | None = None  # currency units per kWh (nameplate, metered, rated_markup)
    markup_bps: int = 0  # rated_markup: overhead on rated power, basis points
    bands: tuple[Band, ...] = ()  # btc_indexed
    share_bps: int = 0  # revenue_share: the farm's share of mined satoshis, basis points
    hosting_fee_cents: int = 0  # per machine per month
    sla_bps: int | None = None  # uptime promised, basis points (9500 = 95 %); None: no SLA
    deposit_cents: int = 0  # held by the farm, shown on every invoice, never applied
    net_days: int = 15  # payment terms: due this many days after issue
    currency: str = "USD"
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        needs_rate = self.method in (Method.NAMEPLATE, Method.METERED, Method.RATED_MARKUP)
        if needs_rate and (self.rate is None or self.rate < 0):
            raise HostingError(f"{self.method}: needs a rate per kWh (>= 0)")
        if self.method is Method.BTC_INDEXED and not self.bands:
            raise HostingError("btc_indexed: needs price bands")
        if self.method is Method.REVENUE_SHARE and not 0 < self.share_bps <= BPS:
            raise HostingError("revenue_share: share must be within (0, 100] %")
        if not 0 <= self.markup_bps <= 10 * BPS:
            raise HostingError("markup must be within 0..1000 %")
        if self.sla_bps is not None and not 0 < self.sla_bps <= BPS:
            raise HostingError("sla must be within (0, 100] %")
        if min(self.hosting_fee_cents, self.deposit_cents, self.net_days) < 0:
            raise HostingError("hosting fee, deposit and net days must not be negative")
        if len(self.currency) != _CURRENCY_LEN or not self.currency.isalpha():
            raise HostingError(f"currency {self.currency!r} is not an ISO 4217 code")

    def to_json(self) -> str:
        """The terms as JSON text, exact values as decimal-free "n/d" strings."""
        return json.dumps(
            {
                "method": str(self.method),
                "rate": None if self.rate is None else str(self.rate),
                "markup_bps": self.markup_bps,
                "bands": [[str(b.floor_usd), str(b.rate)] for b in self.bands],
                "share_bps": self.share_bps,
                "hosting_fee_cents": self.hosting_fee_cents,
                "sla_bps": self.sla_bps,
                "deposit_cents": self.deposit_cents,
                "net_days": self.net_days,
                "currency": self.currency,
                "notes": self.notes,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Terms:
        """The inverse of `to_json`."""
        d = json.loads(text)
        return cls(
            Method(d["method"]),
            None if d["rate"] is None else Fraction(d["rate"]),
            int(d["markup_bps"]),
            tuple(Band(Fraction(f), Fraction(r)) for f, r in d["bands"]),
            int(d["share_bps"]),
            int(d["hosting_fee_cents"]),
            None if d["sla_bps"] is None else int(d["sla_bps"]),
            int(d["deposit_cents"]),
            int(d["net_days"]),
            str(d["currency"]),
            dict(d.get("notes", {})),
        )

    def describe(self) -> str:
        """One line for tables and invoices."""
        m = self.method
        if m is Method.NAMEPLATE:
            return f"nameplate W x hours x {_num(self.rate)}/kWh"
        if m is Method.METERED:
            return f"metered kWh x {_num(self.rate)}/kWh"
        if m is Method.RATED_MARKUP:
            return f"rated W +{self.markup_bps / 100:g}% x run hours x {_num(self.rate)}/kWh"
        if m is Method.BTC_INDEXED:
            bands = ", ".join(f"{_num(b.floor_usd)}+: {_num(b.rate)}" for b in self.bands)
            return f"BTC-indexed rate per kWh (BTC USD bands {bands})"
        return f"revenue share {self.share_bps / 100:g}% of mined sats"


def _num(value: Fraction | None) -> str:
    return "-" if value is None else fmt_decimal(value)
