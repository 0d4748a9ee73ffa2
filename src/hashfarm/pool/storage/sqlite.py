"""The embedded ledger: SQLite in WAL mode, written by one connection off the event loop.

sqlite3 blocks, so the writing connection never runs on the event loop. By default it lives in
a child process (`storage.sqlite_writer = "process"`, pool/storage/sqlite_writer.py): a thread
of the pool's own process must win the GIL back from the busy loop after every SQLite call
that released it, and that wait was most of an acknowledgement's time under load
(bench/bench_pool_tail.py). `"thread"` keeps it on a dedicated thread of this process
(pool/storage/worker.py). Either way `write_batch` writes a batch as one transaction, and the
reads (the API's blocks, a count) and the migrations use this process's own connection on its
database thread. WAL lets readers (the API, a payout job, `sqlite3` in a shell) read while the
writer commits.

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
from hashfarm.pool.records import BlockRecord
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
from hashfarm.pool.storage.sqlite_writer import (
    OK,
    TRANSIENT,
    Setup,
    WriterLost,
    WriterProcess,
    connect,
    write_batch,
)
from hashfarm.pool.storage.worker import DatabaseThread

log = logging.getLogger(__name__)

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL", "EXTRA"]
Writer = Literal["process", "thread"]

_INSERT_SHARE = f"INSERT INTO shares ({SHARE_COLUMNS}) VALUES "
_SHARE_WIDTH = len(SHARE_COLUMNS.split(","))  # 11 values per share row
_SHARE_VALUES = f"({', '.join('?' * _SHARE_WIDTH)})"
_INSERT_BLOCK = (
    f"INSERT INTO blocks ({BLOCK_COLUMNS}) VALUES ({', '.join('?' * 8)}){BLOCK_UPSERT_TAIL}"
)


class SQLiteLedger(GroupCommitLedger):
    """Shares and blocks in one SQLite file (WAL, group commit)."""

    busy_timeout_ms = 5000  # how long a commit waits for another process's lock
    rows_per_insert = 10_000  # share rows per INSERT at most; lowered to SQLite's limit at open

    def __init__(
        self,
        path: str | Path,
        *,
        batch_max: int = 512,
        batch_wait: float = 0.0,
        synchronous: Synchronous = "FULL",
        queue_max: int = 50_000,
        writer: Writer = "process",
    ) -> None:
        super().__init__(batch_max=batch_max, batch_wait=batch_wait, queue_max=queue_max)
        self.path = Path(path)
        self.synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._thread = DatabaseThread("sqlite-ledger")  # not an executor: see worker.py
        self.checkpointer = WalCheckpointer(self.path, synchronous, self.busy_timeout_ms)
        self.writer = writer
        self.process: WriterProcess | None = None  # the child, once started (writer "process")

    @property
    def setup(self) -> Setup:
        """What a writer needs: the file, its PRAGMAs and the SQL of a batch."""
        return Setup(
            path=str(self.path.absolute()),  # the child opens the same file whatever its cwd
            synchronous=self.synchronous,
            busy_timeout_ms=self.busy_timeout_ms,
            insert_share=_INSERT_SHARE,
            share_values=_SHARE_VALUES,
            insert_block=_INSERT_BLOCK,
            rows_per_insert=self.rows_per_insert,
        )

    async def _open(self) -> None:
        await self._in_thread(self._open_sync)
        self.checkpointer.start()
        if self.writer == "process":
            self.process = WriterProcess(self.setup)
            try:
                failure = self._failure(Batch([], []), await self.process.start())
                if failure is not None:
                    raise failure
            except (WriterLost, TimeoutError, LedgerError) as exc:
                await self._close()  # the child (if any), the checkpointer, the connection
                raise LedgerError(f"sqlite {self.path}: the writer process: {exc}") from exc

    def _begin_write(self, batch: Batch, done: Callable[[BaseException | None], None]) -> None:
        process = self.process
        if process is None or not process.ready():  # the thread, or a child to start first
            super()._begin_write(batch, done)
            return
        shares = [share_row(r) for r in batch.shares]
        blocks = [block_row(r) for r in batch.blocks]
        process.send(shares, blocks, lambda reply: done(self._failure(batch, reply)))

    async def _write(self, batch: Batch) -> None:
        if self.process is None:
            await self._in_thread(lambda: self._write_sync(batch))
            return
        shares = [share_row(r) for r in batch.shares]
        blocks = [block_row(r) for r in batch.blocks]
        try:
            reply: tuple[int, str] | WriterLost = await self.process.write(shares, blocks)
        except WriterLost as exc:
            reply = exc
        failure = self._failure(batch, reply)
        if failure is not None:
            raise failure

    def _failure(self, batch: Batch, reply: tuple[int, str] | WriterLost) -> LedgerError | None:
        """What the writer process's reply to `batch` means: None (committed) or the error."""
        if isinstance(reply, WriterLost):
            if not reply.started:  # nothing was sent: the batch is retried
                return TransientLedgerError(f"sqlite {self.path}: {reply}")
            # It may have committed the batch before it went: retrying could write it twice,
            # so the batch fails, unacknowledged (as when the whole pool dies mid-commit).
            return LedgerError(
                f"sqlite {self.path}: {reply} during a commit of {len(batch)} records; "
                "whether they were written is unknown, so none is acknowledged or written "
                "again (the next batch starts a new writer process)"
            )
        status, text = reply
        if status == TRANSIENT:
            return TransientLedgerError(f"sqlite {self.path}: {text}")
        if status != OK:
            return LedgerError(f"sqlite {self.path}: {text}")
        return None

    async def _close(self) -> None:
        if self.process is not None:
            await self.process.close()
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
        conn = connect(self.path, self.synchronous, self.busy_timeout_ms)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"sqlite {self.path}: cannot use WAL (journal_mode is {mode})")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer's thread does them
        self._conn = conn
        limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self.rows_per_insert = min(self.rows_per_insert, limit // _SHARE_WIDTH)
        migrate_sqlite(conn)

    def _write_sync(self, batch: Batch) -> None:
        shares = [share_row(r) for r in batch.shares]
        write_batch(self._db(), self.setup, shares, [block_row(r) for r in batch.blocks])

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


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
                        conn = connect(self.path, self.synchronous, self.busy_timeout_ms)
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
