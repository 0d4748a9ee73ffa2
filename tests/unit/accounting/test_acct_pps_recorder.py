"""The pool's job-terms recorder: what a row holds, order, outages, overflow, bad templates.

The real `JobTermsRecorder` on a real SQLite file; an outage is a write that fails with the
ledger's transient error (as a locked or lost database does), injected at the SQL function
the recorder's writer calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hashfarm.accounting.crediting import coinbase_plan, job_of_share
from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import Tides
from hashfarm.accounting.store import SqlStore, connect
from hashfarm.accounting.tides import plan_coinbase
from hashfarm.errors import TransientLedgerError
from hashfarm.pool import jobterms
from hashfarm.pool.jobs import JobBook, PoolJob, payout_outputs
from hashfarm.pool.jobterms import JobTermsRecorder
from hashfarm.pool.storage.sqlite import SQLiteLedger
from unit.accounting.acct_jobs import POOL_SCRIPT, make_template

D256 = 0x1C00FFFF


def job(book: JobBook, height: int, fees: int, subsidy: int = 312_500_000) -> PoolJob:
    book.set_template(make_template(height, D256, subsidy, fees, tip=height))
    return book.job_for(POOL_SCRIPT)


@pytest.fixture
async def db(tmp_path: Path) -> str:
    path = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(path)  # the pool's tables, as a pool that ran
    await ledger.start()
    await ledger.close()
    return f"sqlite:///{path}"


def rows(sql: SqlStore) -> list[tuple[object, ...]]:
    return sql.q(
        "SELECT job_id, height, bits, network_difficulty, subsidy_sats, fees_sats, "
        "coinbase_value, prev_hash, published_at FROM acct_job_terms ORDER BY id"
    )


async def test_a_row_holds_the_jobs_terms_and_its_plan(db: str) -> None:
    clock = iter([100.0, 130.0])
    recorder = JobTermsRecorder(db, "mainnet", clock=lambda: next(clock))
    await recorder.start()
    book = JobBook(payout_outputs(None, 0.0), tag=b"/t/", extranonce2_size=4, generations_kept=3)
    plain = job(book, 840_000, 12_345_678)
    recorder.note(plain)
    tides = job(book, 840_001, 5)
    plan = plan_coinbase(312_500_005, {"alice": 1}, Tides(Fee.bps(100), dust_sats=1))
    recorder.note(tides, plan, "tides:fee=100/10000:factor=8/1:dust=1:max=500", {"x": 1})
    await recorder.flush()
    await recorder.close()
    sql = connect(db)
    try:
        # mainnet at 840,000: subsidy 3.125 BTC by consensus; the rest of the value is fees
        assert rows(sql) == [
            ("1", 840_000, D256, 256.0, 312_500_000, 12_345_678, 324_845_678,
             (840_000).to_bytes(32, "little")[::-1].hex(), 100.0),
            ("2", 840_001, D256, 256.0, 312_500_000, 5, 312_500_005,
             (840_001).to_bytes(32, "little")[::-1].hex(), 130.0),
        ]  # fmt: skip
        ref = int(sql.q("SELECT id FROM acct_job_terms WHERE job_id = '2'")[0][0])
        recorded = coinbase_plan(sql, ref)
        assert recorded is not None
        assert recorded[0] == plan
        assert recorded[1]["x"] == 1
        assert coinbase_plan(sql, ref - 1) is None  # the plain job paid no miner outputs
    finally:
        sql.close()


async def test_an_outage_delays_rows_in_order_and_loses_none(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobterms, "RETRY_FIRST", 0.01)
    real = jobterms.write_rows
    failures = [3]

    def flaky(sql: SqlStore, rows: list[jobterms.JobTermsRow]) -> None:
        if failures[0]:
            failures[0] -= 1
            raise TransientLedgerError("database is locked")
        real(sql, rows)

    monkeypatch.setattr(jobterms, "write_rows", flaky)
    clock = iter(float(t) for t in range(100))
    recorder = JobTermsRecorder(db, "mainnet", clock=lambda: next(clock))
    await recorder.start()
    book = JobBook(payout_outputs(None, 0.0), tag=b"/t/", extranonce2_size=4, generations_kept=3)
    for height in range(840_000, 840_005):
        recorder.note(job(book, height, height - 840_000))  # never blocks, never raises
    await recorder.flush()
    assert failures == [0]
    assert recorder.written == 5
    await recorder.close()
    sql = connect(db)
    try:
        assert [(r[0], r[1], r[5]) for r in rows(sql)] == [
            (f"{i + 1:x}", 840_000 + i, i) for i in range(5)
        ]
    finally:
        sql.close()


async def test_a_full_queue_drops_the_oldest_and_a_bad_template_is_skipped(db: str) -> None:
    recorder = JobTermsRecorder(db, "mainnet", queue_max=2, clock=lambda: 1.0)
    # not started: nothing is written, so the queue fills
    book = JobBook(payout_outputs(None, 0.0), tag=b"/t/", extranonce2_size=4, generations_kept=3)
    for height in (840_000, 840_001, 840_002):
        recorder.note(job(book, height, 0))
    assert recorder.dropped == 1
    recorder.note(job(book, 840_003, 0, subsidy=1))  # worth less than the subsidy: refused
    assert [r.height for r in recorder._queue] == [840_001, 840_002]
    await recorder.start()
    await recorder.flush()
    await recorder.close()
    sql = connect(db)
    try:
        assert [r[1] for r in rows(sql)] == [840_001, 840_002]
        assert job_of_share(sql, 1) is None  # no shares: no job
    finally:
        sql.close()
