"""Issue 12: three customers, three contract types, one simulated month, reconciled by hand.

The figures below are worked out in the comments from the scenario in hosting_month.py (hourly
samples; November 2026 has 720 hours). SQLite and PostgreSQL run the same checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import hosting_month as sc
import pytest

from hashfarm.hosting.billing import issue, pay, run_period
from hashfarm.hosting.errors import StateError
from hashfarm.hosting.inputs import parse_meter_csv
from hashfarm.hosting.invoice import Invoice, InvoiceState
from hashfarm.hosting.store import HostingStore, connect


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hosting.sqlite3'}"
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[HostingStore]:
    s = connect(db_url)
    try:
        yield s
    finally:
        s.close()


def _lines(inv: Invoice, machine: str, kind: str) -> list[int]:
    return [x.cents for x in inv.lines if x.machine_id == machine and x.kind == kind]


def test_three_customers_reconcile_to_the_kwh_cent_and_satoshi(store: HostingStore) -> None:
    sc.set_up(store, parse_meter_csv(sc.METER_CSV))
    report = run_period(store, sc.PERIOD, sc.power(), now=sc.NOW, mined=sc.mined())
    assert report.written == ["alpha", "beta", "gamma"]
    assert not report.errors

    alpha = store.latest("alpha", "2026-11")
    assert alpha is not None
    assert alpha.state is InvoiceState.DRAFT
    a = alpha.invoice
    u1 = next(u for u in a.usage if u.machine_id == "m1")
    # m1: 720 h hosted, 10 h curtailed (not billed), 48 h down: nameplate 3.25 kW x 710 h
    assert (u1.curtailed_s, u1.down_s, u1.running_s) == (10 * 3600, 48 * 3600, 662 * 3600)
    assert u1.billed_kwh == Fraction("2307.5")
    assert u1.calculated_kwh == 3 * 662  # 3,000 W for the 662 running hours: 1,986 kWh
    # 2,307.5 kWh x $0.065 = $149.9875 -> 14,998.75 cents -> 14,999 (half-even per line)
    assert _lines(a, "m1", "power") == [14999]
    assert _lines(a, "m1", "hosting_fee") == [1000]
    # uptime 662/710 = 93.2 % < 95 %: allowed down 35.5 h, excess 12.5 h of 710;
    # credit ($149.9875 + $10) x 12.5 / 710 = $2.81668... -> 282 cents
    assert _lines(a, "m1", "sla_credit") == [-282]
    assert _lines(a, "m1", "repair") == [4550]
    # m4 until Nov 16: 1.5 kW x 360 h = 540 kWh x $0.065 = $35.10; half a month's fee $5
    u4a = next(u for u in a.usage if u.machine_id == "m4")
    assert u4a.billed_kwh == 540
    assert u4a.end == sc.MOVE
    assert _lines(a, "m4", "power") == [3510]
    assert _lines(a, "m4", "hosting_fee") == [500]
    assert a.total_cents == 14999 + 1000 - 282 + 4550 + 3510 + 500 == 24277
    assert a.deposit_cents == 50000

    b = store.latest("beta", "2026-11")
    assert b is not None
    inv = b.invoice
    u2 = next(u for u in inv.usage if u.machine_id == "m2")
    # m2's register, interpolated at Nov 1 00:00 (5,037.5) and Dec 1 00:00 (7,337.5)
    assert u2.metered_kwh == 2300
    assert u2.calculated_kwh == Fraction("3.1") * 720
    assert u2.variance_kwh == 68
    assert _lines(inv, "m2", "power") == [16100]
    assert _lines(inv, "m2", "hosting_fee") == [1200]
    # m4 from Nov 16: metered 510.25 kWh (calculated 1.4 kW x 360 h = 504) x $0.07 = $35.7175
    u4b = next(u for u in inv.usage if u.machine_id == "m4")
    assert (u4b.metered_kwh, u4b.calculated_kwh, u4b.start) == (Fraction("510.25"), 504, sc.MOVE)
    assert _lines(inv, "m4", "power") == [3572]
    assert _lines(inv, "m4", "hosting_fee") == [600]
    # $214.72 due, $100 prepaid applied
    assert [x.cents for x in inv.lines if x.kind == "prepayment"] == [-10000]
    assert inv.total_cents == 16100 + 1200 + 3572 + 600 - 10000 == 11472
    # m4's two halves are its whole month: 1.4 kW x 720 h
    assert u4a.calculated_kwh + u4b.calculated_kwh == Fraction("1.4") * 720

    g = store.latest("gamma", "2026-11")
    assert g is not None
    ginv = g.invoice
    # 30 days x 12,345 sats = 370,350 sats; 15 % = 55,552.5 -> 55,552 (rounded down)
    assert ginv.total_sats == 55552
    assert ginv.total_cents == 500
    u3 = next(u for u in ginv.usage if u.machine_id == "m3")
    assert u3.down_s == 24 * 3600
    assert u3.calculated_kwh == 3 * 696

    for rec in (alpha, b, g):  # the stored lines add up to the stored totals
        assert store.line_sums(rec.id) == (rec.total_cents, rec.total_sats)


def test_rerun_is_idempotent_and_a_closed_period_is_not_recomputed(store: HostingStore) -> None:
    sc.set_up(store, parse_meter_csv(sc.METER_CSV))
    run_period(store, sc.PERIOD, sc.power(), now=sc.NOW, mined=sc.mined())
    before = {r.number: r for r in store.invoices()}
    again = run_period(store, sc.PERIOD, sc.power(), now=sc.NOW + 60, mined=sc.mined())
    assert again.unchanged == ["alpha", "beta", "gamma"]
    assert not again.written
    assert {r.number: r for r in store.invoices()} == before

    with pytest.raises(StateError, match="period 2026-11 has not ended"):
        issue(store, "INV-2026-11-alpha-1", sc.PERIOD.end - 1)
    issued = issue(store, "INV-2026-11-alpha-1", sc.NOW)
    assert issued.state is InvoiceState.ISSUED
    assert issued.due_at == sc.NOW + 15 * 86400
    # the power data changes (a late sample batch): the draft follows, the issued one does not
    later = sc.samples()
    later["m1"] = later["m2"]
    later["m2"] = later["m3"]
    from hashfarm.hosting.sources import SeriesPowerSource

    third = run_period(store, sc.PERIOD, SeriesPowerSource(later), now=sc.NOW, mined=sc.mined())
    assert third.closed == ["alpha"]
    after = store.invoice("INV-2026-11-alpha-1")
    assert after is not None
    assert after.document == before["INV-2026-11-alpha-1"].document
    assert pay(store, "INV-2026-11-alpha-1", sc.NOW + 86400).state is InvoiceState.PAID


def test_reimport_is_a_no_op_and_a_stale_draft_follows_its_inputs(store: HostingStore) -> None:
    from hashfarm.hosting.billing import import_meter

    sc.set_up(store, parse_meter_csv(sc.METER_CSV))
    again = parse_meter_csv(sc.METER_CSV + "m2,2026-12-01T12:00:00Z,7375\n")  # a repeated row
    assert import_meter(store, again) == 0
    run_period(store, sc.PERIOD, sc.power(), now=sc.NOW, mined=sc.mined())
    # gamma's only machine turns out to have left the farm before November: its draft empties
    with store.tx():
        store.unassign("m3", sc.T0 - 86400)
    report = run_period(store, sc.PERIOD, sc.power(), now=sc.NOW, mined=sc.mined())
    assert report.written == ["gamma"]
    gamma = store.latest("gamma", "2026-11")
    assert gamma is not None
    assert (gamma.total_cents, gamma.total_sats, gamma.invoice.lines) == (0, 0, ())


def test_concurrent_bill_runs_take_turns(store: HostingStore, db_url: str) -> None:
    """Two runs of one period at once (two connections): one drafts, the other finds the
    drafts unchanged; never two invoices for one customer, never a failed run."""
    from concurrent.futures import ThreadPoolExecutor

    sc.set_up(store, parse_meter_csv(sc.METER_CSV))
    others = [connect(db_url) for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            reports = list(pool.map(
                lambda s: run_period(s, sc.PERIOD, sc.power(), now=sc.NOW, mined=sc.mined()),
                others,
            ))  # fmt: skip
    finally:
        for s in others:
            s.close()
    assert sorted(len(r.written) for r in reports) == [0, 3]
    assert sorted(len(r.unchanged) for r in reports) == [0, 3]
    assert [r.number for r in store.invoices()] == [
        "INV-2026-11-alpha-1", "INV-2026-11-beta-1", "INV-2026-11-gamma-1",
    ]  # fmt: skip
