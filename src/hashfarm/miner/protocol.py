"""The miner's side of a Stratum V1 session, sans-I/O: messages in, events and requests out.

`ClientProtocol` knows the order of the handshake (configure, subscribe, authorize,
suggest_difficulty), binds each job to the extranonce, difficulty and version mask in force
when it arrived (`MinerJob`), keeps the jobs a share may still be submitted for, and turns
responses into events. The asyncio shell (`miner.client`) owns the socket and the clock and
passes `now` in, so every rule here is tested without a socket.

Staleness: a share is only submitted while its job is still known and its prevhash is the
tip of the newest job; `clean_jobs` (or a new prevhash) forgets older jobs at once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from hashfarm.chain.pow import difficulty_to_target
from hashfarm.errors import StratumError
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import Message, Notification, Request, Response
from hashfarm.stratum.work import Job

JOBS_KEPT = 8  # recent jobs (same tip) a late share may still be submitted for


@dataclass(frozen=True, slots=True)
class MinerJob:
    """A job with the session state that applies to work built from it."""

    job: Job
    extranonce1: bytes
    extranonce2_size: int
    difficulty: float  # share difficulty; a found share must reach it
    share_target: int  # the target that difficulty stands for (solo: the block target)
    version_mask: int  # negotiated BIP 310 mask; 0 when version-rolling is off
    generation: int  # bumps whenever queued work must be dropped (clean_jobs, new tip)


@dataclass(frozen=True, slots=True)
class FoundShare:
    """A nonce that met the share target, with everything mining.submit needs."""

    work: MinerJob
    extranonce2: bytes
    ntime: int
    nonce: int
    version: int  # the full header version hashed
    hash: bytes  # sha256d of the header, internal order
    difficulty: float  # the hash's own difficulty
    thread: int = 0


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The pool answered mining.subscribe."""

    extranonce1: bytes
    extranonce2_size: int
    session_id: str | None
    resumed: bool  # the pool kept our previous extranonce1 (session resumed)


@dataclass(frozen=True, slots=True)
class Authorized:
    """The pool accepted our worker."""

    worker: str


@dataclass(frozen=True, slots=True)
class Configured:
    """mining.configure answered; `version_mask` is None when version-rolling was refused."""

    version_mask: int | None


@dataclass(frozen=True, slots=True)
class NewWork:
    """Work to hash changed: a new job, or the current one rebound (difficulty, mask)."""

    work: MinerJob
    clean: bool  # drop queued work at once


@dataclass(frozen=True, slots=True)
class DifficultyChanged:
    """mining.set_difficulty."""

    difficulty: float


@dataclass(frozen=True, slots=True)
class ShareResult:
    """The pool's verdict on a share we submitted."""

    share: FoundShare
    accepted: bool
    reason: str | None  # the pool's reject message
    latency: float  # seconds from submit to answer


@dataclass(frozen=True, slots=True)
class ReconnectRequested:
    """client.reconnect: go to host:port (None: the same place) after `wait` seconds."""

    host: str | None
    port: int | None
    wait: float


@dataclass(frozen=True, slots=True)
class PoolMessage:
    """Something the operator should read: client.show_message, or a bad line from the pool."""

    text: str
    problem: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    """The pool refused the session in a way that may pass (full, restarting): reconnect
    after the usual backoff."""

    reason: str


@dataclass(frozen=True, slots=True)
class Fatal:
    """The pool refused us in a way retrying will not fix (worker not authorized)."""

    reason: str


Event = (
    Subscribed
    | Authorized
    | Configured
    | NewWork
    | DifficultyChanged
    | ShareResult
    | ReconnectRequested
    | PoolMessage
    | Retry
    | Fatal
)


class ClientProtocol:
    """One connection's Stratum state for the miner; survives reconnects via `session_id`."""

    def __init__(
        self,
        user: str,
        password: str,
        *,
        user_agent: str,
        version_mask: int | None,
        suggest_difficulty: float | None = None,
    ) -> None:
        self.user, self.password, self.user_agent = user, password, user_agent
        self.offered_mask = version_mask
        self.suggested = suggest_difficulty
        self.session_id: str | None = None
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.difficulty = 1.0
        self.version_mask = 0
        self.generation = 0
        self.authorized = False
        self._jobs: OrderedDict[str, MinerJob] = OrderedDict()
        self._tip: bytes | None = None
        self._next_id = 1
        self._pending: dict[int | str, tuple[str, Any, float]] = {}

    # --- outgoing --------------------------------------------------------------------------

    def opening(self, now: float) -> list[Request]:
        """The handshake for a (re)connection; resumes the previous session when known."""
        self._pending.clear()
        self.authorized = False
        requests = []
        if self.offered_mask:
            requests.append(self._request("configure", None, now, m.configure, self.offered_mask))
        requests.append(
            self._request("subscribe", None, now, m.subscribe, self.user_agent, self.session_id)
        )
        requests.append(
            self._request("authorize", None, now, m.authorize, self.user, self.password)
        )
        if self.suggested is not None:
            requests.append(
                self._request("suggest", None, now, m.suggest_difficulty, self.suggested)
            )
        return requests

    def submit(self, share: FoundShare, now: float) -> Request | None:
        """mining.submit for a share, or None when its job is stale (never sent)."""
        if not self.is_current(share.work):
            return None
        job = share.work.job
        rolled = share.version != job.version and share.work.version_mask != 0
        params = m.Submit(
            self.user,
            job.job_id,
            share.extranonce2,
            share.ntime,
            share.nonce,
            share.version & share.work.version_mask if rolled else None,
        )
        return self._request("submit", share, now, m.submit, params)

    def is_current(self, work: MinerJob) -> bool:
        """True while a share for this work may still be submitted."""
        known = self._jobs.get(work.job.job_id)
        return (
            known is not None
            and known.job == work.job
            and work.job.prev_hash == self._tip
            and work.generation == self.generation
        )

    def current(self) -> MinerJob | None:
        """The newest job, rebound to the difficulty and mask now in force."""
        if not self._jobs:
            return None
        newest = next(reversed(self._jobs.values()))
        difficulty = self._share_difficulty(newest)
        return replace(
            newest,
            difficulty=difficulty,
            share_target=difficulty_to_target(difficulty),
            version_mask=self.version_mask,
        )

    # --- incoming --------------------------------------------------------------------------

    def receive(self, message: Message, now: float) -> list[Event]:
        """Apply one decoded message; returns what the shell should act on."""
        try:
            if isinstance(message, Response):
                return self._on_response(message, now)
            if isinstance(message, Notification):
                return self._on_notification(message)
            return self._on_request(message)
        except StratumError as exc:
            return [PoolMessage(f"bad message from pool: {exc}", problem=True)]

    def _on_response(self, resp: Response, now: float) -> list[Event]:
        pending = self._pending.pop(resp.id, None) if resp.id is not None else None
        if pending is None:
            return [PoolMessage(f"response to unknown id {resp.id!r}", problem=True)]
        kind, context, sent = pending
        if kind == "submit":
            ok = resp.ok and resp.result is not False
            reason = None if ok else (str(resp.error) if resp.error else "rejected")
            return [ShareResult(context, ok, reason, now - sent)]
        handlers = {
            "configure": self._on_configure_result,
            "subscribe": self._on_subscribe_result,
            "authorize": self._on_authorize_result,
            "suggest": self._on_suggest_result,
        }
        return handlers[kind](resp)

    def _on_configure_result(self, resp: Response) -> list[Event]:
        mask = m.parse_configure_result(resp.result) if resp.ok else None
        if mask is not None and self.offered_mask is not None:
            mask &= self.offered_mask
        self.version_mask = mask or 0
        return [Configured(mask), *self._rebind()]

    def _on_subscribe_result(self, resp: Response) -> list[Event]:
        if not resp.ok:
            return [Retry(f"mining.subscribe refused: {resp.error}")]
        result = m.parse_subscribe_result(resp.result)
        resumed = self.session_id is not None and result.extranonce1 == self.extranonce1
        self.extranonce1, self.extranonce2_size = result.extranonce1, result.extranonce2_size
        self.session_id = result.subscription_id or self.session_id
        if not resumed:
            self.drop_jobs()
        return [Subscribed(result.extranonce1, result.extranonce2_size, self.session_id, resumed)]

    def _on_authorize_result(self, resp: Response) -> list[Event]:
        if not resp.ok or resp.result is not True:
            return [Fatal(f"worker {self.user!r} not authorized: {resp.error or 'refused'}")]
        self.authorized = True
        return [Authorized(self.user)]

    def _on_suggest_result(self, resp: Response) -> list[Event]:
        return [] if resp.ok else [PoolMessage(f"suggest_difficulty refused: {resp.error}")]

    def _on_notification(self, note: Notification) -> list[Event]:
        method, params = note.method, note.params
        if method == m.NOTIFY:
            return self._on_notify(m.parse_notify(params))
        if method == m.SET_DIFFICULTY:
            self.difficulty = m.parse_set_difficulty(params)
            return [DifficultyChanged(self.difficulty), *self._rebind()]
        if method == m.SET_EXTRANONCE:
            # Applies from the next job (NiceHash's extension): queued work keeps the old one.
            self.extranonce1, self.extranonce2_size = m.parse_set_extranonce(params)
            return []
        if method == m.SET_VERSION_MASK:
            mask = m.parse_set_version_mask(params)
            self.version_mask = mask & (self.offered_mask or 0)
            return self._rebind()
        if method == m.RECONNECT:
            target = m.parse_reconnect(params)
            return [ReconnectRequested(target.host, target.port, target.wait)]
        if method == m.SHOW_MESSAGE:
            return [PoolMessage(str(params[0]) if params else "")]
        return [PoolMessage(f"ignored unknown notification {method}")]

    def _on_request(self, req: Request) -> list[Event]:
        # Pools sometimes send notifications with an id; treat them the same way.
        return self._on_notification(Notification(req.method, req.params))

    def _on_notify(self, job: Job) -> list[Event]:
        if self.extranonce2_size == 0:
            raise StratumError("mining.notify before mining.subscribe was answered")
        clean = job.clean_jobs or job.prev_hash != self._tip
        if clean:
            self.drop_jobs()
        self._tip = job.prev_hash
        work = MinerJob(
            job,
            self.extranonce1,
            self.extranonce2_size,
            self.difficulty,
            difficulty_to_target(self.difficulty),
            self.version_mask,
            self.generation,
        )
        self._jobs[job.job_id] = work
        while len(self._jobs) > JOBS_KEPT:
            self._jobs.popitem(last=False)
        return [NewWork(work, clean)]

    # --- helpers ---------------------------------------------------------------------------

    def drop_jobs(self) -> None:
        """Forget every job (moving to another pool: its jobs are not ours to finish)."""
        self._jobs.clear()
        self.generation += 1

    def _rebind(self) -> list[Event]:
        work = self.current()
        return [] if work is None else [NewWork(work, clean=False)]

    def _share_difficulty(self, work: MinerJob) -> float:
        # A difficulty change may or may not apply to jobs already sent (pools differ):
        # meeting the higher of the two is accepted either way.
        return max(work.difficulty, self.difficulty)

    def _request(self, kind: str, context: Any, now: float, build: Any, *args: Any) -> Request:
        msg_id = self._next_id
        self._next_id += 1
        self._pending[msg_id] = (kind, context, now)
        request: Request = build(msg_id, *args)
        return request
