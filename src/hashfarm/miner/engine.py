"""Runs the hashing off the event loop and hands verified shares back to it.

One coroutine per hashing thread asks the `WorkSource` for its next chunk, runs
`backend.scan` in an executor, re-hashes every nonce the backend reports (a nonce that does
not meet the target is a hardware error, never a share) and passes shares to `on_share`.

Where scans run: hashlib holds the GIL for 80-byte inputs, so it runs in worker processes
(one per thread, started with `spawn`, which is safe beside asyncio's threads); numba
(`nogil=True` kernels) and GPU backends release the GIL, so they run in threads and share
one JIT-compiled kernel. Chunks are
sized to `chunk_seconds` of work from the measured speed, so a clean job switch waits at
most that long and no work is queued behind it. Under `max_hashrate` each thread scans at
most its share of the cap per `chunk_seconds` and sleeps after a scan until it is back on
that rate (a watchable regtest demo, a CPU left cool).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from hashfarm.miner.backends.base import get_backend
from hashfarm.miner.protocol import FoundShare, MinerJob
from hashfarm.miner.settings import MinerSettings
from hashfarm.miner.stats import MinerStats
from hashfarm.miner.workgen import WorkSource, WorkUnit, check_nonce

CHUNK_GROWTH = 4.0  # largest factor a chunk may grow by from one scan to the next
FIRST_CHUNK = 4096  # nonces in a thread's first scan (covers process start and JIT warm-up)

GIL_BOUND_BACKENDS = frozenset({"hashlib"})  # scans that hold the GIL: run in processes
_local = threading.local()  # one backend instance per worker thread or process


def scan_chunk(
    backend_name: str, header76: bytes, start: int, count: int, target: int
) -> list[int]:
    """Run one scan in a worker (top-level so worker processes can unpickle it)."""
    backend = getattr(_local, "backend", None)
    if backend is None or backend.name != backend_name:
        backend = _local.backend = get_backend(backend_name, 1)
    return list(backend.scan(header76, start, count, target))


def check_backend(name: str) -> None:
    """Fail fast (ConfigError naming the backend and why) when it cannot run here."""
    backend = get_backend(name, 1)
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def executor_kind(settings: MinerSettings) -> str:
    """process or thread, resolving `auto` by backend."""
    if settings.executor != "auto":
        return settings.executor
    return "process" if settings.backend in GIL_BOUND_BACKENDS else "thread"


def make_executor(settings: MinerSettings) -> Executor:
    """The pool of workers scans run in."""
    if executor_kind(settings) == "thread":
        return ThreadPoolExecutor(settings.threads, thread_name_prefix="hashfarm-hash")
    return ProcessPoolExecutor(settings.threads, mp_context=multiprocessing.get_context("spawn"))


class HashingEngine:
    """Keeps `threads` scans running on the current work until cancelled."""

    def __init__(
        self,
        settings: MinerSettings,
        stats: MinerStats,
        on_share: Callable[[FoundShare], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.stats, self.on_share, self.clock = settings, stats, on_share, clock
        self.source = WorkSource(settings.threads, settings.nonce_space)
        self._changed = asyncio.Event()

    def set_work(self, work: MinerJob | None) -> None:
        """Switch every thread to `work` from its next chunk (None: idle)."""
        self.source.set_work(work)
        self._changed.set()
        self._changed = asyncio.Event()

    async def run(self) -> None:
        """Hash until cancelled; a backend failure ends the run with its exception."""
        executor = make_executor(self.settings)
        try:
            async with asyncio.TaskGroup() as group:
                for thread in range(self.settings.threads):
                    group.create_task(self._thread(thread, executor))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None  # every thread fails alike; report one
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    async def run_beside(self, main: Coroutine[Any, Any, None]) -> None:
        """Hash while `main` (the pool or node conversation) runs; whichever ends first,
        by return or exception, ends both, and its exception is raised as is."""
        tasks = [asyncio.create_task(main), asyncio.create_task(self.run())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _thread(self, thread: int, executor: Executor) -> None:
        loop = asyncio.get_running_loop()
        chunk = FIRST_CHUNK
        while True:
            unit = self.source.next_unit(thread, self._capped(chunk))
            if unit is None:
                await self._changed.wait()
                continue
            began = self.clock()
            nonces = await loop.run_in_executor(
                executor,
                scan_chunk,
                self.settings.backend,
                unit.header76,
                unit.nonce_start,
                unit.count,
                unit.target,
            )
            elapsed = self.clock() - began
            self.stats.add_hashes(thread, unit.count, self.clock())
            chunk = self._next_chunk(unit.count, elapsed)
            self._deliver(unit, nonces)
            if pause := self._pause(unit.count, elapsed):
                await asyncio.sleep(pause)  # a job change meanwhile is picked up after it

    def _next_chunk(self, count: int, elapsed: float) -> int:
        wanted = count * self.settings.chunk_seconds / max(elapsed, 1e-6)
        wanted = min(wanted, count * CHUNK_GROWTH, self.settings.nonce_space)
        return max(self.settings.min_chunk, int(wanted))

    def _thread_rate(self) -> float | None:
        """One thread's share of `max_hashrate` in H/s (None: no cap)."""
        cap = self.settings.max_hashrate
        return None if cap is None else cap / self.settings.threads

    def _capped(self, chunk: int) -> int:
        """`chunk`, cut to `chunk_seconds` of the capped rate (at least one nonce)."""
        rate = self._thread_rate()
        if rate is None:
            return chunk
        return min(chunk, max(1, int(rate * self.settings.chunk_seconds)))

    def _pause(self, count: int, elapsed: float) -> float:
        """Seconds to sleep after scanning `count` nonces in `elapsed` s to hold the cap."""
        rate = self._thread_rate()
        return 0.0 if rate is None else max(0.0, count / rate - elapsed)

    def _deliver(self, unit: WorkUnit, nonces: list[int]) -> None:
        for nonce in nonces:
            inside = unit.nonce_start <= nonce < unit.nonce_start + unit.count
            share = check_nonce(unit, nonce) if inside else None
            if share is None:
                self.stats.hardware_errors += 1
                continue
            self.stats.found(share.difficulty)
            self.on_share(share)
