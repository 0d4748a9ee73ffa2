"""One miner connection: the Stratum V1 methods, as real firmware expects them.

A `Session` receives decoded messages and writes encoded replies through a `write` callable
(the transport's), so it runs the same under asyncio and in unit tests. Everything the
session needs from the pool (extranonce allocation, payout scripts, jobs, share handling)
comes through the narrow `SessionHost` interface.

Order of events a miner sees: `mining.configure` (optional, BIP 310) -> `mining.subscribe`
-> `mining.authorize` -> `mining.set_difficulty` -> `mining.notify`; the first notify waits
until both subscribe and authorize have succeeded, because in solo mode the coinbase pays
the authorized address. Every request gets an answer; unknown methods get error 20.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

from hashfarm.errors import ConfigError, HashfarmError
from hashfarm.pool import records as r
from hashfarm.pool.jobs import JobBook, PoolJob, SeenHashes
from hashfarm.pool.settings import PoolSettings
from hashfarm.pool.shares import Limits, Verdict, judge, parse, reject
from hashfarm.pool.vardiff import Vardiff
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import ErrorCode, Message, Request, Response, encode, encode_ack
from hashfarm.stratum.work import u32_hex

log = logging.getLogger(__name__)

Write = Callable[[bytes], None]
HISTORY_KEPT = 8  # difficulty changes remembered per session (older jobs use the oldest)
_NO_SEEN = SeenHashes(0)  # for unknown jobs, which the judge rejects before any lookup
MAX_WORKER_NAME = 256  # characters of a user name (an address and a worker name fit easily)


class SessionHost(Protocol):
    """What a session needs from the pool (implemented by the server/service)."""

    settings: PoolSettings
    jobs: JobBook

    def claim_extranonce1(self, session: Session, wanted: bytes | None) -> bytes:
        """A free extranonce1: `wanted` (session resume) when it is free."""
        ...

    def payout_for(self, username: str) -> tuple[str, bytes]:
        """(account, payout script) for a username; raises HashfarmError naming the problem."""
        ...

    def joined(self, session: Session) -> None:
        """The session is subscribed and authorized: start sending it work."""
        ...

    def handle_verdict(self, session: Session, msg_id: Any, verdict: Verdict) -> None:
        """Submit blocks, record the share, then answer the miner (maybe later)."""
        ...

    def now(self) -> float:
        """UNIX time (the session and vardiff never read a clock themselves)."""
        ...


class Session:
    """The state of one Stratum connection and its request handlers."""

    __slots__ = (  # 10,000 of these per process: no per-instance __dict__
        "_history",
        "_lim",
        "accepted",
        "account",
        "auth_failures",
        "closed",
        "connected_at",
        "extranonce1",
        "extranonce2_size",
        "extranonce_subscribed",
        "host",
        "junk",
        "last_activity",
        "last_job",
        "last_txns",
        "number",
        "payout_script",
        "peer",
        "rejected",
        "sent_difficulty",
        "steady",
        "subscribed",
        "user_agent",
        "vardiff",
        "version_mask",
        "workers",
        "write",
    )

    def __init__(self, host: SessionHost, write: Write, peer: str, number: int) -> None:
        self.host = host
        self.write = write
        self.peer = peer
        self.number = number  # connection counter, for log prefixes
        st = host.settings.stratum
        self.extranonce2_size = st.extranonce2_size
        self.extranonce1 = b""
        self.user_agent: str | None = None
        self.subscribed = False
        self.workers: dict[str, str] = {}  # authorized username -> account
        self.account: str | None = None
        self.payout_script: bytes | None = None
        self.version_mask = 0  # negotiated BIP 310 mask; 0: no rolling
        self.extranonce_subscribed = False
        now = host.now()
        tpl = host.jobs.template
        network_difficulty = tpl.difficulty if tpl else 1e300
        self.vardiff = Vardiff(
            host.settings.vardiff, now, network_difficulty, host.settings.network
        )
        self.sent_difficulty: float | None = None
        self.steady = False  # True: the next job is just the shared notify line (fan-out fast path)
        self._history: list[tuple[int, float]] = []  # (first job seq, difficulty) changes
        self._lim: Limits | None = None  # the last share's limits, reused while unchanged
        self.last_job: PoolJob | None = None
        self.connected_at = now
        self.last_activity = now
        self.accepted = 0
        self.rejected = 0
        self.closed = False
        self.junk = 0  # lines that were not Stratum we serve (the server bans on these)
        self.auth_failures = 0  # refused mining.authorize (the server bans on these)
        self.last_txns = -1e300  # when mining.get_transactions was last answered

    def __repr__(self) -> str:
        return f"<Session #{self.number} {self.peer} {self.extranonce1.hex() or '-'}>"

    @property
    def prefix(self) -> str:
        """Log prefix naming this connection."""
        return f"[#{self.number} {self.peer} {self.extranonce1.hex() or '-'}]"

    @property
    def ready(self) -> bool:
        """Subscribed and authorized: it gets jobs."""
        return self.subscribed and self.payout_script is not None

    @property
    def authorized(self) -> bool:
        """A mining.authorize succeeded on this connection."""
        return self.payout_script is not None

    # -- dispatch -----------------------------------------------------------------------

    def handle(self, message: Message) -> None:
        """Answer one decoded message (requests get exactly one response)."""
        self.last_activity = self.host.now()
        if isinstance(message, Response):
            return  # answers to our own (rare) requests; nothing to do
        method = message.method
        handler = _HANDLERS.get(method)
        msg_id = message.id if isinstance(message, Request) else None
        if handler is None:
            if self.payout_script is None:  # after authorize: a firmware quirk, not an attack
                self.junk += 1
            return self.reply_error(msg_id, ErrorCode.OTHER, f"unknown method {method[:64]!r}")
        if self.payout_script is None and method not in BEFORE_AUTHORIZE:
            # The budget before authorize: a stranger reaches only the handshake.
            self.junk += 1
            if not self.subscribed:
                return self.reply_error(msg_id, ErrorCode.NOT_SUBSCRIBED, "subscribe first")
            return self.reply_error(msg_id, ErrorCode.UNAUTHORIZED, f"{method}: authorize first")
        try:
            handler(self, msg_id, message.params)
        except HashfarmError as exc:
            self.reply_error(msg_id, ErrorCode.OTHER, str(exc))

    def reply(self, msg_id: Any, value: Any) -> None:
        """Send a result (notifications, id None, get none)."""
        if msg_id is not None:
            self.write(encode(m.result(msg_id, value)))

    def ack(self, msg_id: Any) -> None:
        """`reply(msg_id, True)`, for accepted shares: the line is built without a Response."""
        if msg_id is not None:
            self.write(encode_ack(msg_id))

    def reply_error(self, msg_id: Any, code: ErrorCode, message: str) -> None:
        """Send `[code, message, null]` (notifications, id None, get none)."""
        if msg_id is not None:
            self.write(encode(m.error(msg_id, code, message)))

    # -- methods ------------------------------------------------------------------------

    def on_subscribe(self, msg_id: Any, params: tuple[Any, ...]) -> None:
        """mining.subscribe [agent, session id]: resume the old extranonce1 when free."""
        sub = m.parse_subscribe(params)
        self.user_agent = sub.user_agent
        if not self.subscribed:
            wanted = _hex_or_none(sub.session_id)
            self.extranonce1 = self.host.claim_extranonce1(self, wanted)
            self.subscribed = True
        sid = self.extranonce1.hex()
        self.reply(msg_id, m.subscribe_result(self.extranonce1, self.extranonce2_size, sid))
        self._maybe_join()

    def on_authorize(self, msg_id: Any, params: tuple[Any, ...]) -> None:
        """mining.authorize [user, password]: solo mode checks the address for the network."""
        auth = m.parse_authorize(params)
        name = auth.username
        try:
            _check_worker_name(name)
            account, script = self.host.payout_for(name)
        except HashfarmError as exc:
            log.info("%s authorize %r refused: %r", self.prefix, name[:MAX_WORKER_NAME], str(exc))
            return self._refuse(msg_id, str(exc))
        if self.payout_script is not None and script != self.payout_script:
            return self._refuse(
                msg_id, "one payout address per connection: open another connection for this one"
            )
        cap = self.host.settings.stratum.max_workers
        if name not in self.workers and len(self.workers) >= cap:
            return self._refuse(
                msg_id, f"{cap} workers on this connection already: open another connection"
            )
        self.workers[name] = account
        self.account, self.payout_script = account, script
        self.reply(msg_id, True)
        self._maybe_join()

    def _refuse(self, msg_id: Any, message: str) -> None:
        self.auth_failures += 1
        self.reply_error(msg_id, ErrorCode.UNAUTHORIZED, message)

    def on_configure(self, msg_id: Any, params: tuple[Any, ...]) -> None:
        """mining.configure (BIP 310): answer every requested extension."""
        conf = m.parse_configure(params)
        result: dict[str, Any] = {}
        for ext in conf.extensions:
            result.update(self._configure_one(ext, conf))
        self.reply(msg_id, result)

    def _configure_one(self, ext: str, conf: m.Configure) -> dict[str, Any]:
        if ext == m.VERSION_ROLLING:
            asked = conf.version_rolling_mask
            self.version_mask = self.host.settings.stratum.version_mask & (asked or 0)
            return m.configure_result(self.version_mask)
        if ext == "minimum-difficulty":
            value = conf.parameters.get("minimum-difficulty.value")
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                return {ext: False}
            self._announce(self.vardiff.set_floor(float(value), self.host.now()))
            return {ext: True}
        if ext == "subscribe-extranonce":
            self.extranonce_subscribed = True
            return {ext: True}
        return {ext: False}

    def on_suggest_difficulty(self, msg_id: Any, params: tuple[Any, ...]) -> None:
        """mining.suggest_difficulty [d]: int or float, before or after authorize."""
        self._announce(self.vardiff.suggest(m.parse_suggest_difficulty(params), self.host.now()))
        self.reply(msg_id, True)

    def on_extranonce_subscribe(self, msg_id: Any, params: tuple[Any, ...]) -> None:
        """mining.extranonce.subscribe: yes (our extranonce1 never changes mid-session)."""
        self.extranonce_subscribed = True
        self.reply(msg_id, True)

    def on_get_transactions(self, msg_id: Any, params: tuple[Any, ...]) -> None:
        """mining.get_transactions [job id]: the txids of one of this connection's jobs.

        Txids, not raw transactions (ckpool answers a count; 2,000 raw transactions are about
        2 MB per answer), once per `get_transactions_interval`; only after authorize (the
        allow-list in `handle`) and only for a job of this connection's payout script.
        """
        st = self.host.settings.stratum
        if st.get_transactions == "off":
            return self.reply_error(msg_id, ErrorCode.OTHER, "mining.get_transactions is off")
        job = self.host.jobs.get(str(params[0])) if params else self.last_job
        if job is None or job.payout_script != self.payout_script:
            return self.reply_error(msg_id, ErrorCode.JOB_NOT_FOUND, "job not found")
        now = self.host.now()
        wait = self.last_txns + st.get_transactions_interval - now
        if wait > 0:
            return self.reply_error(msg_id, ErrorCode.OTHER, f"too soon: ask again in {wait:.0f} s")
        self.last_txns = now
        self.reply(msg_id, [tx.txid[::-1].hex() for tx in job.template.transactions])

    def on_submit(self, msg_id: Any, params: tuple[Any, ...]) -> None:
        """mining.submit: judge the share, then let the host record it and answer."""
        if not self.subscribed:
            return self.reply_error(msg_id, ErrorCode.NOT_SUBSCRIBED, "subscribe first")
        verdict = self.judge(params)
        if verdict.accepted:
            self.accepted += 1
            self._announce(self.vardiff.on_share(self.host.now()))
        else:
            self.rejected += 1
        self.host.handle_verdict(self, msg_id, verdict)

    def judge(self, params: tuple[Any, ...]) -> Verdict:
        """Parse and judge a submit's params against this session's state."""
        share = parse(params, self.extranonce2_size)
        if isinstance(share, Verdict):
            return share
        if share.worker not in self.workers:
            return reject(r.REJECT_UNAUTHORIZED, f"worker {share.worker!r} not authorized", share)
        jobs = self.host.jobs
        job = jobs.get(share.job_id)
        if job is not None and job.payout_script != self.payout_script:
            job = None  # another address's job: not this connection's work
        if job is None:
            return judge(None, share, self._limits(None), _NO_SEEN)
        return judge(job, share, self._limits(job), jobs.seen_for(job), jobs.roots(job.job_id))

    def _limits(self, job: PoolJob | None) -> Limits:
        """This share's limits; reused while nothing they depend on changes (hot path)."""
        difficulty, tip = self.difficulty_for(job), self.host.jobs.tip
        lim = self._lim
        if (
            lim is None
            or lim.difficulty != difficulty
            or lim.tip is not tip
            or lim.version_mask != self.version_mask
        ):
            st = self.host.settings.stratum
            lim = Limits(
                self.extranonce1,
                self.extranonce2_size,
                self.version_mask,
                difficulty,
                tip,
                st.ntime_future,
                st.ntime_past,
            )
            self._lim = lim
        return lim

    def difficulty_for(self, job: PoolJob | None) -> float:
        """The difficulty a share for `job` is held to: the lower of then and now."""
        current = self.vardiff.difficulty
        if job is None or not self._history:
            return current
        then = self._history[0][1]
        for first_seq, difficulty in reversed(self._history):
            if first_seq <= job.seq:
                then = difficulty
                break
        return min(then, current)

    # -- work ---------------------------------------------------------------------------

    def _maybe_join(self) -> None:
        if self.ready and self.last_job is None:
            self.host.joined(self)

    def _announce(self, new_difficulty: float | None) -> None:
        """A changed difficulty is sent now and applies to jobs sent after it."""
        if new_difficulty is None or self.last_job is None:
            return
        self.sent_difficulty = new_difficulty
        self.steady = False  # the next job opens a new difficulty period
        self.write(set_difficulty_line(new_difficulty))

    def send_job(self, job: PoolJob) -> None:
        """Write a job's shared notify line (set_difficulty first when it changed).

        Afterwards the session is `steady`: until its difficulty changes, the server's
        fan-out writes the next job's line itself, skipping this method.
        """
        diff = self.vardiff.difficulty
        if diff != self.sent_difficulty:
            self.sent_difficulty = diff
            self.write(set_difficulty_line(diff))
        if not self._history or self._history[-1][1] != diff:
            self._history.append((job.seq, diff))
            del self._history[:-HISTORY_KEPT]
        self.last_job = job
        self.steady = True
        self.write(job.notify_line)

    def network_changed(self, network_difficulty: float) -> None:
        """A new template's difficulty re-clamps vardiff (sent with the next job)."""
        self.vardiff.set_network_difficulty(network_difficulty, self.host.now())
        self.steady = False

    def tick(self, now: float) -> None:
        """Periodic: time-based vardiff retarget."""
        self._announce(self.vardiff.tick(now))

    def reconnect(self, host: str | None = None, port: int | None = None, wait: int = 0) -> None:
        """Ask the miner to reconnect (client.reconnect)."""
        self.write(encode(m.reconnect(host, port, wait)))

    def version_mask_hex(self) -> str:
        """The negotiated mask as Stratum writes it."""
        return u32_hex(self.version_mask)


@functools.lru_cache(maxsize=1024)
def set_difficulty_line(difficulty: float) -> bytes:
    """The encoded `mining.set_difficulty` line, shared by every session at that value."""
    return encode(m.set_difficulty(difficulty))


def _check_worker_name(name: str) -> None:
    """Names go into logs, the API and /metrics labels: printable and of sane length only."""
    if len(name) > MAX_WORKER_NAME:
        raise ConfigError(f"user name longer than {MAX_WORKER_NAME} characters")
    if not name.isprintable():
        raise ConfigError("user name has control characters (newlines, escapes): not allowed")


def _hex_or_none(value: str | None) -> bytes | None:
    if not value:
        return None
    try:
        data = bytes.fromhex(value)
    except ValueError:
        return None
    return data if len(data) == 4 else None


def _ignore(session: Session, msg_id: Any, params: tuple[Any, ...]) -> None:
    session.reply(msg_id, True)


_HANDLERS: dict[str, Callable[[Session, Any, tuple[Any, ...]], None]] = {
    m.SUBSCRIBE: Session.on_subscribe,
    m.AUTHORIZE: Session.on_authorize,
    m.CONFIGURE: Session.on_configure,
    m.SUGGEST_DIFFICULTY: Session.on_suggest_difficulty,
    m.EXTRANONCE_SUBSCRIBE: Session.on_extranonce_subscribe,
    m.SUBMIT: Session.on_submit,
    "mining.get_transactions": Session.on_get_transactions,
    "mining.multi_version": _ignore,  # some older firmware; harmless to acknowledge
}
# What a connection may ask before it has authorized: the handshake, nothing that costs more.
BEFORE_AUTHORIZE = frozenset(
    {
        m.CONFIGURE,
        m.SUBSCRIBE,
        m.AUTHORIZE,
        m.EXTRANONCE_SUBSCRIBE,
        m.SUGGEST_DIFFICULTY,
        "mining.multi_version",
    }
)
