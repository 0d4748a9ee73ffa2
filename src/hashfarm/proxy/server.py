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
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Any, cast

from hashfarm.chain.hashes import sha256d
from hashfarm.chain.pow import difficulty_to_target, hash_to_int
from hashfarm.errors import StratumError
from hashfarm.proxy.settings import ProxySettings, Upstream
from hashfarm.proxy.split import PrefixAllocator, Split, downstream_coinb1
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
        self.version_mask: int | None = None
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
        """More than max_output bytes unsent: the machine stopped reading."""
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
            split = proxy.split
            if split is None:
                self.write(encode(m.error(req.id, ErrorCode.OTHER, "no upstream pool yet")))
                return
            if self.prefix is None:
                self.prefix = proxy.prefixes.claim()
            result = m.subscribe_result(self.prefix, split.downstream_size, self.prefix.hex())
            self.write(encode(m.result(req.id, result)))
            self._start_if_ready()
        elif method == m.AUTHORIZE:
            auth = m.parse_authorize(req.params)
            self._authorize(req.id, auth.username)
        elif method == m.CONFIGURE:
            conf = m.parse_configure(req.params)
            wanted = conf.version_rolling_mask
            upstream = proxy.session.version_mask if proxy.session is not None else None
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
        customer = username.split(".", 1)[0]
        if st.allowed_workers is not None and customer not in st.allowed_workers:
            self.write(encode(m.error(msg_id, ErrorCode.UNAUTHORIZED, f"{customer} not allowed")))
            return
        if username not in self.workers and len(self.workers) >= st.max_workers:
            self.write(encode(m.error(msg_id, ErrorCode.OTHER, f"over {st.max_workers} workers")))
            return
        first = not self.workers
        self.workers.add(username)
        if first:
            self.buffer.max_line = st.max_line
            if self._deadline is not None:
                self._deadline.cancel()
        self.write(encode(m.result(msg_id, True)))
        self._start_if_ready()

    def _start_if_ready(self) -> None:
        """Just became ready (subscribed and authorized, in either order): the current
        difficulty and job, clean."""
        if self.ready and not self._started:
            self._started = True
            for line in self.proxy.current_lines():
                self.write(line)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._deadline is not None:
            self._deadline.cancel()
        self.proxy.forget(self)
        self.transport = None


class Proxy:
    """The listener, the machines, the upstream session and its failover."""

    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.prefixes = PrefixAllocator(settings.prefix_size)
        self.split: Split | None = None
        self.session: UpstreamSession | None = None
        self.stats = ProxyStats()
        self.machines: set[Downstream] = set()
        self.by_ip: Counter[str] = Counter()
        self.jobs: dict[str, tuple[Job, float, Split]] = {}  # job id -> job, difficulty, split
        self.difficulty: float | None = None
        self._last_notify: bytes | None = None  # the current job, clean, as machines get it
        self._force_clean = False
        self.switches = 0  # upstream sessions opened (tests and logs)
        self._ready = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._manager: asyncio.Task[None] | None = None
        self._draining: set[asyncio.Task[None]] = set()
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, wait: float | None = None) -> None:
        """Reach an upstream (primary, else backup), then listen."""
        self._manager = asyncio.create_task(self._manage())
        async with asyncio.timeout(wait if wait is not None else 4 * self.settings.connect_timeout):
            await self._ready.wait()
        st = self.settings
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
        if self._manager is not None:
            self._manager.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._manager
        if self.session is not None:
            await self.session.close()
        for task in list(self._draining):
            task.cancel()

    def stats_dict(self) -> dict[str, Any]:
        """The stats call: counters, machines, the upstream in use."""
        out = self.stats.as_dict()
        out["machines"] = len(self.machines)
        out["upstream"] = str(self.session.target) if self.session is not None else None
        out["upstream_sessions"] = self.switches
        out["difficulty"] = self.difficulty
        return out

    # --- upstream -----------------------------------------------------------------------

    async def _open(self, target: Upstream) -> UpstreamSession | None:
        st = self.settings
        try:
            return await UpstreamSession.open(
                target, st.user, st.password, UPSTREAM_VERSION_MASK, st.connect_timeout,
                st.upstream_idle, self._on_notification, self._on_verdict,
            )  # fmt: skip
        except (OSError, TimeoutError, StratumError) as exc:
            log.warning("upstream %s unavailable: %s", target, exc)
            return None

    async def _manage(self) -> None:
        st = self.settings
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
                    self._drain_later(session)
                    break
            # lost (or left) the backup: back to the top, primary first

    def _use(self, session: UpstreamSession) -> bool:
        """Make `session` the one machines mine for; False if its extranonce space is too small."""
        try:
            if self.split is None:
                split = Split.first(
                    session.extranonce1, session.extranonce2_size, self.settings.prefix_size
                )
            else:
                split = self.split.next_session(session.extranonce1, session.extranonce2_size)
        except StratumError as exc:
            log.warning("upstream %s refused: %s", session.target, exc)
            self._drain_later(session)
            return False
        self.split, self.session = split, session
        self.jobs.clear()
        self._force_clean = True
        self.switches += 1
        log.info("mining for %s (extranonce1 %s)", session.target, session.extranonce1.hex())
        for note in session.early:
            self._on_notification(session, note)
        session.early.clear()
        self._ready.set()
        return True

    def _drain_later(self, old: UpstreamSession) -> None:
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
                self._drain_later(session)

    def _new_job(self, job: Job) -> None:
        split = self.split
        if split is None or self.difficulty is None:
            return
        clean = job.clean_jobs or self._force_clean
        self._force_clean = False
        if clean:
            self.jobs.clear()
        self.jobs[job.job_id] = (job, self.difficulty, split)
        while len(self.jobs) > MAX_JOBS:
            del self.jobs[next(iter(self.jobs))]
        down = replace(job, coinb1=downstream_coinb1(job.coinb1, split))
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
        for d in self.machines:
            if d.ready:
                d.write(line)

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
        if d.prefix is not None:
            self.prefixes.release(d.prefix)

    def submit(self, d: Downstream, req: Request) -> None:
        """Check a machine's share against its job's upstream difficulty; forward it."""
        share = m.parse_submit(req.params)
        if share.worker not in d.workers:
            d.write(
                encode(m.error(req.id, ErrorCode.UNAUTHORIZED, f"{share.worker} not authorized"))
            )
            return
        split, session, prefix = self.split, self.session, d.prefix
        if prefix is None:
            d.write(encode(m.error(req.id, ErrorCode.NOT_SUBSCRIBED)))
            return
        entry = self.jobs.get(share.job_id)
        if entry is None or split is None or session is None:
            self.stats.rejected["job not found"] += 1
            d.write(encode(m.error(req.id, ErrorCode.JOB_NOT_FOUND)))
            return
        job, difficulty, split = entry  # the split the job was sent with
        full = split.full_extranonce2(prefix, share.extranonce2)
        version = job.version
        if share.version_bits is not None:
            if d.version_mask is None or share.version_bits & ~d.version_mask & 0xFFFFFFFF:
                self.stats.rejected["version bits outside the mask"] += 1
                d.write(encode(m.error(req.id, ErrorCode.OTHER, "version bits outside the mask")))
                return
            version = apply_version_bits(job.version, share.version_bits, d.version_mask)
        header = job.header(split.upstream_extranonce1, full, share.ntime, share.nonce, version)
        if hash_to_int(sha256d(header)) > difficulty_to_target(difficulty):
            self.stats.low_difficulty += 1
            d.write(encode(m.error(req.id, ErrorCode.LOW_DIFFICULTY)))
            return
        params: list[Any] = [
            self.settings.user,
            share.job_id,
            full.hex(),
            u32_hex(share.ntime),
            u32_hex(share.nonce),
        ]
        if share.version_bits is not None:
            params.append(u32_hex(share.version_bits))
        info = ShareInfo(share.worker.split(".", 1)[0], share.worker, difficulty)
        if not session.submit(params, d, req.id, info):
            self.stats.rejected["upstream not connected"] += 1
            d.write(encode(m.error(req.id, ErrorCode.OTHER, "upstream not connected")))

    def _on_verdict(self, conn: object, downstream_id: object, info: object, res: Response) -> None:
        """The upstream answered a forwarded share (or was lost first): tell the machine."""
        d, share = cast(Downstream, conn), cast(ShareInfo, info)
        if res.ok and res.result is True:
            st = self.stats
            st.accepted += 1
            st.work_by_customer[share.customer] += share.difficulty
            st.work_by_machine[share.worker] += share.difficulty
            st.accepted_by_machine[share.worker] += 1
            d.write(encode(m.result(downstream_id, True)))
            return
        error = res.error or RpcError.of(ErrorCode.OTHER, f"upstream answered {res.result!r}")
        if res.id is None:
            self.stats.upstream_lost += 1
        self.stats.rejected[error.message] += 1
        reply = Response(cast(MessageId, downstream_id), None, RpcError(error.code, error.message))
        d.write(encode(reply))
