"""Invoice rules: each contract method's line by hand, the rounding rule, the SLA credit, the
lifecycle's legal transitions, and (Hypothesis) an invoice's total is the sum of its lines,
each line its exact value rounded half to even."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.hosting.contracts import Method, Terms, band_rate, parse_bands
from hashfarm.hosting.errors import HostingError, StateError
from hashfarm.hosting.invoice import (
    TRANSITIONS,
    Charge,
    Invoice,
    InvoiceState,
    Machine,
    MachineMonth,
    build_invoice,
    check_transition,
)
from hashfarm.hosting.money import (
    fmt_cents,
    fmt_decimal,
    parse_cents,
    parse_decimal,
    round_cents,
)
from hashfarm.hosting.period import SECONDS_PER_DAY, Period
from hashfarm.hosting.power import Usage

P = Period(2026, 11)
DAY = SECONDS_PER_DAY
S19 = Machine("m1", "Antminer S19", 3250, 3100)


def _month(terms: Terms, usage: Usage, **kw: object) -> MachineMonth:
    return MachineMonth(S19, "k", terms, P.start, P.end, usage, **kw)  # type: ignore[arg-type]


def test_rated_markup_charges_rated_watts_plus_markup_for_the_hours_run() -> None:
    terms = Terms(Method.RATED_MARKUP, rate=Fraction("0.06"), markup_bps=800)
    run = 700 * 3600
    inv = build_invoice("c", P, [_month(terms, Usage(P.seconds, 0, run, 0, P.seconds - run))])
    # 3,100 W x 1.08 = 3,348 W x 700 h = 2,343.6 kWh x $0.06 = $140.616 -> 14,062 cents
    [line] = inv.lines
    assert line.quantity == Fraction("2343.6")
    assert line.cents == 14062


def test_btc_indexed_prices_each_day_at_its_band() -> None:
    bands = parse_bands("0:0.05,60000:0.06,90000:0.08")
    terms = Terms(Method.BTC_INDEXED, bands=bands)
    day = Usage(DAY, 3000 * DAY, DAY, 0, 0)  # 72 kWh a day
    days = tuple((P.start + d * DAY, day) for d in range(30))
    prices = {P.start + d * DAY: Fraction(50_000 + 2_000 * d) for d in range(30)}
    total = Usage(P.seconds, 3000 * P.seconds, P.seconds, 0, 0)
    inv = build_invoice("c", P, [_month(terms, total, daily=days, prices=prices)])
    # days 0-4 below 60,000 (5 days), 5-19 below 90,000 (15 days), 20-29 at 90,000+ (10 days)
    assert [(x.unit_price, x.quantity, x.cents) for x in inv.lines] == [
        (Fraction("0.05"), 360, 1800),
        (Fraction("0.06"), 1080, 6480),
        (Fraction("0.08"), 720, 5760),
    ]
    assert band_rate(bands, Fraction(60_000)) == Fraction("0.06")  # a floor is inclusive
    missing = dict(list(prices.items())[:29])
    with pytest.raises(HostingError, match="no BTC price for 2026-11-30"):
        build_invoice("c", P, [_month(terms, total, daily=days, prices=missing)])


def test_metered_without_readings_is_an_error_not_a_zero() -> None:
    terms = Terms(Method.METERED, rate=Fraction("0.07"))
    with pytest.raises(HostingError, match="no meter readings cover"):
        build_invoice("c", P, [_month(terms, Usage(P.seconds, 0, 0, 0, P.seconds))])


def test_sla_credit_only_below_the_sla() -> None:
    terms = Terms(Method.NAMEPLATE, rate=Fraction("0.1"), hosting_fee_cents=3000, sla_bps=9000)
    eligible = P.seconds
    at_sla = Usage(eligible, 0, eligible * 9 // 10, 0, eligible // 10)  # exactly 90 %
    assert not [x for x in build_invoice("c", P, [_month(terms, at_sla)]).lines
                if x.kind == "sla_credit"]  # fmt: skip
    below = Usage(eligible, 0, eligible * 8 // 10, 0, eligible * 2 // 10)  # 80 %
    inv = build_invoice("c", P, [_month(terms, below)])
    # power 3.25 kW x 720 h x $0.10 = $234.00, fee $30: $264.00 x (20 % - 10 %) = $26.40
    assert [x.cents for x in inv.lines] == [23400, 3000, -2640]


def test_prepayment_covers_at_most_what_is_due_and_currencies_do_not_mix() -> None:
    terms = Terms(Method.NAMEPLATE, rate=Fraction(0), hosting_fee_cents=1000)
    charge = Charge("c", "m1", P.start, "fan", 250)
    inv = build_invoice("c", P, [_month(terms, Usage(P.seconds, 0, 0, 0, 0))], [charge], 99_999)
    assert [x.cents for x in inv.lines] == [0, 1000, 250, -1250]
    assert inv.total_cents == 0
    eur = Terms(Method.NAMEPLATE, rate=Fraction(0), currency="EUR")
    with pytest.raises(HostingError, match="several currencies"):
        build_invoice(
            "c", P, [_month(terms, Usage(1, 0, 0, 0, 0)), _month(eur, Usage(1, 0, 0, 0, 0))]
        )


def test_rounding_is_half_even_per_line() -> None:
    assert [round_cents(Fraction(x)) for x in ("0.125", "0.135", "-0.125", "2.675")] == [
        12, 14, -12, 268,
    ]  # fmt: skip
    assert parse_cents("45.10") == 4510
    assert fmt_cents(-1205) == "-12.05"
    shown = [fmt_decimal(Fraction(x)) for x in ("0.065", "7/100", "12", "1/3", "-0.5", "0")]
    assert shown == ["0.065", "0.07", "12", "0.333333", "-0.5", "0"]
    with pytest.raises(HostingError, match="fractions of a cent"):
        parse_cents("1.001")
    with pytest.raises(HostingError, match="not a decimal"):
        parse_decimal("1e3")


def test_only_the_lifecycle_transitions_are_legal() -> None:
    legal = {(a, b) for a, bs in TRANSITIONS.items() for b in bs}
    assert legal == {
        ("draft", "issued"), ("issued", "paid"), ("issued", "overdue"), ("issued", "credited"),
        ("overdue", "paid"), ("overdue", "credited"), ("paid", "credited"),
    }  # fmt: skip
    for a in InvoiceState:
        for b in InvoiceState:
            if (a, b) in legal:
                check_transition(a, b)
            else:
                with pytest.raises(StateError, match=f"in state {a} cannot become {b}"):
                    check_transition(a, b)


money = st.fractions(min_value=0, max_value=10_000, max_denominator=10_000)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([Method.NAMEPLATE, Method.RATED_MARKUP, Method.REVENUE_SHARE]),
            money, st.integers(0, 5_000), st.integers(0, 10_000), st.integers(0, P.seconds),
            st.integers(0, P.seconds), st.integers(0, 10**9),
        ),
        min_size=1, max_size=6,
    ),
    st.lists(st.integers(-10_000, 100_000), max_size=3), st.integers(0, 1_000_000),
)  # fmt: skip
def test_total_is_the_sum_of_lines_each_rounded_from_its_exact_value(
    machines: list[tuple[Method, Fraction, int, int, int, int, int]], charges: list[int],
    prepaid: int,
) -> None:  # fmt: skip
    months = []
    for i, (method, rate, fee, sla, run, curt, sats) in enumerate(machines):
        curt = min(curt, P.seconds - run)
        terms = Terms(method, rate=rate, markup_bps=fee % 2000, share_bps=max(sla, 1),
                      hosting_fee_cents=fee, sla_bps=max(sla, 1))  # fmt: skip
        m = Machine(f"m{i}", "", 1000 + fee, 900 + fee)
        use = Usage(P.seconds, run * 1000, run, curt, P.seconds - run - curt)
        months.append(MachineMonth(m, "k", terms, P.start, P.end, use, mined_sats=sats))
    extra = [Charge("c", "", P.start + i, "x", c) for i, c in enumerate(charges)]
    inv = build_invoice("c", P, months, extra, prepaid)
    assert inv.total_cents == sum(x.cents for x in inv.lines)
    exact = Fraction(0)
    for x in inv.lines:
        if x.kind == "revenue_share":
            assert x.sats == int(x.quantity * x.unit_price)  # rounded down
            continue
        value = x.quantity * x.unit_price
        exact += value
        assert x.cents == round(value * 100)
        assert abs(x.cents - value * 100) <= Fraction(1, 2)
    assert abs(inv.total_cents - exact * 100) <= Fraction(len(inv.lines), 2)
    assert inv.total_cents >= 0 or sum(x.cents for x in inv.lines if x.kind != "prepayment") < 0
    assert Invoice.from_json(inv.to_json()) == inv
