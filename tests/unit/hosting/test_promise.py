"""The promise-vs-reality rules of `hosting.promise`, by hand and as properties: the payback
projection (trend, halvings, end of life, never), bills accrued over their period, revenue
share satoshis valued at each day's price, and the curve's last point equal to the position.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashfarm.cli.farm import PaybackPromise
from hashfarm.hosting.errors import HostingError, InputError
from hashfarm.hosting.invoice import Invoice, Line
from hashfarm.hosting.period import SECONDS_PER_DAY, Period, fmt_day
from hashfarm.hosting.promise import (
    Purchase,
    WorkMined,
    build_report,
    machine_bills,
    parse_network_csv,
    parse_work_csv,
    project_payback,
)
from hashfarm.hosting.sources import DailyMined, DailyPrices

DAY = SECONDS_PER_DAY
NOV = Period(2026, 11)
AS_OF = NOV.end  # 2026-12-01


def _purchase(price_cents: int = 10_000, day: int = NOV.start) -> Purchase:
    return Purchase("m1", day, price_cents, "USD", Fraction(100), 3500, Fraction(10**14),
                    Fraction(90_000), Fraction(0), Fraction(5, 100), 1000, 930_000)  # fmt: skip


def _invoice(cents: int, sats: int = 0, kind: str = "power", machine: str = "m1") -> Invoice:
    line = Line(kind, machine, "x", Fraction(1), "kWh", Fraction(1), cents, sats)
    return Invoice("acme", NOV, "USD", (line,), ())


def test_projection_by_hand() -> None:
    # -10.00 at 10 cents a day (30 earned, 20 billed): 100 days, the 100th is as_of + 99 days
    pb = project_payback(-1000, Fraction(30), Fraction(20), AS_OF, AS_OF + 1000 * DAY)
    assert pb.status == "projected"
    assert pb.day == AS_OF + 99 * DAY
    # a halving after 10 days: 10 x 40 = 400 earned, then (30 - 20) a day for 60 more days
    pb = project_payback(-1000, Fraction(60), Fraction(20), AS_OF, AS_OF + 1000 * DAY,
                         [AS_OF + 10 * DAY])  # fmt: skip
    assert pb.day == AS_OF + 69 * DAY
    # after the halving 15 - 20 < 0: never, and the reason says why
    pb = project_payback(-1000, Fraction(30), Fraction(20), AS_OF, AS_OF + 1000 * DAY,
                         [AS_OF + 50 * DAY])  # fmt: skip
    assert (pb.status, pb.day) == ("never", None)
    assert "after the halving" in pb.reason
    # the end of life comes first (day 100 needed, 50 left)
    pb = project_payback(-1000, Fraction(30), Fraction(20), AS_OF, AS_OF + 50 * DAY)
    assert pb.status == "never"
    assert fmt_day(AS_OF + 50 * DAY) in pb.reason
    # a zero trend never pays back
    pb = project_payback(-1, Fraction(20), Fraction(20), AS_OF, AS_OF + 50 * DAY)
    assert pb.status == "never"
    assert "<= 0" in pb.reason


def test_revenue_share_and_paid() -> None:
    # 10,000 sats a day at 100,000 USD: 10.00 a day, 300.00 in November; the farm took
    # 60,000 sats (accrued 2,000 a day, each day's 2.00) and billed 30.00 of power
    mined = DailyMined({("m1", d): 10_000 for d in NOV.days()})
    prices = DailyPrices(dict.fromkeys(NOV.days(), Fraction(100_000)))
    bills = machine_bills([(_invoice(3000, 60_000), True), (_invoice(99_999), False)], "m1", "USD")
    r = build_report(_purchase(10_000), "acme", AS_OF, mined, prices, bills, PaybackPromise())
    assert (r.earned_sats, r.earned_cents) == (300_000, 30_000)
    assert (r.bills_cents, r.bills_sats, r.bills_sats_cents) == (3000, 60_000, 6000)
    assert (r.net_sats, r.net_cents, r.position_cents) == (240_000, 21_000, 11_000)
    # 7.00 net a day (10.00 - 1.00 - 2.00): -100.00 + 7 x 15 = 5.00 on day 15, 2026-11-15
    assert r.actual[13] == -200
    assert r.payback.status == "paid"
    assert r.payback.day == NOV.start + 14 * DAY


def test_missing_price_is_named() -> None:
    mined = DailyMined({("m1", NOV.start + 3 * DAY): 5})
    with pytest.raises(HostingError, match="no BTC price for 2026-11-04"):
        build_report(_purchase(), "acme", AS_OF, mined, DailyPrices({}), [], PaybackPromise())


def test_other_currency_refused() -> None:
    inv = Invoice("acme", NOV, "EUR", _invoice(1).lines, ())
    with pytest.raises(HostingError, match="EUR"):
        machine_bills([(inv, True)], "m1", "USD")


@settings(max_examples=40, deadline=None)
@given(
    sats=st.lists(st.integers(0, 2_000_000), min_size=30, max_size=30),
    prices=st.lists(st.integers(1, 200_000), min_size=30, max_size=30),
    bill_cents=st.integers(-5000, 500_000),
    bill_sats=st.integers(0, 10**7),
    price_cents=st.integers(0, 10**7),
)
def test_position_adds_up(
    sats: list[int], prices: list[int], bill_cents: int, bill_sats: int, price_cents: int
) -> None:
    mined = DailyMined({("m1", d): s for d, s in zip(NOV.days(), sats, strict=True)})
    px = DailyPrices({d: Fraction(p) for d, p in zip(NOV.days(), prices, strict=True)})
    bills = machine_bills([(_invoice(bill_cents, bill_sats), True)], "m1", "USD")
    r = build_report(_purchase(price_cents), "acme", AS_OF, mined, px, bills, PaybackPromise(),
                     life_days=400)  # fmt: skip
    assert r.earned_sats == sum(sats)
    assert r.bills_cents == bill_cents  # a whole period accrued is the invoice's figure
    assert r.bills_sats == bill_sats
    exact = sum(Fraction(s * p, 10**6) for s, p in zip(sats, prices, strict=True))
    assert r.earned_cents == round(exact)
    assert r.position_cents == r.earned_cents - r.bills_cents - r.bills_sats_cents - price_cents
    assert r.actual[-1] == r.position_cents
    assert r.net_sats == sum(sats) - bill_sats
    assert r.payback.status in ("paid", "projected", "never")
    if r.payback.status == "paid":
        assert r.position_cents >= 0
    if r.payback.day is not None and r.payback.status == "projected":
        assert AS_OF <= r.payback.day < NOV.start + 400 * DAY


def test_work_at_the_hashprice_by_hand() -> None:
    # 3e9 / 7e13 x 312,500,000 = 13,392.857... -> 13,392 sats (down); 1e9 -> 4,464.28 -> 4,464
    d1, d2 = NOV.start, NOV.start + DAY
    net = {d1: (Fraction(7 * 10**13), 312_500_000), d2: (Fraction(7 * 10**13), 312_500_000)}
    src = WorkMined({("m1", d1): Fraction(3 * 10**9), ("m1", d2): Fraction(10**9)}, net)
    assert src.sats("m1", d1, d1 + DAY) == 13_392
    assert src.sats("m1", d1, d2 + DAY) == 13_392 + 4_464
    assert src.sats("m2", d1, d2 + DAY) == 0
    with pytest.raises(HostingError, match="no difficulty for 2026-11-03"):
        WorkMined({("m1", d2 + DAY): Fraction(1)}, net).sats("m1", d1, d1 + 5 * DAY)


def test_work_and_network_csv_errors_by_line() -> None:
    with pytest.raises(InputError) as exc:
        parse_work_csv("machine_id,day,work\nm1,2026-11-01,1e9\nm1,2026-11-01T01:00:00Z,5\n")
    assert [n for n, _ in exc.value.problems] == [2, 3]
    with pytest.raises(InputError) as exc:
        parse_network_csv("day,difficulty,reward_sats\n2026-11-01,0,5\n2026-11-02,1,x\n")
    assert [n for n, _ in exc.value.problems] == [2, 3]
    assert parse_network_csv("day,difficulty,reward_sats\n2026-11-01,1.5,7\n") == {
        NOV.start: (Fraction(3, 2), 7)
    }
