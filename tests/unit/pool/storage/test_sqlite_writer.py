"""The SQLite ledger's writer process: a real child on a real file, lost and replaced,
deaf to the stop signals its pool handles, and never outliving its pool."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ledger_samples import share

from hashfarm.pool.storage import LedgerError
from hashfarm.pool.storage.sqlite import SQLiteLedger
from hashfarm.pool.storage.sqlite_writer import Setup


def _count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM shares").fetchone()[0])


def _alive(pid: int) -> bool:
    """Running (not exited, nor a zombie left for a parent that is gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _child_pid(ledger: SQLiteLedger) -> int:
    assert ledger.process is not None
    assert ledger.process.proc is not None
    return ledger.process.proc.pid


async def _until(predicate: Callable[[], bool], within: float = 10.0) -> bool:
    """Poll `predicate` every 10 ms; whether it held within `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def _gone(pid: int, within: float = 10.0) -> bool:
    return await _until(lambda: not _alive(pid), within)


async def test_the_commits_happen_in_a_child_process_that_exits_with_the_ledger(
    tmp_path: Path,
) -> None:
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db)
    await ledger.start()
    pid = _child_pid(ledger)
    assert pid != os.getpid()
    assert _alive(pid)
    await asyncio.gather(*(ledger.record_share(share(n)) for n in range(200)))
    assert _count(db) == 200
    await ledger.close()
    assert not _alive(pid)
    assert ledger.process is not None
    assert ledger.process.starts == 1


async def test_a_writer_lost_between_batches_is_replaced_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db)
    await ledger.start()
    await ledger.record_share(share(1))
    first = _child_pid(ledger)
    os.kill(first, signal.SIGKILL)
    assert await _gone(first)
    await asyncio.gather(*(ledger.record_share(share(n)) for n in range(2, 12)))
    assert ledger.process is not None
    assert ledger.process.starts == 2
    assert _child_pid(ledger) != first
    await ledger.close()
    assert _count(db) == 11


async def test_a_writer_lost_during_a_commit_fails_that_batch_unacknowledged(
    tmp_path: Path,
) -> None:
    """The child may have committed the batch before it died: the batch is neither
    acknowledged nor written again (at most once, as when a whole pool dies mid-commit),
    and the next batch gets a new child."""
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db)
    await ledger.start()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the child's INSERT waits for this lock (5 s)
    pending = asyncio.ensure_future(ledger.record_share(share(1)))
    await asyncio.sleep(0.3)
    assert not pending.done()
    os.kill(_child_pid(ledger), signal.SIGKILL)
    with pytest.raises(LedgerError, match="whether they were written is unknown"):
        await asyncio.wait_for(pending, 10)
    other.execute("ROLLBACK")
    await ledger.record_share(share(2))
    await ledger.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT job_id FROM shares").fetchall() == [("2",)]


async def test_the_writer_ignores_the_stop_signals_its_pool_handles(tmp_path: Path) -> None:
    """Ctrl-C reaches every process of the terminal's group and systemd's SIGTERM every
    process of the unit: the pool then commits what it queued, so its writer must live on
    until the pool closes the ledger."""
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db)
    await ledger.start()
    pid = _child_pid(ledger)
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    await asyncio.sleep(0.2)
    await ledger.record_share(share(1))
    assert _child_pid(ledger) == pid
    assert _alive(pid)
    await ledger.close()
    assert not _alive(pid)


async def test_the_writer_does_not_outlive_a_pool_killed_outright(tmp_path: Path) -> None:
    db = tmp_path / "pool.sqlite3"
    script = textwrap.dedent(f"""
        import asyncio
        from hashfarm.pool.storage.sqlite import SQLiteLedger
        async def main():
            ledger = SQLiteLedger({str(db)!r})
            await ledger.start()
            print(ledger.process.proc.pid, flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
    """)
    command = [sys.executable, "-c", script]
    pool = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        assert pool.stdout is not None
        child = int(pool.stdout.readline())
        assert _alive(child)
        pool.kill()  # SIGKILL: no close(), no atexit
        pool.wait()
        assert await _gone(child), "the writer process outlived its pool"
    finally:
        pool.kill()


class _ChildCannotOpen(SQLiteLedger):
    @property
    def setup(self) -> Setup:
        return {**super().setup, "path": str(self.path.parent / "no-such-dir" / "x.sqlite3")}


async def test_a_writer_that_cannot_open_the_file_fails_the_start(tmp_path: Path) -> None:
    ledger = _ChildCannotOpen(tmp_path / "pool.sqlite3")
    with pytest.raises(LedgerError, match=r"the writer process: .*unable to open database"):
        await ledger.start()
    assert ledger.process is not None
    assert ledger.process.proc is None  # reaped
    with pytest.raises(LedgerError, match="not running"):
        await ledger.record_share(share(1))


async def test_a_writer_that_cannot_be_started_fails_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3")
    with pytest.raises(LedgerError, match="cannot start the ledger's writer process"):
        await ledger.start()


def test_the_writer_runs_under_uvloop_as_the_pool_does(tmp_path: Path) -> None:
    """`hashfarm pool` runs on uvloop, whose transports are not asyncio's classes."""
    uvloop = pytest.importorskip("uvloop")
    db = tmp_path / "pool.sqlite3"

    async def scenario() -> None:
        ledger = SQLiteLedger(db)
        await ledger.start()
        await asyncio.gather(*(ledger.record_share(share(n)) for n in range(50)))
        os.kill(_child_pid(ledger), signal.SIGKILL)  # a lost writer is replaced here too
        await asyncio.sleep(0.2)
        await ledger.record_share(share(50))
        await ledger.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(scenario(), 30))
    assert _count(db) == 51


async def test_a_commit_is_answered_from_the_writers_reply_in_the_same_callback(
    tmp_path: Path,
) -> None:
    """The child's reply releases the batch's waiters (and starts the next batch) inside
    the socket's read callback: no task is resumed a loop turn later, behind other reads."""
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3")
    await ledger.start()
    await ledger.record_share(share(0))  # the child is up and answering
    assert ledger.process is not None
    channel = ledger.process._channel
    assert channel is not None
    reading: list[bool] = []
    original = channel.data_received

    def data_received(data: bytes) -> None:
        reading.append(True)
        try:
            original(data)
        finally:
            reading.pop()

    channel.data_received = data_received  # type: ignore[method-assign]
    seen: list[tuple[object, bool]] = []
    for n in range(1, 21):
        ledger.enqueue_share(share(n), lambda error: seen.append((error, bool(reading))))
        if n % 5 == 0:
            await asyncio.sleep(0)  # a few batches, some queued while one is written
    assert await _until(lambda: len(seen) >= 20)
    assert seen == [(None, True)] * 20
    await ledger.close()
    assert _count(tmp_path / "pool.sqlite3") == 21
