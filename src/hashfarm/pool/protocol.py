"""One Stratum connection's bytes <-> its session, within the per-connection budget.

Split from the server (which holds the listener, the sessions by IP and the fan-out) because
the budget lives here: the line limit before and after authorize, the bytes of answers held
for a connection, and the lines handled per loop turn and per second.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from hashfarm.errors import StratumError
from hashfarm.pool.session import Session
from hashfarm.stratum import messages as m
from hashfarm.stratum import proxyproto
from hashfarm.stratum.codec import ErrorCode, LineBuffer, Request, decode, encode

if TYPE_CHECKING:
    from hashfarm.pool.server import StratumServer

log = logging.getLogger("hashfarm.pool.server")  # one logger name for the listener's lines

# Bytes taken from a socket per read. Small, so that what a paced connection holds while its
# socket rests is at most one read (the kernel's buffer and TCP hold the rest); the buffer is
# shared by every connection: the transport fills it and calls `buffer_updated` at once.
READ_SIZE = 16 * 1024
_READ_VIEW = memoryview(bytearray(READ_SIZE))


class StratumProtocol(asyncio.BufferedProtocol):
    """Bytes <-> session for one connection, within the connection's budget.

    The budget holds before authorize: a short `max_line_unauthorized`, at most
    `max_output` bytes of answers held for the connection (queued here plus the transport's
    buffer), at most `lines_per_turn` lines handled per turn of the event loop and
    `lines_per_second` overall (the socket is not read meanwhile, so TCP slows the sender
    and what waits is one read's worth of lines: at most READ_SIZE bytes).
    """

    __slots__ = (  # 10,000 of these per process: no per-instance __dict__
        "_backlog",
        "_header",
        "_header_timer",
        "_next",
        "_out",
        "_paused",
        "_queued",
        "_room",
        "_seen",
        "_stamp",
        "_tokens",
        "authorized",
        "buffer",
        "dropped",
        "ip",
        "server",
        "session",
        "transport",
        "watched",
    )

    def __init__(self, server: StratumServer) -> None:
        self.server = server
        st = server.settings
        self.buffer = LineBuffer(st.max_line_unauthorized)
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.ip = ""
        self.watched = False  # counted towards bans (not exempt, bans enabled)
        self.authorized = False  # seen authorized: full max_line, no longer "unauthorized"
        self._out: list[bytes] | None = None  # lines held until the next flush
        self._queued = 0  # bytes in _out
        self._room = st.max_output  # bytes _out may hold (the cap less the transport's buffer)
        self.dropped = False  # over budget: closed, nothing more is handled or written
        self._backlog: list[bytes] = []  # lines received but not handled yet
        self._next = 0  # index of the first unhandled line in _backlog
        self._paused = False
        self._tokens = st.lines_per_second  # lines allowed now (a second's burst)
        self._stamp = 0.0  # loop time of the last refill
        self._seen = (0, 0, 0, 0)  # session's (junk, auth failures, accepted, rejected) reported
        self._header: bytes | None = None  # a trusted balancer's PROXY header so far (or None)
        self._header_timer: asyncio.TimerHandle | None = None  # its deadline

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self.server.settings.max_output)
        loop = asyncio.get_running_loop()
        self._stamp = loop.time()
        if self.server.from_balancer(self, transport):
            if not self.dropped:  # no session before the header names the miner
                self._header = b""
                deadline = self.server.settings.proxy_protocol_timeout
                self._header_timer = loop.call_later(deadline, self._header_late)
            return
        self.session = self.server.open(self, transport)

    def _take_header(self, data: bytes) -> bytes | None:
        """A trusted balancer's connection: read its PROXY header, then open the session
        with the miner's address from it. The bytes after the header, or None (more needed,
        or the connection closed: not a valid header)."""
        assert self._header is not None
        assert self.transport is not None
        buf = self._header + data
        try:
            found = proxyproto.parse(buf[: proxyproto.MAX_HEADER])
        except proxyproto.ProxyHeaderError as exc:
            self._no_header(str(exc))
            return None
        if found is None:
            self._header = buf  # parse bounds it: v1 <= 107 bytes, v2 <= MAX_HEADER
            return None
        header, size = found
        self._header_done()
        self.session = self.server.open(self, self.transport, header.source)
        return None if self.dropped else buf[size:]

    def _header_done(self) -> None:
        self._header = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self.server.headers_due.discard(self)

    def _header_late(self) -> None:
        self._header_timer = None
        if self._header is not None:
            self._no_header(
                f"no PROXY header within {self.server.settings.proxy_protocol_timeout:g} s"
            )

    def _no_header(self, why: str) -> None:
        """A trusted balancer's connection without a valid PROXY header: closed, no answer."""
        t = self.transport
        peer = t.get_extra_info("peername") if t is not None else None
        log.warning("[%s] from a trusted load balancer: %s: closing", _peer(peer), why)
        self.server.refused["proxy-header"] += 1
        self._header_done()
        self.dropped = True
        if t is not None:
            t.abort()

    def write(self, data: bytes) -> None:
        """Queue a line; the lines written in one turn of the event loop leave in one send().

        While a read is handled they are flushed at its end; elsewhere (answers to accepted
        shares, which wake together when their group commit ends) at the loop's next turn.
        Queued and buffered bytes together never pass `max_output`: the connection is closed
        first. A miner that stops reading is dropped too: see `pause_writing`.
        """
        if self.dropped:
            return
        out = self._out
        if out is None:
            self._out = [data]
            self._queued = len(data)
            self._room = self._room_left()
            # One callback per turn flushes every connection written to outside a read (a
            # commit answers a share on hundreds of them at once), not one callback each.
            unflushed = self.server.unflushed
            if not unflushed:
                asyncio.get_running_loop().call_soon(flush_all, unflushed)
            unflushed.append(self)
        else:
            out.append(data)
            self._queued += len(data)
        if self._queued > self._room:
            self.drop(f"more than {self.server.settings.max_output} bytes of answers held")

    def _room_left(self) -> int:
        t = self.transport
        buffered = t.get_write_buffer_size() if t is not None else 0
        return self.server.settings.max_output - buffered

    def flush(self) -> None:
        """Write the queued lines now."""
        out, self._out = self._out, None
        self._queued = 0
        t = self.transport
        if out and t is not None and not t.is_closing():
            t.write(out[0] if len(out) == 1 else b"".join(out))

    def pause_writing(self) -> None:
        """More than `max_output` buffered: the miner stopped reading; drop it rather than
        buffer for ever. The transport calls this from `write`, so the fan-out's bare
        `transport.write` loop needs no per-write buffer check."""
        if self.transport is not None:
            log.warning("%s not reading its socket: closing", self._prefix())
            self.dropped = True
            self.transport.abort()

    def drop(self, why: str) -> None:
        """Over budget: forget what is queued and close at once."""
        log.warning("%s %s: closing", self._prefix(), why)
        self.dropped = True
        self._out, self._queued, self._backlog = None, 0, []
        if self.transport is not None:
            self.transport.abort()

    def _prefix(self) -> str:
        return self.session.prefix if self.session else "[?]"

    @property
    def waiting(self) -> int:
        """Lines received but left for a later turn (the per-turn and per-second budget)."""
        return len(self._backlog) - self._next

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the transport reads into: the shared READ_SIZE buffer."""
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        """`nbytes` were read into the shared buffer: take them before anyone else reads."""
        self.data_received(bytes(_READ_VIEW[:nbytes]))

    def data_received(self, data: bytes) -> None:
        """Frame received bytes into lines and serve what the budget allows now."""
        if self._header is not None:  # a trusted balancer's connection: its header first
            rest = self._take_header(data)
            if not rest:
                return
            data = rest
        if self.session is None or self.dropped:
            return
        try:
            lines = self.buffer.feed(data)
        except StratumError as exc:
            log.warning("%s %s: closing", self._prefix(), exc)
            self.session.junk += 1
            self._report()
            self.write(encode(m.error(None, ErrorCode.OTHER, str(exc))))
            self.close()
            return
        if self._next < len(self._backlog):
            self._backlog.extend(lines)  # arrived before the pause took effect
        else:
            self._backlog, self._next = lines, 0
        self._serve()

    def _serve(self) -> None:
        """Handle the lines this turn's budget allows; leave the rest for a later turn."""
        session, t = self.session, self.transport
        if session is None or t is None or self.dropped:
            return
        lines, i = self._backlog, self._next
        end = i + self._allowance(len(lines) - i)
        # The answers to one read go out in one write: a busy miner's burst of submits
        # costs one send() instead of one per share.
        if self._out is None:
            self._out, self._queued, self._room = [], 0, self._room_left()
        try:
            while i < end and not self.dropped:
                self._handle_line(session, lines[i])
                i += 1
        finally:
            self._next = i
            self.flush()
        self._report()
        if self.dropped:
            return
        if i < len(lines):
            self._later(t)
        else:
            self._backlog, self._next = [], 0
            if self._paused:
                self._paused = False
                t.resume_reading()

    def _allowance(self, waiting: int) -> int:
        """Lines that may be handled now: the per-turn cap and the per-second bucket."""
        st = self.server.settings
        now = asyncio.get_running_loop().time()
        rate = st.lines_per_second
        self._tokens = min(rate, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        n = min(waiting, st.lines_per_turn, int(self._tokens))
        self._tokens -= n
        return n

    def _later(self, t: asyncio.Transport) -> None:
        """Stop reading and finish the backlog on a later turn (after the bucket refills)."""
        if not self._paused:
            self._paused = True
            t.pause_reading()
        loop = asyncio.get_running_loop()
        if self._tokens >= 1.0:
            loop.call_soon(self._serve)
        else:
            loop.call_later(
                (1.0 - self._tokens) / self.server.settings.lines_per_second, self._serve
            )

    def _handle_line(self, session: Session, line: bytes) -> None:
        try:
            message = decode(line)
        except StratumError as exc:  # answer and live on: one bad line is not fatal
            session.junk += 1
            self.write(encode(m.error(None, ErrorCode.OTHER, str(exc))))
            return
        try:
            session.handle(message)
        except Exception:  # our bug: log it, answer, keep the miner connected
            log.exception("%s failed on %r", session.prefix, line[:200])
            self.write(encode(m.error(_id_of(message), ErrorCode.OTHER, "internal error")))

    def _report(self) -> None:
        """After a batch: authorized at last? Misbehaviour to the ban engine."""
        session = self.session
        if session is None:
            return
        if not self.authorized and session.authorized:
            self.authorized = True
            self.buffer.max_line = self.server.settings.max_line
            self.server.authorized(self)
        if self.watched:
            seen = (session.junk, session.auth_failures, session.accepted, session.rejected)
            if seen != self._seen:
                self.server.report(self, seen, self._seen)
                self._seen = seen

    def close(self) -> None:
        """Close the connection after what is queued has been written."""
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header is not None:  # closed before its PROXY header
            self._header_done()
        if self.session is not None:
            self.server.closed(self.session)
        self.transport = None
        self._backlog = []


def flush_all(protocols: list[StratumProtocol]) -> None:
    """Flush the connections `write` queued this turn (some may have flushed already)."""
    batch = protocols[:]
    protocols.clear()  # before flushing: a write during a flush schedules the next turn's
    for proto in batch:
        proto.flush()


def _peer(peer: object) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def _id_of(message: object) -> object:
    return message.id if isinstance(message, Request) else None
