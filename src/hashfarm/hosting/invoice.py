"""A customer's monthly invoice, built from exact usage; and the states an invoice goes through.

`build_invoice` is pure: the bill run (`billing`) measures each machine's month (power
samples, meter readings, mined satoshis, daily BTC prices) into `MachineMonth`s and hands them
here with the customer's repair charges and unused prepayments. Every line is rounded to the
cent on its own, half to even, from its exact value; the total is the sum of the lines
(`money`). Revenue share lines carry satoshis (rounded down) instead of cents.

States: Draft -> Issued -> Paid, Issued -> Overdue -> Paid; Issued, Overdue and Paid may be
Credited by an explicit re-issue (a credit note for the whole amount, then a new Draft
revision). Nothing else: `check_transition` refuses the rest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction

from hashfarm.hosting.contracts import Method, Terms, band_rate
from hashfarm.hosting.errors import HostingError, StateError
from hashfarm.hosting.money import BPS, JOULES_PER_KWH, fmt_decimal, round_cents, to_text
from hashfarm.hosting.period import Period, fmt_day
from hashfarm.hosting.power import Usage


class InvoiceState(StrEnum):
    """Where an invoice is in its life."""

    DRAFT = "draft"  # recomputed by every bill run of its period
    ISSUED = "issued"  # sent to the customer: closed, never recomputed
    OVERDUE = "overdue"  # issued and past its due date, unpaid
    PAID = "paid"
    CREDITED = "credited"  # cancelled by a credit note when re-issued


TRANSITIONS: dict[InvoiceState, frozenset[InvoiceState]] = {
    InvoiceState.DRAFT: frozenset({InvoiceState.ISSUED}),
    InvoiceState.ISSUED: frozenset(
        {InvoiceState.PAID, InvoiceState.OVERDUE, InvoiceState.CREDITED}
    ),
    InvoiceState.OVERDUE: frozenset({InvoiceState.PAID, InvoiceState.CREDITED}),
    InvoiceState.PAID: frozenset({InvoiceState.CREDITED}),
    InvoiceState.CREDITED: frozenset(),
}
CLOSED = frozenset({InvoiceState.ISSUED, InvoiceState.OVERDUE, InvoiceState.PAID})


def check_transition(current: InvoiceState, new: InvoiceState) -> None:
    """Refuse a state change the lifecycle does not allow (StateError)."""
    if new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none"
        raise StateError(f"an invoice in state {current} cannot become {new} (allowed: {allowed})")


@dataclass(frozen=True, slots=True)
class Machine:
    """A hosted machine and the power figures contracts charge by."""

    id: str
    model: str
    nameplate_w: int  # the label's (or PSU's) power: what nameplate contracts reserve
    rated_w: int  # the maker's stated power: what rated+markup contracts charge


@dataclass(frozen=True, slots=True)
class MachineMonth:
    """One machine's part of one customer's period (one assignment interval, clipped)."""

    machine: Machine
    contract_id: str
    terms: Terms
    start: int
    end: int
    usage: Usage  # measured from power samples over [start, end)
    metered_kwh: Fraction | None = None  # the meter's count over [start, end), when read
    daily: tuple[tuple[int, Usage], ...] = ()  # btc_indexed: per UTC day (clipped)
    prices: dict[int, Fraction] = field(default_factory=dict)  # btc_indexed: USD per day
    mined_sats: int = 0  # revenue_share: satoshis mined over [start, end)


@dataclass(frozen=True, slots=True)
class Line:
    """One invoice line: exact quantity and unit price, rounded amount."""

    kind: str  # power, hosting_fee, revenue_share, sla_credit, repair, prepayment
    machine_id: str
    description: str
    quantity: Fraction
    unit: str
    unit_price: Fraction  # currency units (or a fraction of sats) per unit
    cents: int = 0
    sats: int = 0


@dataclass(frozen=True, slots=True)
class UsageRow:
    """What an invoice shows per machine besides money: energy by method, uptime."""

    machine_id: str
    contract_id: str
    method: str
    start: int
    end: int
    billed_kwh: Fraction
    calculated_kwh: Fraction  # from power samples
    metered_kwh: Fraction | None
    running_s: int
    curtailed_s: int
    down_s: int

    @property
    def variance_kwh(self) -> Fraction | None:
        """Metered minus calculated (None without a meter)."""
        return None if self.metered_kwh is None else self.metered_kwh - self.calculated_kwh

    @property
    def uptime(self) -> Fraction | None:
        """Running seconds over hosted seconds less curtailment (None: none eligible)."""
        eligible = self.end - self.start - self.curtailed_s
        return Fraction(self.running_s, eligible) if eligible > 0 else None


@dataclass(frozen=True, slots=True)
class Invoice:
    """A customer's invoice for one period (the stored document; state lives beside it)."""

    customer_id: str
    period: Period
    currency: str
    lines: tuple[Line, ...]
    usage: tuple[UsageRow, ...]
    deposit_cents: int = 0
    net_days: int = 15

    @property
    def total_cents(self) -> int:
        return sum(line.cents for line in self.lines)

    @property
    def total_sats(self) -> int:
        return sum(line.sats for line in self.lines)

    def to_json(self) -> str:
        """Canonical JSON (exact values as "n/d"): equal invoices give equal text."""
        return json.dumps(
            {
                "customer_id": self.customer_id,
                "period": str(self.period),
                "currency": self.currency,
                "deposit_cents": self.deposit_cents,
                "net_days": self.net_days,
                "lines": [_line_dict(x) for x in self.lines],
                "usage": [_usage_dict(u) for u in self.usage],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Invoice:
        """The inverse of `to_json`."""
        d = json.loads(text)
        return cls(
            d["customer_id"],
            Period.parse(d["period"]),
            d["currency"],
            tuple(
                Line(
                    x["kind"],
                    x["machine_id"],
                    x["description"],
                    Fraction(x["quantity"]),
                    x["unit"],
                    Fraction(x["unit_price"]),
                    int(x["cents"]),
                    int(x["sats"]),
                )
                for x in d["lines"]
            ),
            tuple(
                UsageRow(
                    u["machine_id"],
                    u["contract_id"],
                    u["method"],
                    u["start"],
                    u["end"],
                    Fraction(u["billed_kwh"]),
                    Fraction(u["calculated_kwh"]),
                    None if u["metered_kwh"] is None else Fraction(u["metered_kwh"]),
                    u["running_s"],
                    u["curtailed_s"],
                    u["down_s"],
                )
                for u in d["usage"]
            ),
            int(d["deposit_cents"]),
            int(d["net_days"]),
        )


def _line_dict(x: Line) -> dict[str, object]:
    return {
        "kind": x.kind, "machine_id": x.machine_id, "description": x.description,
        "quantity": to_text(x.quantity), "unit": x.unit, "unit_price": to_text(x.unit_price),
        "cents": x.cents, "sats": x.sats,
    }  # fmt: skip


def _usage_dict(u: UsageRow) -> dict[str, object]:
    return {
        "machine_id": u.machine_id, "contract_id": u.contract_id, "method": u.method,
        "start": u.start, "end": u.end, "billed_kwh": to_text(u.billed_kwh),
        "calculated_kwh": to_text(u.calculated_kwh),
        "metered_kwh": None if u.metered_kwh is None else to_text(u.metered_kwh),
        "running_s": u.running_s, "curtailed_s": u.curtailed_s, "down_s": u.down_s,
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Charge:
    """A one-off line the farm adds: a repair, parts, a technician's visit."""

    customer_id: str
    machine_id: str
    time: int
    description: str
    cents: int


def build_invoice(
    customer_id: str,
    period: Period,
    months: Sequence[MachineMonth],
    charges: Sequence[Charge] = (),
    prepaid_cents: int = 0,
    deposit_cents: int = 0,
) -> Invoice:
    """The invoice for `customer_id` over `period` (see the module docstring for the rules)."""
    currencies = {m.terms.currency for m in months}
    if len(currencies) > 1:
        raise HostingError(f"{customer_id}: contracts in several currencies ({currencies})")
    lines: list[Line] = []
    usage: list[UsageRow] = []
    for m in sorted(months, key=lambda m: (m.machine.id, m.start)):
        machine_lines, row = _machine_lines(m, period)
        lines += machine_lines
        usage.append(row)
    for c in sorted(charges, key=lambda c: (c.time, c.machine_id, c.description)):
        lines.append(
            Line("repair", c.machine_id, f"{fmt_day(c.time)} {c.description}", Fraction(1),
                 "item", Fraction(c.cents, 100), c.cents)
        )  # fmt: skip
    due = sum(x.cents for x in lines)
    if prepaid_cents > 0 and due > 0:
        used = min(prepaid_cents, due)
        lines.append(
            Line("prepayment", "", "prepayment applied", Fraction(1), "item",
                 Fraction(-used, 100), -used)
        )  # fmt: skip
    net_days = max((m.terms.net_days for m in months), default=15)
    currency = next(iter(currencies), "USD")
    return Invoice(
        customer_id, period, currency, tuple(lines), tuple(usage), deposit_cents, net_days
    )


def _machine_lines(m: MachineMonth, period: Period) -> tuple[list[Line], UsageRow]:
    t, mid, span = m.terms, m.machine.id, m.end - m.start
    calculated = m.usage.kwh
    hosted_s = span - m.usage.curtailed_s
    lines: list[Line] = []
    if t.method is Method.NAMEPLATE:
        billed = Fraction(m.machine.nameplate_w * hosted_s, JOULES_PER_KWH)
        lines.append(_power(mid, f"{m.machine.nameplate_w} W x {_h(hosted_s)} h", billed, t.rate))
    elif t.method is Method.METERED:
        if m.metered_kwh is None:
            raise HostingError(
                f"{mid}: metered contract {m.contract_id} but no meter readings cover "
                f"{fmt_day(m.start)} .. {fmt_day(m.end)}"
            )
        billed = m.metered_kwh
        lines.append(_power(mid, "metered", billed, t.rate))
    elif t.method is Method.RATED_MARKUP:
        watts = Fraction(m.machine.rated_w * (BPS + t.markup_bps), BPS)
        billed = watts * m.usage.running_s / JOULES_PER_KWH
        what = f"{m.machine.rated_w} W +{t.markup_bps / 100:g}% x {_h(m.usage.running_s)} h run"
        lines.append(_power(mid, what, billed, t.rate))
    elif t.method is Method.BTC_INDEXED:
        billed = calculated
        lines += _indexed_lines(m)
    else:
        billed = Fraction(0)
        taken = m.mined_sats * t.share_bps // BPS
        lines.append(
            Line("revenue_share", mid, f"{t.share_bps / 100:g}% of {m.mined_sats:,} sats mined",
                 Fraction(m.mined_sats), "sat", Fraction(t.share_bps, BPS), 0, taken)
        )  # fmt: skip
    if t.hosting_fee_cents:
        months = Fraction(span, period.seconds)
        lines.append(
            Line("hosting_fee", mid, "hosting fee", months, "month",
                 Fraction(t.hosting_fee_cents, 100), round(t.hosting_fee_cents * months))
        )  # fmt: skip
    row = UsageRow(
        mid, m.contract_id, str(t.method), m.start, m.end, billed, calculated, m.metered_kwh,
        m.usage.running_s, m.usage.curtailed_s, m.usage.down_s,
    )  # fmt: skip
    credit = _sla_credit(m, row, lines)
    return [*lines, *credit], row


def _power(mid: str, what: str, kwh: Fraction, rate: Fraction | None) -> Line:
    assert rate is not None  # Terms refuses these methods without a rate
    return Line("power", mid, what, kwh, "kWh", rate, round_cents(kwh * rate))


def _indexed_lines(m: MachineMonth) -> list[Line]:
    by_rate: dict[Fraction, Fraction] = {}
    for day, use in m.daily:
        price = m.prices.get(day)
        if price is None:
            raise HostingError(f"{m.machine.id}: no BTC price for {fmt_day(day)}")
        rate = band_rate(m.terms.bands, price)
        by_rate[rate] = by_rate.get(rate, Fraction(0)) + use.kwh
    return [
        _power(m.machine.id, f"BTC-indexed {fmt_decimal(rate)}/kWh", kwh, rate)
        for rate, kwh in sorted(by_rate.items())
    ]


def _sla_credit(m: MachineMonth, row: UsageRow, lines: list[Line]) -> list[Line]:
    sla = m.terms.sla_bps
    eligible = row.end - row.start - row.curtailed_s
    if sla is None or eligible <= 0:
        return []
    allowed = Fraction(eligible * (BPS - sla), BPS)
    excess = row.down_s - allowed
    if excess <= 0:
        return []
    exact = sum((x.quantity * x.unit_price for x in lines if x.kind in ("power", "hosting_fee")),
                Fraction(0))  # fmt: skip
    share = excess / eligible
    cents = -round_cents(exact * share)
    uptime = Fraction(row.running_s * 100, eligible)
    what = f"SLA credit: uptime {_h2(uptime)}% < {sla / 100:g}%"
    return [Line("sla_credit", m.machine.id, what, share, "share", -exact, cents)] if cents else []


def _h(seconds: int) -> str:
    return _h2(Fraction(seconds, 3600))


def _h2(value: Fraction) -> str:
    scaled = round(value * 100)
    return f"{scaled // 100}.{scaled % 100:02d}"
