"""The embedded ledger: SQLite in WAL mode, written from one dedicated thread.

sqlite3 blocks, so every statement runs on a single worker thread (the connection never
crosses threads) while the event loop keeps serving miners. WAL lets readers (the API, a
payout job, `sqlite3` in a shell) read while the writer commits.

A batch of shares is written as ONE multi-row INSERT (in autocommit: the statement is its own
transaction) rather than `executemany`: sqlite3 releases the GIL around every statement step
and must win it back from the busy event loop each time (up to the 5 ms switch interval), so
one step per row made a 512-share commit take tens of milliseconds on a loaded pool
(bench/bench_pool_tail.py).

Checkpoints (copying the WAL back into the database file, and its fsync) run on a thread and
connection of their own (`WalCheckpointer`), not inside a commit: SQLite's automatic one runs
in the connection that commits, after every ~1,000 pages of WAL, so every few thousand shares
one batch's acknowledgements waited for it (p99 0.67x without it, bench_pool_tail). A WAL that
passive checkpoints cannot reset under steady writes is brought back by a RESTART checkpoint
once it passes `WalCheckpointer.restart_frames`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from hashfarm.errors import LedgerError, TransientLedgerError
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.storage.base import (
    BLOCK_COLUMNS,
    BLOCK_UPSERT_TAIL,
    SHARE_COLUMNS,
    Batch,
    GroupCommitLedger,
    block_from_row,
    block_row,
    share_row,
)
from hashfarm.pool.storage.migrations import (
    SCHEMA_VERSION_TABLE,
    pending,
    refuse_newer,
    statements_for,
)
from hashfarm.pool.storage.worker import DatabaseThread

log = logging.getLogger(__name__)

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL", "EXTRA"]

_INSERT_SHARE = f"INSERT INTO shares ({SHARE_COLUMNS}) VALUES "
_SHARE_VALUES = f"({', '.join('?' * 11)})"
_INSERT_BLOCK = (
    f"INSERT INTO blocks ({BLOCK_COLUMNS}) VALUES ({', '.join('?' * 8)}){BLOCK_UPSERT_TAIL}"
)


class SQLiteLedger(GroupCommitLedger):
    """Shares and blocks in one SQLite file (WAL, group commit)."""

    busy_timeout_ms = 5000  # how long a commit waits for another process's lock

    def __init__(
        self,
        path: str | Path,
        *,
        batch_max: int = 512,
        batch_wait: float = 0.0,
        synchronous: Synchronous = "FULL",
        queue_max: int = 50_000,
    ) -> None:
        super().__init__(batch_max=batch_max, batch_wait=batch_wait, queue_max=queue_max)
        self.path = Path(path)
        self.synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._rows_per_insert = 90  # rows per INSERT: SQLite's bound-variable limit / 11
        self._thread = DatabaseThread("sqlite-ledger")  # not an executor: see worker.py
        self.checkpointer = WalCheckpointer(self.path, synchronous, self.busy_timeout_ms)

    async def _open(self) -> None:
        await self._in_thread(self._open_sync)
        self.checkpointer.start()

    async def _write(self, batch: Batch) -> None:
        await self._in_thread(lambda: self._write_sync(batch))

    async def _close(self) -> None:
        await asyncio.to_thread(self.checkpointer.stop)
        await self._in_thread(self._close_sync)
        self._thread.shutdown()

    async def recent_blocks(self, limit: int = 50) -> list[BlockRecord]:
        """The newest blocks first."""
        sql = f"SELECT {BLOCK_COLUMNS} FROM blocks ORDER BY height DESC, time DESC LIMIT ?"
        rows = await self._in_thread(lambda: self._db().execute(sql, (limit,)).fetchall())
        return [block_from_row(r) for r in rows]

    async def share_count(self) -> int:
        """How many shares the file holds."""
        row = await self._in_thread(lambda: self._db().execute("SELECT count(*) FROM shares"))
        return int(row.fetchone()[0])

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        try:
            return await self._thread.run(fn)
        except sqlite3.OperationalError as exc:  # locked, busy, disk I/O: worth a retry
            raise TransientLedgerError(f"sqlite {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise LedgerError(f"sqlite {self.path}: {exc}") from exc

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"sqlite {self.path}: not open")
        return self._conn

    def _open_sync(self) -> None:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is exactly one
        # transaction.
        conn = _connect(self.path, self.synchronous, self.busy_timeout_ms)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"sqlite {self.path}: cannot use WAL (journal_mode is {mode})")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer's thread does them
        self._conn = conn
        self._rows_per_insert = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 11
        migrate_sqlite(conn)

    def _write_sync(self, batch: Batch) -> None:
        conn = self._db()
        step = self._rows_per_insert
        inserts = [batch.shares[i : i + step] for i in range(0, len(batch.shares), step)]
        if len(inserts) == 1 and not batch.blocks:  # the usual batch: one statement, atomic
            self._insert_shares(conn, inserts[0])
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for shares in inserts:
                self._insert_shares(conn, shares)
            conn.executemany(_INSERT_BLOCK, [block_row(r) for r in batch.blocks])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _insert_shares(conn: sqlite3.Connection, shares: list[ShareRecord]) -> None:
        values = [v for r in shares for v in share_row(r)]
        conn.execute(_INSERT_SHARE + ", ".join([_SHARE_VALUES] * len(shares)), values)

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _connect(path: Path, synchronous: Synchronous, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection to the ledger's file as the ledger's threads use it: autocommit (BEGIN
    and COMMIT are issued by hand), usable from the thread that did not open it, waiting
    `busy_timeout_ms` for another connection's lock, with the ledger's synchronous policy."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


class WalCheckpointer:
    """Checkpoints a WAL database from a thread and connection of its own, so that no commit
    carries one. PASSIVE every `interval_s` (it copies what it can without waiting for the
    writer; SQLite's C code runs with the GIL released); RESTART when the WAL has grown past
    `restart_frames` pages because steady writes kept the passive ones from ever finishing:
    it waits for the current commit, copies everything, and the next commit starts the WAL
    over (the writer waits for it meanwhile, as it did for every automatic checkpoint)."""

    interval_s = 0.1
    restart_frames = 16_384  # ~64 MiB of WAL with 4 KiB pages

    def __init__(self, path: Path, synchronous: Synchronous, busy_timeout_ms: int) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms  # the ledger's: how long RESTART waits for it
        self.passive = 0  # checkpoints run, for tests and benchmarks
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread (blocks until it has; closing the last connection checkpoints)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        failing = False
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    if conn is None:
                        conn = _connect(self.path, self.synchronous, self.busy_timeout_ms)
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.passive += 1
                    if frames >= self.restart_frames:
                        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                        self.restarts += 1
                    failing = False
                except sqlite3.Error as exc:  # the next commit's own WAL append still works
                    if not failing:
                        log.warning("sqlite %s: WAL checkpoint failed: %s", self.path, exc)
                    failing = True
        finally:
            if conn is not None:
                conn.close()


def migrate_sqlite(conn: sqlite3.Connection) -> list[int]:
    """Apply every pending migration, each in its own transaction; return the versions."""
    conn.execute(SCHEMA_VERSION_TABLE)
    done: list[int] = []
    while True:
        # BEGIN IMMEDIATE takes the write lock first, so two processes starting at once
        # never apply the same migration twice.
        conn.execute("BEGIN IMMEDIATE")
        applied = {int(v) for (v,) in conn.execute("SELECT version FROM schema_version")}
        refuse_newer(applied)
        todo = pending(applied)
        if not todo:
            conn.execute("COMMIT")
            return done
        step = todo[0]
        try:
            for sql in statements_for(step, "sqlite"):
                conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (step.version, step.name, time.time()),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        done.append(step.version)
