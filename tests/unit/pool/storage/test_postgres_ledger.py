"""The PostgreSQL ledger: same schema, same batching, durable on return, reconnects."""

from __future__ import annotations

import asyncio
import dataclasses

import psycopg
import pytest
from ledger_samples import block, share

from hashfarm.pool.settings import StorageSettings
from hashfarm.pool.storage import LedgerError, open_ledger
from hashfarm.pool.storage.migrations import LATEST_VERSION, MIGRATIONS
from hashfarm.pool.storage.postgres import PostgresLedger

pytestmark = pytest.mark.services


async def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(sql)  # type: ignore[arg-type]
        return await cur.fetchall()


async def test_migrations_are_applied_once_and_recorded(fresh_pg_url: str) -> None:
    for _ in range(2):  # the second start finds nothing to do
        ledger = await open_ledger(StorageSettings(url=fresh_pg_url))
        await ledger.close()
    rows = await _rows(fresh_pg_url, "SELECT version, name FROM schema_version ORDER BY 1")
    assert rows == [(m.version, m.name) for m in MIGRATIONS]


async def test_two_pools_starting_at_once_migrate_without_conflict(fresh_pg_url: str) -> None:
    ledgers = [PostgresLedger(fresh_pg_url) for _ in range(3)]
    await asyncio.gather(*(x.start() for x in ledgers))
    await asyncio.gather(*(x.close() for x in ledgers))
    assert await _rows(fresh_pg_url, "SELECT count(*) FROM schema_version") == [(LATEST_VERSION,)]


async def test_concurrent_shares_are_committed_in_batches_and_visible_on_return(
    fresh_pg_url: str,
) -> None:
    ledger = PostgresLedger(fresh_pg_url, batch_max=128, batch_wait=0.002)
    await ledger.start()
    await asyncio.gather(*(ledger.record_share(share(n)) for n in range(600)))
    assert await _rows(fresh_pg_url, "SELECT count(*) FROM shares") == [(600,)]
    assert ledger.batches_committed < 100
    await ledger.record_share(share(600, accepted=False))
    rows = await _rows(fresh_pg_url, "SELECT accepted, reject_reason FROM shares WHERE id = 601")
    assert rows == [(False, "low-difficulty")]
    await ledger.close()


async def test_blocks_upsert_and_read_back(fresh_pg_url: str) -> None:
    ledger = PostgresLedger(fresh_pg_url)
    await ledger.start()
    await ledger.record_block(block(3, ok=False, verdict="inconclusive"))
    await ledger.record_block(block(3))
    await ledger.record_block(block(2, ok=False, verdict="high-hash"))
    assert await ledger.recent_blocks() == [block(3), block(2, ok=False, verdict="high-hash")]
    await ledger.close()


async def test_a_dropped_connection_is_reopened_and_the_batch_retried(fresh_pg_url: str) -> None:
    ledger = PostgresLedger(fresh_pg_url)
    ledger.retry_first = 0.01
    await ledger.start()
    await ledger.record_share(share(1))
    killed = await _rows(
        fresh_pg_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'hashfarm-pool' AND datname = current_database()",
    )
    assert killed == [(True,)]
    await asyncio.wait_for(ledger.record_share(share(2)), 10)
    assert await ledger.share_count() == 2
    await ledger.close()


async def test_a_constraint_violation_is_a_clear_error(fresh_pg_url: str) -> None:
    ledger = PostgresLedger(fresh_pg_url, batch_wait=0)
    await ledger.start()
    with pytest.raises(LedgerError, match="null value"):
        await ledger.record_share(dataclasses.replace(share(1), account=None))
    await ledger.record_share(share(2))
    assert await ledger.share_count() == 1
    await ledger.close()
