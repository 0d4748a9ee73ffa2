"""Power samples -> exact energy and uptime: the prefix-sum integrator against the plain loop,
and windows that partition a span adding up to the span (to the joule and the second)."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashfarm.hosting.billing import measure
from hashfarm.hosting.contracts import Method, Terms, parse_bands
from hashfarm.hosting.errors import HostingError, InputError
from hashfarm.hosting.inputs import parse_curtailment_csv
from hashfarm.hosting.invoice import Machine
from hashfarm.hosting.period import Period
from hashfarm.hosting.power import Integrator, SampleSeries, State, Usage, integrate_reference
from hashfarm.hosting.sources import CurtailmentWindows, SeriesPowerSource
from hashfarm.hosting.store import Contract, Customer, HostingStore, connect

rows_st = st.lists(
    st.tuples(st.integers(0, 200_000), st.integers(0, 20_000), st.sampled_from(list(State))),
    max_size=60,
    unique_by=lambda r: r[0],
)


@given(rows_st, st.lists(st.integers(-10_000, 260_000), min_size=2, max_size=12),
       st.integers(1, 7200))  # fmt: skip
def test_integrator_matches_the_reference_loop(
    rows: list[tuple[int, int, State]], cuts: list[int], hold: int
) -> None:
    bounds = sorted(cuts)
    fast = Integrator(SampleSeries.of(rows), hold).windows(bounds)
    slow = [integrate_reference(rows, a, b, hold) for a, b in pairwise(bounds)]
    assert fast == slow


@given(rows_st, st.lists(st.integers(0, 250_000), max_size=10), st.integers(1, 7200))
def test_windows_of_a_span_add_up_to_the_span(
    rows: list[tuple[int, int, State]], cuts: list[int], hold: int
) -> None:
    integ = Integrator(SampleSeries.of(rows), hold)
    whole = integ.windows([0, 250_000])[0]
    parts = integ.windows(sorted({0, 250_000, *cuts}))
    total = sum(parts, Usage(0, 0, 0, 0, 0))
    assert total == whole
    assert whole.running_s + whole.curtailed_s + whole.down_s == whole.seconds


def test_a_hand_checked_series() -> None:
    # 1,000 W running 0-600 s, curtailed 600-1200 s, 3,000 W running 1200 s on (held 900 s)
    s = SampleSeries.of([(0, 1000, State.RUNNING), (600, 0, State.CURTAILED),
                         (1200, 3000, State.RUNNING)])  # fmt: skip
    [u] = Integrator(s, 900).windows([0, 3600])
    assert u == Usage(3600, 600 * 1000 + 900 * 3000, 1500, 600, 1500)
    assert u.kwh == Fraction(3_300_000, 3_600_000)


def test_the_source_hands_the_last_sample_before_the_window() -> None:
    s = SampleSeries.of([(t, 100, State.RUNNING) for t in range(0, 10_000, 1000)])
    got = SeriesPowerSource({"m": s}).samples("m", 2500, 5000)
    assert got.times.tolist() == [2000, 3000, 4000]
    assert len(SeriesPowerSource({}).samples("x", 0, 10)) == 0


@pytest.mark.parametrize(
    ("rows", "hold", "said"),
    [
        ([(0, -1, 0)], 60, "watts"),
        ([(0, 2_000_000, 0)], 60, "watts"),
        ([(0, 1, 0)], 0, "max_hold_s"),
        ([(0, 1, 0)], 86_401, "max_hold_s"),
        ([(0, 1, 7)], 60, "state"),
    ],
)
def test_refused_series(rows: list[tuple[int, int, int]], hold: int, said: str) -> None:
    with pytest.raises(HostingError, match=said):
        Integrator(SampleSeries.of(rows), hold)


def test_decreasing_bounds_are_refused() -> None:
    with pytest.raises(HostingError, match="must not decrease"):
        Integrator(SampleSeries.of([(0, 1, 0)]), 60).windows([10, 5])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 29 * 86_400), min_size=1, max_size=4, unique=True))
def test_kwh_by_assignment_intervals_sums_to_the_machine_month(moves: list[int]) -> None:
    """A machine moved between customers on random dates: its billed pieces are its month."""
    period = Period(2026, 11)
    rows = [(period.start + h * 1800, 1000 + (h * 37) % 900, State((h // 7) % 3))
            for h in range(-1, 30 * 48)]  # fmt: skip
    source = SeriesPowerSource({"m": SampleSeries.of(rows)})
    store = connect("sqlite:///:memory:")
    with store.tx():
        for i in range(2):
            store.add_customer(Customer(f"c{i}", f"C{i}", ""), 0)
            store.add_contract(Contract(f"k{i}", f"c{i}", Terms(Method.BTC_INDEXED,
                               bands=parse_bands("0:0.05"))), 0)  # fmt: skip
        store.put_machine(Machine("m", "", 1000, 1000))
        store.assign("m", "k0", period.start - 5)
        for n, t in enumerate(sorted(moves)):
            store.assign("m", f"k{(n + 1) % 2}", period.start + t)
    months = measure(store, period, source)
    pieces = [m for ms in months.values() for m in ms]
    total = sum((m.usage for m in pieces), Usage(0, 0, 0, 0, 0))
    [whole] = Integrator(source.samples("m", period.start, period.end), 3600).windows(
        [period.start, period.end]
    )
    assert total == whole
    assert sum(len(m.daily) for m in pieces) == 30 + len(moves) - sum(
        t % 86_400 == 0 for t in moves
    )


def _one_machine_store(period: Period) -> HostingStore:
    store = connect("sqlite:///:memory:")
    with store.tx():
        store.add_customer(Customer("c", "C", ""), 0)
        store.add_contract(Contract("k", "c", Terms(Method.NAMEPLATE, rate=Fraction(1))), 0)
        store.put_machine(Machine("m", "", 1000, 1000))
        store.assign("m", "k", period.start + 3 * 3600)  # from Nov 1 03:00
    return store


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(-86_400, 31 * 86_400), st.integers(1, 5 * 86_400)),
                max_size=5))  # fmt: skip
def test_curtailment_turns_down_time_into_curtailed_time_only(
    windows: list[tuple[int, int]],
) -> None:
    period = Period(2026, 11)
    rows = [(period.start + h * 1800, 0 if h % 5 else 900, State.DOWN if h % 5 else State.RUNNING)
            for h in range(-1, 30 * 48) if h % 97 not in (1, 2, 3)]  # gaps: no data  # fmt: skip
    source = SeriesPowerSource({"m": SampleSeries.of(rows)})
    store = _one_machine_store(period)
    off = CurtailmentWindows({"*": [(period.start + a, period.start + a + n) for a, n in windows]})
    [plain] = measure(store, period, source)["c"]
    [curt] = measure(store, period, source, curtailment=off)["c"]
    p, c = plain.usage, curt.usage
    assert (c.seconds, c.energy_j, c.running_s) == (p.seconds, p.energy_j, p.running_s)
    assert c.curtailed_s + c.down_s == p.curtailed_s + p.down_s
    inside = sum(
        max(0, min(period.start + a + n, period.end) - max(period.start + a, curt.start))
        for a, n in _union(windows)
    )
    assert c.curtailed_s - p.curtailed_s <= inside


def _union(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted((a, a + n) for a, n in windows):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return [(a, b - a) for a, b in out]


def test_curtailment_csv() -> None:
    got = parse_curtailment_csv(
        "machine_id,start,end\n*,2026-11-05T12:00:00Z,2026-11-05T22:00:00Z\nm1,100,200\n"
    )
    assert got == {"*": [(1793880000, 1793916000)], "m1": [(100, 200)]}  # 12:00, 22:00 UTC
    with pytest.raises(InputError, match="line 2: end is not after start"):
        parse_curtailment_csv("machine_id,start,end\nm1,200,200\n")
    src = CurtailmentWindows(got)
    assert src.windows("m1", 0, 150) == [(100, 200)]
    assert src.windows("m2", 0, 150) == []
