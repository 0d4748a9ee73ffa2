"""The Stratum listener: connections by IP (caps, bans), the sessions, and the notify fan-out.

Protocols rather than streams: no task per connection and no per-read coroutine, which is
what lets one process hold 10,000 miners. Sessions are grouped by payout script, so a new
job is encoded once per (job, script) and the same bytes are written to every transport
in the group. Each connection's bytes and budget are `pool/protocol.py`'s; the per-IP limits
and the ban engine (`pool/bans.py`) are applied here, at accept.
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

from hashfarm.pool.bans import Ban, BanList
from hashfarm.pool.jobs import PoolJob
from hashfarm.pool.protocol import StratumProtocol, flush_all
from hashfarm.pool.session import Session, SessionHost
from hashfarm.pool.settings import StratumSettings
from hashfarm.stratum.proxyproto import TrustedSources

log = logging.getLogger(__name__)


class ExtranonceAllocator:
    """Unique 4-byte extranonce1 values; a released one is kept for its owner to resume.

    Values come from `values` (default: a counter from a random start, so a restarted pool
    does not hand out the same sequence); one held by a live session, or released less than
    `resume_window` seconds ago, is skipped.
    """

    def __init__(
        self, resume_window: float, values: Iterator[int] | None = None, *, top: int | None = None
    ) -> None:
        self._window = resume_window
        # A front end of a scaled-out pool (`cluster.frontend_id`) owns the values whose top
        # byte is its id: no two front ends ever hand out the same extranonce1, so no two
        # miners on them can make the same header (and the same share id).
        self.top = top
        if top is None:
            start = random.getrandbits(32)
            self._values = values or (n & 0xFFFFFFFF for n in itertools.count(start))
        else:
            start, base = random.getrandbits(24), top << 24
            self._values = values or (base | (n & 0xFFFFFF) for n in itertools.count(start))
        self.in_use: dict[bytes, Session] = {}
        self._reserved: dict[bytes, float] = {}  # released extranonce1 -> reserved until

    def claim(self, session: Session, wanted: bytes | None, now: float) -> bytes:
        """`wanted` when no live session holds it (resume), else a fresh value. A front end
        resumes only its own values: a miner that comes back from another front end gets a
        fresh one from this one's range (and a clean job with it)."""
        if wanted is not None and self.top is not None and wanted[:1] != bytes((self.top,)):
            wanted = None
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


class StratumServer:
    """Holds the listener, the sessions and their payout-script groups."""

    def __init__(self, host: SessionHost, settings: StratumSettings) -> None:
        self.host = host
        self.settings = settings
        self.extranonces = ExtranonceAllocator(
            settings.resume_window, top=host.settings.cluster.frontend_id
        )
        self.bans = BanList(host.settings.bans)
        self.bans.on_ban = self._banned
        self.sessions: dict[Session, StratumProtocol] = {}
        self.by_ip: dict[str, set[StratumProtocol]] = {}  # open connections per IP
        self.unauthorized: Counter[str] = Counter()  # not-yet-authorized connections per IP
        self.refused: Counter[str] = Counter()  # connections refused at accept, by reason
        # Load balancers whose PROXY protocol header names the miner (empty: off). Their
        # connections wait for that header before `open` (see StratumProtocol); meanwhile
        # they are in `headers_due` and count against `max_connections`.
        self.proxy_from = TrustedSources(settings.proxy_protocol_from)
        self.headers_due: set[StratumProtocol] = set()  # balancer connections before their header
        self.groups: dict[bytes, dict[Session, asyncio.Transport]] = {}  # script -> members
        self._server: asyncio.Server | None = None
        self._count = 0
        self._sweeping: list[tuple[Session, StratumProtocol]] = []  # this sweep pass's sessions
        self.unflushed: list[StratumProtocol] = []  # answers queued outside a read: see write
        self.port = 0

    def flush_answers(self) -> None:
        """Write now what `StratumProtocol.write` queued outside a read (the answers a group
        commit released) instead of at the loop's next turn, after its next reads."""
        flush_all(self.unflushed)

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
        for proto in [*self.sessions.values(), *self.headers_due]:
            proto.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def from_balancer(self, proto: StratumProtocol, transport: asyncio.Transport) -> bool:
        """True when the connection comes from a trusted load balancer: it must send a PROXY
        protocol header first, and counts in `awaiting_header` until then. Over
        `max_connections` it is aborted at once (`proto.dropped`)."""
        if not self.proxy_from:
            return False
        peer = transport.get_extra_info("peername")
        if not (isinstance(peer, tuple) and self.proxy_from.trusts(str(peer[0]))):
            return False
        if len(self.sessions) + self.awaiting_header >= self.settings.max_connections:
            self.refused["max-connections"] += 1
            proto.dropped = True
            transport.abort()
            return True
        self.headers_due.add(proto)
        return True

    @property
    def awaiting_header(self) -> int:
        """Connections from trusted balancers whose PROXY header has not arrived yet."""
        return len(self.headers_due)

    def open(
        self,
        proto: StratumProtocol,
        transport: asyncio.Transport,
        source: tuple[str, int] | None = None,
    ) -> Session:
        """A new connection: its session (closed at once when it is over a limit).

        `source`: the miner's address from a trusted balancer's PROXY header, used for the
        per-IP limits, bans and logs in place of the socket's peer (the balancer)."""
        self._count += 1
        peer = source if source is not None else transport.get_extra_info("peername")
        ip = _plain_ip(str(peer[0])) if isinstance(peer, tuple) else str(peer)
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
        if len(self.sessions) + self.awaiting_header >= st.max_connections:
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


def _plain_ip(ip: str) -> str:
    """A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d: count and ban them as a.b.c.d."""
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


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
