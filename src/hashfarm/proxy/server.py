"""The farm proxy: a Stratum V1 server for machines, one shared upstream session, failover.

Machines subscribe here and get a `k`-byte extranonce1 (a prefix of the upstream's
extranonce2 space, `split.py`); upstream set_difficulty and notify are relayed to every
machine at once (coinb1 carrying the upstream extranonce1); a machine's share is checked
against the upstream difficulty of its job, then forwarded with the full extranonce2, and
the machine gets the upstream's own answer. Nothing is acknowledged before the upstream
acknowledged it; a share whose upstream is lost before answering is refused.

The per-connection budget follows the pool's (pool/protocol.py, pool/server.py), written
again here because the pool is a sibling layer: line length (short before authorize),
lines per loop turn, bytes held unsent, connections per IP, workers per connection,
methods allowed before authorize, and an authorize deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from hashfarm.chain.hashes import sha256d
from hashfarm.chain.pow import difficulty_to_target, hash_to_int
from hashfarm.errors import StratumError
from hashfarm.proxy.settings import ProxySettings, Upstream
from hashfarm.proxy.split import PrefixAllocator, Split, downstream_coinb1
from hashfarm.proxy.store import WorkStore, utc_day
from hashfarm.proxy.upstream import UpstreamSession
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import (
    ErrorCode,
    LineBuffer,
    MessageId,
    Notification,
    Request,
    Response,
    RpcError,
    decode,
    encode,
)
from hashfarm.stratum.work import Job, apply_version_bits, u32_hex

log = logging.getLogger(__name__)

UPSTREAM_VERSION_MASK = 0x1FFFE000  # asked of the upstream (BIP 320 bits)
MAX_JOBS = 16  # upstream jobs kept for late shares
CUSTOMER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # per-customer mode: goes into a user name
BEFORE_AUTHORIZE = frozenset(
    {m.SUBSCRIBE, m.CONFIGURE, m.AUTHORIZE, m.EXTRANONCE_SUBSCRIBE, m.SUGGEST_DIFFICULTY}
)


@dataclass(frozen=True, slots=True)
class ShareInfo:
    """What the proxy remembers of a forwarded share until the upstream answers."""

    customer: str
    worker: str
    difficulty: float


class ProxyStats:
    """Accepted work (sum of the upstream difficulty of each accepted share) and verdicts."""

    def __init__(self) -> None:
        self.accepted = 0
        self.accepted_by_customer: Counter[str] = Counter()
        self.rejected_by_customer: Counter[str] = Counter()
        self.rejected_by_machine: Counter[str] = Counter()
        self.work_by_customer: dict[str, float] = defaultdict(float)
        self.work_by_machine: dict[str, float] = defaultdict(float)
        self.accepted_by_machine: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()  # upstream's reasons, and the proxy's own
        self.low_difficulty = 0  # answered here, never forwarded
        self.upstream_lost = 0  # forwarded, upstream gone before answering: refused

    def as_dict(self) -> dict[str, Any]:
        """The stats call's answer."""
        return {
            "accepted": self.accepted,
            "work_by_customer": dict(self.work_by_customer),
            "work_by_machine": dict(self.work_by_machine),
            "accepted_by_machine": dict(self.accepted_by_machine),
            "accepted_by_customer": dict(self.accepted_by_customer),
            "rejected_by_customer": dict(self.rejected_by_customer),
            "rejected_by_machine": dict(self.rejected_by_machine),
            "rejected": dict(self.rejected),
            "low_difficulty": self.low_difficulty,
            "upstream_lost": self.upstream_lost,
        }


class Downstream(asyncio.Protocol):
    """One machine's connection, within its budget."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        st = proxy.settings
        self.buffer = LineBuffer(st.max_line_unauthorized)
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.prefix: bytes | None = None  # extranonce1, given at subscribe
        self.workers: set[str] = set()
        self.customer_of: dict[str, str] = {}  # worker -> its customer, fixed at authorize
        self.version_mask: int | None = None
        self.channel: Channel | None = None  # the upstream session its customer mines for
        self.closed = False
        self._backlog: list[bytes] = []
        self._paused = False
        self._deadline: asyncio.TimerHandle | None = None
        self._started = False  # sent the current job

    @property
    def ready(self) -> bool:
        """Subscribed and authorized: gets jobs."""
        return self.prefix is not None and bool(self.workers)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)
        peer = t.get_extra_info("peername")
        self.ip = str(peer[0]) if peer else "?"
        t.set_write_buffer_limits(high=self.proxy.settings.max_output)
        if not self.proxy.admit(self):
            log.warning(
                "%s: over %d connections: closing",
                self.ip,
                self.proxy.settings.max_connections_per_ip,
            )
            self.closed = True
            t.abort()
            return
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self.proxy.settings.auth_timeout, self._auth_deadline)

    def _auth_deadline(self) -> None:
        if not self.workers:
            self.drop("not authorized in time")

    def pause_writing(self) -> None:
        """More than max_output bytes unsent: the machine stopped reading. This is the bound
        of the relay (`Channel._broadcast` writes to the transport with no check): asyncio
        calls it from the `write` that crossed the limit, so at most `max_output` plus that
        one line is ever held for a machine."""
        self.drop(f"more than {self.proxy.settings.max_output} bytes unsent")

    def write(self, data: bytes) -> None:
        t = self.transport
        if self.closed or t is None or t.is_closing():
            return
        if t.get_write_buffer_size() + len(data) > self.proxy.settings.max_output:
            self.drop(f"more than {self.proxy.settings.max_output} bytes unsent")
            return
        t.write(data)

    def drop(self, why: str) -> None:
        """Close at once (abort: nothing more is sent). It may run inside a broadcast (from
        `pause_writing`), so it leaves the channel's `live` map alone: writes to an aborted
        transport are no-ops and `connection_lost`, called soon after, takes the machine out."""
        log.warning("%s %s: closing", self.ip, why)
        self.closed = True
        self._backlog = []
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            lines = self.buffer.feed(data)
        except StratumError as exc:
            self.write(encode(m.error(None, ErrorCode.OTHER, str(exc))))
            self.closed = True
            if self.channel is not None:  # close() flushes: relay nothing more to it
                self.channel.live.pop(self, None)
            if self.transport is not None:
                self.transport.close()
            return
        self._backlog.extend(lines)
        self._serve()

    def _serve(self) -> None:
        if self.closed or self.transport is None:
            return
        n = self.proxy.settings.lines_per_turn
        batch, self._backlog = self._backlog[:n], self._backlog[n:]
        for line in batch:
            if self.closed:
                return
            self._handle_line(line)
        if self._backlog:  # the rest next turn; stop reading meanwhile
            if not self._paused:
                self._paused = True
                self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self._serve)
        elif self._paused:
            self._paused = False
            self.transport.resume_reading()

    def _handle_line(self, line: bytes) -> None:
        try:
            message = decode(line)
        except StratumError as exc:
            self.write(encode(m.error(None, ErrorCode.OTHER, str(exc))))
            return
        if not isinstance(message, Request):
            return  # machines answer nothing we asked; notifications from them are ignored
        try:
            self._handle(message)
        except StratumError as exc:
            self.write(encode(m.error(message.id, ErrorCode.OTHER, str(exc))))
        except Exception:  # our bug: log, answer, keep the machine
            log.exception("%s failed on %r", self.ip, line[:200])
            self.write(encode(m.error(message.id, ErrorCode.OTHER, "internal error")))

    def _handle(self, req: Request) -> None:
        method, proxy = req.method, self.proxy
        if not self.workers and method not in BEFORE_AUTHORIZE:
            self.write(
                encode(m.error(req.id, ErrorCode.UNAUTHORIZED, f"{method} before authorize"))
            )
            return
        if method == m.SUBMIT:
            proxy.submit(self, req)
        elif method == m.SUBSCRIBE:
            m.parse_subscribe(req.params)
            size = proxy.downstream_size()
            if size is None:
                self.write(encode(m.error(req.id, ErrorCode.OTHER, "no upstream pool yet")))
                return
            if self.prefix is None:
                self.prefix = proxy.prefixes.claim()
            result = m.subscribe_result(self.prefix, size, self.prefix.hex())
            self.write(encode(m.result(req.id, result)))
            self._start_if_ready()
        elif method == m.AUTHORIZE:
            auth = m.parse_authorize(req.params)
            self._authorize(req.id, auth.username)
        elif method == m.CONFIGURE:
            conf = m.parse_configure(req.params)
            wanted = conf.version_rolling_mask
            upstream = proxy.upstream_mask(self)
            if wanted is None:
                self.write(encode(m.result(req.id, {})))
                return
            mask = (wanted & upstream) if upstream is not None else 0
            self.version_mask = mask or None
            self.write(encode(m.result(req.id, m.configure_result(self.version_mask))))
        elif method == m.SUGGEST_DIFFICULTY:
            m.parse_suggest_difficulty(req.params)  # the upstream's difficulty applies
            self.write(encode(m.result(req.id, True)))
        elif method == m.EXTRANONCE_SUBSCRIBE:
            self.write(encode(m.result(req.id, True)))  # extranonce1 never changes here
        else:
            self.write(encode(m.error(req.id, ErrorCode.OTHER, f"unknown method {method}")))

    def _authorize(self, msg_id: Any, username: str) -> None:
        st = self.proxy.settings
        customer = self.proxy.customer_for(username)
        if customer is None:
            why = f"machine {username[:64]!r} is not hosted for any customer"
            self.write(encode(m.error(msg_id, ErrorCode.UNAUTHORIZED, why)))
            return
        if st.allowed_workers is not None and customer not in st.allowed_workers:
            self.write(encode(m.error(msg_id, ErrorCode.UNAUTHORIZED, f"{customer} not allowed")))
            return
        if username not in self.workers and len(self.workers) >= st.max_workers:
            self.write(encode(m.error(msg_id, ErrorCode.OTHER, f"over {st.max_workers} workers")))
            return
        if self.channel is None:
            try:
                self.channel = self.proxy.channel_for(customer)
            except StratumError as exc:
                self.write(encode(m.error(msg_id, ErrorCode.OTHER, str(exc))))
                return
            self.channel.machines.add(self)
        elif self.channel.customer is not None and self.channel.customer != customer:
            why = f"this connection mines for {self.channel.customer}"
            self.write(encode(m.error(msg_id, ErrorCode.UNAUTHORIZED, why)))
            return
        first = not self.workers
        self.workers.add(username)
        self.customer_of.setdefault(username, customer)
        if first:
            self.buffer.max_line = st.max_line
            if self._deadline is not None:
                self._deadline.cancel()
        self.write(encode(m.result(msg_id, True)))
        self._start_if_ready()

    def _start_if_ready(self) -> None:
        """Just became ready (subscribed and authorized, in either order): the current
        difficulty and job, clean."""
        if self.ready and not self._started and self.channel is not None:
            self._started = True
            for line in self.channel.current_lines():
                self.write(line)
            if not self.closed and self.transport is not None:
                self.channel.live[self] = self.transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._deadline is not None:
            self._deadline.cancel()
        self.proxy.forget(self)
        self.transport = None


def session_job_id(session: int, upstream_job_id: str) -> str:
    """The job id machines see: the channel's upstream session number, then the upstream's."""
    return f"{session:x}.{upstream_job_id}"


class Channel:
    """One upstream user's session, its failover and its job table; shared by the machines
    of one customer (per-customer mode) or by all (shared mode, `customer` None)."""

    def __init__(self, proxy: Proxy, user: str, customer: str | None) -> None:
        self.proxy = proxy
        self.user = user
        self.customer = customer
        self.split: Split | None = None
        self.session: UpstreamSession | None = None
        self.machines: set[Downstream] = set()
        # The ready machines (subscribed, authorized, sent the current job) and their
        # transports: the relay's hot loop writes to these and nothing else.
        self.live: dict[Downstream, asyncio.Transport] = {}
        # downstream job id -> the upstream's job, its difficulty, its split. Downstream ids
        # name the upstream session (`session_job_id`): pools number their jobs from 1, so
        # a late share for the left upstream's job "5" must not be read as the new one's "5".
        self.jobs: dict[str, tuple[Job, float, Split]] = {}
        self.difficulty: float | None = None
        self._last_notify: bytes | None = None  # the current job, clean, as machines get it
        self._force_clean = False
        self.switches = 0  # upstream sessions opened (tests and logs)
        self.ready = asyncio.Event()
        self.manager: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.manager = asyncio.create_task(self._manage())

    async def stop(self) -> None:
        if self.manager is not None:
            self.manager.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.manager
        if self.session is not None:
            await self.session.close()

    def as_dict(self) -> dict[str, Any]:
        return {
            "upstream_user": self.user,
            "upstream": str(self.session.target) if self.session is not None else None,
            "connected": self.session is not None and not self.session.closed.is_set(),
            "upstream_sessions": self.switches,
            "difficulty": self.difficulty,
            "machines": len(self.machines),
        }

    async def _open(self, target: Upstream) -> UpstreamSession | None:
        st = self.proxy.settings
        try:
            return await UpstreamSession.open(
                target, self.user, st.password, UPSTREAM_VERSION_MASK, st.connect_timeout,
                st.upstream_idle, self._on_notification, self.proxy.on_verdict,
            )  # fmt: skip
        except (OSError, TimeoutError, StratumError) as exc:
            log.warning("upstream %s for %s unavailable: %s", target, self.user, exc)
            return None

    async def _manage(self) -> None:
        st = self.proxy.settings
        while True:
            session = await self._open(st.upstream)
            if session is None and st.backup is not None:
                session = await self._open(st.backup)
            if session is None or not self._use(session):
                await asyncio.sleep(1.0)
                continue
            if session.target == st.upstream or st.backup is None:
                await session.closed.wait()
                continue
            # On the backup: try the primary every retry_primary seconds.
            while not session.closed.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(st.retry_primary):
                        await session.closed.wait()
                if session.closed.is_set():
                    break
                primary = await self._open(st.upstream)
                if primary is not None and self._use(primary):
                    self.proxy.drain_later(session)
                    break
            # lost (or left) the backup: back to the top, primary first

    def _use(self, session: UpstreamSession) -> bool:
        """Make `session` the one machines mine for; False if its extranonce space is too small."""
        try:
            template = self.split or self.proxy.template
            if template is None:
                split = Split.first(
                    session.extranonce1, session.extranonce2_size, self.proxy.settings.prefix_size
                )
                self.proxy.template = split
            else:
                split = template.next_session(session.extranonce1, session.extranonce2_size)
        except StratumError as exc:
            log.warning("upstream %s refused: %s", session.target, exc)
            self.proxy.drain_later(session)
            return False
        self.split, self.session = split, session
        self.jobs.clear()
        self._force_clean = True
        self.switches += 1
        log.info(
            "%s mining for %s (extranonce1 %s)",
            self.user,
            session.target,
            session.extranonce1.hex(),
        )
        for note in session.early:
            self._on_notification(session, note)
        session.early.clear()
        self.ready.set()
        return True

    def _on_notification(self, session: UpstreamSession, note: Notification) -> None:
        if session is not self.session:
            return  # an upstream we left: its work is no longer ours
        try:
            if note.method == m.SET_DIFFICULTY:
                self.difficulty = m.parse_set_difficulty(note.params)
                self._broadcast(encode(note))
            elif note.method == m.NOTIFY:
                self._new_job(m.parse_notify(note.params))
            elif note.method == m.SET_EXTRANONCE and self.split is not None:
                # Machines keep their prefix; the new E1 goes into later notifies' coinb1.
                extranonce1, size = m.parse_set_extranonce(note.params)
                self.split = self.split.next_session(extranonce1, size)
                session.extranonce1, session.extranonce2_size = extranonce1, size
            elif note.method == m.SET_VERSION_MASK and session.version_mask is not None:
                # Machines keep their negotiated masks; shares outside the new one are the
                # upstream's to refuse (renegotiation downstream is not done).
                session.version_mask = m.parse_set_version_mask(note.params)
        except StratumError as exc:
            log.warning("upstream %s: %s", session.target, exc)
            if note.method == m.SET_EXTRANONCE:  # cannot mine for it any more: leave it
                self.proxy.drain_later(session)

    def _new_job(self, job: Job) -> None:
        split = self.split
        if split is None or self.difficulty is None:
            return
        clean = job.clean_jobs or self._force_clean
        self._force_clean = False
        if clean:
            self.jobs.clear()
        job_id = session_job_id(self.switches, job.job_id)
        self.jobs[job_id] = (job, self.difficulty, split)
        while len(self.jobs) > MAX_JOBS:
            del self.jobs[next(iter(self.jobs))]
        down = replace(job, job_id=job_id, coinb1=downstream_coinb1(job.coinb1, split))
        self._last_notify = encode(m.notify(replace(down, clean_jobs=True)))
        self._broadcast(encode(m.notify(replace(down, clean_jobs=clean))))

    def current_lines(self) -> list[bytes]:
        """What a machine that just became ready is sent: difficulty, then the job."""
        lines = []
        if self.difficulty is not None:
            lines.append(encode(m.set_difficulty(self.difficulty)))
        if self._last_notify is not None:
            lines.append(self._last_notify)
        return lines

    def _broadcast(self, line: bytes) -> None:
        """The relay's hot loop (10,000 machines on a new tip): one `transport.write` per
        ready machine, as the pool's `Server.broadcast`. The output bound is the transport's
        high-water mark (`max_output`): the write that crosses it calls the machine's
        `pause_writing`, which drops it (tests/unit/proxy/test_output_bound.py)."""
        for transport in self.live.values():
            try:
                transport.write(line)
            except RuntimeError:  # uvloop: closed; connection_lost is on its way
                continue


class Proxy:
    """The listener, the machines, and the upstream sessions (one shared, or one per
    customer) with their failover; optionally a work store."""

    def __init__(self, settings: ProxySettings, store: WorkStore | None = None) -> None:
        self.settings = settings
        self.prefixes = PrefixAllocator(settings.prefix_size)
        self.template: Split | None = None  # the first split: fixes the machines' size
        if settings.per_customer:
            # Machines subscribe before their customer's session exists: the size is fixed
            # from the expected upstream extranonce2 size; a smaller upstream is refused.
            size = settings.upstream_extranonce2_size
            if size - settings.prefix_size < 1:
                raise StratumError(f"extranonce2 of {size} bytes leaves nothing for machines")
            self.template = Split(b"", size, settings.prefix_size, size - settings.prefix_size)
        self.stats = ProxyStats()
        self.store = store
        self.machines: set[Downstream] = set()
        self.by_ip: Counter[str] = Counter()
        self.channels: dict[str | None, Channel] = {}  # customer (None: shared) -> channel
        # Hosting's assignment (worker name -> customer id), swapped whole by `set_customers`;
        # None: the customer is the worker name's part before its first ".".
        self.customers: Mapping[str, str] | None = settings.customers
        self._server: asyncio.Server | None = None
        self._store_task: asyncio.Task[None] | None = None
        self._draining: set[asyncio.Task[None]] = set()
        self.port = 0

    # --- the shared session (shared mode), as before ---------------------------------------

    @property
    def shared(self) -> Channel | None:
        return self.channels.get(None)

    @property
    def session(self) -> UpstreamSession | None:
        ch = self.shared
        return ch.session if ch is not None else None

    @property
    def split(self) -> Split | None:
        ch = self.shared
        return ch.split if ch is not None else None

    @property
    def difficulty(self) -> float | None:
        ch = self.shared
        return ch.difficulty if ch is not None else None

    @property
    def switches(self) -> int:
        return sum(ch.switches for ch in self.channels.values())

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, wait: float | None = None) -> None:
        """Shared mode: reach an upstream (primary, else backup), then listen. Per-customer
        mode: listen at once; each customer's session opens at its first authorize."""
        st = self.settings
        if not st.per_customer:
            channel = self.channels[None] = Channel(self, st.user, None)
            channel.start()
            async with asyncio.timeout(wait if wait is not None else 4 * st.connect_timeout):
                await channel.ready.wait()
        if self.store is not None:
            self._store_task = asyncio.create_task(self.store.run(st.store_every))
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Downstream(self), st.host, st.port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("proxy listening on %s:%d", st.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for d in list(self.machines):
                if d.transport is not None:
                    d.transport.abort()
        for channel in list(self.channels.values()):
            await channel.stop()
        for task in list(self._draining):
            task.cancel()
        if self._store_task is not None:
            self._store_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._store_task

    def channel_for(self, customer: str) -> Channel:
        """The channel a customer's machine mines for; a new customer's session is opened
        here (per-customer mode), up to `max_upstreams`; StratumError beyond."""
        st = self.settings
        if not st.per_customer:
            channel = self.shared
            if channel is None:
                raise StratumError("no upstream pool yet")
            return channel
        channel = self.channels.get(customer)
        if channel is None:
            if not CUSTOMER_NAME.fullmatch(customer):
                raise StratumError(f"customer name {customer[:64]!r} is not [A-Za-z0-9_-]{{1,64}}")
            if len(self.channels) >= st.max_upstreams:
                raise StratumError(f"over {st.max_upstreams} upstream sessions (customers)")
            user = st.user_template.format(customer=customer)
            channel = self.channels[customer] = Channel(self, user, customer)
            channel.start()
            log.info("customer %s: upstream session as %s", customer, user)
        return channel

    def customer_for(self, username: str) -> str | None:
        """The customer a worker mines for: hosting's assignment when the proxy has one
        (None: not hosted, refused), else the name's part before its first "."."""
        if self.customers is not None:
            return self.customers.get(username)
        return username.split(".", 1)[0]

    def set_customers(self, customers: Mapping[str, str]) -> None:
        """A new assignment (a reload): applies from each worker's next authorize; a worker
        already authorized keeps the customer it was authorized for until it reconnects."""
        self.customers = dict(customers)

    def downstream_size(self) -> int | None:
        """Extranonce2 bytes a machine rolls; None before any upstream (shared mode)."""
        return self.template.downstream_size if self.template is not None else None

    def upstream_mask(self, d: Downstream) -> int | None:
        """The version mask a machine's configure is intersected with: its channel's
        upstream's, or (per-customer mode, before its session exists) what is asked."""
        channel = d.channel or self.shared
        if channel is not None and channel.session is not None:
            return channel.session.version_mask
        return UPSTREAM_VERSION_MASK if self.settings.per_customer else None

    def stats_dict(self) -> dict[str, Any]:
        """The stats call: counters, machines, the upstream sessions."""
        out = self.stats.as_dict()
        out["machines"] = len(self.machines)
        out["upstream"] = str(self.session.target) if self.session is not None else None
        out["upstream_sessions"] = self.switches
        out["difficulty"] = self.difficulty
        out["mode"] = "per-customer" if self.settings.per_customer else "shared"
        out["channels"] = {
            ("*" if customer is None else customer): ch.as_dict()
            for customer, ch in self.channels.items()
        }
        return out

    def drain_later(self, old: UpstreamSession) -> None:
        """Let an upstream we left answer the shares it holds, then close it."""

        async def drain() -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.submit_timeout):
                    while old.pending and not old.closed.is_set():  # noqa: ASYNC110 (polls a count)
                        await asyncio.sleep(0.05)
            await old.close()

        task = asyncio.create_task(drain())
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    # --- machines -----------------------------------------------------------------------

    def admit(self, d: Downstream) -> bool:
        """Per-IP cap at accept."""
        if self.by_ip[d.ip] >= self.settings.max_connections_per_ip:
            return False
        self.by_ip[d.ip] += 1
        self.machines.add(d)
        return True

    def forget(self, d: Downstream) -> None:
        if d in self.machines:
            self.machines.discard(d)
            self.by_ip[d.ip] -= 1
            if self.by_ip[d.ip] <= 0:
                del self.by_ip[d.ip]
        if d.channel is not None:
            d.channel.machines.discard(d)
            d.channel.live.pop(d, None)
        if d.prefix is not None:
            self.prefixes.release(d.prefix)

    def _refuse(self, d: Downstream, req: Request, worker: str, reason: str, err: Any) -> None:
        """A share refused here (never forwarded): counted per customer and machine."""
        self._count(d.customer_of[worker], worker, 0.0, accepted=False)
        self.stats.rejected[reason] += 1
        d.write(encode(err))

    def _count(self, customer: str, worker: str, work: float, *, accepted: bool) -> None:
        st = self.stats
        if accepted:
            st.accepted += 1
            st.work_by_customer[customer] += work
            st.work_by_machine[worker] += work
            st.accepted_by_machine[worker] += 1
            st.accepted_by_customer[customer] += 1
        else:
            st.rejected_by_customer[customer] += 1
            st.rejected_by_machine[worker] += 1
        if self.store is not None:
            self.store.add(utc_day(time.time()), customer, worker, work, accepted)

    def submit(self, d: Downstream, req: Request) -> None:
        """Check a machine's share against its job's upstream difficulty; forward it."""
        share = m.parse_submit(req.params)
        if share.worker not in d.workers:
            d.write(
                encode(m.error(req.id, ErrorCode.UNAUTHORIZED, f"{share.worker} not authorized"))
            )
            return
        channel, prefix = d.channel, d.prefix
        if prefix is None:
            d.write(encode(m.error(req.id, ErrorCode.NOT_SUBSCRIBED)))
            return
        entry = channel.jobs.get(share.job_id) if channel is not None else None
        session = channel.session if channel is not None else None
        if entry is None or session is None or channel is None:
            err = m.error(req.id, ErrorCode.JOB_NOT_FOUND)
            self._refuse(d, req, share.worker, "job not found", err)
            return
        job, difficulty, split = entry  # the split the job was sent with
        if channel.difficulty is not None:
            # The lower of then and now, as the pool holds it (pool/session.py
            # `difficulty_for`): miners apply a lower set_difficulty to the current job.
            difficulty = min(difficulty, channel.difficulty)
        full = split.full_extranonce2(prefix, share.extranonce2)
        version = job.version
        if share.version_bits is not None:
            if d.version_mask is None or share.version_bits & ~d.version_mask & 0xFFFFFFFF:
                why = "version bits outside the mask"
                self._refuse(d, req, share.worker, why, m.error(req.id, ErrorCode.OTHER, why))
                return
            version = apply_version_bits(job.version, share.version_bits, d.version_mask)
        header = job.header(split.upstream_extranonce1, full, share.ntime, share.nonce, version)
        if hash_to_int(sha256d(header)) > difficulty_to_target(difficulty):
            self.stats.low_difficulty += 1
            self._count(d.customer_of[share.worker], share.worker, 0.0, accepted=False)
            d.write(encode(m.error(req.id, ErrorCode.LOW_DIFFICULTY)))
            return
        params: list[Any] = [
            channel.user,
            job.job_id,  # the upstream's own id
            full.hex(),
            u32_hex(share.ntime),
            u32_hex(share.nonce),
        ]
        if share.version_bits is not None:
            params.append(u32_hex(share.version_bits))
        info = ShareInfo(d.customer_of[share.worker], share.worker, difficulty)
        if not session.submit(params, d, req.id, info):
            why = "upstream not connected"
            self._refuse(d, req, share.worker, why, m.error(req.id, ErrorCode.OTHER, why))

    def on_verdict(self, conn: object, downstream_id: object, info: object, res: Response) -> None:
        """The upstream answered a forwarded share (or was lost first): tell the machine."""
        d, share = cast(Downstream, conn), cast(ShareInfo, info)
        if res.ok and res.result is True:
            self._count(share.customer, share.worker, share.difficulty, accepted=True)
            d.write(encode(m.result(downstream_id, True)))
            return
        error = res.error or RpcError.of(ErrorCode.OTHER, f"upstream answered {res.result!r}")
        if res.id is None:
            self.stats.upstream_lost += 1
        self._count(share.customer, share.worker, 0.0, accepted=False)
        self.stats.rejected[error.message] += 1
        reply = Response(cast(MessageId, downstream_id), None, RpcError(error.code, error.message))
        d.write(encode(reply))
