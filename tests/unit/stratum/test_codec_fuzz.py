"""Fuzzing the Stratum codec (Hypothesis, bounded and deterministic so `make test` runs it).

Properties: framing a byte stream cut into arbitrary chunks gives the lines of framing it
whole (and refuses the same over-long lines); `decode` of any bytes returns a message or
raises StratumError, nothing else; `encode` then `decode` gives the message back; every
`parse_*` of the message layer, given any JSON values, returns or raises StratumError.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashfarm.errors import StratumError
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import (
    LineBuffer,
    Message,
    Notification,
    Request,
    Response,
    RpcError,
    decode,
    encode,
)

# Bounded and reproducible: the same examples on every run and machine, no example database.
FUZZ = settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Streams built from the bytes that matter to framing, and JSON-ish junk around them.
_stream_bytes = st.lists(
    st.one_of(
        st.sampled_from([b"\n", b"\r", b"\r\n", b" ", b"{", b"}", b'"', b"\x00", b"\xff"]),
        st.binary(min_size=1, max_size=12),
    ),
    max_size=40,
).map(b"".join)

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),  # what orjson reads and writes as an integer
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def reference_frames(stream: bytes, max_line: int) -> list[bytes] | None:
    """Framing by definition: the stream's complete lines, CR dropped, blanks skipped; None
    when some line (the unfinished last one included) is longer than `max_line`."""
    *complete, unfinished = stream.split(b"\n")
    if any(len(seg) > max_line for seg in [*complete, unfinished]):
        return None
    lines = [seg.rstrip(b"\r") for seg in complete]
    return [line for line in lines if line.strip()]


@FUZZ
@given(
    stream=_stream_bytes, cuts=st.lists(st.integers(0, 600), max_size=12), limit=st.integers(2, 40)
)
def test_chunked_framing_equals_whole_stream_framing(
    stream: bytes, cuts: list[int], limit: int
) -> None:
    expected = reference_frames(stream, limit)
    whole = LineBuffer(max_line=limit)
    if expected is None:
        with pytest.raises(StratumError, match=f"longer than {limit} bytes"):
            whole.feed(stream)
    else:
        assert whole.feed(stream) == expected
    buf, got, start, refused = LineBuffer(max_line=limit), [], 0, False
    try:
        for cut in [*sorted({min(c, len(stream)) for c in cuts}), len(stream)]:
            got += buf.feed(stream[start:cut])
            start = cut
    except StratumError:
        refused = True
    if refused:
        assert expected is None, "chunked framing refused a stream framed whole"
        assert got == reference_frames_prefix(stream, limit)[: len(got)]
        assert buf.pending == 0  # the unusable stream was dropped, not kept
        return
    assert expected is not None, "chunked framing let an over-long line through"
    assert got == expected
    assert buf.pending == len(stream.rsplit(b"\n", 1)[-1])  # the unfinished line is kept


def reference_frames_prefix(stream: bytes, max_line: int) -> list[bytes]:
    """The lines before the first over-long one (what a chunked reader may have passed on)."""
    out = []
    for seg in stream.split(b"\n")[:-1]:
        if len(seg) > max_line:
            break
        line = seg.rstrip(b"\r")
        if line.strip():
            out.append(line)
    return out


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), _stream_bytes))
def test_decode_of_any_bytes_is_a_message_or_a_stratum_error(data: bytes) -> None:
    try:
        message = decode(data)
    except StratumError:
        return
    assert isinstance(message, Request | Notification | Response)


@FUZZ
@given(value=_json)
def test_decode_of_any_json_value_is_a_message_or_a_stratum_error(value: Any) -> None:
    line = orjson.dumps(value)
    try:
        message = decode(line)
    except StratumError:
        return
    assert isinstance(message, Request | Notification | Response)
    assert isinstance(value, dict)


@FUZZ
@given(
    obj=st.fixed_dictionaries(
        {},
        optional={"id": _json, "method": _json, "params": _json, "result": _json, "error": _json},
    )
)
def test_decode_of_any_message_shaped_object_is_a_message_or_a_stratum_error(
    obj: dict[str, Any],
) -> None:
    try:
        message = decode(orjson.dumps(obj))
    except StratumError:
        return
    assert isinstance(message, Request | Notification | Response)


_params = st.lists(_json, max_size=6).map(tuple)
_method = st.text(min_size=1, max_size=24)
_ids = st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=10))
_errors = st.one_of(
    st.none(),
    st.builds(RpcError, st.integers(-(2**31), 2**31), st.text(max_size=30), _json),
)
_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Request, _ids, _method, _params),
    st.builds(Notification, _method, _params),
    st.builds(Response, st.one_of(st.none(), _ids), _json, _errors),
)


@FUZZ
@given(message=_messages)
def test_encode_then_decode_gives_the_message_back(message: Message) -> None:
    line = encode(message)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1  # one message, one line, whatever the strings hold
    assert decode(line[:-1]) == message
    assert LineBuffer(max_line=len(line)).feed(line) == [line[:-1]]


# Params parsers get what `decode` gives them (a tuple of JSON values: it refuses params
# that are not a list); result parsers get any JSON value (a result can be anything).
PARAMS_PARSERS: list[Callable[[Any], Any]] = [
    m.parse_subscribe,
    m.parse_authorize,
    m.parse_configure,
    m.parse_suggest_difficulty,
    m.parse_submit,
    m.parse_notify,
    m.parse_set_difficulty,
    m.parse_set_extranonce,
    m.parse_set_version_mask,
    m.parse_reconnect,
]
RESULT_PARSERS: list[Callable[[Any], Any]] = [m.parse_subscribe_result, m.parse_configure_result]
FUZZ_EACH = settings(FUZZ, max_examples=30)


@pytest.mark.parametrize("parse", PARAMS_PARSERS, ids=lambda f: f.__name__)
@FUZZ_EACH
@given(params=_params)
def test_every_params_parser_returns_or_raises_stratum_error(
    parse: Callable[[Any], Any], params: tuple[Any, ...]
) -> None:
    with contextlib.suppress(StratumError):  # anything else fails the test
        parse(params)


@pytest.mark.parametrize("parse", RESULT_PARSERS, ids=lambda f: f.__name__)
@FUZZ_EACH
@given(result=_json)
def test_every_result_parser_returns_or_raises_stratum_error(
    parse: Callable[[Any], Any], result: Any
) -> None:
    with contextlib.suppress(StratumError):  # anything else fails the test
        parse(result)


_hex8 = st.integers(0, 2**32 - 1).map(lambda n: f"{n:08x}")
_submit_params = st.tuples(
    st.one_of(st.text(max_size=12), _json),
    st.one_of(st.text(alphabet="0123456789abcdef", max_size=4), _json),
    st.one_of(st.binary(max_size=10).map(bytes.hex), _json),
    st.one_of(_hex8, st.text(max_size=9), _json),
    st.one_of(_hex8, st.text(max_size=9), _json),
).flatmap(
    lambda five: st.one_of(
        st.just(five), st.tuples(st.one_of(_hex8, _json)).map(lambda six: five + six)
    )
)


@FUZZ
@given(params=_submit_params)
def test_parse_submit_of_near_valid_params_returns_a_submit_or_raises_stratum_error(
    params: tuple[Any, ...],
) -> None:
    try:
        share = m.parse_submit(params)
    except StratumError:
        return
    assert isinstance(share, m.Submit)
    assert 0 <= share.ntime < 2**32
    assert 0 <= share.nonce < 2**32
    assert share.version_bits is None or 0 <= share.version_bits < 2**32
