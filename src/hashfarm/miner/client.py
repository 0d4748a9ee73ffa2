"""The asyncio shell of the Stratum client: socket, reconnects, and wiring to the engine.

`StratumMiner.run` connects, sends the handshake from `ClientProtocol`, feeds every received
line through the codec into the protocol, and acts on its events: new work goes to the
hashing engine, verdicts to the stats and the reporter, `client.reconnect` moves us to the
pool's new address. A dropped connection (or one silent for `idle_timeout`) is retried
with a doubling delay capped at `backoff_max`, resuming the Stratum session when the pool
allows it. A refused worker is permanent: `run` raises `StratumError` with the pool's reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from hashfarm.chain.pow import bits_to_target, hash_to_int
from hashfarm.errors import StratumError
from hashfarm.miner import protocol as p
from hashfarm.miner.display import Reporter
from hashfarm.miner.engine import HashingEngine
from hashfarm.miner.settings import MinerSettings, PoolURL
from hashfarm.miner.stats import MinerStats
from hashfarm.stratum.codec import LineBuffer, Request, decode, encode
from hashfarm.stratum.work import Job

READ_SIZE = 65536  # bytes per socket read


class _Reconnect(Exception):
    """Leave the current connection and connect again (to `target`, after `wait`)."""

    def __init__(self, reason: str, target: PoolURL | None = None, wait: float = 0.0) -> None:
        super().__init__(reason)
        self.target, self.wait = target, wait


class _Fatal(Exception):
    """The pool refused us for good; ends the run."""


class StratumMiner:
    """Mines for a Stratum V1 pool until cancelled."""

    def __init__(
        self,
        settings: MinerSettings,
        url: PoolURL,
        stats: MinerStats,
        reporter: Reporter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.url, self.stats, self.reporter, self.clock = (
            settings, url, stats, reporter, clock,
        )  # fmt: skip
        self.protocol = p.ClientProtocol(
            settings.user,
            settings.password,
            user_agent=settings.user_agent,
            version_mask=settings.version_mask if settings.version_rolling else None,
            suggest_difficulty=settings.suggest_difficulty,
        )
        self.engine = HashingEngine(settings, stats, self._on_share, clock)
        self.connections = 0  # successful connections so far (tests read it)
        self._writer: asyncio.StreamWriter | None = None
        self._authorized = False  # this connection got through mining.authorize
        self._block_job: Job | None = None  # the job we found a block on (idle on it)

    async def run(self) -> None:
        """Hash and talk to the pool until cancelled or the pool refuses the worker."""
        await self.engine.run_beside(self._connect_forever())

    async def _connect_forever(self) -> None:
        delay = self.settings.backoff_initial
        while True:
            wait, reason = delay, "connection lost"
            try:
                await self._session()
            except _Reconnect as exc:
                if exc.target is not None and exc.target != self.url:
                    self.protocol.drop_jobs()  # another server: nothing of ours to resume
                self.url = exc.target or self.url
                wait, reason, delay = exc.wait, str(exc), self.settings.backoff_initial
            except _Fatal as exc:
                raise StratumError(str(exc)) from None
            except (OSError, TimeoutError, StratumError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                # A session that got as far as authorize resets the backoff.
                delay = self.settings.backoff_initial if self._authorized else delay * 2
                delay = min(delay, self.settings.backoff_max)
            finally:
                self._disconnected()
            self.reporter.event("disconnected", f"{reason}; reconnecting in {wait:.1f} s", "warn")
            await asyncio.sleep(wait)

    async def _session(self) -> None:
        async with asyncio.timeout(self.settings.connect_timeout):
            reader, writer = await asyncio.open_connection(self.url.host, self.url.port)
        self._writer, self._authorized = writer, False
        self.connections += 1
        self.stats.pool, self.stats.connected = str(self.url), True
        self.reporter.event("connected", f"connected to {self.url}", "good", pool=str(self.url))
        for request in self.protocol.opening(self.clock()):
            writer.write(encode(request))
        await writer.drain()
        buffer = LineBuffer(self.settings.max_line)
        while True:
            async with asyncio.timeout(self.settings.idle_timeout):
                data = await reader.read(READ_SIZE)
            if not data:
                raise ConnectionResetError("pool closed the connection")
            for line in buffer.feed(data):
                self._handle_line(line)
            await writer.drain()

    def _handle_line(self, line: bytes) -> None:
        try:
            message = decode(line)
        except StratumError as exc:
            self.reporter.event("protocol", f"bad line from pool: {exc}", "warn")
            return
        for event in self.protocol.receive(message, self.clock()):
            self._apply(event)

    def _apply(self, event: p.Event) -> None:
        r = self.reporter
        if isinstance(event, p.NewWork):
            self._new_work(event)
        elif isinstance(event, p.ShareResult):
            self._verdict(event)
        elif isinstance(event, p.DifficultyChanged):
            self.stats.difficulty = event.difficulty
            r.event("difficulty", f"difficulty {event.difficulty:g}", difficulty=event.difficulty)
        elif isinstance(event, p.Subscribed):
            how = "resumed" if event.resumed else "new"
            resumed_work = self.protocol.current() if event.resumed else None
            if resumed_work is not None:  # the pool kept our jobs: hash on at once
                self.engine.set_work(resumed_work)
            r.event(
                "subscribed", f"subscribed ({how} session)", extranonce1=event.extranonce1.hex()
            )
        elif isinstance(event, p.Authorized):
            self._authorized = True
            r.event("authorized", f"worker {event.worker} authorized", "good", worker=event.worker)
        elif isinstance(event, p.Configured):
            mask = "refused" if event.version_mask is None else f"{event.version_mask:08x}"
            r.event("configured", f"version-rolling mask {mask}", version_mask=mask)
        elif isinstance(event, p.ReconnectRequested):
            self._reconnect_to(event)
        elif isinstance(event, p.PoolMessage):
            r.event("pool_message", event.text, "warn" if event.problem else "info")
        elif isinstance(event, p.Retry):
            raise ConnectionAbortedError(event.reason)
        elif isinstance(event, p.Fatal):
            r.event("fatal", event.reason, "error")
            raise _Fatal(event.reason)

    def _reconnect_to(self, event: p.ReconnectRequested) -> None:
        host = event.host or self.url.host
        target = PoolURL(host, event.port or self.url.port)
        raise _Reconnect(f"pool asked to reconnect to {target}", target, event.wait)

    def _verdict(self, event: p.ShareResult) -> None:
        share = event.share
        self.stats.verdict(event.accepted, event.reason, share.work.difficulty, event.latency)
        fields = {
            "job": share.work.job.job_id,
            "difficulty": share.work.difficulty,
            "share_difficulty": share.difficulty,
            "latency_ms": round(event.latency * 1000, 2),
            "thread": share.thread,
        }
        if event.accepted:
            self.reporter.event(
                "accepted", f"share accepted ({share.difficulty:.4g})", "good", **fields
            )
        else:
            self.reporter.event(
                "rejected", f"share rejected: {event.reason}", "warn", reason=event.reason, **fields
            )

    def _new_work(self, event: p.NewWork) -> None:
        job = event.work.job
        self.stats.difficulty = event.work.difficulty
        if event.clean:
            self.reporter.event("job", f"new job {job.job_id}", job=job.job_id, clean=True)
        if job != self._block_job:  # a rebind of the job we found a block on stays idle
            self._block_job = None
            self.engine.set_work(event.work)

    def _on_share(self, share: p.FoundShare) -> None:
        request = self.protocol.submit(share, self.clock()) if self._writer else None
        if request is None:
            self.stats.stale_dropped += 1
            return
        self._send(request)
        job = share.work.job
        if self.settings.idle_after_block and hash_to_int(share.hash) <= bits_to_target(job.bits):
            # A block: the tip is about to move, and more work on this job could only
            # compete with our own block. Idle until the pool sends the next job.
            self._block_job = job
            self.engine.set_work(None)
            self.reporter.event(
                "block",
                f"block candidate {share.hash[::-1].hex()}",
                "good",
                job=job.job_id,
                hash=share.hash[::-1].hex(),
            )

    def _send(self, request: Request) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(encode(request))

    def _disconnected(self) -> None:
        self.engine.set_work(None)  # shares found now could not be submitted
        self.stats.connected = False
        if self._writer is not None:
            self._writer.close()
            self._writer = None
