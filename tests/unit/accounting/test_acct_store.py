"""The SQL ledger keeps the in-memory ledger's invariants (on a pool's SQLite file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hashfarm.accounting import BlockCredit
from hashfarm.accounting.entries import block_found, block_matured, pps_settlement, reversal
from hashfarm.accounting.ledger import AccountingError, transaction
from hashfarm.accounting.store import SqlStore, connect
from hashfarm.errors import ConfigError, LedgerError

HASH = "ab" * 32


@pytest.fixture
def sql(tmp_path: Path) -> Iterator[SqlStore]:
    store = connect(f"sqlite:///{tmp_path / 'pool.sqlite3'}", create=True)
    yield store
    store.close()


def _found(alice: int = 600) -> BlockCredit:
    return BlockCredit(HASH, "prop", 1000, 10, {"alice": alice, "bob": 990 - alice}, 0)


def test_a_key_is_written_once_and_a_different_transaction_under_it_is_refused(
    sql: SqlStore,
) -> None:
    txn = block_found(_found(), 1.0)
    with sql.tx():
        assert sql.post(txn) is True
    with sql.tx():
        assert sql.post(block_found(_found(), 99.0)) is False  # a replay (time differs)
    with pytest.raises(AccountingError, match="already used"), sql.tx():
        sql.post(block_found(_found(alice=601), 1.0))
    assert sql.balance("miner:alice:immature") == 600
    assert sql.transaction(txn.key) == txn


def test_negative_miner_balances_and_lifecycle_breaks_are_refused_and_rolled_back(
    sql: SqlStore,
) -> None:
    found = block_found(_found(), 1.0)
    with sql.tx():
        sql.post(found)
    overdraw = transaction("pay:1", "payout", {"miner:alice": -1, "payouts": 1}, 2.0)
    overdraw_more = transaction("pay:2", "payout", {"miner:alice": -5, "payouts": 5}, 2.0)

    def settle_then_overdraw() -> None:
        with sql.tx():
            sql.post(pps_settlement("1", {"alice": 5}, 2.0))  # the reserve may go negative
            sql.post(overdraw)  # alice 5 -> 4
            sql.post(overdraw_more)  # 4 -> -1: refused, and the whole transaction with it

    with pytest.raises(AccountingError, match="negative"):
        settle_then_overdraw()
    assert not sql.has_transaction("pps:1")  # the whole transaction rolled back
    with sql.tx():
        sql.post(block_matured(found, 2.0))
    with pytest.raises(AccountingError, match="already matured"), sql.tx():
        sql.post(reversal(found, 3.0))
    assert sql.balances("miner:") == {"miner:alice": 600, "miner:bob": 390}
    assert sum(sql.balances().values()) == 0


def test_bad_urls_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sqlite:///PATH or postgresql"):
        connect("mysql://x")
    with pytest.raises(LedgerError, match="has the pool run"):
        connect(f"sqlite:///{tmp_path / 'none.sqlite3'}")


def test_an_unreachable_postgresql_is_a_ledger_error_without_the_password() -> None:
    with pytest.raises(LedgerError, match="cannot open the ledger") as caught:
        connect("postgresql://hf:s3cr%40et@127.0.0.1:9/hf?connect_timeout=5")
    assert "s3cr" not in str(caught.value)
