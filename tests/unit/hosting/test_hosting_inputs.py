"""CSV inputs: every malformed row named by its line, nothing returned from a bad file;
meter registers interpolated exactly at period boundaries; PDF export without its extra."""

from __future__ import annotations

import sys
from fractions import Fraction

import pytest

from hashfarm.hosting.errors import HostingError, InputError
from hashfarm.hosting.inputs import (
    MeterReading,
    interpolate,
    parse_meter_csv,
    parse_mined_csv,
    parse_prices_csv,
    parse_samples_csv,
    read_text,
)
from hashfarm.hosting.period import Period, parse_time


def _problems(fn, text: str) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as info:
        fn(text)
    return info.value.problems


def test_meter_rows_are_checked_line_by_line() -> None:
    text = (
        "machine_id,time,kwh,outlet\n"
        "m1,2026-11-01T00:00:00Z,10.5,A1\n"
        "m1,yesterday,11,A1\n"
        "m1,2026-11-02,-1,A1\n"
        "\n"
        ",2026-11-02,1,A1\n"
        "m1,2026-11-03,12.25\n"
        "m2,2026-11-03,1e3,B2\n"
    )
    assert _problems(parse_meter_csv, text) == [
        (3, "time: 'yesterday' is neither unix seconds nor ISO 8601"),
        (4, "kwh -1 is negative"),
        (6, "machine_id must be 1..128 characters"),
        (7, "3 cell(s), the header has 4"),
        (8, "kwh: '1e3' is not a decimal number"),
    ]


def test_meter_registers_must_not_go_backwards_or_disagree() -> None:
    text = "machine_id,time,kwh\nm1,100,5\nm1,200,4\nm2,100,1\nm2,100,2\nm2,100,1\n"
    assert _problems(parse_meter_csv, text) == [
        (3, "m1: register went backwards (5.000 -> 4.000)"),
        (5, "m2: a second, different reading at that time"),
        (6, "m2: a second, different reading at that time"),
    ]


def test_headers_empty_files_and_encodings() -> None:
    assert _problems(parse_meter_csv, "") == [(1, "the file is empty (expected a header)")]
    assert _problems(parse_meter_csv, "machine,time\n") == [
        (1, "header lacks column(s) machine_id, kwh")
    ]
    with pytest.raises(InputError, match="line 3: not UTF-8"):
        read_text(b"machine_id,time,kwh\nm1,1,2\nm1,\xff,3\n", "meter")
    assert read_text("\ufeffa\n".encode(), "x") == "a\n"
    long = "machine_id,time,kwh\nm1,1," + "1" * 5000 + "\n"
    assert _problems(parse_meter_csv, long) == [(2, "row longer than 4096 characters")]


def test_an_error_message_names_the_lines() -> None:
    with pytest.raises(InputError) as info:
        parse_meter_csv("machine_id,time,kwh\nm1,1,x\n")
    assert str(info.value) == (
        "meter readings: 1 malformed row(s), nothing imported: "
        "line 2: kwh: 'x' is not a decimal number"
    )


def test_samples_mined_and_prices() -> None:
    s = parse_samples_csv("machine_id,time,watts,state\nm1,0,3000,running\nm1,60,0,Curtailed\n")
    assert s["m1"].watts.tolist() == [3000, 0]
    assert s["m1"].states.tolist() == [0, 1]
    assert _problems(parse_samples_csv, "machine_id,time,watts,state\nm1,0,3.5,running\n"
                     "m1,0,3,off\nm1,0,2000000,down\n") == [
        (2, "watts '3.5' is not a whole number"),
        (3, "state 'off' is not running/curtailed/down"),
        (4, "watts 2000000 is not within 0..1000000"),
    ]  # fmt: skip
    day = parse_time("2026-11-02")
    assert parse_mined_csv("machine_id,day,sats\nm1,2026-11-02,5\nm1,2026-11-02,6\n") == {
        ("m1", day): 11
    }
    assert _problems(parse_mined_csv, "machine_id,day,sats\nm1,2026-11-02T01:00:00Z,5\n") == [
        (2, "day '2026-11-02T01:00:00Z' is not 00:00 UTC")
    ]
    assert parse_prices_csv("day,btc_usd\n2026-11-02,91234.56\n") == {day: Fraction("91234.56")}


def test_interpolation_is_exact_and_needs_readings_on_both_sides() -> None:
    rs = [MeterReading("m", 0, Fraction(100)), MeterReading("m", 3, Fraction(101))]
    assert interpolate(rs, 1) == Fraction(301, 3)
    assert interpolate(rs, 3) == 101
    assert interpolate(rs, 4) is None
    assert interpolate(rs, -1) is None


def test_periods() -> None:
    p = Period.parse("2026-02")
    assert (p.seconds, len(p.days()), str(p)) == (28 * 86400, 28, "2026-02")
    assert Period.parse("2026-12").end == parse_time("2027-01-01")
    with pytest.raises(HostingError, match="YYYY-MM"):
        Period.parse("2026-11-01")
    with pytest.raises(HostingError, match="not a month"):
        Period.parse("2026-13")


def test_pdf_export_without_its_extra_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from hashfarm.hosting.export import to_pdf

    monkeypatch.setitem(sys.modules, "fpdf", None)  # as if fpdf2 were not installed
    with pytest.raises(HostingError) as info:
        to_pdf(None)  # type: ignore[arg-type]
    assert str(info.value) == (
        "PDF export needs fpdf2, which is not installed: pip install 'hashfarm[pdf]'"
    )


@pytest.mark.parametrize("bad", ["", "a b", "-x", "x" * 65, "é", "a/b", "a\nb"])
def test_ids_that_would_break_numbers_or_files_are_refused(bad: str) -> None:
    from hashfarm.hosting.store import Customer, connect

    store = connect("sqlite:///:memory:")
    with pytest.raises(HostingError, match="use 1-64 letters"):
        store.add_customer(Customer(bad, "x", ""), 0)
    store.add_customer(Customer("acme-01.eu", "x", ""), 0)
