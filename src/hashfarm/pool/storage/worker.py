"""One thread that runs a blocking database connection's calls in order, for the event loop.

What `loop.run_in_executor` on a one-thread `ThreadPoolExecutor` does, at a third of the cost
per call: the executor wraps every call in a `concurrent.futures.Future`, a work item and an
asyncio future chained to it by callbacks, and takes locks on both sides. A group-commit
ledger makes one call per commit, and under load a commit holds a few shares, so that fixed
cost was paid every ~2 shares: a no-op round trip measured 58 us of CPU through the executor,
17 us through this (uvloop, 2-core VM; bench/bench_pool_tail.py has the pool-level figures).
The call still runs off the loop: a commit's fsync never blocks the miners' sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_Call = tuple[asyncio.AbstractEventLoop, Callable[[], Any], "asyncio.Future[Any]"]


class DatabaseThread:
    """A dedicated thread; `await run(fn)` returns fn's result or raises its exception."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None  # started by the first call

    def run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue `fn` (calls run one at a time, in order); a future for its outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            # daemon: a pool that exits without closing its ledger must not hang at exit; a
            # transaction cut short there was never acknowledged (SQLite rolls it back).
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        self._calls.put((loop, fn, future))
        return future

    def shutdown(self) -> None:
        """Let the calls queued so far finish, then end the thread (blocks until it has)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._calls.put(None)
            thread.join()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, fn, future = call
            try:
                result = fn()
            except BaseException as exc:  # the caller re-raises it, as the executor would
                _post(loop, _fail, future, exc)
            else:
                _post(loop, _succeed, future, result)


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(fn, *args)


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # its awaiting task was cancelled meanwhile
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
