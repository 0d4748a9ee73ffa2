"""The seller's promise against reality: what a hosted machine earned, less its bills, beside
what the seller's payback calculation promised on the purchase day.

Hosting (layer 4) may not import economics (its sibling), so the promise comes in through
the `Promise` protocol declared here; `cli/farm.py` wires it to `economics.payback.simulate`
with the purchase day's difficulty, BTC price and fees held constant (what `hashfarm calc
payback` prints for that day). Everything actual is exact: satoshis are integers, a day's
value is sats x that day's price as a `Fraction`, and every cent figure is rounded once, half
to even, from its exact value. The promised curve and the projected payback day are float
projections and are labelled so.

Rules, stated once:

* **Earned**: the machine's mined satoshis per UTC day (`MinedSats`, the same input revenue
  share bills read), each valued at that day's BTC price (`BtcPrices`); a day with satoshis
  and no price is an error naming the day.
* **Bills**: the machine's lines on the customer's live invoices (kind `invoice`, not
  Credited), prepayments excluded. A period's bill accrues evenly over the period's days
  (exactly, as a fraction of a cent per day), so the curve does not jump on the last day and
  a report that ends inside a billed period counts only the days it covers. Revenue-share
  satoshis the farm took accrue the same way, valued at each day's price. Cent and satoshi
  figures are rounded once from the exact sums (cents half to even, satoshis down).
* Where only accepted work exists, `WorkMined` turns it into satoshis at each day's
  difficulty and reward (the hashprice: work / difficulty x reward), and the report says so.
* **Position** = -purchase price + earned value - bills, day by day from the purchase day.
* **Trend** = net (earned value - bills) over the days observed, per day.
* **Payback**: the first day the position reached 0 if it has; otherwise projected from the
  trend: each halving date given halves the earned part of the trend (bills do not halve);
  "never" when the trend (after halvings) is <= 0 before the position reaches 0, or when the
  day it would reach 0 is past the machine's end of life (purchase day + life days).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from hashfarm.hosting.errors import HostingError
from hashfarm.hosting.inputs import _day, _machine, _parse
from hashfarm.hosting.invoice import Invoice
from hashfarm.hosting.money import CENTS_PER_UNIT, parse_decimal, round_cents, to_text
from hashfarm.hosting.period import SECONDS_PER_DAY, fmt_day
from hashfarm.hosting.sources import BtcPrices, MinedSats
from hashfarm.units import SATS_PER_BTC

DEFAULT_LIFE_DAYS = 5 * 365


@dataclass(frozen=True, slots=True)
class Purchase:
    """A machine's purchase and what the seller's calculation assumed on that day."""

    machine_id: str
    day: int  # 00:00 UTC of the purchase day
    price_cents: int  # what the customer paid, in cents of `currency`
    currency: str
    hashrate_ths: Fraction
    power_w: int
    difficulty: Fraction  # the network's difficulty on the purchase day
    btc_price: Fraction  # BTC price on the purchase day, `currency` per BTC
    fees_btc: Fraction  # average fees per block assumed
    power_rate: Fraction  # `currency` per kWh the seller assumed
    hosting_cents_month: int  # hosting fee per month the seller assumed
    height: int  # the next block on the purchase day (where the halving schedule stands)

    def __post_init__(self) -> None:
        if self.day % SECONDS_PER_DAY:
            raise HostingError(f"{self.machine_id}: the purchase day must be 00:00 UTC")
        if self.price_cents < 0 or self.hosting_cents_month < 0:
            raise HostingError(f"{self.machine_id}: price and hosting must not be negative")
        if min(self.hashrate_ths, self.difficulty, self.btc_price) <= 0 or self.power_w <= 0:
            raise HostingError(
                f"{self.machine_id}: hashrate, power, difficulty and price must be positive"
            )
        if self.fees_btc < 0 or self.power_rate < 0 or self.height < 0:
            raise HostingError(f"{self.machine_id}: fees, power rate and height must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine_id": self.machine_id,
            "day": fmt_day(self.day),
            "price_cents": self.price_cents,
            "currency": self.currency,
            "hashrate_ths": to_text(self.hashrate_ths),
            "power_w": self.power_w,
            "difficulty": to_text(self.difficulty),
            "btc_price": to_text(self.btc_price),
            "fees_btc": to_text(self.fees_btc),
            "power_rate": to_text(self.power_rate),
            "hosting_cents_month": self.hosting_cents_month,
            "height": self.height,
        }


class Promise(Protocol):
    """The seller's payback calculation on the purchase day (cli wires economics to it)."""

    def positions(self, purchase: Purchase, days: int) -> list[float]:
        """Promised cash position in cents at the end of each of `days` days from the
        purchase day (day 1 first; starts near -price). A float projection."""
        ...


@dataclass(frozen=True, slots=True)
class Payback:
    """When the machine paid back, or is projected to, or never."""

    status: str  # "paid" | "projected" | "never"
    day: int | None  # 00:00 UTC of the day the position reaches 0 (None: never)
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "day": None if self.day is None else fmt_day(self.day),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class MachineReport:
    """One machine's promise against reality up to (not including) `as_of`."""

    machine_id: str
    customer_id: str
    purchase: Purchase
    as_of: int
    days: int  # days observed, from the purchase day up to as_of
    earned_sats: int
    earned_cents: int  # sats x each day's price, summed exactly, rounded once
    bills_cents: int
    bills_sats: int  # revenue share the farm took (accrued, rounded down)
    bills_sats_cents: int  # those satoshis valued at each day's price
    net_sats: int  # earned - revenue share
    net_cents: int  # earned_cents - bills_cents - bills_sats_cents
    position_cents: int  # -price + net
    actual: tuple[int, ...]  # position at the end of each day (cents)
    promised: tuple[int, ...]  # the promise's position at the end of each day (cents, rounded)
    promised_payback_day: int | None  # when the promise reaches 0 within the life (projection)
    trend_cents_per_day: Fraction  # net per observed day, exact
    payback: Payback

    @property
    def promised_cents(self) -> int:
        return self.promised[-1] if self.promised else -self.purchase.price_cents

    @property
    def gap_cents(self) -> int:
        """Actual position minus promised position at the report's end (negative: behind)."""
        return self.position_cents - self.promised_cents

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine_id": self.machine_id,
            "customer_id": self.customer_id,
            "purchase": self.purchase.to_dict(),
            "as_of": fmt_day(self.as_of),
            "days": self.days,
            "earned_sats": self.earned_sats,
            "earned_cents": self.earned_cents,
            "bills_cents": self.bills_cents,
            "bills_sats": self.bills_sats,
            "bills_sats_cents": self.bills_sats_cents,
            "net_sats": self.net_sats,
            "net_cents": self.net_cents,
            "position_cents": self.position_cents,
            "promised_cents": self.promised_cents,
            "gap_cents": self.gap_cents,
            "promised_payback_day": None
            if self.promised_payback_day is None
            else fmt_day(self.promised_payback_day),
            "trend_cents_per_day": to_text(self.trend_cents_per_day),
            "payback": self.payback.to_dict(),
            "actual_cents": list(self.actual),
            "promised_cents_by_day": list(self.promised),
            "promised_is_projection": True,
        }


class WorkMined:
    """`MinedSats` from accepted work valued at each day's hashprice, where no satoshi count
    exists (a proxy's or pool's accepted shares): a share of difficulty d is d x 2^32 hashes,
    and a block at network difficulty D takes D x 2^32 on average, so the expected reward of
    `work` (the sum of accepted share difficulties in a day) is work / D x (subsidy + fees),
    in satoshis rounded down per machine and day, exact otherwise. Each day needs its
    difficulty and reward; a day with work and neither is an error naming it."""

    def __init__(
        self,
        work: dict[tuple[str, int], Fraction],
        network: dict[int, tuple[Fraction, int]],  # day -> (difficulty, reward sats per block)
    ) -> None:
        self._work = work
        self._network = network

    def sats(self, machine_id: str, start: int, end: int) -> int:
        first = -(-start // SECONDS_PER_DAY) * SECONDS_PER_DAY
        total = 0
        for day in range(first, end, SECONDS_PER_DAY):
            w = self._work.get((machine_id, day))
            if not w:
                continue
            net = self._network.get(day)
            if net is None:
                raise HostingError(f"{machine_id}: no difficulty for {fmt_day(day)} (it has work)")
            total += math.floor(w / net[0] * net[1])
        return total


def parse_work_csv(text: str) -> dict[tuple[str, int], Fraction]:
    """Accepted work per (machine, UTC day start) from `machine_id,day,work` (the sum of the
    accepted shares' difficulties, a decimal); InputError lists every bad line."""

    def build(n: int, row: dict[str, str]) -> tuple[str, int, Fraction]:
        work = parse_decimal(row["work"], "work")
        if work < 0:
            raise HostingError("work is negative")
        return _machine(row), _day(row["day"]), work

    out: dict[tuple[str, int], Fraction] = {}
    for mid, day, work in _parse(text, ("machine_id", "day", "work"), "accepted work", build):
        out[(mid, day)] = out.get((mid, day), Fraction(0)) + work
    return out


def parse_network_csv(text: str) -> dict[int, tuple[Fraction, int]]:
    """Each UTC day's network difficulty and reward per block (subsidy + fees, satoshis) from
    `day,difficulty,reward_sats`; InputError lists every bad line."""

    def build(n: int, row: dict[str, str]) -> tuple[int, tuple[Fraction, int]]:
        difficulty = parse_decimal(row["difficulty"], "difficulty")
        if difficulty <= 0:
            raise HostingError("difficulty must be positive")
        try:
            reward = int(row["reward_sats"])
        except ValueError:
            raise HostingError(f"reward_sats {row['reward_sats']!r} is not whole") from None
        if reward < 0:
            raise HostingError("reward_sats is negative")
        return _day(row["day"]), (difficulty, reward)

    return dict(_parse(text, ("day", "difficulty", "reward_sats"), "network", build))


def machine_bills(
    invoices: Iterable[tuple[Invoice, bool]], machine_id: str, currency: str
) -> list[tuple[int, int, int, int]]:
    """(period start, period end, cents, sats) of `machine_id`'s lines on each live invoice,
    from (invoice, live) pairs; prepayment lines never count."""
    out: list[tuple[int, int, int, int]] = []
    for inv, live in invoices:
        if not live:
            continue
        lines = [x for x in inv.lines if x.machine_id == machine_id and x.kind != "prepayment"]
        if not lines:
            continue
        if inv.currency != currency:
            raise HostingError(
                f"{machine_id}: invoice for {inv.period} is in {inv.currency}, "
                f"the purchase in {currency}"
            )
        cents, sats = sum(x.cents for x in lines), sum(x.sats for x in lines)
        out.append((inv.period.start, inv.period.end, cents, sats))
    return out


def _daily_bills(
    bills: Iterable[tuple[int, int, int, int]],
) -> dict[int, tuple[Fraction, Fraction]]:
    """Each bill spread evenly over its period's days: exact (cents, sats) per day start."""
    per_day: dict[int, tuple[Fraction, Fraction]] = {}
    for start, end, cents, sats in bills:
        n = (end - start) // SECONDS_PER_DAY
        for day in range(start, end, SECONDS_PER_DAY):
            c, s = per_day.get(day, (Fraction(0), Fraction(0)))
            per_day[day] = (c + Fraction(cents, n), s + Fraction(sats, n))
    return per_day


def project_payback(
    position_cents: int,
    earned_per_day: Fraction,
    bills_per_day: Fraction,
    as_of: int,
    end_of_life: int,
    halvings: Sequence[int] = (),
) -> Payback:
    """The day a negative position reaches 0 at the trend (see the module's rule)."""
    need = Fraction(-position_cents)
    day = as_of
    bounds = [*sorted(h for h in halvings if as_of < h < end_of_life), end_of_life]
    earned = earned_per_day
    for k, bound in enumerate(bounds):
        trend = earned - bills_per_day
        if trend <= 0:  # halvings only lower it: it never recovers
            after = " after the halving(s)" if k else ""
            return Payback(
                "never", None, f"daily net earnings <= 0{after} ({float(trend):.2f} cents)"
            )
        span = (bound - day) // SECONDS_PER_DAY
        days_needed = math.ceil(need / trend)
        if days_needed <= span:
            return Payback(
                "projected",
                day + (days_needed - 1) * SECONDS_PER_DAY,
                "extrapolated from the observed net per day (an estimate)",
            )
        need -= trend * span
        day, earned = bound, earned / 2
    return Payback(
        "never", None, f"does not reach 0 before the end of its life ({fmt_day(end_of_life)})"
    )


def build_report(
    purchase: Purchase,
    customer_id: str,
    as_of: int,
    mined: MinedSats,
    prices: BtcPrices,
    bills: Iterable[tuple[int, int, int, int]],
    promise: Promise,
    *,
    life_days: int = DEFAULT_LIFE_DAYS,
    halvings: Sequence[int] = (),
) -> MachineReport:
    """One machine's report over [purchase day, as_of) (as_of: 00:00 UTC)."""
    mid = purchase.machine_id
    if as_of % SECONDS_PER_DAY:
        raise HostingError("the report's end must be 00:00 UTC")
    if as_of <= purchase.day:
        raise HostingError(f"{mid}: bought {fmt_day(purchase.day)}, nothing to report yet")
    n_days = (as_of - purchase.day) // SECONDS_PER_DAY
    per_day = _daily_bills(bills)
    earned_exact = Fraction(0)  # currency units
    bills_exact = Fraction(0)  # cents
    bills_sats_exact = Fraction(0)  # satoshis
    bills_value_exact = Fraction(0)  # currency units
    earned_sats = 0
    actual: list[int] = []
    for i in range(n_days):
        day = purchase.day + i * SECONDS_PER_DAY
        sats = mined.sats(mid, day, day + SECONDS_PER_DAY)
        bill_c, bill_s = per_day.get(day, (Fraction(0), Fraction(0)))
        price = prices.usd(day)
        if price is None and (sats or bill_s):
            raise HostingError(f"{mid}: no BTC price for {fmt_day(day)} (it has satoshis)")
        earned_sats += sats
        bills_exact += bill_c
        bills_sats_exact += bill_s
        if price is not None:
            earned_exact += Fraction(sats, SATS_PER_BTC) * price
            bills_value_exact += bill_s / SATS_PER_BTC * price
        net = round_cents(earned_exact) - round(bills_exact) - round_cents(bills_value_exact)
        actual.append(net - purchase.price_cents)
    earned_cents = round_cents(earned_exact)
    bills_cents = round(bills_exact)  # half to even, as every cent figure
    bills_sats = math.floor(bills_sats_exact)
    bills_sats_cents = round_cents(bills_value_exact)
    net_cents = earned_cents - bills_cents - bills_sats_cents
    position = net_cents - purchase.price_cents
    life = max(life_days, n_days)
    promised_all = promise.positions(purchase, life)
    promised = tuple(round(p) for p in promised_all[:n_days])
    promised_day = next(
        (purchase.day + i * SECONDS_PER_DAY for i, p in enumerate(promised_all) if p >= 0), None
    )
    if position >= 0:
        first = next(i for i, p in enumerate(actual) if p >= 0)
        payback = Payback("paid", purchase.day + first * SECONDS_PER_DAY, "actual: reached 0")
    else:
        payback = project_payback(
            position,
            Fraction(earned_cents - bills_sats_cents, n_days),
            Fraction(bills_cents, n_days),
            as_of,
            purchase.day + life_days * SECONDS_PER_DAY,
            halvings,
        )
    return MachineReport(
        machine_id=mid,
        customer_id=customer_id,
        purchase=purchase,
        as_of=as_of,
        days=n_days,
        earned_sats=earned_sats,
        earned_cents=earned_cents,
        bills_cents=bills_cents,
        bills_sats=bills_sats,
        bills_sats_cents=bills_sats_cents,
        net_sats=earned_sats - bills_sats,
        net_cents=net_cents,
        position_cents=position,
        actual=tuple(actual),
        promised=promised,
        promised_payback_day=promised_day,
        trend_cents_per_day=Fraction(net_cents, n_days),
        payback=payback,
    )


__all__ = [
    "CENTS_PER_UNIT",
    "DEFAULT_LIFE_DAYS",
    "MachineReport",
    "Payback",
    "Promise",
    "Purchase",
    "WorkMined",
    "build_report",
    "machine_bills",
    "parse_network_csv",
    "parse_work_csv",
    "project_payback",
]
