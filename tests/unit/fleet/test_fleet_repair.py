"""The repair step: every `.raw` capture is invalid JSON as sent and parses after exactly the
repair its README row names; valid captures need none; garbage is a clear ReplyError."""

from __future__ import annotations

import json

import pytest

from hashfarm.fleet.errors import ReplyError
from hashfarm.fleet.sources.repair import decode_reply

RAW = [
    # file, the repairs it needs (README "Quirks" 2 and 3)
    ("antminer-s9-hiveon-bmminer-stats.raw", ("missing-comma-between-objects",)),
    ("antminer-s9-bmminer-stats-bad-temps.raw", ("missing-comma-between-objects",)),
    ("antminer-l3plus-cgminer-stats.raw", ("missing-comma-between-objects",)),
    ("avalon-10xx-cgminer-pools+summary+stats.raw", ("bare-nan-or-inf",)),
    ("whatsminer-m20s-btminer-summary.raw", ("backslash-quote-escape",)),
]


@pytest.mark.parametrize(("name", "repairs"), RAW)
def test_raw_capture_is_invalid_json_and_repairs_as_documented(capture, name, repairs):
    raw = capture(name)
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)  # the reason the file exists: a strict parser refuses it
    decoded = decode_reply(raw, command="x")
    assert decoded.repairs == repairs


def test_nul_terminator_is_stripped_and_needs_no_repair(capture):
    # cgminer sends len+1 bytes (its C string terminator); the captures had it removed
    raw = capture("antminer-s19pro-bmminer-summary.json") + b"\x00"
    decoded = decode_reply(raw)
    assert decoded.repairs == ()
    assert decoded.data["SUMMARY"][0]["Elapsed"] == 50474


def test_object_split_keeps_both_stats_objects(capture):
    data = decode_reply(capture("antminer-l3plus-cgminer-stats.raw")).data
    assert [s.get("Type") for s in data["STATS"]] == ["Antminer L3+", None]
    assert data["STATS"][1]["GHS 5s"] == "504.56"


def test_bare_nan_becomes_null_not_zero(capture):
    data = decode_reply(capture("avalon-10xx-cgminer-pools+summary+stats.raw")).data
    assert data["summary"][0]["SUMMARY"][0]["MHS av"] is None
    assert data["summary"][0]["SUMMARY"][0]["Elapsed"] == 155


def test_backslash_quote_escape_keeps_the_quotes(capture):
    data = decode_reply(capture("whatsminer-m20s-btminer-summary.raw")).data
    assert data["SUMMARY"][0]["Firmware Version"] == "'20200917.22.REL'"


def test_s9_type_with_escaped_newline_survives(capture):
    data = decode_reply(capture("antminer-s9-bmminer-stats-bad-temps.raw")).data
    assert data["STATS"][0]["Type"] == "Antminer S9\nV1.3.58"


def test_repairs_do_not_touch_string_contents():
    # `}{` and `nan` inside strings are data; only the structural `}{` is repaired
    raw = b'{"STATS":[{"a":"}{ nan"}{"b":"x,}"}]}'
    decoded = decode_reply(raw)
    assert decoded.data == {"STATS": [{"a": "}{ nan"}, {"b": "x,}"}]}
    assert decoded.repairs == ("missing-comma-between-objects",)


def test_trailing_comma_repair():
    assert decode_reply(b'{"a":[1,2,],}').data == {"a": [1, 2]}


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00", b"HTTP/1.1 400 Bad Request\r\n\r\n", b"\xff\xfe\x00garbage", b'{"STATUS":[{'],
)
def test_garbage_is_a_clear_reply_error(raw):
    with pytest.raises(ReplyError, match=r"^stats: ") as err:
        decode_reply(raw, command="stats")
    assert "empty reply" in str(err.value) or "not JSON" in str(err.value)


def test_error_names_the_repairs_tried():
    with pytest.raises(ReplyError, match="repairs: missing-comma-between-objects"):
        decode_reply(b'{"a":1}{"b":', command="stats")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 100_000, "not JSON"),  # nesting: RecursionError inside json, not a crash
        (b'{"a":' + b"9" * 5000 + b"}", "not JSON we accept"),  # over the int digit limit
    ],
)
def test_hostile_json_is_a_reply_error(raw, reason):
    with pytest.raises(ReplyError, match=reason):
        decode_reply(raw, command="summary")


def test_non_object_reply_and_absurd_values_are_reply_errors():
    from hashfarm.fleet.sources import BACKENDS, read

    with pytest.raises(ReplyError, match="summary: expected an object, got list"):
        read(BACKENDS["bmminer"], {"summary": b"[1, 2]"})
    more_than_the_network = b'{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":1e15}]}'
    with pytest.raises(ReplyError, match=r"GHS 5s: .* more than the whole network"):
        read(BACKENDS["bmminer"], {"summary": more_than_the_network})
    boards = b'{"code":0,"msg":{"miner":{"board-num":"100000000"}}}'
    with pytest.raises(ReplyError, match="board-num 100000000 is not a board count"):
        read(BACKENDS["btminer-v3"], {"get.device.info": boards})


def test_non_finite_values_are_reply_errors():
    from hashfarm.fleet.sources.values import dash_temps, opt_float, suffixed

    with pytest.raises(ReplyError, match="temp_chip1: not a finite number"):
        dash_temps("inf-50-60-70", "temp_chip1")
    with pytest.raises(ReplyError, match="bestDiff: not a finite number"):
        suffixed("9" * 400 + "k", "bestDiff")  # 10^403 does not fit a float
    with pytest.raises(ReplyError, match="Temperature: not a finite number"):
        opt_float({"Temperature": "9" * 400}, "Temperature")
