"""Pooled mode pays with one command: accounting beside `hashfarm pool`, started by it.

When `[accounting] enabled = true` (pooled mode), `hashfarm pool` also runs:

* a `JobTermsRecorder` (`pool/jobterms.py`), handed to `Pool`, recording the terms (and a
  TIDES job's coinbase plan) of every job the pool publishes, for PPS/FPPS and TIDES: a
  queue and one writer task on its own connection and thread (a row every 20-30 s);
* the crediting service (`accounting.service.CreditingService`) in a child process of the
  pool, on its own connection to the same database and its own RPC client to the node: a
  pass every `poll_interval` seconds tracks the pool's found blocks, posts, matures and
  reverses their credits and prices PPS/FPPS shares, exactly as `hashfarm accounts credit`
  does standalone (the same service, the same idempotency keys, so running both is safe).

Why a process and not a thread: crediting a block over a window of a million shares is ~2 s
of CPU (docs/accounting.md, *Cost*) and pricing a PPS batch of 50,000 shares 0.13-0.32 s
(bench/bench_accounting_pps.py); on a thread of the pool process that work would hold the
GIL in 5 ms slices against the event loop that answers shares (the pool's TIDES planner is a
process for the same reason). The child is started with `spawn` (the pool has threads: never
fork it) and holds the reading end of a pipe from the pool: a message, or the pipe's end of
file when the pool process is gone (even by `kill -9`), stops it after its pass in flight. A
pipe and not a `multiprocessing.Event`: a child killed while holding the Event's lock would
leave it held and the pool's `set()` would block its event loop. A child that dies is
started again with a capped backoff; a pass that fails (node away, database locked) is
logged and retried by the service itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from hashfarm.pool.jobterms import JobTermsRecorder
from hashfarm.pool.settings import PoolSettings

log = logging.getLogger(__name__)

POLL_INTERVAL = 5.0  # seconds between crediting passes
RESTART_FIRST = 1.0  # seconds before a crediting process that died is started again
RESTART_CAP = 60.0
STOP_GRACE = 30.0  # seconds the child may take to end its pass when asked to stop


@dataclass(frozen=True, slots=True)
class NodeLogin:
    """How the crediting process reaches the node (the pool's own resolved credentials)."""

    url: str
    user: str | None
    password: str | None
    cookie: Path | None
    timeout: float


class Accountant:
    """The job-terms recorder and the crediting process of one pool process."""

    def __init__(
        self, settings: PoolSettings, node: NodeLogin, *, poll_interval: float | None = None
    ) -> None:
        from hashfarm.accounting.crediting import format_spec

        self.settings = settings
        self.node = node
        self.poll_interval = POLL_INTERVAL if poll_interval is None else poll_interval
        self.spec = format_spec(settings.accounting.to_scheme())
        self.recorder = JobTermsRecorder(settings.storage.url, settings.network)
        self.restarts = 0  # crediting processes started again after dying
        self._ctx = multiprocessing.get_context("spawn")
        self._closing = False
        self._proc: BaseProcess | None = None
        self._pipe: Connection | None = None  # our end of the running child's stop pipe
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start recording job terms and the crediting process (after the pool's ledger has
        created its tables)."""
        await self.recorder.start()
        self._proc = self._spawn()
        self._watch = asyncio.create_task(self._watch_child(), name="crediting-watch")
        log.info("accounting: %s, crediting every %.1f s", self.spec, self.poll_interval)

    def _spawn(self) -> BaseProcess:
        theirs, ours = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=credit_forever,
            args=(
                self.settings.storage.url,
                self.node,
                self.spec,
                self.poll_interval,
                self.settings.accounting.reserve_warning_sats,
                theirs,
                logging.getLogger().getEffectiveLevel(),
            ),
            name="hashfarm-crediting",
            daemon=True,
        )
        proc.start()
        theirs.close()  # the child has its copy: its end of file is ours closing
        self._pipe = ours
        return proc

    async def _watch_child(self) -> None:
        delay = RESTART_FIRST
        while not self._closing:
            await asyncio.sleep(0.5)
            proc = self._proc
            if proc is None or proc.is_alive() or self._closing:
                continue
            log.error(
                "the crediting process exited (code %s): starting it again in %.0f s",
                proc.exitcode,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_CAP)
            if not self._closing:
                if self._pipe is not None:
                    self._pipe.close()
                self._proc = self._spawn()
                self.restarts += 1

    async def close(self) -> None:
        """Stop the crediting process (its pass in flight ends), write queued job terms."""
        self._closing = True
        if self._pipe is not None:
            with contextlib.suppress(OSError):  # a child already gone
                self._pipe.send("stop")
            self._pipe.close()
            self._pipe = None
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        proc, self._proc = self._proc, None
        if proc is not None:
            await asyncio.to_thread(proc.join, STOP_GRACE)
            if proc.is_alive():
                log.error("the crediting process did not stop in %.0f s: terminated", STOP_GRACE)
                proc.terminate()
                await asyncio.to_thread(proc.join, 5.0)
        await self.recorder.close()


def credit_forever(
    storage_url: str,
    node: NodeLogin,
    spec: str,
    poll_interval: float,
    reserve_warning_sats: int,
    stop: Connection,
    log_level: int,
) -> None:
    """The crediting process: passes until the pool says stop or its pipe ends (pool gone)."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the pool decides
    asyncio.run(_credit(storage_url, node, spec, poll_interval, reserve_warning_sats, stop))


async def _credit(
    storage_url: str,
    node: NodeLogin,
    spec: str,
    poll_interval: float,
    reserve_warning_sats: int,
    stop: Connection,
) -> None:
    from hashfarm.accounting.crediting import parse_spec
    from hashfarm.accounting.service import CreditingService
    from hashfarm.accounting.store import open_store
    from hashfarm.node.rpc import RPCClient

    rpc = RPCClient(
        node.url,
        user=node.user,
        password=node.password,
        cookie_file=node.cookie,
        timeout=node.timeout,
    )
    store = await open_store(storage_url, create=True)
    done = asyncio.Event()

    async def watch() -> None:  # a message, or end of file: the pool is gone (even kill -9)
        while not await asyncio.to_thread(stop.poll, 0.2):
            pass
        done.set()

    watcher = asyncio.create_task(watch())
    try:
        service = CreditingService(
            store,
            rpc,
            parse_spec(spec),
            poll_interval=poll_interval,
            reserve_warning_sats=reserve_warning_sats,
        )
        await service.run(done)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await store.close()
        await rpc.close()
