"""The ledger's bounded backlog and its callback path, on a real SQLite file held locked by
another connection (as another process would), then released."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from ledger_samples import block, share

from hashfarm.errors import LedgerError
from hashfarm.pool.storage.base import Batch, LedgerBacklogFull
from hashfarm.pool.storage.sqlite import SQLiteLedger, Writer

QUEUE_MAX = 20


def _count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def _until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds * 50)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_a_full_backlog_refuses_at_once_logs_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db, batch_max=8, queue_max=QUEUE_MAX)
    ledger.busy_timeout_ms = 1  # each commit attempt fails fast with "database is locked"
    await ledger.start()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    done: dict[int, LedgerError | None] = {}
    refused: list[tuple[int, str]] = []
    tasks_before = len(asyncio.all_tasks())
    caplog.set_level(logging.INFO, logger="hashfarm.pool.storage")
    for n in range(50):
        try:
            ledger.enqueue_share(share(n), lambda error, n=n: done.__setitem__(n, error))
        except LedgerBacklogFull as exc:
            refused.append((n, str(exc)))
    # the bound counts queued + being written
    assert refused == [(n, "ledger backlog full") for n in range(QUEUE_MAX, 50)]
    assert ledger.shares_pending == QUEUE_MAX
    assert len(asyncio.all_tasks()) == tasks_before  # no task per share
    with pytest.raises(LedgerBacklogFull):
        await ledger.record_share(share(99))  # the awaiting API is bounded alike
    await asyncio.sleep(0.5)
    assert done == {}  # nothing acknowledged while nothing is committed
    full = [r for r in caplog.records if "backlog full" in r.getMessage()]
    assert len(full) == 1, "the outage is logged once, not per refused share"

    holder.execute("COMMIT")
    await _until(lambda: len(done) == QUEUE_MAX)
    assert done == dict.fromkeys(range(QUEUE_MAX))  # every waiting share: committed
    assert _count(db, "SELECT count(*) FROM shares") == QUEUE_MAX
    assert ledger.shares_pending == 0
    caught_up = [r for r in caplog.records if "accepting shares again" in r.getMessage()]
    assert len(caught_up) == 1  # once, when the backlog is back to half the bound
    await ledger.record_share(share(100))  # recovered: accepted again
    assert _count(db, "SELECT count(*) FROM shares") == QUEUE_MAX + 1
    holder.close()
    await ledger.close()


async def test_blocks_are_queued_even_when_the_share_backlog_is_full(tmp_path: Path) -> None:
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db, batch_max=4, queue_max=2)
    ledger.busy_timeout_ms = 1
    await ledger.start()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    acked: list[LedgerError | None] = []
    for n in range(2):
        ledger.enqueue_share(share(n), acked.append)
    with pytest.raises(LedgerBacklogFull):
        ledger.enqueue_share(share(2), acked.append)
    found = asyncio.ensure_future(ledger.record_block(block(9)))  # a block is never refused
    await asyncio.sleep(0.2)
    assert not found.done()
    assert acked == []
    holder.execute("COMMIT")
    await asyncio.wait_for(found, 10)
    await _until(lambda: len(acked) == 2)
    assert acked == [None, None]
    assert _count(db, "SELECT count(*) FROM blocks") == 1
    holder.close()
    await ledger.close()


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_a_batch_of_shares_and_blocks_is_one_transaction(
    tmp_path: Path, writer: Writer
) -> None:
    """More shares than one INSERT may bind, with a block: all in one commit, in order."""
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db, batch_max=1000, writer=writer)
    ledger.rows_per_insert = 7  # several INSERTs per batch (SQLite's bound-variable limit)
    await ledger.start()
    assert ledger.setup["rows_per_insert"] == 7
    acked: list[LedgerError | None] = []
    for n in range(30):
        ledger.enqueue_share(share(n), acked.append)
    await ledger.record_block(block(3))
    assert ledger.batches_committed == 1
    assert ledger.records_committed == 31
    await _until(lambda: len(acked) == 30)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT job_id, share_difficulty FROM shares ORDER BY id").fetchall()
    assert rows == [(f"{n:x}", 0.75 + n) for n in range(30)]
    await ledger.close()


async def test_a_callback_that_raises_does_not_stop_the_writer(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3")
    await ledger.start()

    def broken(error: LedgerError | None) -> None:
        raise RuntimeError("observer bug")

    ledger.enqueue_share(share(1), broken)
    await ledger.record_share(share(2))  # committed after the broken callback ran
    assert await ledger.share_count() == 2
    await ledger.close()


async def test_on_released_runs_once_per_batch_right_after_its_callbacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The pool flushes the answers a commit released from this hook, in the same pass."""
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3", batch_max=10)
    await ledger.start()
    events: list[str] = []
    ledger.on_released = lambda: events.append("released")
    for n in range(25):
        ledger.enqueue_share(share(n), lambda error, n=n: events.append(f"share {n}"))
    await _until(lambda: events.count("released") == 3)
    assert events == [
        *(f"share {n}" for n in range(10)), "released",
        *(f"share {n}" for n in range(10, 20)), "released",
        *(f"share {n}" for n in range(20, 25)), "released",
    ]  # fmt: skip

    def broken() -> None:
        raise RuntimeError("hook bug")

    ledger.on_released = broken
    with caplog.at_level(logging.ERROR, "hashfarm.pool.storage"):
        await ledger.record_share(share(25))
        await ledger.record_share(share(26))  # the writer lives on
    assert "ledger release hook failed" in caplog.text
    await ledger.close()


class CountingLedger(SQLiteLedger):
    """The real SQLite ledger, counting its write attempts."""

    attempts = 0

    async def _write(self, batch: Batch) -> None:
        self.attempts += 1
        await super()._write(batch)


async def test_closing_while_the_database_is_away_gives_up_once_not_per_batch(
    tmp_path: Path,
) -> None:
    db = tmp_path / "pool.sqlite3"
    ledger = CountingLedger(db, batch_max=1, queue_max=100)
    ledger.busy_timeout_ms = 1
    ledger.retry_first, ledger.retry_cap = 0.01, 0.04  # 0.01, 0.02, 0.04: 4 attempts a batch
    await ledger.start()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    done: list[LedgerError | None] = []
    for n in range(20):
        ledger.enqueue_share(share(n), done.append)
    await asyncio.sleep(0.05)
    await asyncio.wait_for(ledger.close(), 30)
    assert ledger.attempts <= 8, "each queued batch retried after the shutdown began"
    assert len(done) == 20
    assert all(isinstance(e, LedgerError) for e in done)  # nothing acknowledged
    assert ledger.shares_pending == 0
    holder.execute("ROLLBACK")
    holder.close()
    assert _count(db, "SELECT count(*) FROM shares") == 0
