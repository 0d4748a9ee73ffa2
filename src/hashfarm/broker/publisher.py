"""Durable publishing to NATS JetStream with a local fsync spool for broker outages.

`publish` never blocks: it queues the message and returns. A sender task writes queued
messages to the connection with a reply inbox per message (many PubAcks awaited at once, so
throughput is not one round trip per message); the PubAck handler calls `done(None)`. While
the broker is away, or a PubAck does not come within `ack_timeout`, or the stream refuses a
message, the message goes to the spool instead and `done(None)` follows its fsync. When the
broker is back the spool is replayed in order with the same msg_ids (the stream's duplicate
window drops what it already had) and each segment is deleted once every record in it was
acknowledged. `done(BrokerError)` only when the spool is full or the publisher closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from hashfarm.broker.spool import Spool, SpoolRecord, encode_record
from hashfarm.broker.stream import StreamLimits, ensure_stream, server_list
from hashfarm.errors import BrokerError

log = logging.getLogger(__name__)

Done = Callable[[BaseException | None], None]
MSG_ID_HEADER = "Nats-Msg-Id"
_LATENCY_SAMPLES = 8192  # publish-to-done latencies kept for the p50/p99 in stats()
REFUSAL_LOG_S = 10.0  # at most one log line this often while the stream refuses messages


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """A snapshot for health and Prometheus: counters since start, gauges now."""

    connected: bool  # the broker connection is up and the stream exists
    in_flight: int  # messages sent and awaiting their PubAck, plus queued to send
    spool_messages: int  # records in the spool not yet replayed and acknowledged
    spool_bytes: int  # bytes of those records on disk
    acked: int  # messages acknowledged by the broker's PubAck (duplicates included)
    spooled: int  # messages acknowledged by the spool's fsync
    replayed: int  # spooled messages the broker later acknowledged
    refused: int  # messages answered with done(BrokerError): not acknowledged
    publish_p50_ms: float  # median publish-to-done latency of recent messages
    publish_p99_ms: float  # 99th percentile of the same


class _Pending:
    """One message between publish() and done(); `done` is None for a spool replay."""

    __slots__ = ("batch", "done", "msg_id", "payload", "sent", "subject", "t0")

    def __init__(
        self, subject: str, msg_id: str, payload: bytes, done: Done | None, batch: _Replay | None
    ) -> None:
        self.subject = subject
        self.msg_id = msg_id
        self.payload = payload
        self.done = done
        self.batch = batch
        self.t0 = time.monotonic()
        self.sent = 0.0


class _Replay:
    """A window of replayed records awaiting their PubAcks."""

    __slots__ = ("failed", "finished", "pending")

    def __init__(self, n: int) -> None:
        self.pending = n
        self.failed = False
        self.finished = asyncio.Event()

    def settle(self, ok: bool) -> None:
        self.pending -= 1
        self.failed = self.failed or not ok
        if self.pending <= 0 or not ok:
            self.finished.set()


class Publisher:
    """Durable publishing: done(None) once the broker acked the message (JetStream PubAck,
    dedup by msg_id) or, while the broker is away, once the local spool has fsynced it;
    spooled messages are replayed to the broker (same msg_id) when it is back."""

    replay_window = 1000  # replayed records awaiting PubAcks at once
    retry_s = 1.0  # pause before replaying again after a failed replay
    close_flush_s = 2.0  # how long close() waits for PubAcks before spooling the rest

    def __init__(
        self,
        servers: str,
        stream: str,
        subjects: list[str],
        spool_dir: Path,
        *,
        name: str,
        spool_max_bytes: int = 1 << 30,
        max_in_flight: int = 10_000,
        ack_timeout: float = 2.0,
        limits: StreamLimits | None = None,
    ) -> None:
        self.servers = servers
        self.stream = stream
        self.subjects = list(subjects)
        wildcards = any("*" in x or ">" in x for x in self.subjects)
        self._literal_subjects = frozenset() if wildcards else frozenset(self.subjects)
        self.name = name
        self.max_in_flight = max_in_flight  # past this, messages go to the spool
        self.ack_timeout = ack_timeout  # seconds to wait for a PubAck before spooling
        self.limits = limits or StreamLimits()
        self._spool = Spool(Path(spool_dir), spool_max_bytes)
        self._spool_lock = asyncio.Lock()
        self._nc: Client | None = None
        self._connected = False
        self._closing = False
        self._outbox: deque[_Pending] = deque()
        self._inflight: dict[str, _Pending] = {}
        self._to_spool: list[tuple[_Pending, bytes]] = []
        self._tokens = itertools.count(1)
        self._inbox = ""
        self._send_wake = asyncio.Event()
        self._spool_wake = asyncio.Event()
        self._replay_wake = asyncio.Event()
        self._spool_idle = asyncio.Event()
        self._spool_idle.set()
        self._ready = asyncio.Event()  # set on the first connection
        self._tasks: list[asyncio.Task[None]] = []
        self._latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self._counts = {"acked": 0, "spooled": 0, "replayed": 0, "refused": 0}
        self._refusals = 0  # stream refusals since the last log line
        self._refusal_logged = 0.0

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self, connect_wait: float = 2.0) -> None:
        """Open the spool and connect; when the broker does not answer within
        `connect_wait` seconds, return anyway and spool until it does."""
        try:
            await asyncio.to_thread(self._spool.open)
        except OSError as exc:
            raise BrokerError(f"cannot open the spool {self._spool.directory}: {exc}") from exc
        for coro in (self._connect(), self._send_loop(), self._spool_loop(), self._replay_loop()):
            self._tasks.append(asyncio.create_task(coro))
        self._tasks.append(asyncio.create_task(self._timeout_loop()))
        try:
            await asyncio.wait_for(self._ready.wait(), connect_wait)
        except TimeoutError:
            log.warning("broker %s not reachable yet: spooling", self.servers)

    async def close(self) -> None:
        """Wait briefly for outstanding PubAcks, fsync everything else into the spool."""
        self._closing = True
        deadline = time.monotonic() + self.close_flush_s
        while (self._outbox or self._inflight) and self._connected:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        self._connected = False
        self._divert_all()
        await self._spool_drained()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        async with self._spool_lock:
            await asyncio.to_thread(self._spool.close)

    # -- the share path ------------------------------------------------------------------------

    def publish(self, subject: str, msg_id: str, payload: bytes, done: Done) -> None:
        """Queue a message; `done` is called once, from the event loop, with None when it
        is durable (PubAck or spool fsync) or a BrokerError when it is not."""
        p = _Pending(subject, msg_id, payload, done, None)
        if self._closing:
            self._refuse(p, "publisher is closed")
        elif self._literal_subjects and subject not in self._literal_subjects:
            self._refuse(p, f"subject {subject} is not one of the stream's {self.subjects}")
        elif self._connected and len(self._inflight) + len(self._outbox) < self.max_in_flight:
            self._outbox.append(p)
            self._send_wake.set()
        else:
            self._spool_message(p)

    def stats(self) -> PublisherStats:
        """Counters and gauges for health endpoints and Prometheus."""
        lat = sorted(self._latencies)
        p50 = lat[len(lat) // 2] * 1000 if lat else 0.0
        p99 = lat[min(len(lat) - 1, len(lat) * 99 // 100)] * 1000 if lat else 0.0
        return PublisherStats(
            connected=self._connected,
            in_flight=len(self._inflight) + len(self._outbox),
            spool_messages=self._spool.messages,
            spool_bytes=self._spool.bytes,
            publish_p50_ms=p50,
            publish_p99_ms=p99,
            **self._counts,
        )

    # -- connection ----------------------------------------------------------------------------

    async def _connect(self) -> None:
        try:
            await self._open_connection()
        except Exception:  # a bad URL or credentials: say so, keep spooling
            log.exception("cannot connect to the broker %s; spooling only", self.servers)

    async def _open_connection(self) -> None:
        nc = Client()
        self._nc = nc
        await nc.connect(
            server_list(self.servers),
            name=self.name,
            max_reconnect_attempts=-1,  # keep trying; the spool holds the messages meanwhile
            reconnect_time_wait=1,
            connect_timeout=2,
            ping_interval=2,  # a silent broker (a partition) is noticed within ~4-6 s
            max_outstanding_pings=2,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._inbox = nc.new_inbox() + "."
        await nc.subscribe(
            self._inbox + "*", cb=self._on_ack, pending_msgs_limit=0, pending_bytes_limit=0
        )  # bounded by max_in_flight already; a dropped PubAck would only spool its message
        await self._make_ready()

    async def _on_error(self, exc: Exception) -> None:
        log.debug("broker %s: %s", self.servers, exc)

    async def _on_disconnected(self) -> None:
        if self._connected:
            log.warning("broker %s lost: spooling to %s", self.servers, self._spool.directory)
        self._connected = False
        self._divert_all()

    async def _on_reconnected(self) -> None:
        self._tasks.append(asyncio.create_task(self._make_ready()))

    async def _make_ready(self) -> None:
        """Mark the publisher connected once the stream exists (created if need be)."""
        assert self._nc is not None
        while not self._closing:
            try:
                await ensure_stream(self._nc.jetstream(), self.stream, self.subjects, self.limits)
                break
            except Exception as exc:  # JetStream down or refusing: stay on the spool
                log.warning("stream %s not available (%s); retrying", self.stream, exc)
                await asyncio.sleep(self.retry_s)
                if not self._nc.is_connected:
                    return
        if self._nc.is_connected and not self._closing:
            log.info("broker %s connected", self.servers)
            self._connected = True
            self._ready.set()
            self._send_wake.set()
            self._replay_wake.set()

    def _divert_all(self) -> None:
        """Everything queued or awaiting a PubAck goes to the spool (or fails its replay)."""
        pending = list(self._inflight.values()) + list(self._outbox)
        self._inflight.clear()
        self._outbox.clear()
        for p in pending:
            self._not_acked(p)

    # -- sending and PubAcks -------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            await self._send_wake.wait()
            self._send_wake.clear()
            nc = self._nc
            while self._outbox and self._connected and nc is not None:
                p = self._outbox.popleft()
                await self._send(nc, p)

    async def _send(self, nc: Client, p: _Pending) -> None:
        token = str(next(self._tokens))
        p.sent = time.monotonic()
        self._inflight[token] = p
        try:
            await nc.publish(
                p.subject, p.payload, reply=self._inbox + token, headers={MSG_ID_HEADER: p.msg_id}
            )
        except Exception as exc:  # connection lost or message too large: not acked
            log.debug("publish %s failed: %s", p.msg_id, exc)
            if self._inflight.pop(token, None) is not None:
                self._not_acked(p)

    async def _on_ack(self, msg: Msg) -> None:
        p = self._inflight.pop(msg.subject[len(self._inbox) :], None)
        if p is None:
            return  # timed out or diverted already: the spool has it
        headers = msg.headers or {}
        if headers.get("Status") or b'"error"' in msg.data[:16]:
            self._refusals += 1
            if time.monotonic() >= self._refusal_logged + REFUSAL_LOG_S:
                self._refusal_logged = time.monotonic()
                why = (headers, msg.data[:200])
                log.warning("stream %s refused %d messages (spooled), the last %s: %r",
                            self.stream, self._refusals, p.msg_id, why)  # fmt: skip
                self._refusals = 0
            self._not_acked(p)
        elif p.batch is not None:
            p.batch.settle(True)
        else:
            self._counts["acked"] += 1
            self._finish(p, None)

    async def _timeout_loop(self) -> None:
        while True:
            await asyncio.sleep(min(0.25, self.ack_timeout / 4))
            limit = time.monotonic() - self.ack_timeout
            while self._inflight:
                token, p = next(iter(self._inflight.items()))  # the oldest sent
                if p.sent > limit:
                    break
                del self._inflight[token]
                self._not_acked(p)

    def _not_acked(self, p: _Pending) -> None:
        if p.batch is not None:
            p.batch.settle(False)
        else:
            self._spool_message(p)

    def _finish(self, p: _Pending, exc: BaseException | None) -> None:
        assert p.done is not None
        self._latencies.append(time.monotonic() - p.t0)
        try:
            p.done(exc)
        except Exception:
            log.exception("a publish done() callback raised")

    def _refuse(self, p: _Pending, why: str) -> None:
        self._counts["refused"] += 1
        asyncio.get_running_loop().call_soon(self._finish, p, BrokerError(why))

    # -- the spool -----------------------------------------------------------------------------

    def _spool_message(self, p: _Pending) -> None:
        try:
            record = encode_record(p.subject, p.msg_id, p.payload)
        except BrokerError as exc:
            self._refuse(p, str(exc))
            return
        if not self._spool.reserve(len(record)):
            self._refuse(p, f"spool {self._spool.directory} is full")
            return
        self._to_spool.append((p, record))
        self._spool_idle.clear()
        self._spool_wake.set()

    async def _spool_loop(self) -> None:
        while True:
            await self._spool_wake.wait()
            self._spool_wake.clear()
            while self._to_spool:
                batch, self._to_spool = self._to_spool, []
                await self._write_spool(batch)
            self._spool_idle.set()

    async def _write_spool(self, batch: list[tuple[_Pending, bytes]]) -> None:
        records = [record for _, record in batch]
        try:
            async with self._spool_lock:
                await asyncio.to_thread(self._spool.append, records)
        except OSError as exc:
            log.error("spool write failed: %s", exc)
            for p, _ in batch:
                self._counts["refused"] += 1
                self._finish(p, BrokerError(f"spool write failed: {exc}"))
            return
        self._counts["spooled"] += len(batch)
        for p, _ in batch:
            self._finish(p, None)
        if self._connected:
            self._replay_wake.set()

    async def _spool_drained(self) -> None:
        while self._to_spool or not self._spool_idle.is_set():
            self._spool_wake.set()
            await self._spool_idle.wait()
            await asyncio.sleep(0)

    # -- replay --------------------------------------------------------------------------------

    async def _replay_loop(self) -> None:
        while True:
            await self._replay_wake.wait()
            self._replay_wake.clear()
            while self._connected and self._spool.messages and not self._closing:
                if not await self._replay_pass():
                    await asyncio.sleep(self.retry_s)
                    await self._recheck_stream()

    async def _recheck_stream(self) -> None:
        """After a failed replay: recreate the stream if an operator deleted it."""
        if self._nc is not None and self._connected:
            try:
                await ensure_stream(self._nc.jetstream(), self.stream, self.subjects, self.limits)
            except Exception as exc:
                log.debug("stream %s check failed: %s", self.stream, exc)

    async def _replay_pass(self) -> bool:
        """Replay every sealed segment in order; False at the first one not fully acked."""
        async with self._spool_lock:
            await asyncio.to_thread(self._spool.seal)
            segments = self._spool.sealed()
        for path in segments:
            records = await asyncio.to_thread(self._spool.read, path)
            if not await self._replay_records(records):
                return False
            async with self._spool_lock:
                await asyncio.to_thread(self._spool.drop, path)
            self._counts["replayed"] += len(records)
            log.info("replayed %d spooled messages from %s", len(records), path.name)
        return True

    async def _replay_records(self, records: list[SpoolRecord]) -> bool:
        nc = self._nc
        for i in range(0, len(records), self.replay_window):
            window = records[i : i + self.replay_window]
            batch = _Replay(len(window))
            for r in window:
                if not self._connected or nc is None:
                    return False
                await self._send(nc, _Pending(r.subject, r.msg_id, r.payload, None, batch))
            await batch.finished.wait()
            if batch.failed:
                return False
        return True

    def __repr__(self) -> str:
        s: Any = self.stats()
        return f"<Publisher {self.name} stream={self.stream} {s}>"
