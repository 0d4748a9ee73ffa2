"""DatabaseThread: the ledger's own thread (replacing run_in_executor on the commit path)
must keep the executor's contract: calls in order, off the loop's thread, results and
exceptions delivered to the awaiting task, a cancelled waiter harmless, a clean shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hashfarm.pool.storage.worker import DatabaseThread


async def test_calls_run_in_order_on_one_thread_off_the_loop() -> None:
    worker = DatabaseThread("test-db")
    seen: list[tuple[int, int]] = []

    def call(i: int) -> int:
        seen.append((i, threading.get_ident()))
        return i * i

    results = await asyncio.gather(*(worker.run(lambda i=i: call(i)) for i in range(50)))
    worker.shutdown()
    assert results == [i * i for i in range(50)]
    assert [i for i, _ in seen] == list(range(50))
    threads = {ident for _, ident in seen}
    assert len(threads) == 1
    assert threading.get_ident() not in threads


async def test_exceptions_reach_the_awaiting_task_and_the_thread_lives_on() -> None:
    worker = DatabaseThread("test-db")

    def fail() -> None:
        raise ValueError("database said no")

    with pytest.raises(ValueError, match="database said no"):
        await worker.run(fail)
    assert await worker.run(lambda: "still serving") == "still serving"
    worker.shutdown()


async def test_a_cancelled_waiter_does_not_break_the_next_call() -> None:
    worker = DatabaseThread("test-db")
    release = threading.Event()
    slow = asyncio.ensure_future(worker.run(lambda: release.wait(5)))
    await asyncio.sleep(0)
    slow.cancel()
    release.set()
    assert await worker.run(lambda: 7) == 7  # the cancelled one's result was dropped quietly
    worker.shutdown()


async def test_shutdown_finishes_queued_calls_and_a_later_call_restarts_it() -> None:
    worker = DatabaseThread("test-db")
    done: list[int] = []
    futures = [worker.run(lambda i=i: done.append(i)) for i in range(10)]
    worker.shutdown()  # blocks until the queued calls ran
    assert done == list(range(10))
    await asyncio.gather(*futures)  # their outcomes were posted to the loop before it ended
    assert await worker.run(lambda: "again") == "again"
    worker.shutdown()
    assert not any(t.name == "test-db" for t in threading.enumerate())
