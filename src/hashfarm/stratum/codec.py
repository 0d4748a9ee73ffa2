"""Stratum V1 wire codec, sans-I/O: bytes in, messages out; messages in, bytes out.

Stratum V1 is newline-delimited JSON-RPC 1.0 as the pools of 2012 shaped it:

- a request carries an `id` (int or str), a `method` and a `params` *list*;
- a notification is a request whose `id` is null (`mining.notify`, `mining.set_difficulty`);
- a response carries the request's `id`, a `result` and an `error`, where the error is the
  triple `[code, "message", traceback-or-null]` (codes 20-25 below, from the original spec).

Nothing here touches a socket or a clock: a session feeds received bytes into a
`LineBuffer`, passes each complete line to `decode`, and writes whatever `encode` returns.
Every malformed input raises `StratumError` with a message that says what was wrong, so one
bad line can be answered or logged without killing the session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeAlias

import orjson

from hashfarm.errors import StratumError

MessageId: TypeAlias = int | str | None
"""JSON-RPC id as Stratum uses it: int from most miners, str from some, null on notifications."""

DEFAULT_MAX_LINE = 16 * 1024
"""Bytes per line we accept by default: a notify with a 13-deep branch and a 1 KiB coinbase is
under 4 KiB, so 16 KiB leaves room while capping what one peer can make us buffer."""

_EXCERPT = 80  # characters of an offending line quoted in error messages


class ErrorCode(IntEnum):
    """The Stratum V1 error codes that miners and pools agree on."""

    OTHER = 20
    JOB_NOT_FOUND = 21
    DUPLICATE_SHARE = 22
    LOW_DIFFICULTY = 23
    UNAUTHORIZED = 24
    NOT_SUBSCRIBED = 25


DEFAULT_ERROR_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.OTHER: "Other/Unknown",
    ErrorCode.JOB_NOT_FOUND: "Job not found",
    ErrorCode.DUPLICATE_SHARE: "Duplicate share",
    ErrorCode.LOW_DIFFICULTY: "Low difficulty share",
    ErrorCode.UNAUTHORIZED: "Unauthorized worker",
    ErrorCode.NOT_SUBSCRIBED: "Not subscribed",
}


@dataclass(frozen=True, slots=True)
class RpcError:
    """The error object of a response: `[code, "message", data]` on the wire."""

    code: int
    message: str
    data: Any = None

    @classmethod
    def of(cls, code: ErrorCode, message: str | None = None) -> RpcError:
        """An error with one of the standard codes and its standard (or a specific) message."""
        return cls(int(code), message or DEFAULT_ERROR_MESSAGES[code])

    def to_wire(self) -> list[Any]:
        """The triple Stratum V1 miners expect."""
        return [self.code, self.message, self.data]

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


@dataclass(frozen=True, slots=True)
class Request:
    """A call that expects a response with the same `id`."""

    id: int | str
    method: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Notification:
    """A call without a response (`id` null on the wire)."""

    method: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to a request: a result, or an error."""

    id: MessageId
    result: Any = None
    error: RpcError | None = field(default=None)

    @property
    def ok(self) -> bool:
        """True when the peer reported no error."""
        return self.error is None


Message: TypeAlias = Request | Notification | Response

# Hot-path constructors: a frozen dataclass's __init__ sets each field through
# object.__setattr__ by name (about 130 ns a field here); these set the slots through their
# descriptors instead, for half the cost. Same class, same fields, no __post_init__ skipped.
_new = object.__new__


def slot_setters(cls: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The `__set__` of each named slot of a `slots=True` dataclass, for hot-path builders."""
    return tuple(vars(cls)[name].__set__ for name in names)


_set_request = slot_setters(Request, "id", "method", "params")
_set_response = slot_setters(Response, "id", "result", "error")


def new_request(msg_id: int | str, method: str, params: tuple[Any, ...]) -> Request:
    """`Request(msg_id, method, params)`, built faster (for the share path)."""
    obj = _new(Request)
    set_id, set_method, set_params = _set_request
    set_id(obj, msg_id)
    set_method(obj, method)
    set_params(obj, params)
    return obj


def new_response(msg_id: MessageId, result: Any, error: RpcError | None) -> Response:
    """`Response(msg_id, result, error)`, built faster (for acks and rejections)."""
    obj = _new(Response)
    set_id, set_result, set_error = _set_response
    set_id(obj, msg_id)
    set_result(obj, result)
    set_error(obj, error)
    return obj


class LineBuffer:
    """Frames a byte stream into lines, refusing any line longer than `max_line` bytes.

    `feed` returns the complete lines received so far (without the newline; a trailing CR
    is dropped and blank lines are skipped). A line over the limit raises `StratumError` as
    soon as the limit is crossed, so a peer that never sends a newline cannot grow our memory.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 2:
            raise ValueError("max_line must be at least 2 bytes")
        self.max_line = max_line
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a complete line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every line they complete."""
        if not self._buf and data.endswith(b"\n"):
            # The usual read (a miner writes whole lines): nothing held from before, nothing
            # left after. The same lines as the general path below, without copying every
            # byte through the bytearray (this runs for every share).
            parts = data.split(b"\n")
            parts.pop()  # the empty tail after the last newline
            if max(map(len, parts)) <= self.max_line:  # else: the general path raises
                return [line for part in parts if (line := part.rstrip(b"\r")).strip()]
        self._buf += data
        lines: list[bytes] = []
        start = 0
        while (end := self._buf.find(b"\n", start)) >= 0:
            self._check_length(end - start)
            line = bytes(self._buf[start:end]).rstrip(b"\r")
            if line.strip():
                lines.append(line)
            start = end + 1
        del self._buf[:start]
        self._check_length(len(self._buf))
        return lines

    def _check_length(self, length: int) -> None:
        if length > self.max_line:
            self._buf.clear()  # the stream is unusable now; drop it rather than keep it
            raise StratumError(f"line longer than {self.max_line} bytes")


def decode(line: bytes | str) -> Message:
    """Parse one line into a Request, Notification or Response."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise StratumError(f"not JSON ({exc.msg}): {_excerpt(line)}") from exc
    if type(obj) is not dict:
        raise StratumError(f"not a JSON object: {_excerpt(line)}")
    # The common case first, with exact type checks: a request with a method, a list of
    # params and an int id (`mining.submit`). Anything else takes the general path below,
    # which gives the same messages and errors.
    method, params, msg_id = obj.get("method"), obj.get("params"), obj.get("id")
    if type(method) is str and method and type(params) is list and type(msg_id) is int:
        return new_request(msg_id, method, tuple(params))
    if "method" in obj:
        return _decode_call(obj, line)
    if "result" in obj or "error" in obj:
        return Response(_decode_id(msg_id, line), obj.get("result"), _decode_error(obj))
    raise StratumError(f"neither a call nor a response: {_excerpt(line)}")


def encode(message: Message) -> bytes:
    """Serialize a message to one newline-terminated line."""
    if type(message) is Response and (
        message.result is True or message.result is None or message.result is False
    ):
        # Acks and plain errors are most of what a pool writes: only the id is encoded,
        # the rest are constant bytes (the same bytes orjson would write for the dict).
        constant = _constant_reply(message)
        if constant is not None:
            try:
                return b'{"id":' + orjson.dumps(message.id) + constant
            except TypeError as exc:
                raise StratumError(f"cannot encode {message!r}: {exc}") from exc
    obj: dict[str, Any]
    if isinstance(message, Request):
        obj = {"id": message.id, "method": message.method, "params": message.params}
    elif isinstance(message, Notification):
        obj = {"id": None, "method": message.method, "params": message.params}
    else:
        error = message.error.to_wire() if message.error is not None else None
        obj = {"id": message.id, "result": message.result, "error": error}
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError as exc:  # a value orjson cannot represent: our bug, say which message
        raise StratumError(f"cannot encode {message!r}: {exc}") from exc


def encode_ack(msg_id: MessageId) -> bytes:
    """`encode(Response(msg_id, True, None))`: the same bytes without building the Response
    (the answer to every accepted share)."""
    try:
        return b'{"id":' + orjson.dumps(msg_id) + _OK_TAILS[True]
    except TypeError:
        return encode(new_response(msg_id, True, None))  # raises encode's own error


_OK_TAILS = {
    True: b',"result":true,"error":null}\n',
    False: b',"result":false,"error":null}\n',
    None: b',"result":null,"error":null}\n',
}
_ERROR_TAILS: dict[tuple[int, str], bytes] = {}  # (code, message) -> reply tail, bounded
_ERROR_TAILS_MAX = 1024


def _constant_reply(message: Response) -> bytes | None:
    """The bytes after the id for a bool/null result, or a null result with a data-less
    error; None for anything else (encoded in full)."""
    error = message.error
    if error is None:
        return _OK_TAILS[message.result]
    if message.result is not None or error.data is not None or type(error.code) is not int:
        return None
    key = (error.code, error.message)
    tail = _ERROR_TAILS.get(key)
    if tail is None:
        if type(error.message) is not str:
            return None
        if len(_ERROR_TAILS) >= _ERROR_TAILS_MAX:  # messages may carry details: stay small
            _ERROR_TAILS.clear()
        triple = orjson.dumps([error.code, error.message, None])
        tail = _ERROR_TAILS[key] = b',"result":null,"error":' + triple + b"}\n"
    return tail


def _decode_call(obj: dict[str, Any], line: bytes | str) -> Request | Notification:
    method = obj["method"]
    if not isinstance(method, str) or not method:
        raise StratumError(f"method must be a non-empty string: {_excerpt(line)}")
    params = obj.get("params")
    if params is None:
        params = []
    if not isinstance(params, list):
        raise StratumError(f"{method}: params must be a list: {_excerpt(line)}")
    msg_id = _decode_id(obj.get("id"), line)
    if msg_id is None:
        return Notification(method, tuple(params))
    return Request(msg_id, method, tuple(params))


def _decode_id(value: Any, line: bytes | str) -> MessageId:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise StratumError(f"id must be an integer, a string or null: {_excerpt(line)}")


def _decode_error(obj: dict[str, Any]) -> RpcError | None:
    """Accept the V1 triple, and the JSON-RPC 2.0 object some pools send instead."""
    raw = obj.get("error")
    if raw is None or raw is False:
        return None
    if isinstance(raw, list) and len(raw) >= 2:
        code, message, data = raw[0], raw[1], raw[2] if len(raw) > 2 else None
    elif isinstance(raw, dict):
        code, message, data = raw.get("code"), raw.get("message"), raw.get("data")
    elif isinstance(raw, str):
        code, message, data = int(ErrorCode.OTHER), raw, None
    else:
        raise StratumError(f"error must be [code, message, data]: {raw!r}")
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(message, str):
        raise StratumError(f"error code must be an integer and message a string: {raw!r}")
    return RpcError(code, message, data)


def _excerpt(line: bytes | str) -> str:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    return repr(text[:_EXCERPT] + ("..." if len(text) > _EXCERPT else ""))
