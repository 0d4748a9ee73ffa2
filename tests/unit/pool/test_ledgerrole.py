"""The ledger role's write side on a real PostgreSQL: each share id stored once, whatever
redeliveries, replays and duplicate headers bring, and the single process left as it was."""

from __future__ import annotations

import asyncio
import sqlite3
import struct
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from test_shareflow import judged_share

from hashfarm.chain.block import Block
from hashfarm.chain.hashes import sha256d
from hashfarm.errors import LedgerError
from hashfarm.pool.ledgerrole import LedgerRole
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.settings import StorageSettings
from hashfarm.pool.shareflow import decode_share, encode_share, share_id
from hashfarm.pool.storage import open_ledger
from hashfarm.pool.storage.postgres import PostgresLedger
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
