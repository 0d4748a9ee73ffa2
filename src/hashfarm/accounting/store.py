"""The accounting ledger in SQL, beside the pool's shares: SQLite (embedded) or PostgreSQL.

`open_store(url)` connects to the database the pool writes (`sqlite:///PATH` or
`postgresql://...`), applies accounting's own migrations (`schema`) and returns an
`AccountingStore`: every statement runs on one dedicated thread (the drivers block; the
connection never crosses threads) and `await store.call(fn)` runs `fn(sql)` there, where `sql`
is the synchronous `SqlStore`. The crediting service and the CLI compose their reads and
writes as such functions, so each event is one database transaction.

`SqlStore.post` writes one `ledger.Transaction` with the ledger's invariants, in the caller's
transaction:

* the key is the idempotency key: the same transaction posted again is a no-op (False), a
  different one under a used key is refused with `AccountingError`;
* a miner balance never goes negative (checked here and by the table's CHECK);
* a block's found transaction is reversed at most once (UNIQUE `reverses`), never after it
  matured; a reversed block never matures.

psycopg is an optional extra: it is imported only when a PostgreSQL URL is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from hashfarm.accounting.ledger import AccountingError, Posting, Transaction
from hashfarm.accounting.schema import Dialect, migrate_postgres, migrate_sqlite
from hashfarm.errors import ConfigError, LedgerError, TransientLedgerError

T = TypeVar("T")

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")
_BUSY_TIMEOUT_MS = 5000  # a write waits this long for the pool's lock before failing
_POOL_TABLES = ("shares", "blocks")


class SqlStore:
    """One synchronous DB-API connection (sqlite3 or psycopg) and the ledger's SQL.

    SQL is written with `?` placeholders; PostgreSQL gets them as `%s`.
    """

    def __init__(self, conn: Any, dialect: Dialect, where: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.where = where  # for messages: the file or the redacted server

    def q(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (empty for writes)."""
        if self.dialect == "postgresql":
            cur = self.conn.execute(sql.replace("?", "%s"), tuple(params))
            return list(cur.fetchall()) if cur.description is not None else []
        return list(self.conn.execute(sql, tuple(params)).fetchall())

    def many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one statement for many rows."""
        if not rows:
            return
        if self.dialect == "postgresql":
            with self.conn.cursor() as cur:
                cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])
            return
        self.conn.executemany(sql, [tuple(r) for r in rows])

    @contextlib.contextmanager
    def tx(self) -> Iterator[None]:
        """One transaction: committed when the block ends, rolled back on any exception."""
        if self.dialect == "postgresql":
            with self.conn.transaction():
                yield
            return
        self.conn.execute("BEGIN IMMEDIATE")  # the write lock first: no lost updates
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def pool_tables_present(self) -> bool:
        """Whether the pool's `shares` and `blocks` tables exist (the pool ran here)."""
        if self.dialect == "postgresql":
            rows = self.q(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                "current_schema()"
            )
        else:
            rows = self.q("SELECT name FROM sqlite_master WHERE type = 'table'")
        names = {str(r[0]) for r in rows}
        return all(t in names for t in _POOL_TABLES)

    # -- the double-entry ledger ----------------------------------------------------------

    def post(self, txn: Transaction) -> bool:
        """Write `txn` (inside the caller's `tx()`); False when it was already written."""
        seen = self.q("SELECT reverses FROM acct_transactions WHERE key = ?", (txn.key,))
        if seen:
            old = self.q(
                "SELECT account, currency, amount FROM acct_postings WHERE txn_key = ?",
                (txn.key,),
            )
            mine = sorted((p.account, p.currency, p.amount) for p in txn.postings)
            if sorted((str(a), str(c), int(v)) for a, c, v in old) != mine or (
                seen[0][0] != txn.reverses
            ):
                raise AccountingError(f"{txn.key}: key already used by another transaction")
            return False
        self._check_lifecycle(txn)
        for p in txn.postings:
            before = self.balance(p.account, p.currency)
            if p.account.startswith("miner:") and before + p.amount < 0:
                raise AccountingError(
                    f"{txn.key}: {p.account} would go negative ({before + p.amount})"
                )
        self.q(
            "INSERT INTO acct_transactions (key, kind, time, block_hash, reverses) "
            "VALUES (?, ?, ?, ?, ?)",
            (txn.key, txn.kind, txn.time, txn.block_hash, txn.reverses),
        )
        self.many(
            "INSERT INTO acct_postings (txn_key, account, currency, amount) VALUES (?, ?, ?, ?)",
            [(txn.key, p.account, p.currency, p.amount) for p in txn.postings],
        )
        for p in txn.postings:  # UPDATE or INSERT: an upsert's INSERT half would meet the
            # CHECK with the bare (negative) amount before the conflict turns it into an UPDATE
            if self.q(
                "SELECT 1 FROM acct_balances WHERE account = ? AND currency = ?",
                (p.account, p.currency),
            ):
                self.q(
                    "UPDATE acct_balances SET balance = balance + ? "
                    "WHERE account = ? AND currency = ?",
                    (p.amount, p.account, p.currency),
                )
            else:
                self.q(
                    "INSERT INTO acct_balances (account, currency, balance) VALUES (?, ?, ?)",
                    (p.account, p.currency, p.amount),
                )
        return True

    def _check_lifecycle(self, txn: Transaction) -> None:
        if txn.reverses is not None:
            if not self.has_transaction(txn.reverses):
                raise AccountingError(f"{txn.key}: reverses unknown {txn.reverses}")
            if self.q("SELECT 1 FROM acct_transactions WHERE reverses = ?", (txn.reverses,)):
                raise AccountingError(f"{txn.key}: {txn.reverses} is already reversed")
            if txn.block_hash and self.has_transaction(f"mature:{txn.block_hash}"):
                raise AccountingError(f"{txn.key}: block {txn.block_hash} already matured")
        if txn.kind == "mature" and self.has_transaction(f"reverse:found:{txn.block_hash}"):
            raise AccountingError(f"{txn.key}: block {txn.block_hash} was reversed (orphan)")

    def has_transaction(self, key: str) -> bool:
        """Whether a transaction with this key was written."""
        return bool(self.q("SELECT 1 FROM acct_transactions WHERE key = ?", (key,)))

    def transaction(self, key: str) -> Transaction | None:
        """The transaction written under `key`, read back (None: never written)."""
        rows = self.q(
            "SELECT kind, time, block_hash, reverses FROM acct_transactions WHERE key = ?", (key,)
        )
        if not rows:
            return None
        kind, when, block_hash, reverses = rows[0]
        legs = self.q(
            "SELECT account, currency, amount FROM acct_postings WHERE txn_key = ? ORDER BY id",
            (key,),
        )
        postings = tuple(Posting(str(a), int(v), str(c)) for a, c, v in legs)
        return Transaction(key, str(kind), postings, float(when), block_hash, reverses)

    def balance(self, account: str, currency: str = "SAT") -> int:
        """The account's balance (0 when never used)."""
        rows = self.q(
            "SELECT balance FROM acct_balances WHERE account = ? AND currency = ?",
            (account, currency),
        )
        return int(rows[0][0]) if rows else 0

    def balances(self, prefix: str = "") -> dict[str, int]:
        """Non-zero balances of accounts starting with `prefix` (SAT)."""
        rows = self.q(
            "SELECT account, balance FROM acct_balances WHERE currency = 'SAT' AND balance <> 0 "
            "ORDER BY account"
        )
        return {str(a): int(b) for a, b in rows if str(a).startswith(prefix)}

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class AccountingStore:
    """A `SqlStore` behind one worker thread, for asyncio callers."""

    def __init__(self, sql: SqlStore) -> None:
        self.sql = sql
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="accounting-store")

    async def call(self, fn: Callable[[SqlStore], T]) -> T:
        """Run `fn(sql)` on the store's thread; driver errors become LedgerErrors."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: guarded(self.sql, fn))

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self.sql.close)
        self._thread.shutdown(wait=True)


def guarded(sql: SqlStore, fn: Callable[[SqlStore], T]) -> T:
    """`fn(sql)`, with a locked/lost database as TransientLedgerError, other SQL errors as
    LedgerError (AccountingError, a broken invariant, passes through)."""
    try:
        return fn(sql)
    except sqlite3.OperationalError as exc:
        raise TransientLedgerError(f"sqlite {sql.where}: {exc}") from exc
    except sqlite3.IntegrityError as exc:  # a CHECK or key refused what the code let through
        raise AccountingError(f"sqlite {sql.where}: {exc}") from exc
    except sqlite3.Error as exc:
        raise LedgerError(f"sqlite {sql.where}: {exc}") from exc
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            import psycopg

            if isinstance(exc, psycopg.OperationalError):
                raise TransientLedgerError(f"postgresql: {exc}") from exc
            if isinstance(exc, psycopg.IntegrityError):
                raise AccountingError(f"postgresql: {exc}") from exc
            raise LedgerError(f"postgresql: {exc}") from exc
        raise


def connect(url: str, *, create: bool = False) -> SqlStore:
    """A migrated `SqlStore` for `url` (blocking). A SQLite file must exist unless `create`."""
    if url.startswith(SQLITE_PREFIX):
        path = Path(url[len(SQLITE_PREFIX) :])
        if not path.name:
            raise ConfigError(f"storage URL {url!r} names no file")
        if not create and not path.is_file():
            raise LedgerError(f"no ledger database at {path} (has the pool run with this URL?)")
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            migrate_sqlite(conn)
        except sqlite3.Error as exc:
            raise LedgerError(f"sqlite {path}: {exc}") from exc
        return SqlStore(conn, "sqlite", str(path))
    if url.startswith(POSTGRES_PREFIXES):
        return _connect_postgres(url)
    raise ConfigError("storage URL must be sqlite:///PATH or postgresql://...")


def _connect_postgres(url: str) -> SqlStore:
    try:
        import psycopg
    except ImportError as exc:  # a light install leaves the driver out
        raise ConfigError(
            "a PostgreSQL ledger needs psycopg, which is not installed: "
            "pip install 'hashfarm[postgres]'"
        ) from exc
    try:
        conn = psycopg.connect(url, autocommit=True, application_name="hashfarm-accounting")
        migrate_postgres(conn)
    except psycopg.Error as exc:
        said = " ".join(str(exc).split())
        for secret in _secrets_of(url):  # libpq may echo the URL it was given
            said = said.replace(secret, "***")
        raise LedgerError(f"postgresql: cannot open the ledger: {said}") from exc
    return SqlStore(conn, "postgresql", "postgresql")


def _secrets_of(url: str) -> list[str]:
    """The password of `url` as written and percent-decoded (empty when it has none)."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:  # a URL too broken to split: hide everything after the scheme
        return [url.split("://", 1)[-1]]
    return [p for p in {password or "", unquote(password or "")} if p]


async def open_store(url: str, *, create: bool = False) -> AccountingStore:
    """Connect and migrate on the store's own thread (the event loop never blocks)."""
    store_thread = ThreadPoolExecutor(1, thread_name_prefix="accounting-store")
    try:
        sql = await asyncio.get_running_loop().run_in_executor(
            store_thread, lambda: connect(url, create=create)
        )
    finally:
        store_thread.shutdown(wait=True)
    return AccountingStore(sql)
