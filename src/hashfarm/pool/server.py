"""The Stratum listener: one asyncio Protocol per connection, and the notify fan-out.

Protocols rather than streams: no task per connection and no per-read coroutine, which is
what lets one process hold 10,000 miners. Sessions are grouped by payout script, so a new
job is encoded once per (job, script) and the same bytes are written to every transport
in the group.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import cast

from hashfarm.errors import StratumError
from hashfarm.pool.bans import Ban, BanList
from hashfarm.pool.jobs import PoolJob
from hashfarm.pool.session import Session, SessionHost
from hashfarm.pool.settings import StratumSettings
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import ErrorCode, LineBuffer, Request, decode, encode

log = logging.getLogger(__name__)


class ExtranonceAllocator:
    """Unique 4-byte extranonce1 values; a released one is kept for its owner to resume.

    Values come from `values` (default: a counter from a random start, so a restarted pool
    does not hand out the same sequence); one held by a live session, or released less than
    `resume_window` seconds ago, is skipped.
    """

    def __init__(self, resume_window: float, values: Iterator[int] | None = None) -> None:
        self._window = resume_window
        start = random.getrandbits(32)
        self._values = values or (n & 0xFFFFFFFF for n in itertools.count(start))
        self.in_use: dict[bytes, Session] = {}
        self._reserved: dict[bytes, float] = {}  # released extranonce1 -> reserved until

    def claim(self, session: Session, wanted: bytes | None, now: float) -> bytes:
        """`wanted` when no live session holds it (resume), else a fresh value."""
        if wanted is not None and wanted not in self.in_use:
            self._reserved.pop(wanted, None)
            return self._take(wanted, session)
        for number in self._values:
            value = number.to_bytes(4, "big")
            if value not in self.in_use and self._reserved.get(value, 0.0) <= now:
                self._reserved.pop(value, None)
                return self._take(value, session)
        raise RuntimeError("extranonce1 values exhausted")

    def _take(self, value: bytes, session: Session) -> bytes:
        self.in_use[value] = session
        return value

    def release(self, value: bytes, now: float) -> None:
        """The connection closed: reserve its extranonce1 for `resume_window` seconds."""
        if value and self.in_use.pop(value, None) is not None:
            self._reserved[value] = now + self._window

    def purge(self, now: float) -> None:
        """Forget reservations that have expired."""
        for value in [v for v, until in self._reserved.items() if until <= now]:
            del self._reserved[value]


class StratumProtocol(asyncio.Protocol):
    """Bytes <-> session for one connection, within the connection's budget.

    The budget holds before authorize: a short `max_line_unauthorized`, at most
    `max_output` bytes of answers held for the connection (queued here plus the transport's
    buffer), at most `lines_per_turn` lines handled per turn of the event loop and
    `lines_per_second` overall (the socket is not read meanwhile, so TCP slows the sender
    and what waits is one read's worth of lines).
    """

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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self.server.settings.max_output)
        self._stamp = asyncio.get_running_loop().time()
        self.session = self.server.open(self, transport)

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
            asyncio.get_running_loop().call_soon(self.flush)
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

    def data_received(self, data: bytes) -> None:
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
        if self.session is not None:
            self.server.closed(self.session)
        self.transport = None
        self._backlog = []


class StratumServer:
    """Holds the listener, the sessions and their payout-script groups."""

    def __init__(self, host: SessionHost, settings: StratumSettings) -> None:
        self.host = host
        self.settings = settings
        self.extranonces = ExtranonceAllocator(settings.resume_window)
        self.bans = BanList(host.settings.bans)
        self.bans.on_ban = self._banned
        self.sessions: dict[Session, StratumProtocol] = {}
        self.by_ip: dict[str, set[StratumProtocol]] = {}  # open connections per IP
        self.unauthorized: Counter[str] = Counter()  # not-yet-authorized connections per IP
        self.refused: Counter[str] = Counter()  # connections refused at accept, by reason
        self.groups: dict[bytes, dict[Session, asyncio.Transport]] = {}  # script -> members
        self._server: asyncio.Server | None = None
        self._count = 0
        self._sweeping: list[tuple[Session, StratumProtocol]] = []  # this sweep pass's sessions
        self.port = 0

    async def start(self) -> int:
        """Listen; return the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: StratumProtocol(self),
            self.settings.host,
            self.settings.port,
            backlog=4096,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("stratum listening on %s:%d", self.settings.host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop accepting and close every connection."""
        if self._server is not None:
            self._server.close()
        for proto in list(self.sessions.values()):
            proto.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def open(self, proto: StratumProtocol, transport: asyncio.Transport) -> Session:
        """A new connection: its session (closed at once when it is over a limit)."""
        self._count += 1
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        session = Session(self.host, proto.write, name, self._count)
        why = self._refusal(ip)
        if why is not None:
            self.refused[why] += 1
            # debug: a banned or capped IP may reconnect thousands of times a second
            log.debug("%s refused: %s", session.prefix, why)
            proto.dropped = True
            transport.abort()
            return session
        proto.ip = ip
        proto.watched = self.host.settings.bans.enabled and not self.bans.exempt(ip)
        self.sessions[session] = proto
        self.by_ip.setdefault(ip, set()).add(proto)
        self.unauthorized[ip] += 1
        return session

    def _refusal(self, ip: str) -> str | None:
        """Why a connection from `ip` is refused now, or None."""
        st = self.settings
        if len(self.sessions) >= st.max_connections:
            return "max-connections"
        if self.bans.banned(ip, self.host.now()) is not None:
            return "banned"
        if self.bans.exempt(ip):
            return None
        if len(self.by_ip.get(ip, ())) >= st.max_connections_per_ip:
            return "max-connections-per-ip"
        if self.unauthorized[ip] >= st.max_unauthorized_per_ip:
            return "max-unauthorized-per-ip"
        return None

    def authorized(self, proto: StratumProtocol) -> None:
        """A connection authorized: it no longer counts against the unauthorized cap."""
        self._forget_unauthorized(proto.ip)

    def _forget_unauthorized(self, ip: str) -> None:
        left = self.unauthorized[ip] - 1
        if left > 0:
            self.unauthorized[ip] = left
        else:
            del self.unauthorized[ip]

    def report(
        self,
        proto: StratumProtocol,
        now_seen: tuple[int, int, int, int],
        before: tuple[int, int, int, int],
    ) -> None:
        """A watched connection's new junk, failed authorizations and shares, to the bans."""
        junk, fails, accepted, rejected = (a - b for a, b in zip(now_seen, before, strict=True))
        bans, ip, now = self.bans, proto.ip, self.host.now()
        if junk:
            bans.junk(ip, now, junk)
        if fails:
            bans.failed_authorize(ip, now, fails)
        if accepted or rejected:
            bans.shares(ip, accepted, rejected, now)

    def _banned(self, ban: Ban) -> None:
        """A new ban (automatic or manual): close the IP's open connections now."""
        protos = list(self.by_ip.get(ban.ip, ()))
        log.warning(
            "banned %s for %.0f s (%s): closing %d connections",
            ban.ip,
            ban.until - ban.since,
            ban.reason,
            len(protos),
        )
        for proto in protos:
            proto.drop(f"IP banned ({ban.reason})")

    def closed(self, session: Session) -> None:
        """A connection ended: forget it, keep its extranonce1 for a resume."""
        session.closed = True
        proto = self.sessions.pop(session, None)
        if proto is not None:
            peers = self.by_ip.get(proto.ip)
            if peers is not None:
                peers.discard(proto)
                if not peers:
                    del self.by_ip[proto.ip]
            if not proto.authorized:
                self._forget_unauthorized(proto.ip)
        if session.payout_script is not None:
            group = self.groups.get(session.payout_script)
            if group is not None:
                group.pop(session, None)
                if not group:
                    del self.groups[session.payout_script]
        self.extranonces.release(session.extranonce1, self.host.now())

    def join(self, session: Session) -> None:
        """Add a ready session to its payout script's group."""
        assert session.payout_script is not None
        transport = self.sessions[session].transport
        if transport is not None:
            self.groups.setdefault(session.payout_script, {})[session] = transport

    def broadcast(self, job_for: Callable[[bytes], PoolJob]) -> int:
        """Write the current job of each group to every session in it; return the count.

        The hot loop of a new tip: a `steady` session (difficulty unchanged since its last
        job) gets the group's notify bytes straight from `transport.write`, with no method
        chain, formatting or logging per session; the few others go through `send_job`
        (set_difficulty first) after every steady session has its clean job.
        """
        written = 0
        for script, group in self.groups.items():
            job = job_for(script)
            line = job.notify_line
            others = []
            for session, transport in group.items():
                if session.steady:
                    try:
                        transport.write(line)
                    except RuntimeError:  # uvloop: closed; connection_lost is on its way
                        continue
                    session.last_job = job
                else:
                    others.append(session)
            for session in others:
                session.send_job(job)
            written += len(group)
        return written

    def sweep(self, now: float, part: int = 0, parts: int = 1) -> None:
        """Periodic: vardiff by time, idle and unauthorized connections closed.

        Slice `part` of `parts`: the caller spreads one pass over several steps, so 10,000
        connections never stall the loop (and every share's answer) for one long sweep.
        A pass works on the sessions present at its first step.
        """
        if part == 0 or not self._sweeping:
            self._sweeping = list(self.sessions.items())
        size = -(-len(self._sweeping) // parts)
        for session, proto in self._sweeping[part * size : (part + 1) * size]:
            if not session.closed:
                self._sweep_one(session, proto, now)
        if part == parts - 1:
            self._sweeping = []
            self.extranonces.purge(now)
            self.bans.purge(now)

    def _sweep_one(self, session: Session, proto: StratumProtocol, now: float) -> None:
        st = self.settings
        if now - session.last_activity > st.idle_timeout:
            log.info("%s idle for %.0f s: closing", session.prefix, st.idle_timeout)
            proto.close()
        elif not session.ready and now - session.connected_at > st.auth_timeout:
            log.info("%s not authorized after %.0f s: closing", session.prefix, st.auth_timeout)
            proto.close()
        else:
            session.tick(now)


def _id_of(message: object) -> object:
    return message.id if isinstance(message, Request) else None


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (10k miners need 10k sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    log.info("open-file limit: %d", soft)
    return soft


def monotonic_ms(start: float) -> float:
    """Milliseconds since a perf_counter reading (for fan-out timing logs)."""
    return (time.perf_counter() - start) * 1000.0
