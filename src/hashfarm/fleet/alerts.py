"""Faults and poll errors -> alerts, with hysteresis so a flapping sensor does not page anyone
100 times. The core (`AlertEngine`) is pure: time is passed in, events come out. The edges
(`LogSink`, `WebhookSink`) do the I/O, and the store keeps every alert for the API.

An alert is keyed by (machine, kind, board). Rules, per key, judged on each poll:
- **raise** after `raise_after` consecutive polls showing it, or on the first one for a kind
  in `immediate` (overheating, a machine that stopped hashing: waiting costs hardware);
- **clear** after `clear_after` consecutive polls not showing it; a poll that failed
  (unreachable, bad reply) says nothing about the machine's faults, so it neither counts
  for nor against them, while the failure itself is an alert kind of its own;
- **page at most once per `repage_s`**: a key that raises again within that window of its
  last page is raised silently (visible in the API, `notified` False, not sent to sinks),
  and its clear is silent too. A sensor flapping all day pages once an hour, not 100 times.

A poll error's kind is its sample's prefix (`unreachable`, `bad_reply`, `command_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Literal, Protocol

import aiohttp

from hashfarm.errors import ConfigError
from hashfarm.fleet.faults import Fault, FaultKind
from hashfarm.fleet.poller import Round

__all__ = [
    "ERROR_KINDS",
    "Alert",
    "AlertEngine",
    "AlertEvent",
    "AlertPolicy",
    "AlertRecorder",
    "AlertService",
    "AlertSink",
    "LogSink",
    "Severity",
    "WebhookSink",
    "severity_of",
]

log = logging.getLogger("hashfarm.fleet.alerts")

ERROR_KINDS = ("unreachable", "bad_reply", "command_error", "error")  # see poller.error_kind


class Severity(StrEnum):
    """How urgently an operator acts."""

    CRITICAL = "critical"  # hardware at risk or no money made: act now
    WARNING = "warning"  # degraded: act today
    INFO = "info"  # a state an operator may have chosen (sleep)


_SEVERITY: dict[str, Severity] = {
    FaultKind.OVERHEATING: Severity.CRITICAL,
    FaultKind.NOT_HASHING: Severity.CRITICAL,
    FaultKind.NO_LIVE_POOL: Severity.CRITICAL,
    FaultKind.MISSING_BOARD: Severity.CRITICAL,
    FaultKind.DEAD_BOARD: Severity.CRITICAL,
    FaultKind.DEAD_FAN: Severity.CRITICAL,
    "unreachable": Severity.CRITICAL,
    FaultKind.IDLE: Severity.INFO,
}


def severity_of(kind: str) -> Severity:
    """A kind's severity (WARNING unless listed as critical or info)."""
    return _SEVERITY.get(kind, Severity.WARNING)


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """Hysteresis of the alert engine."""

    raise_after: int = 2  # consecutive polls showing a fault before it raises
    clear_after: int = 3  # consecutive polls without it before it clears
    immediate: frozenset[str] = frozenset({FaultKind.OVERHEATING, FaultKind.NOT_HASHING})
    repage_s: float = 3600.0  # a key pages at most once per this many seconds

    def __post_init__(self) -> None:
        checks = {
            "raise_after": 1 <= self.raise_after <= 1000,
            "clear_after": 1 <= self.clear_after <= 1000,
            "repage_s": 0 <= self.repage_s <= 7 * 86_400,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"fleet.alerts.{name}: {getattr(self, name)!r} is out of range")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: raised at `raised_at`, open while `cleared_at` is None."""

    machine_id: str
    kind: str  # a FaultKind value or an ERROR_KINDS entry
    board: int | None
    severity: Severity
    detail: str
    raised_at: float
    notified: bool  # False: raised inside the repage window, kept from the sinks
    cleared_at: float | None = None

    @property
    def key(self) -> tuple[str, str, int | None]:
        """(machine, kind, board): what identifies an alert across polls."""
        return (self.machine_id, self.kind, self.board)

    def as_json(self) -> dict[str, object]:
        """The alert as the API and the webhook send it."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A change: an alert raised or cleared at `at`."""

    action: Literal["raised", "cleared"]
    alert: Alert
    at: float


Key = tuple[str, str, int | None]


@dataclass(slots=True)
class _Track:
    bad: int = 0  # consecutive polls showing the key
    good: int = 0  # consecutive polls not showing it
    alert: Alert | None = None  # open alert
    paged_at: float | None = None  # when this key last paged
    detail: str = ""


@dataclass(slots=True)
class AlertEngine:
    """The hysteresis state of every (machine, kind, board), fed one poll at a time."""

    policy: AlertPolicy = field(default_factory=AlertPolicy)
    _tracks: dict[str, dict[Key, _Track]] = field(default_factory=dict)  # by machine

    def observe(
        self, machine_id: str, at: float, faults: Iterable[Fault] = (), error: str | None = None
    ) -> list[AlertEvent]:
        """Judge one poll of one machine: its faults, or the error that stopped the poll."""
        shown: dict[Key, str] = {}
        if error is not None:
            kind = error.split(":", 1)[0]
            shown[(machine_id, kind if kind in ERROR_KINDS else "error", None)] = error
        else:
            for f in faults:
                shown.setdefault((machine_id, str(f.kind), f.board), f.detail)
        tracks = self._tracks.setdefault(machine_id, {})
        events: list[AlertEvent] = []
        for key, detail in shown.items():
            event = self._bad(tracks.setdefault(key, _Track()), key, detail, at)
            if event is not None:
                events.append(event)
        for key in [k for k in tracks if k not in shown]:
            if error is not None and key[1] not in ERROR_KINDS:
                continue  # a failed poll says nothing about the machine's faults
            event = self._good(tracks, key, at)
            if event is not None:
                events.append(event)
        if not tracks:
            del self._tracks[machine_id]
        return events

    def _bad(self, t: _Track, key: Key, detail: str, at: float) -> AlertEvent | None:
        t.bad, t.good, t.detail = t.bad + 1, 0, detail
        if t.alert is not None:
            t.alert = replace(t.alert, detail=detail)  # the latest reading, no new event
            return None
        if t.bad < self.policy.raise_after and key[1] not in self.policy.immediate:
            return None
        notify = t.paged_at is None or at - t.paged_at >= self.policy.repage_s
        if notify:
            t.paged_at = at
        t.alert = Alert(*key, severity_of(key[1]), detail, at, notify)
        return AlertEvent("raised", t.alert, at)

    def _good(self, tracks: dict[Key, _Track], key: Key, at: float) -> AlertEvent | None:
        t = tracks[key]
        t.good, t.bad = t.good + 1, 0
        if t.alert is not None and t.good >= self.policy.clear_after:
            cleared = replace(t.alert, cleared_at=at)
            t.alert = None
            return AlertEvent("cleared", cleared, at)
        quiet = t.paged_at is None or at - t.paged_at >= self.policy.repage_s
        if t.alert is None and quiet:
            del tracks[key]  # nothing left to remember: memory stays bounded by what is wrong
        return None

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Take back the open alerts a previous run left (the store's): they stay open
        without a new page, and clear by the usual rule once the machine is fine."""
        for alert in alerts:
            if alert.cleared_at is not None:
                continue
            t = _Track(bad=self.policy.raise_after, alert=alert, detail=alert.detail,
                       paged_at=alert.raised_at if alert.notified else None)  # fmt: skip
            self._tracks.setdefault(alert.machine_id, {})[alert.key] = t

    def observe_round(self, round_: Round) -> list[AlertEvent]:
        """Every sample of a poll round."""
        events: list[AlertEvent] = []
        for s in round_.samples:
            events += self.observe(s.machine.id, round_.at, s.faults, s.error)
        return events

    def active(self) -> list[Alert]:
        """Open alerts, most severe first, then oldest."""
        order = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
        alerts = [t.alert for ts in self._tracks.values() for t in ts.values() if t.alert]
        return sorted(alerts, key=lambda a: (order[a.severity], a.raised_at, a.key))


# -- sinks (I/O at the edges) -----------------------------------------------------------------


class AlertSink(Protocol):
    """Where notified alert events go."""

    async def send(self, events: Sequence[AlertEvent]) -> None:
        """Deliver `events` (already filtered to the notified ones); never raise."""


class LogSink:
    """Each event as one log line (critical raises at ERROR, others at WARNING)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or log

    async def send(self, events: Sequence[AlertEvent]) -> None:
        for e in events:
            a = e.alert
            board = f" board {a.board}" if a.board is not None else ""
            level = logging.ERROR if a.severity is Severity.CRITICAL else logging.WARNING
            if e.action == "cleared":
                level = logging.INFO
            self.log.log(level, "fleet alert %s: %s %s%s (%s): %s", e.action, a.machine_id,
                         a.kind, board, a.severity, a.detail)  # fmt: skip


class WebhookSink:
    """POST each event as JSON to `url`: bounded time per attempt, capped retries with
    backoff, a bounded queue (the poller never waits on a slow receiver), one sender task."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,  # one POST, connect included
        retries: int = 3,  # attempts after the first
        backoff_s: float = 1.0,  # doubled after each failed attempt
        queue_max: int = 1000,  # events waiting; beyond it new ones are dropped and logged
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"fleet.alerts.webhook_url: {url!r} is not an http(s) URL")
        self.url, self.timeout_s, self.retries, self.backoff_s = url, timeout_s, retries, backoff_s
        self._queue: asyncio.Queue[AlertEvent] = asyncio.Queue(queue_max)
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    async def send(self, events: Sequence[AlertEvent]) -> None:
        for e in events:
            try:
                self._queue.put_nowait(e)
            except asyncio.QueueFull:
                self.dropped += 1
                log.warning("fleet alert webhook: queue full, dropped %s %s", e.action, e.alert.key)
        if self._task is None:
            self._task = asyncio.create_task(self._sender())

    async def _sender(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:  # one long-lived sender: events go out in order, one at a time
                event = await self._queue.get()
                try:
                    ok = await self._post(session, event)
                finally:
                    self._queue.task_done()
                if ok:
                    self.delivered += 1
                else:
                    self.failed += 1

    async def _post(self, session: aiohttp.ClientSession, event: AlertEvent) -> bool:
        body = {"event": event.action, "at": event.at, "alert": event.alert.as_json()}
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                async with asyncio.timeout(self.timeout_s):
                    async with session.post(self.url, json=body) as resp:
                        if resp.status < 300:
                            return True
                        why = f"HTTP {resp.status}"
            except TimeoutError:
                why = f"no answer within {self.timeout_s:g} s"
            except aiohttp.ClientError as exc:
                why = str(exc) or type(exc).__name__
            if attempt < self.retries:
                log.info("fleet alert webhook: %s, retry in %g s", why, delay)
                await asyncio.sleep(delay)
                delay *= 2
        log.warning("fleet alert webhook: gave up on %s %s after %d attempts: %s",
                    event.action, event.alert.key, self.retries + 1, why)  # fmt: skip
        return False

    async def drain(self) -> None:
        """Wait until every queued event was delivered or given up on."""
        await self._queue.join()

    async def close(self) -> None:
        """Stop sending (queued events are dropped)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class AlertRecorder(Protocol):
    """Keeps alert events for the API (the fleet store)."""

    async def record_alerts(self, events: Sequence[AlertEvent]) -> None:
        """Write raised and cleared alerts."""


class AlertService:
    """A poller sink: each round through the engine; every event to the recorder (the API
    shows silent ones too), notified ones to the sinks. A failing sink is logged, not fatal."""

    def __init__(
        self,
        engine: AlertEngine | None = None,
        *,
        recorder: AlertRecorder | None = None,
        sinks: Sequence[AlertSink] = (),
    ) -> None:
        self.engine = engine or AlertEngine()
        self.recorder = recorder
        self.sinks = list(sinks)

    async def __call__(self, round_: Round) -> None:
        events = self.engine.observe_round(round_)
        if not events:
            return
        if self.recorder is not None:
            await self.recorder.record_alerts(events)
        notified = [e for e in events if e.alert.notified]
        for sink in self.sinks:
            try:
                await sink.send(notified)
            except Exception:
                log.exception("fleet alerts: sink %s failed", type(sink).__name__)
