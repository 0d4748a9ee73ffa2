"""The SQLite ledger: migrations, group commit, durability on return, failures."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import pytest
from ledger_samples import block, share

from hashfarm.errors import ConfigError
from hashfarm.pool.settings import StorageSettings
from hashfarm.pool.storage import LATEST_VERSION, LedgerError, make_ledger, open_ledger
from hashfarm.pool.storage.migrations import MIGRATIONS, statements_for
from hashfarm.pool.storage.sqlite import SQLiteLedger, Writer, migrate_sqlite


@pytest.fixture(params=["process", "thread"])
def writer(request: pytest.FixtureRequest) -> Writer:
    """Both places the writing connection can run (storage.sqlite_writer)."""
    return request.param  # type: ignore[no-any-return]


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read with a separate connection, as another process would."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_a_new_file_gets_every_migration_in_order_and_wal(tmp_path: Path) -> None:
    db = tmp_path / "pool.sqlite3"
    ledger = await open_ledger(StorageSettings(url=f"sqlite:///{db}"))
    await ledger.close()
    versions = _rows(db, "SELECT version, name FROM schema_version ORDER BY version")
    assert versions == [(m.version, m.name) for m in MIGRATIONS]
    assert _rows(db, "PRAGMA journal_mode") == [("wal",)]


def test_an_older_database_is_brought_up_to_date_once(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.sqlite3", isolation_level=None)
    assert migrate_sqlite(conn) == [m.version for m in MIGRATIONS]
    conn.execute("DELETE FROM schema_version WHERE version = 2")
    for sql in statements_for(MIGRATIONS[1], "sqlite"):
        conn.execute(sql.replace("CREATE INDEX", "DROP INDEX").split(" ON ")[0])
    assert migrate_sqlite(conn) == [2]
    assert migrate_sqlite(conn) == []


def test_a_database_from_a_newer_hashfarm_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "new.sqlite3", isolation_level=None)
    migrate_sqlite(conn)
    conn.execute("INSERT INTO schema_version VALUES (?, 'future', 0)", (LATEST_VERSION + 1,))
    with pytest.raises(LedgerError, match=f"schema version {LATEST_VERSION + 1} is newer"):
        migrate_sqlite(conn)


async def test_concurrent_shares_are_committed_in_few_batches(
    tmp_path: Path, writer: Writer
) -> None:
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db, batch_max=100, batch_wait=0.002, writer=writer)
    await ledger.start()
    await asyncio.gather(*(ledger.record_share(share(n)) for n in range(1000)))
    assert ledger.records_committed == 1000
    assert 10 <= ledger.batches_committed < 100  # batches of at most 100, not one each
    await ledger.close()
    rows = _rows(db, "SELECT job_id, share_difficulty, accepted FROM shares ORDER BY id")
    assert rows == [(f"{n:x}", 0.75 + n, 1) for n in range(1000)]


async def test_a_share_is_readable_by_another_connection_when_record_share_returns(
    tmp_path: Path, writer: Writer
) -> None:
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db, batch_wait=0.01, writer=writer)
    await ledger.start()
    for n in range(5):
        await ledger.record_share(share(n, accepted=n % 2 == 0))
        assert _rows(db, "SELECT count(*) FROM shares") == [(n + 1,)]
    assert _rows(db, "SELECT reject_reason FROM shares WHERE id = 2") == [("low-difficulty",)]
    await ledger.close()


async def test_blocks_are_upserted_by_hash_and_read_newest_first(
    tmp_path: Path, writer: Writer
) -> None:
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3", writer=writer)
    await ledger.start()
    await ledger.record_block(block(7, ok=False, verdict="inconclusive"))
    await ledger.record_block(block(8))
    await ledger.record_block(block(7))  # the node confirmed it later
    assert await ledger.recent_blocks() == [block(8), block(7)]
    assert await ledger.recent_blocks(limit=1) == [block(8)]
    await ledger.close()


async def test_a_locked_database_delays_the_acknowledgement_and_loses_nothing(
    tmp_path: Path, writer: Writer
) -> None:
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db, writer=writer)
    ledger.busy_timeout_ms = 1
    await ledger.start()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    pending = asyncio.ensure_future(ledger.record_share(share(1)))
    await asyncio.sleep(0.3)
    assert not pending.done()  # not acknowledged while it is not committed
    other.execute("ROLLBACK")
    await asyncio.wait_for(pending, 10)
    assert _rows(db, "SELECT count(*) FROM shares") == [(1,)]
    await ledger.close()


async def test_a_permanent_failure_fails_only_its_batch(tmp_path: Path, writer: Writer) -> None:
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3", batch_wait=0, writer=writer)
    await ledger.start()
    bad = dataclasses.replace(share(1), account=None)  # violates NOT NULL
    with pytest.raises(LedgerError, match="NOT NULL"):
        await ledger.record_share(bad)
    await ledger.record_share(share(2))
    assert await ledger.share_count() == 1
    await ledger.close()


async def test_close_commits_what_is_queued_then_refuses_more(
    tmp_path: Path, writer: Writer
) -> None:
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db, batch_wait=1.0, writer=writer)
    await ledger.start()
    waiting = [asyncio.ensure_future(ledger.record_share(share(n))) for n in range(10)]
    await asyncio.sleep(0)
    await ledger.close()
    await asyncio.gather(*waiting)
    assert _rows(db, "SELECT count(*) FROM shares") == [(10,)]
    with pytest.raises(LedgerError, match="not running"):
        await ledger.record_share(share(11))


@pytest.mark.parametrize(
    "url", ["mysql://db/pool", "hashfarm.sqlite3", "sqlite:///", "sqlite://relative"]
)
def test_an_unknown_storage_url_names_the_key(url: str) -> None:
    with pytest.raises(ConfigError, match=r"storage\.url"):
        make_ledger(StorageSettings(url=url))


def _wal_state(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames of it already copied into the database file)."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # this reader must not do one itself
        _, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames), int(done)


async def test_commits_carry_no_checkpoint_the_checkpointer_thread_does_them(
    tmp_path: Path,
) -> None:
    """The writer's connection never checkpoints (SQLite's automatic one would run inside a
    commit, holding that batch's acknowledgements); the checkpointer's own thread does."""
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db, batch_max=50)
    ledger.checkpointer.interval_s = 3600.0  # not yet
    await ledger.start()
    writer = ledger._db()
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    await asyncio.gather(*(ledger.record_share(share(n)) for n in range(6000)))
    frames = (db.parent / (db.name + "-wal")).stat().st_size // 4096
    assert frames > 1000  # past SQLite's automatic threshold, and nothing copied back yet:
    assert ledger.checkpointer.passive == 0
    before = db.stat().st_size // 4096
    ledger.checkpointer.stop()
    ledger.checkpointer.interval_s = 0.01
    ledger.checkpointer.start()
    for _ in range(500):
        if ledger.checkpointer.passive:
            break
        await asyncio.sleep(0.01)
    after = db.stat().st_size // 4096  # the database file itself, before anyone else looks
    assert before <= 1  # every page of the 6,000 shares was still only in the WAL
    assert after > 100  # the checkpointer copied them into the file (171 pages here)
    frames, done = _wal_state(db)
    assert frames > 1000
    assert done == frames
    await ledger.close()
    assert _rows(db, "SELECT count(*) FROM shares") == [(6000,)]


def _wal_generation(db: Path) -> int:
    """The WAL header's checkpoint sequence number: it goes up each time the WAL restarts."""
    with (db.parent / (db.name + "-wal")).open("rb") as f:
        return int.from_bytes(f.read(16)[12:16], "big")


async def test_steady_writes_keep_the_wal_bounded_by_restart_checkpoints(tmp_path: Path) -> None:
    """Commits back to back leave a passive checkpoint no gap to finish in, so the WAL would
    only grow (2,810 pages for these writes without RESTART, measured); past `restart_frames`
    a RESTART checkpoint lets the next commit start it over, again and again."""
    db = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(db, batch_max=20)
    ledger.checkpointer.interval_s = 0.005
    ledger.checkpointer.restart_frames = 200
    await ledger.start()
    await ledger.record_share(share(0))
    first, n = _wal_generation(db), 1
    deadline = asyncio.get_running_loop().time() + 30  # a loaded machine schedules the
    while ledger.checkpointer.restarts < 3 or _wal_generation(db) < first + 3:  # checkpointer
        assert asyncio.get_running_loop().time() < deadline, ledger.checkpointer.restarts
        await asyncio.gather(*(ledger.record_share(share(n + i)) for i in range(20)))  # late
        n += 20
    await ledger.close()
    assert _rows(db, "SELECT count(*) FROM shares") == [(n,)]
    assert ledger.checkpointer.passive > 0
