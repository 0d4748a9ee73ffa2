"""Typed builders/parsers for each Stratum method, pinned to the shapes real miners send."""

from __future__ import annotations

import orjson
import pytest

from hashfarm.errors import StratumError
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import ErrorCode, Notification, Request, RpcError, decode, encode


def _wire(msg: Request | Notification) -> object:
    return orjson.loads(encode(msg))


def test_subscribe_both_ways() -> None:
    assert _wire(m.subscribe(1, "hashfarm/0.1")) == {
        "id": 1,
        "method": "mining.subscribe",
        "params": ["hashfarm/0.1"],
    }
    assert m.subscribe(2, "a", "deadbeef").params == ("a", "deadbeef")
    assert m.parse_subscribe([]) == m.Subscribe(None, None)
    assert m.parse_subscribe(["bitaxe/BM1366/v2.4.0", ""]) == m.Subscribe("bitaxe/BM1366/v2.4.0")
    with pytest.raises(StratumError, match="user agent"):
        m.parse_subscribe([5])


def test_subscribe_result_as_ckpool_sends_it() -> None:
    # Verbatim shape of a ckpool answer: two subscriptions, extranonce1, extranonce2 size.
    raw = (
        b'{"id":1,"result":[[["mining.set_difficulty","5f2a"],["mining.notify","5f2a"]],'
        b'"5f2a0000",8],"error":null}'
    )
    resp = decode(raw)
    parsed = m.parse_subscribe_result(resp.result)  # type: ignore[union-attr]
    assert parsed == m.SubscribeResult(bytes.fromhex("5f2a0000"), 8, "5f2a")
    built = m.subscribe_result(bytes.fromhex("5f2a0000"), 8, "5f2a")
    assert m.parse_subscribe_result(built) == parsed
    with pytest.raises(StratumError, match="extranonce2_size"):
        m.parse_subscribe_result([[], "00", 0])
    with pytest.raises(StratumError, match="extranonce1 is not hex"):
        m.parse_subscribe_result([[], "zz", 4])


def test_authorize() -> None:
    assert m.parse_authorize(["bc1qxy.rig1", "x"]) == m.Authorize("bc1qxy.rig1", "x")
    assert m.parse_authorize(["u"]) == m.Authorize("u", "")
    with pytest.raises(StratumError, match="user name"):
        m.parse_authorize([])
    assert m.authorize(3, "u.w", "p").params == ("u.w", "p")


def test_configure_version_rolling_as_bitaxe_sends_it() -> None:
    req = m.configure(1, 0x1FFFE000, 2)
    assert _wire(req)["params"] == [  # type: ignore[index]
        ["version-rolling"],
        {"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2},
    ]
    parsed = m.parse_configure(list(req.params))
    assert parsed.version_rolling_mask == 0x1FFFE000
    assert parsed.version_rolling_min_bits == 2
    other = m.parse_configure([["minimum-difficulty"], {"minimum-difficulty.value": 2048}])
    assert other.version_rolling_mask is None
    assert m.parse_configure([["version-rolling"], {}]).version_rolling_mask == 0xFFFFFFFF
    with pytest.raises(StratumError, match="extensions list"):
        m.parse_configure([{"version-rolling.mask": "1fffe000"}])


def test_configure_result() -> None:
    assert m.configure_result(0x1FFFE000) == {
        "version-rolling": True,
        "version-rolling.mask": "1fffe000",
    }
    assert m.parse_configure_result(m.configure_result(0x00FFE000)) == 0x00FFE000
    assert m.parse_configure_result(m.configure_result(None)) is None
    assert m.parse_configure_result(None) is None


def test_submit_with_and_without_version_bits() -> None:
    share = m.Submit("u.w", "4f", bytes.fromhex("00000001"), 0x504E86B9, 0x0D8C7E2B)
    assert _wire(m.submit(4, share))["params"] == [  # type: ignore[index]
        "u.w",
        "4f",
        "00000001",
        "504e86b9",
        "0d8c7e2b",
    ]
    assert m.parse_submit(list(m.submit(4, share).params)) == share
    rolled = m.Submit("u.w", "4f", b"\x00\x01", 1, 2, 0x00A00000)
    params = list(m.submit(5, rolled).params)
    assert params[5] == "00a00000"
    assert m.parse_submit(params) == rolled


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (["w", "1", "00", "00000000"], "5 or 6 params"),
        ([1, "1", "00", "00000000", "00000000"], "worker must be"),
        (["w", "1", "0g", "00000000", "00000000"], "extranonce2 is not hex"),
        (["w", "1", "00", "0000000", "00000000"], "ntime must be 8 hex"),
        (["w", "1", "00", "00000000", "xxxxxxxx"], "nonce is not hex"),
        (["w", "1", "00", "00000000", "00000000", 5], "version_bits must be"),
    ],
)
def test_parse_submit_errors_name_the_field(params: list[object], reason: str) -> None:
    with pytest.raises(StratumError, match=reason):
        m.parse_submit(params)


def test_difficulty_messages() -> None:
    assert m.set_difficulty(0.001).params == (0.001,)
    assert m.parse_set_difficulty([512]) == 512.0
    assert m.parse_suggest_difficulty([0.25]) == 0.25
    for bad in ([], [0], [-1], ["2"], [True], [float("inf")]):
        with pytest.raises(StratumError):
            m.parse_set_difficulty(bad)


def test_set_extranonce_and_version_mask() -> None:
    note = m.set_extranonce(bytes.fromhex("08000002"), 4)
    assert _wire(note) == {"id": None, "method": "mining.set_extranonce", "params": ["08000002", 4]}
    assert m.parse_set_extranonce(list(note.params)) == (bytes.fromhex("08000002"), 4)
    assert m.parse_set_version_mask(list(m.set_version_mask(0x1FFFE000).params)) == 0x1FFFE000
    with pytest.raises(StratumError):
        m.parse_set_extranonce(["08"])


def test_reconnect() -> None:
    assert m.parse_reconnect([]) == m.Reconnect()
    assert m.parse_reconnect(["pool.example", "3333", 5]) == m.Reconnect("pool.example", 3333, 5.0)
    assert m.parse_reconnect(list(m.reconnect("127.0.0.1", 4000, 0).params)).port == 4000
    with pytest.raises(StratumError, match="port"):
        m.parse_reconnect(["h", "abc"])
    with pytest.raises(StratumError, match="out of range"):
        m.parse_reconnect(["h", 70000])


def test_responses() -> None:
    assert orjson.loads(encode(m.error(7, ErrorCode.JOB_NOT_FOUND))) == {
        "id": 7,
        "result": None,
        "error": [21, "Job not found", None],
    }
    assert orjson.loads(encode(m.result(7, True))) == {"id": 7, "result": True, "error": None}


@pytest.mark.parametrize(
    "params",
    [
        ["w.1", "1a2f", "0000000000000a3c", "6543a1b2", "deadbeef"],
        ["w.1", "1a2f", "", "6543A1B2", "DEADBEEF", "1fffe000"],
        ["w.1", 77, "00ff", "6543a1b2", "deadbeef"],  # an int job id takes the checked path
        ["w.1", "j", "00ff", "0x43a1b2", "deadbeef"],  # int() reads 0x: both paths alike
    ],
)
def test_parse_submit_fast_path_builds_what_the_field_by_field_checks_build(
    params: list[object],
) -> None:
    share = m.parse_submit(params)
    assert type(share) is m.Submit
    assert share == m._parse_submit_checked(params)
    rebuilt = m.Submit(
        share.worker, share.job_id, share.extranonce2, share.ntime, share.nonce, share.version_bits
    )
    assert share == rebuilt
    assert hash(share) == hash(rebuilt)
    assert repr(share) == repr(rebuilt)


def test_error_responses_share_one_rpc_error_per_code_and_message() -> None:
    first = m.error(1, ErrorCode.LOW_DIFFICULTY, "Low difficulty share")
    second = m.error(2, ErrorCode.LOW_DIFFICULTY, "Low difficulty share")
    assert first.error is second.error
    assert encode(second) == b'{"id":2,"result":null,"error":[23,"Low difficulty share",null]}\n'
    assert m.error(3, ErrorCode.DUPLICATE_SHARE).error == RpcError(22, "Duplicate share")
