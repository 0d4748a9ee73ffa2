"""The sans-I/O Stratum codec: framing limits, decoding every message shape, encoding."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.errors import StratumError
from hashfarm.stratum.codec import (
    ErrorCode,
    LineBuffer,
    Notification,
    Request,
    Response,
    RpcError,
    decode,
    encode,
    encode_ack,
)


def test_line_buffer_splits_across_chunks_and_keeps_the_tail() -> None:
    buf = LineBuffer(max_line=64)
    assert buf.feed(b'{"id":1,') == []
    assert buf.feed(b'"method":"a"}\n{"id"') == [b'{"id":1,"method":"a"}']
    assert buf.pending == 5
    assert buf.feed(b":2}\r\n\n  \n") == [b'{"id":2}']
    assert buf.pending == 0


def test_line_buffer_one_byte_at_a_time() -> None:
    buf = LineBuffer()
    data = b"abc\ndef\n"
    lines = [line for byte in data for line in buf.feed(bytes([byte]))]
    assert lines == [b"abc", b"def"]


def test_line_buffer_refuses_a_long_line_before_its_newline_arrives() -> None:
    buf = LineBuffer(max_line=16)
    buf.feed(b"x" * 16)
    with pytest.raises(StratumError, match="longer than 16 bytes"):
        buf.feed(b"y")
    assert buf.pending == 0


def test_line_buffer_refuses_a_long_complete_line() -> None:
    buf = LineBuffer(max_line=8)
    with pytest.raises(StratumError, match="longer than 8"):
        buf.feed(b"123456789\nok\n")


def test_line_at_exact_limit_is_accepted() -> None:
    assert LineBuffer(max_line=4).feed(b"1234\n") == [b"1234"]


def test_decode_request_notification_response() -> None:
    req = decode(b'{"id": 7, "method": "mining.subscribe", "params": ["cpuminer/2.5"]}')
    assert req == Request(7, "mining.subscribe", ("cpuminer/2.5",))
    note = decode('{"id": null, "method": "mining.set_difficulty", "params": [0.5]}')
    assert note == Notification("mining.set_difficulty", (0.5,))
    assert decode(b'{"method": "mining.notify"}') == Notification("mining.notify", ())
    ok = decode(b'{"id": "a1", "result": true, "error": null}')
    assert ok == Response("a1", True, None)
    assert isinstance(ok, Response)
    assert ok.ok


def test_decode_error_triple_and_jsonrpc2_object() -> None:
    triple = decode(b'{"id": 4, "result": null, "error": [23, "Low difficulty share", null]}')
    assert isinstance(triple, Response)
    assert triple.error == RpcError(23, "Low difficulty share")
    assert not triple.ok
    obj = decode(b'{"id": 4, "result": null, "error": {"code": 21, "message": "Stale"}}')
    assert isinstance(obj, Response)
    assert obj.error == RpcError(21, "Stale")
    text = decode(b'{"id": 4, "result": null, "error": "boom"}')
    assert isinstance(text, Response)
    assert text.error == RpcError(20, "boom")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id": 1}', "neither a call nor a response"),
        (b'{"id": 1, "method": 5, "params": []}', "method must be"),
        (b'{"id": 1, "method": "", "params": []}', "method must be"),
        (b'{"id": 1, "method": "x", "params": {"a": 1}}', "params must be a list"),
        (b'{"id": 1.5, "method": "x", "params": []}', "id must be"),
        (b'{"id": true, "result": 1, "error": null}', "id must be"),
        (b'{"id": 1, "result": null, "error": ["x", "y"]}', "error code must be"),
        (b'{"id": 1, "result": null, "error": 7}', "error must be"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_decode_rejects_malformed_lines_with_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(StratumError, match=reason):
        decode(line)


def test_encode_shapes_match_stratum_v1() -> None:
    assert orjson.loads(encode(Request(1, "mining.authorize", ("u.w", "x")))) == {
        "id": 1,
        "method": "mining.authorize",
        "params": ["u.w", "x"],
    }
    assert orjson.loads(encode(Notification("mining.set_difficulty", (2,)))) == {
        "id": None,
        "method": "mining.set_difficulty",
        "params": [2],
    }
    err = Response(9, None, RpcError.of(ErrorCode.DUPLICATE_SHARE))
    assert orjson.loads(encode(err)) == {
        "id": 9,
        "result": None,
        "error": [22, "Duplicate share", None],
    }
    line = encode(Response(3, True))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1


def test_error_codes_and_default_messages() -> None:
    expected = {
        20: "Other/Unknown",
        21: "Job not found",
        22: "Duplicate share",
        23: "Low difficulty share",
        24: "Unauthorized worker",
        25: "Not subscribed",
    }
    assert {int(c): RpcError.of(c).message for c in ErrorCode} == expected
    assert RpcError.of(ErrorCode.JOB_NOT_FOUND, "stale: job 7").to_wire() == [
        21,
        "stale: job 7",
        None,
    ]


def test_round_trip_through_buffer() -> None:
    messages = [
        Request(1, "mining.subscribe", ("hashfarm/0.1",)),
        Notification("mining.notify", ("1", [["ab"]], False)),
        Response("x", [[["mining.notify", "1"]], "00ff", 4]),
        Response(2, None, RpcError(24, "Unauthorized worker")),
    ]
    stream = b"".join(encode(m) for m in messages)
    buf = LineBuffer()
    decoded = [decode(line) for line in buf.feed(stream[:13]) + buf.feed(stream[13:])]
    assert decoded == messages


def test_encode_unserializable_value_is_a_stratum_error() -> None:
    with pytest.raises(StratumError, match="cannot encode"):
        encode(Request(1, "x", (object(),)))


_ids = st.one_of(st.none(), st.integers(-(2**53), 2**53), st.text(max_size=8))
_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=12)),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=10,
)


@given(
    ids=st.lists(_ids, min_size=1, max_size=6),
    params=st.lists(_values, max_size=4),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_any_chunking_yields_the_same_messages(
    ids: list[int | str | None], params: list[object], cuts: list[int]
) -> None:
    messages: list[Request | Notification | Response] = []
    for msg_id in ids:
        if msg_id is None:
            messages.append(Notification("mining.notify", tuple(params)))
        else:
            messages.append(Request(msg_id, "mining.submit", tuple(params)))
            messages.append(Response(msg_id, params, None))
    stream = b"".join(encode(m) for m in messages)
    buf, lines, start = LineBuffer(max_line=1 << 16), [], 0
    for cut in [*sorted({min(c, len(stream)) for c in cuts}), len(stream)]:
        lines += buf.feed(stream[start:cut])
        start = cut
    assert [decode(line) for line in lines] == messages
    assert buf.pending == 0


@pytest.mark.parametrize("msg_id", [1, 0, -7, 2**63 - 1, "abc", 'q"\\é', None])
@pytest.mark.parametrize(
    "error",
    [None, RpcError(23, "Low difficulty share"), RpcError(21, 'job "x" \n gone'), RpcError(20, "")],
)
@pytest.mark.parametrize("result", [True, False, None])
def test_constant_replies_are_the_bytes_orjson_writes_for_the_dict(
    msg_id: int | str | None, error: RpcError | None, result: bool | None
) -> None:
    response = Response(msg_id, result, error)
    wire = error.to_wire() if error is not None else None
    expected = orjson.dumps({"id": msg_id, "result": result, "error": wire}) + b"\n"
    assert encode(response) == expected
    assert decode(encode(response)) == response


def test_replies_outside_the_constant_forms_are_encoded_in_full() -> None:
    assert encode(Response(1, 1, None)) == b'{"id":1,"result":1,"error":null}\n'
    assert encode(Response(1, [True], None)) == b'{"id":1,"result":[true],"error":null}\n'
    with_data = Response(2, None, RpcError(20, "x", {"why": 1}))
    assert encode(with_data) == b'{"id":2,"result":null,"error":[20,"x",{"why":1}]}\n'
    with pytest.raises(StratumError, match="cannot encode"):
        encode(Response(2**64, True, None))  # beyond orjson's integers, as before


def test_the_fast_request_path_builds_what_the_general_path_builds() -> None:
    line = b'{"id":5,"method":"mining.submit","params":["w","j","00","00000000","00000000"]}'
    message = decode(line)
    assert type(message) is Request
    assert message == Request(5, "mining.submit", ("w", "j", "00", "00000000", "00000000"))
    assert hash(message) == hash(
        Request(5, "mining.submit", ("w", "j", "00", "00000000", "00000000"))
    )


@pytest.mark.parametrize(
    "line",
    [b'{"id":true,"method":"a","params":[]}', b'{"id":1.5,"method":"a","params":[]}'],
)
def test_a_call_with_a_bad_id_still_fails_off_the_fast_path(line: bytes) -> None:
    with pytest.raises(StratumError, match="id must be an integer, a string or null"):
        decode(line)


@given(st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=40), st.none()))
def test_encode_ack_is_encode_of_a_true_result(msg_id: int | str | None) -> None:
    # the pool answers every accepted share with encode_ack: byte for byte encode's line
    assert encode_ack(msg_id) == encode(Response(msg_id, True, None))


def test_encode_ack_refuses_what_encode_refuses() -> None:
    with pytest.raises(StratumError, match="cannot encode"):
        encode_ack(2**70)
