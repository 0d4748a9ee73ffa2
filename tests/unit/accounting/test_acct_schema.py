"""The accounting tables apply on SQLite and PostgreSQL, beside the pool's, and fit the model."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hashfarm.accounting import BlockCredit, Ledger
from hashfarm.accounting.entries import block_found, block_matured, pps_settlement
from hashfarm.accounting.inputs import ACCEPTED_SHARES_SQL, share_from_row
from hashfarm.accounting.schema import LATEST_VERSION, migrate_postgres, migrate_sqlite
from hashfarm.errors import LedgerError
from hashfarm.pool.storage.sqlite import migrate_sqlite as migrate_pool_sqlite

TABLES = {
    "acct_transactions",
    "acct_postings",
    "acct_balances",
    "acct_blocks",
    "acct_scheme_switches",
    "acct_job_terms",
    "acct_pps_accrual",
    "acct_payouts",
    "acct_payout_items",
}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "pool.sqlite", isolation_level=None)
    yield conn
    conn.close()


def _ledger() -> Ledger:
    ledger = Ledger()
    found = block_found(BlockCredit("ab" * 32, "prop", 1000, 10, {"alice": 600, "bob": 390}, 0), 1)
    ledger.post(found)
    ledger.post(block_matured(found, 2.0))
    ledger.post(pps_settlement("1", {"alice": 7}, 3.0))  # takes the reserve below zero
    return ledger


def _store(
    cur: sqlite3.Cursor | psycopg.Cursor[tuple[object, ...]], ledger: Ledger, ph: str
) -> None:
    for t in ledger.transactions.values():
        cur.execute(
            f"INSERT INTO acct_transactions (key, kind, time, block_hash, reverses) "
            f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph})",
            (t.key, t.kind, t.time, t.block_hash, t.reverses),
        )
        for p in t.postings:
            cur.execute(
                f"INSERT INTO acct_postings (txn_key, account, currency, amount) "
                f"VALUES ({ph}, {ph}, {ph}, {ph})",
                (t.key, p.account, p.currency, p.amount),
            )
    for (account, currency), balance in ledger.balances.items():
        cur.execute(
            f"INSERT INTO acct_balances (account, currency, balance) VALUES ({ph}, {ph}, {ph})",
            (account, currency, balance),
        )


BALANCED = "SELECT txn_key FROM acct_postings GROUP BY txn_key, currency HAVING SUM(amount) <> 0"
REPLAYED = "SELECT account, SUM(amount) FROM acct_postings GROUP BY account"


def test_sqlite_schema_applies_once_beside_the_pool_tables(db: sqlite3.Connection) -> None:
    migrate_pool_sqlite(db)
    assert migrate_sqlite(db) == list(range(1, LATEST_VERSION + 1))
    assert migrate_sqlite(db) == []
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names >= TABLES | {"shares", "blocks", "schema_version"}
    # the pool's version table is untouched: the pool still starts on this database
    assert migrate_pool_sqlite(db) == []


def test_sqlite_stores_the_ledger_and_replays_its_balances(db: sqlite3.Connection) -> None:
    migrate_sqlite(db)
    ledger = _ledger()
    _store(db.cursor(), ledger, "?")
    assert db.execute(BALANCED).fetchall() == []
    replayed = {a: v for a, v in db.execute(REPLAYED) if v}
    assert replayed == {a: v for (a, _), v in ledger.balances.items() if v}
    assert replayed["pool:reserve"] == -7  # the pool's reserve may go negative


def test_sqlite_refuses_a_negative_miner_balance(db: sqlite3.Connection) -> None:
    migrate_sqlite(db)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute("INSERT INTO acct_balances (account, balance) VALUES ('miner:alice', -1)")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute("INSERT INTO acct_blocks VALUES ('h', 1, 5, 'prop', 'lost', 0, 1, 0.0, 0.0)")


def test_sqlite_refuses_a_newer_accounting_schema(db: sqlite3.Connection) -> None:
    migrate_sqlite(db)
    db.execute("INSERT INTO accounting_schema_version VALUES (99, 'future', 0.0)")
    with pytest.raises(LedgerError, match="newer"):
        migrate_sqlite(db)


@pytest.fixture
def pg(fresh_pg_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    conn = psycopg.connect(fresh_pg_url, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


@pytest.mark.services
def test_postgres_schema_applies_and_replays_the_ledger(
    pg: psycopg.Connection[tuple[object, ...]],
) -> None:
    assert migrate_postgres(pg) == list(range(1, LATEST_VERSION + 1))
    assert migrate_postgres(pg) == []
    ledger = _ledger()
    with pg.transaction(), pg.cursor() as cur:
        _store(cur, ledger, "%s")
    assert pg.execute(BALANCED).fetchall() == []
    replayed = {str(a): int(str(v)) for a, v in pg.execute(REPLAYED) if v}
    assert replayed == {a: v for (a, _), v in ledger.balances.items() if v}
    with pytest.raises(psycopg.errors.CheckViolation):
        pg.execute("INSERT INTO acct_balances (account, balance) VALUES ('miner:bob', -5)")


def test_shares_are_read_from_the_pool_table_in_ledger_order(db: sqlite3.Connection) -> None:
    migrate_pool_sqlite(db)
    rows = [
        (10.0, "alice.rig1", "alice", "j1", 101, 2.5, 9.0, True, None, "00", None),
        (11.0, "bob.rig1", "bob", "j1", 101, 1.0, 0.5, False, "low-difficulty", "01", None),
        (12.0, "alice.rig2", "alice", "j2", 101, 4.0, 4.0, True, None, "00", "ab" * 32),
    ]
    db.executemany(
        "INSERT INTO shares (time, worker, account, job_id, height, difficulty, "
        "share_difficulty, accepted, reject_reason, extranonce1, block_hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    shares = [share_from_row(r) for r in db.execute(ACCEPTED_SHARES_SQL, (0, 3))]
    # the rejected share is not money; weights are the target difficulty, not the hash's
    assert [(s.share_id, s.account, s.difficulty) for s in shares] == [
        (1, "alice", 2.5),
        (3, "alice", 4.0),
    ]
    with pytest.raises(ValueError, match="positive"):
        share_from_row((4, "mallory", -1.0, 0.0, 1))
