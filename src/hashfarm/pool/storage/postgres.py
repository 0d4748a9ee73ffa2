"""The production ledger: PostgreSQL through psycopg 3 (async), same schema and batching.

One connection does the writing; a batch is one transaction sent with `executemany`
(psycopg pipelines it, so a batch costs about one round trip). PostgreSQL's default
`synchronous_commit = on` means COMMIT returns after the WAL record is flushed to disk, so an
acknowledged share survives a crash of the pool, of PostgreSQL or of the machine. A lost
connection is transient: the writer reconnects and retries the batch.
"""

from __future__ import annotations

import time

from hashfarm.errors import ConfigError, LedgerError, TransientLedgerError

try:
    import psycopg
except ImportError as exc:  # a light install: `pip install hashfarm` leaves the driver out
    raise ConfigError(
        "storage.url: a PostgreSQL ledger needs psycopg, which is not installed: "
        "pip install 'hashfarm[postgres]'"
    ) from exc

from hashfarm.pool.config import redact_message, redact_url
from hashfarm.pool.records import BlockRecord
from hashfarm.pool.storage.base import (
    BLOCK_COLUMNS,
    BLOCK_UPSERT_TAIL,
    SHARE_COLUMNS,
    SHARE_COLUMNS_WITH_ID,
    SHARE_ID_CONFLICT_TAIL,
    Batch,
    GroupCommitLedger,
    block_from_row,
    block_row,
    share_row,
    share_row_with_id,
)
from hashfarm.pool.storage.migrations import (
    SCHEMA_VERSION_TABLE,
    pending,
    refuse_newer,
    statements_for,
)

_INSERT_SHARE = f"INSERT INTO shares ({SHARE_COLUMNS}) VALUES ({', '.join(['%s'] * 11)})"
_INSERT_SHARE_ONCE = (
    f"INSERT INTO shares ({SHARE_COLUMNS_WITH_ID}) VALUES ({', '.join(['%s'] * 12)})"
    + SHARE_ID_CONFLICT_TAIL
)
_INSERT_BLOCK = (
    f"INSERT INTO blocks ({BLOCK_COLUMNS}) VALUES ({', '.join(['%s'] * 8)}){BLOCK_UPSERT_TAIL}"
)
# Any constant works; it only has to be the same for every hashfarm process migrating.
_MIGRATION_LOCK = 0x6861736866
_CONNECT_TIMEOUT = 10  # seconds for one connection attempt


class PostgresLedger(GroupCommitLedger):
    """Shares and blocks in PostgreSQL (group commit over one connection)."""

    def __init__(
        self,
        url: str,
        *,
        batch_max: int = 512,
        batch_wait: float = 0.0,
        queue_max: int = 50_000,
        idempotent: bool = False,
    ) -> None:
        super().__init__(batch_max=batch_max, batch_wait=batch_wait, queue_max=queue_max)
        self.url = url
        # The ledger role's: shares carry their id and one already stored is skipped
        # (docs/scale-out.md); the single process writes as before (share_id NULL).
        self.idempotent = idempotent
        self.duplicates_skipped = 0  # shares whose id was already stored (idempotent only)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None  # the writer's
        self._reader: psycopg.AsyncConnection[tuple[object, ...]] | None = None  # API reads

    async def _open(self) -> None:
        conn = await self._connect()
        try:
            await migrate_postgres(conn)
        except psycopg.Error as exc:
            raise LedgerError(f"postgresql migration failed: {exc}") from exc

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = await self._open_connection()
        return self._conn

    async def _open_connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        try:
            return await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                connect_timeout=_CONNECT_TIMEOUT,
                application_name="hashfarm-pool",  # so operators see who is connected
            )
        except psycopg.OperationalError as exc:
            raise TransientLedgerError(f"postgresql: cannot connect: {self._said(exc)}") from exc
        except psycopg.Error as exc:  # a malformed URL (ProgrammingError): retrying cannot help
            raise LedgerError(
                f"invalid setting storage.url {redact_url(self.url)!r}: {self._said(exc)}"
            ) from exc

    def _said(self, exc: Exception) -> str:
        # libpq echoes parts of a URL it cannot parse, the password included
        return redact_message(str(exc), self.url)

    async def _write(self, batch: Batch) -> None:
        conn = await self._connect()
        skipped = 0
        try:
            async with conn.transaction(), conn.cursor() as cur:
                if batch.shares and self.idempotent:
                    rows = [share_row_with_id(r) for r in batch.shares]
                    await cur.executemany(_INSERT_SHARE_ONCE, rows)
                    skipped = len(rows) - max(cur.rowcount, 0)
                elif batch.shares:
                    await cur.executemany(_INSERT_SHARE, [share_row(r) for r in batch.shares])
                if batch.blocks:
                    await cur.executemany(_INSERT_BLOCK, [block_row(r) for r in batch.blocks])
        except psycopg.OperationalError as exc:
            raise TransientLedgerError(f"postgresql: {exc}") from exc
        except psycopg.Error as exc:
            raise LedgerError(f"postgresql: {exc}") from exc
        self.duplicates_skipped += skipped

    async def _close(self) -> None:
        for conn in (self._conn, self._reader):
            if conn is not None:
                await conn.close()
        self._conn = self._reader = None

    async def recent_blocks(self, limit: int = 50) -> list[BlockRecord]:
        """The newest blocks first."""
        sql = f"SELECT {BLOCK_COLUMNS} FROM blocks ORDER BY height DESC, time DESC LIMIT %s"
        rows = await self._fetch(sql, (limit,))
        return [block_from_row(r) for r in rows]

    async def share_count(self) -> int:
        """How many shares the database holds."""
        rows = await self._fetch("SELECT count(*) FROM shares", ())
        (count,) = rows[0]
        return count if isinstance(count, int) else 0

    async def _fetch(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        # Reads get their own connection: on the writer's, a read could land inside an open
        # batch transaction and see rows that might yet roll back.
        if self._reader is None or self._reader.closed:
            self._reader = await self._open_connection()
        conn = self._reader
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql, params)
                return await cur.fetchall()
        except psycopg.Error as exc:
            raise LedgerError(f"postgresql: {exc}") from exc


async def migrate_postgres(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> list[int]:
    """Apply every pending migration, each in its own transaction; return the versions."""
    done: list[int] = []
    while True:
        async with conn.transaction(), conn.cursor() as cur:
            # A transaction-scoped advisory lock: concurrent starters migrate one at a time.
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await cur.execute(SCHEMA_VERSION_TABLE)
            await cur.execute("SELECT version FROM schema_version")
            applied = {int(str(v)) for (v,) in await cur.fetchall()}
            refuse_newer(applied)
            todo = pending(applied)
            if not todo:
                return done
            for sql in statements_for(todo[0], "postgresql"):
                await cur.execute(sql)
            await cur.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                (todo[0].version, todo[0].name, time.time()),
            )
        done.append(todo[0].version)
