"""Typed builders and parsers for each Stratum V1 method, for the pool and the client.

Builders return codec messages (`Request`, `Notification`, `Response`); parsers take a
message's `params` (or a response's `result`) and return a frozen dataclass or raise
`StratumError` naming the bad field. Hex conventions are those of `work`.

Methods covered: mining.subscribe, mining.authorize, mining.configure (BIP 310
version-rolling), mining.suggest_difficulty, mining.extranonce.subscribe, mining.submit
(with the optional 6th version-bits param), mining.notify, mining.set_difficulty,
mining.set_extranonce, mining.set_version_mask, client.reconnect, client.show_message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from hashfarm.errors import StratumError
from hashfarm.stratum.codec import (
    ErrorCode,
    Notification,
    Request,
    Response,
    RpcError,
    new_response,
    slot_setters,
)
from hashfarm.stratum.work import Job, hex_bytes, parse_u32_hex, u32_hex

SUBSCRIBE = "mining.subscribe"
AUTHORIZE = "mining.authorize"
CONFIGURE = "mining.configure"
SUGGEST_DIFFICULTY = "mining.suggest_difficulty"
EXTRANONCE_SUBSCRIBE = "mining.extranonce.subscribe"
SUBMIT = "mining.submit"
NOTIFY = "mining.notify"
SET_DIFFICULTY = "mining.set_difficulty"
SET_EXTRANONCE = "mining.set_extranonce"
SET_VERSION_MASK = "mining.set_version_mask"
RECONNECT = "client.reconnect"
SHOW_MESSAGE = "client.show_message"

VERSION_ROLLING = "version-rolling"


@dataclass(frozen=True, slots=True)
class Subscribe:
    """mining.subscribe params: the miner's user agent and the session it wants resumed."""

    user_agent: str | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """mining.subscribe result: subscriptions, extranonce1 and the extranonce2 size."""

    extranonce1: bytes
    extranonce2_size: int
    subscription_id: str | None = None


@dataclass(frozen=True, slots=True)
class Authorize:
    """mining.authorize params: `user[.worker]` and a password (often ignored)."""

    username: str
    password: str = ""


@dataclass(frozen=True, slots=True)
class Configure:
    """mining.configure params (BIP 310): the extensions and their parameters."""

    extensions: tuple[str, ...]
    parameters: dict[str, Any]

    @property
    def version_rolling_mask(self) -> int | None:
        """The mask the miner asks to roll, or None when it did not ask for version-rolling."""
        if VERSION_ROLLING not in self.extensions:
            return None
        raw = self.parameters.get("version-rolling.mask", "ffffffff")
        return parse_u32_hex(raw, "version-rolling.mask")

    @property
    def version_rolling_min_bits(self) -> int:
        """The fewest bits the miner accepts (BIP 310 default 0)."""
        value = self.parameters.get("version-rolling.min-bit-count", 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise StratumError(f"version-rolling.min-bit-count must be >= 0, got {value!r}")
        return value


@dataclass(frozen=True, slots=True)
class Submit:
    """mining.submit params: a share. `version_bits` is the rolled part (BIP 310), or None."""

    worker: str
    job_id: str
    extranonce2: bytes
    ntime: int
    nonce: int
    version_bits: int | None = None


@dataclass(frozen=True, slots=True)
class Reconnect:
    """client.reconnect params: where to go (None = same place) and seconds to wait first."""

    host: str | None = None
    port: int | None = None
    wait: float = 0.0


_new = object.__new__
_SET_SUBMIT = slot_setters(Submit, *(f.name for f in fields(Submit)))


# --- client -> pool -------------------------------------------------------------------------


def subscribe(msg_id: int, user_agent: str, session_id: str | None = None) -> Request:
    """mining.subscribe, asking to resume `session_id` when given."""
    params = [user_agent] if session_id is None else [user_agent, session_id]
    return Request(msg_id, SUBSCRIBE, tuple(params))


def parse_subscribe(params: Sequence[Any]) -> Subscribe:
    """Parse mining.subscribe params (all optional)."""
    agent = params[0] if params else None
    session = params[1] if len(params) > 1 else None
    if agent is not None and not isinstance(agent, str):
        raise StratumError(f"subscribe user agent must be a string, got {agent!r}")
    if session is not None and not isinstance(session, str):
        raise StratumError(f"subscribe session id must be a string, got {session!r}")
    return Subscribe(agent, session or None)


def authorize(msg_id: int, username: str, password: str) -> Request:
    """mining.authorize."""
    return Request(msg_id, AUTHORIZE, (username, password))


def parse_authorize(params: Sequence[Any]) -> Authorize:
    """Parse mining.authorize params: [username, password?]."""
    if not params or not isinstance(params[0], str) or not params[0]:
        raise StratumError("mining.authorize needs a user name")
    password = params[1] if len(params) > 1 and params[1] is not None else ""
    if not isinstance(password, str):
        raise StratumError("mining.authorize password must be a string")
    return Authorize(params[0], password)


def configure(msg_id: int, mask: int, min_bit_count: int = 2) -> Request:
    """mining.configure asking for version-rolling on `mask`."""
    parameters = {
        "version-rolling.mask": u32_hex(mask),
        "version-rolling.min-bit-count": min_bit_count,
    }
    return Request(msg_id, CONFIGURE, ([VERSION_ROLLING], parameters))


def parse_configure(params: Sequence[Any]) -> Configure:
    """Parse mining.configure params: [[extension, ...], {parameter: value}]."""
    if len(params) < 2 or not isinstance(params[0], list) or not isinstance(params[1], dict):
        raise StratumError("mining.configure needs [extensions list, parameters object]")
    if not all(isinstance(e, str) for e in params[0]):
        raise StratumError("mining.configure extensions must be strings")
    return Configure(tuple(params[0]), dict(params[1]))


def configure_result(mask: int | None) -> dict[str, Any]:
    """The pool's mining.configure result: the negotiated mask, or version-rolling refused."""
    if mask is None:
        return {VERSION_ROLLING: False}
    return {VERSION_ROLLING: True, "version-rolling.mask": u32_hex(mask)}


def parse_configure_result(result: Any) -> int | None:
    """The negotiated version-rolling mask from a mining.configure result (None: refused)."""
    if not isinstance(result, dict) or result.get(VERSION_ROLLING) is not True:
        return None
    return parse_u32_hex(result.get("version-rolling.mask"), "version-rolling.mask")


def suggest_difficulty(msg_id: int, difficulty: float) -> Request:
    """mining.suggest_difficulty."""
    return Request(msg_id, SUGGEST_DIFFICULTY, (difficulty,))


def parse_suggest_difficulty(params: Sequence[Any]) -> float:
    """Parse mining.suggest_difficulty params: [difficulty > 0]."""
    return _positive_number(params[0] if params else None, "suggested difficulty")


def extranonce_subscribe(msg_id: int) -> Request:
    """mining.extranonce.subscribe (NiceHash): ask for set_extranonce notifications."""
    return Request(msg_id, EXTRANONCE_SUBSCRIBE, ())


def submit(msg_id: int, share: Submit) -> Request:
    """mining.submit; the 6th param is sent only for version-rolled shares."""
    params: list[Any] = [share.worker, share.job_id, share.extranonce2.hex()]
    params += [u32_hex(share.ntime), u32_hex(share.nonce)]
    if share.version_bits is not None:
        params.append(u32_hex(share.version_bits))
    return Request(msg_id, SUBMIT, tuple(params))


def parse_submit(params: Sequence[Any]) -> Submit:
    """Parse mining.submit params: [worker, job_id, extranonce2, ntime, nonce, version_bits?]."""
    if not 5 <= len(params) <= 6:
        raise StratumError(f"mining.submit needs 5 or 6 params, got {len(params)}")
    worker, job_id, extranonce2, ntime, nonce = (
        params[0],
        params[1],
        params[2],
        params[3],
        params[4],
    )
    bits = params[5] if len(params) == 6 else None
    # Every share goes through here: try the well-formed case with exact type checks and
    # no helper calls; any doubt falls back to the checks below, which name the bad field.
    if (
        type(worker) is str
        and type(job_id) is str
        and type(extranonce2) is str
        and type(ntime) is str
        and type(nonce) is str
        and len(ntime) == 8
        and len(nonce) == 8
        and (bits is None or (type(bits) is str and len(bits) == 8))
    ):
        try:
            extranonce2_bytes = bytes.fromhex(extranonce2)
            ntime_int, nonce_int = int(ntime, 16), int(nonce, 16)
            bits_int = None if bits is None else int(bits, 16)
        except ValueError:
            return _parse_submit_checked(params)  # not hex somewhere: say where
        # Submit(...) without the frozen __init__'s setattr-by-name per field (see codec).
        share = _new(Submit)
        set_worker, set_job, set_en2, set_ntime, set_nonce, set_bits = _SET_SUBMIT
        set_worker(share, worker)
        set_job(share, job_id)
        set_en2(share, extranonce2_bytes)
        set_ntime(share, ntime_int)
        set_nonce(share, nonce_int)
        set_bits(share, bits_int)
        return share
    return _parse_submit_checked(params)


def _parse_submit_checked(params: Sequence[Any]) -> Submit:
    """parse_submit, one field at a time, raising on the first bad one."""
    worker, job_id, extranonce2 = params[0], params[1], params[2]
    if not isinstance(worker, str):
        raise StratumError("mining.submit worker must be a string")
    if not isinstance(job_id, str | int) or isinstance(job_id, bool):
        raise StratumError("mining.submit job id must be a string")
    bits = parse_u32_hex(params[5], "version_bits") if len(params) == 6 else None
    return Submit(
        worker,
        str(job_id),
        hex_bytes(extranonce2, "extranonce2"),
        parse_u32_hex(params[3], "ntime"),
        parse_u32_hex(params[4], "nonce"),
        bits,
    )


# --- pool -> client -------------------------------------------------------------------------


def subscribe_result(extranonce1: bytes, extranonce2_size: int, subscription_id: str) -> list[Any]:
    """The pool's mining.subscribe result."""
    subscriptions = [[SET_DIFFICULTY, subscription_id], [NOTIFY, subscription_id]]
    return [subscriptions, extranonce1.hex(), extranonce2_size]


def parse_subscribe_result(result: Any) -> SubscribeResult:
    """Parse the pool's mining.subscribe result: [subscriptions, extranonce1, en2 size]."""
    if not isinstance(result, list) or len(result) < 3:
        raise StratumError(f"subscribe result must be [subscriptions, en1, en2_size]: {result!r}")
    extranonce1 = hex_bytes(result[1], "extranonce1")
    size = _extranonce2_size(result[2])
    return SubscribeResult(extranonce1, size, _subscription_id(result[0]))


def notify(job: Job) -> Notification:
    """mining.notify for a job."""
    return Notification(NOTIFY, tuple(job.to_params()))


def parse_notify(params: Sequence[Any]) -> Job:
    """Parse mining.notify params into a Job."""
    return Job.from_params(params)


def set_difficulty(difficulty: float) -> Notification:
    """mining.set_difficulty (applies to jobs sent after it)."""
    return Notification(SET_DIFFICULTY, (difficulty,))


def parse_set_difficulty(params: Sequence[Any]) -> float:
    """Parse mining.set_difficulty params: [difficulty > 0]."""
    return _positive_number(params[0] if params else None, "difficulty")


def set_extranonce(extranonce1: bytes, extranonce2_size: int) -> Notification:
    """mining.set_extranonce (applies from the next job)."""
    return Notification(SET_EXTRANONCE, (extranonce1.hex(), extranonce2_size))


def parse_set_extranonce(params: Sequence[Any]) -> tuple[bytes, int]:
    """Parse mining.set_extranonce params: [extranonce1 hex, extranonce2 size]."""
    if len(params) < 2:
        raise StratumError("mining.set_extranonce needs [extranonce1, extranonce2_size]")
    return hex_bytes(params[0], "extranonce1"), _extranonce2_size(params[1])


def set_version_mask(mask: int) -> Notification:
    """mining.set_version_mask (BIP 310): the pool changes the negotiated mask."""
    return Notification(SET_VERSION_MASK, (u32_hex(mask),))


def parse_set_version_mask(params: Sequence[Any]) -> int:
    """Parse mining.set_version_mask params: [mask hex]."""
    return parse_u32_hex(params[0] if params else None, "version mask")


def reconnect(host: str | None = None, port: int | None = None, wait: int = 0) -> Notification:
    """client.reconnect: to host:port, or to the same place when both are None."""
    params: tuple[Any, ...] = () if host is None and port is None else (host, port, wait)
    return Notification(RECONNECT, params)


def parse_reconnect(params: Sequence[Any]) -> Reconnect:
    """Parse client.reconnect params: [host?, port?, wait_seconds?]; port may be a string."""
    host = params[0] if params and params[0] else None
    port_raw = params[1] if len(params) > 1 and params[1] not in (None, "") else None
    if host is not None and not isinstance(host, str):
        raise StratumError(f"client.reconnect host must be a string, got {host!r}")
    try:
        port = None if port_raw is None else int(port_raw)
    except (TypeError, ValueError):
        raise StratumError(f"client.reconnect port is not a number: {port_raw!r}") from None
    if port is not None and not 0 < port < 65536:
        raise StratumError(f"client.reconnect port out of range: {port}")
    wait = _positive_number(params[2], "wait", allow_zero=True) if len(params) > 2 else 0.0
    return Reconnect(host, port, wait)


def show_message(text: str) -> Notification:
    """client.show_message: a human-readable note for the operator."""
    return Notification(SHOW_MESSAGE, (text,))


def result(msg_id: Any, value: Any) -> Response:
    """A successful response."""
    return new_response(msg_id, value, None)


def error(msg_id: Any, code: ErrorCode, message: str | None = None) -> Response:
    """An error response with a standard code: result null, error [code, message, null]."""
    rpc_error = _ERRORS.get((code, message))
    if rpc_error is None:
        if len(_ERRORS) >= _ERRORS_MAX:  # messages may carry details: keep the cache small
            _ERRORS.clear()
        rpc_error = _ERRORS[code, message] = RpcError.of(code, message)
    return new_response(msg_id, None, rpc_error)


# RpcError is frozen, so one instance per (code, message) serves every rejection.
_ERRORS: dict[tuple[ErrorCode, str | None], RpcError] = {}
_ERRORS_MAX = 1024


# --- field checks ---------------------------------------------------------------------------


def _positive_number(value: Any, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StratumError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise StratumError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return number


def _extranonce2_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 32:
        raise StratumError(f"extranonce2_size must be an integer 1..32, got {value!r}")
    return value


def _subscription_id(subscriptions: Any) -> str | None:
    """The id the pool gave the notify subscription (used to resume the session)."""
    if isinstance(subscriptions, list):
        for entry in subscriptions:
            if isinstance(entry, list) and len(entry) >= 2 and entry[0] == NOTIFY:
                return str(entry[1])
        if len(subscriptions) >= 2 and isinstance(subscriptions[0], str):
            return str(subscriptions[1])  # some pools send a single [method, id] pair
    return None
