"""The ledger role's write side on a real PostgreSQL: each share id stored once, whatever
redeliveries, replays and duplicate headers bring, and the single process left as it was."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pool_helpers import job_of
from test_shareflow import judged_share

from hashfarm.accounting.crediting import JobRow, job_of_share
from hashfarm.accounting.store import SqlStore, connect
from hashfarm.broker import Consumer, Publisher
from hashfarm.chain.block import Block
from hashfarm.chain.hashes import sha256d
from hashfarm.errors import LedgerError
from hashfarm.pool.jobterms import JobTermsRecorder, JobTermsRow, terms_row
from hashfarm.pool.ledgerrole import LedgerRole
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.settings import StorageSettings
from hashfarm.pool.shareflow import (
    cluster_job_id,
    decode_share,
    encode_share,
    encode_terms,
    new_run,
    share_id,
    subjects,
    terms_msg_id,
)
from hashfarm.pool.storage import open_ledger
from hashfarm.pool.storage.postgres import PostgresLedger
from nodes import NATS_URL, nats_problem, service_missing
from realdata import load_block_bytes

pytestmark = pytest.mark.services


def shares_of(block: Block, count: int) -> list[ShareRecord]:
    """`count` shares on `block`'s header with other nonces: real header hashes, distinct."""
    base = judged_share(block)
    header = bytearray(block.header.serialize())
    out = []
    for n in range(count):
        header[76:80] = struct.pack("<I", n)
        out.append(replace(base, header_hash=sha256d(bytes(header)), time=base.time + n))
    return out


async def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(sql)  # type: ignore[arg-type]
        return await cur.fetchall()


@pytest.fixture
def block_482683() -> Block:
    return Block.parse(load_block_bytes("mainnet-482683.raw"))


async def test_a_share_id_is_stored_once_across_batches(
    fresh_pg_url: str, block_482683: Block
) -> None:
    shares = shares_of(block_482683, 300)
    ledger = PostgresLedger(fresh_pg_url, idempotent=True)
    await ledger.start()
    try:
        await asyncio.gather(*(ledger.record_share(s) for s in shares[:200]))
        # a redelivery of 100 committed shares mixed with 100 new ones, each twice in flight
        again = shares[100:300] + shares[150:250]
        await asyncio.gather(*(ledger.record_share(s) for s in again))
    finally:
        await ledger.close()
    rows = await _rows(fresh_pg_url, "SELECT count(*), count(DISTINCT share_id) FROM shares")
    assert rows == [(300, 300)]
    assert ledger.duplicates_skipped == 200
    ids = {r[0] for r in await _rows(fresh_pg_url, "SELECT share_id FROM shares")}
    assert ids == {share_id(s) for s in shares}


async def test_the_same_header_from_two_front_ends_is_credited_once(
    fresh_pg_url: str, block_482683: Block
) -> None:
    a = judged_share(block_482683, "alice.rig1")
    b = replace(judged_share(block_482683, "alice.rig1"), job_id="02a", time=a.time + 3.0)
    ledger = PostgresLedger(fresh_pg_url, idempotent=True)
    await ledger.start()
    await ledger.record_share(decode_share(encode_share(a)))  # as the ledger role gets them
    await ledger.record_share(decode_share(encode_share(b)))
    await ledger.close()
    rows = await _rows(fresh_pg_url, "SELECT job_id, share_id FROM shares")
    assert rows == [(a.job_id, block_482683.hash_hex())]


async def test_commit_writes_shares_and_blocks_once(fresh_pg_url: str, block_482683: Block) -> None:
    shares = shares_of(block_482683, 50)
    blk = BlockRecord(482683, block_482683.hash_hex(), 1_256_817_877, "alice.rig1", "alice",
                      1_504_119_737.0, True, None)  # fmt: skip
    ledger = PostgresLedger(fresh_pg_url, idempotent=True)
    await ledger.start()
    role = LedgerRole(consumer=None, ledger=ledger, subject_prefix="hashfarm")  # type: ignore[arg-type]
    try:
        await role.commit(shares, [blk])
        await role.commit(shares[25:], [blk])  # the batch redelivered after a crash
        await role.commit([], [])
    finally:
        await ledger.close()
    assert await _rows(fresh_pg_url, "SELECT count(*) FROM shares") == [(50,)]
    assert await _rows(fresh_pg_url, "SELECT hash, accepted_by_node FROM blocks") == [
        (block_482683.hash_hex(), True)
    ]
    assert role.duplicates_skipped == 25


async def test_commit_raises_when_the_database_refuses(
    fresh_pg_url: str, block_482683: Block
) -> None:
    ledger = PostgresLedger(fresh_pg_url, idempotent=True)
    await ledger.start()
    role = LedgerRole(consumer=None, ledger=ledger, subject_prefix="hashfarm")  # type: ignore[arg-type]
    bad = replace(shares_of(block_482683, 1)[0], worker="nul\x00byte")  # PostgreSQL refuses NUL
    try:
        with pytest.raises(LedgerError):
            await role.commit([bad], [])
    finally:
        await ledger.close()
    assert await _rows(fresh_pg_url, "SELECT count(*) FROM shares") == [(0,)]


async def test_single_process_ledgers_leave_the_share_id_empty(
    fresh_pg_url: str, tmp_path: Path, block_482683: Block
) -> None:
    shares = shares_of(block_482683, 3)
    for url in (fresh_pg_url, f"sqlite:///{tmp_path / 'pool.sqlite3'}"):
        ledger = await open_ledger(StorageSettings(url=url))
        for s in shares + shares:  # the single process writes what it is given, as before
            await ledger.record_share(s)
        await ledger.close()
    assert await _rows(fresh_pg_url, "SELECT count(*), count(share_id) FROM shares") == [(6, 0)]
    with sqlite3.connect(tmp_path / "pool.sqlite3") as conn:
        assert conn.execute("SELECT count(*), count(share_id) FROM shares").fetchone() == (6, 0)


# -- job terms through the broker: a share is stored only once its job's terms are ---------


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    """A stream of this test's own on the development broker, deleted afterwards."""
    if problem := nats_problem():
        service_missing(problem)
    name = f"hft{secrets.token_hex(5)}"
    yield name
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


async def _publish(pub: Publisher, subject: str, msg_id: str, payload: bytes) -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    pub.publish(subject, msg_id, payload, lambda e: done.set_result(None) if e is None
                else done.set_exception(e))  # fmt: skip
    await asyncio.wait_for(done, 10)


@dataclass
class Wired:
    pub: Publisher
    role: LedgerRole
    sql: SqlStore
    run: str
    shares_subject: str
    terms_subject: str

    async def share(self, rec: ShareRecord) -> None:
        await _publish(self.pub, self.shares_subject, share_id(rec),
                       encode_share(rec, run=self.run))  # fmt: skip

    async def terms(self, row: JobTermsRow) -> None:
        await _publish(self.pub, self.terms_subject, terms_msg_id(row.pool_run, row.job_id),
                       encode_terms(row))  # fmt: skip

    def stored(self) -> dict[str, str]:
        """share id -> stored job id."""
        return {str(a): str(b) for a, b in self.sql.q("SELECT share_id, job_id FROM shares")}

    def job_of(self, rec: ShareRecord) -> JobRow | None:
        """The terms the crediting service prices this stored share at."""
        rows = self.sql.q("SELECT id FROM shares WHERE share_id = ?", (share_id(rec),))
        return job_of_share(self.sql, int(rows[0][0]))


@contextlib.asynccontextmanager
async def wired(url: str, stream: str, tmp: Path, **role_kw: Any) -> AsyncIterator[Wired]:
    db = PostgresLedger(url, idempotent=True)
    await db.start()
    recorder = JobTermsRecorder(url, "mainnet")
    await recorder.start()
    names = list(subjects(stream))
    pub = Publisher(NATS_URL, stream, names, tmp / "spool", name="fe")
    await pub.start()
    con = Consumer(NATS_URL, stream, "ledger", names, ack_wait=1.0)
    await con.start()
    role = LedgerRole(con, db, subject_prefix=stream, batch=100, fetch_timeout=0.3, **role_kw)
    role.use_terms(recorder, hold=True)
    sql = connect(url)
    try:
        yield Wired(pub, role, sql, new_run(4), names[0], names[2])
    finally:
        sql.close()
        await pub.close()
        await con.close()
        await recorder.close()
        await db.close()


async def _steps(role: LedgerRole, until: Callable[[], bool], what: str) -> None:
    for _ in range(40):
        await role.step()
        if until():
            return
    raise AssertionError(f"never {what}: {role.stats}")


async def test_a_share_before_its_jobs_terms_is_held_until_they_come(
    fresh_pg_url: str, stream: str, tmp_path: Path, block_482683: Block
) -> None:
    job_a, _ = job_of(block_482683, seq=1)
    job_b, _ = job_of(block_482683, seq=2)
    a, b = shares_of(block_482683, 2)
    a = replace(a, job_id=job_a.job_id, time=2000.0)
    b = replace(b, job_id=job_b.job_id, time=2000.5)
    async with wired(fresh_pg_url, stream, tmp_path) as w:
        terms_a = terms_row(job_a, "mainnet", w.run, 1000.0)
        terms_b = terms_row(job_b, "mainnet", w.run, 1001.0)
        # the same front end's previous run published job 2 at this height with other fees:
        # the share must never be priced at those terms while its own are on the way
        old_run = new_run(4)
        stale = replace(
            terms_row(job_b, "mainnet", old_run, 900.0),
            fees_sats=terms_b.fees_sats + 1,
            coinbase_value=terms_b.coinbase_value + 1,
        )
        await w.terms(stale)
        await w.terms(terms_a)
        await w.share(a)
        await w.share(b)  # b's own terms come later (a spool replay behind it)
        await _steps(w.role, lambda: share_id(a) in w.stored(), "stored share a")
        assert w.stored() == {share_id(a): cluster_job_id(a.job_id, w.run)}
        assert w.role.stats.shares_held == 1  # b: neither stored nor acknowledged
        job = w.job_of(a)
        assert job is not None
        assert job.terms.fees_sats == terms_a.fees_sats
        await asyncio.sleep(1.5)  # past the ack wait: the broker delivers b again
        await _steps(w.role, lambda: w.role.stats.held_total >= 1, "saw b")
        await w.role.step()
        assert (w.role.stats.shares_held, w.role.stats.held_total) == (1, 1)  # replaced
        assert share_id(b) not in w.stored()
        await w.terms(terms_b)
        await _steps(w.role, lambda: share_id(b) in w.stored(), "stored share b")
        assert w.role.stats.shares_held == 0
        assert w.role.stats.released_without_terms == 0
        job = w.job_of(b)
        assert job is not None
        assert job.terms.fees_sats == terms_b.fees_sats != stale.fees_sats  # its own run's
        assert job.published_at == 1001.0
        await asyncio.sleep(1.5)  # nothing comes back: every delivery was acknowledged
        assert await w.role.step() == 0
        assert await w.role.consumer.lag() == 0
        assert len(w.stored()) == 2


async def test_a_share_whose_terms_never_come_is_written_unpriceable(
    fresh_pg_url: str, stream: str, tmp_path: Path, block_482683: Block
) -> None:
    job, _ = job_of(block_482683, seq=9)
    (rec,) = shares_of(block_482683, 1)
    rec = replace(rec, job_id=job.job_id)
    async with wired(fresh_pg_url, stream, tmp_path, terms_wait=0.5) as w:
        other = new_run(4)  # another run's job with the same id and height is recorded
        await w.terms(terms_row(job, "mainnet", other, 10.0))
        await w.share(rec)
        await _steps(w.role, lambda: w.role.stats.shares_held == 1, "held the share")
        await asyncio.sleep(0.6)
        await _steps(w.role, lambda: share_id(rec) in w.stored(), "released the share")
        assert w.role.stats.released_without_terms == 1
        assert w.job_of(rec) is None  # the crediting service waits before it, never guesses


async def test_without_pps_shares_are_not_held_and_terms_are_still_recorded(
    fresh_pg_url: str, stream: str, tmp_path: Path, block_482683: Block
) -> None:
    job, _ = job_of(block_482683, seq=3)
    (rec,) = shares_of(block_482683, 1)
    rec = replace(rec, job_id=job.job_id)
    async with wired(fresh_pg_url, stream, tmp_path) as w:
        w.role.hold_for_terms = False  # e.g. PPLNS: the terms are kept for a later switch
        await w.share(rec)
        await _steps(w.role, lambda: share_id(rec) in w.stored(), "stored the share")
        await w.terms(terms_row(job, "mainnet", w.run, 5.0))
        await _steps(w.role, lambda: w.role.stats.terms == 1, "wrote the terms")
        assert w.role.stats.held_total == 0
        assert w.job_of(rec) is not None
