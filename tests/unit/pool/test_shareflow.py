"""The front end's share flow (pool/shareflow.py): the share id and the broker codec, on
shares judged from real mainnet blocks."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from pool_helpers import EN1_SIZE, EN2_SIZE, job_of
from test_shares import params_for, run

from hashfarm.broker import Publisher
from hashfarm.broker.spool import Spool
from hashfarm.chain.block import Block
from hashfarm.pool.jobterms import terms_row
from hashfarm.pool.records import BlockRecord, ShareRecord, new_share_record
from hashfarm.pool.shareflow import (
    BrokerLedger,
    ShareFlowError,
    block_msg_id,
    cluster_job_id,
    decode_block,
    decode_share,
    decode_share_run,
    decode_terms,
    encode_block,
    encode_share,
    encode_terms,
    new_run,
    share_id,
    subjects,
    terms_msg_id,
)
from hashfarm.pool.storage.base import share_id_of


def judged_share(block: Block, worker: str = "bc1qminer.rig7") -> ShareRecord:
    """The record Pool makes of the share that mined `block` (as Pool._record_of does)."""
    job, en = job_of(block)
    v = run(block, job, en, params_for(block, job, en))
    assert v.accepted
    assert v.hash is not None
    assert v.share is not None
    return new_share_record(
        worker,
        worker.split(".")[0],
        v.share.job_id,
        job.template.height,
        1.0,
        v.share_difficulty,
        True,
        None,
        1_700_000_123.25,
        en[:EN1_SIZE].hex(),
        v.hash[::-1].hex() if v.is_block else None,
        v.hash,
    )


def test_share_id_is_the_header_hash_in_display_order(real_block: Block) -> None:
    rec = judged_share(real_block)
    assert share_id(rec) == real_block.hash_hex()  # e.g. 000000000000000000c238240ef6...
    assert share_id_of(rec) == real_block.hash_hex()  # the ledger's column, the same value
    assert share_id(rec) == rec.block_hash_hex  # a block's share id is its block hash


def test_same_header_same_id_on_any_front_end(small_block: Block) -> None:
    # two front ends judge the very same header: different workers, times, job ids
    a = judged_share(small_block, "alice.rig1")
    b = judged_share(small_block, "bob.rig2")
    assert share_id(a) == share_id(b)


def test_share_roundtrip_keeps_every_field(real_block: Block) -> None:
    rec = judged_share(real_block)
    payload = encode_share(rec)
    assert decode_share(payload) == rec
    assert len(payload) < 400  # one accepted share on the wire, whatever the block's size


def test_share_difficulty_floats_survive_exactly(small_block: Block) -> None:
    rec = judged_share(small_block)
    tiny = new_share_record(
        rec.worker, rec.account, rec.job_id, 0, 1e-12, 4.656542373906925e-10, True, None,
        1e9 + 0.1, rec.extranonce1_hex, None, rec.header_hash,
    )  # fmt: skip
    back = decode_share(encode_share(tiny))
    assert back.difficulty == 1e-12
    assert back.share_difficulty == 4.656542373906925e-10
    assert back.time == 1e9 + 0.1


def test_a_share_without_header_hash_has_no_id(small_block: Block) -> None:
    rec = judged_share(small_block)
    bare = new_share_record(*[getattr(rec, f) for f in rec.__slots__[:11]])  # type: ignore[attr-defined]
    with pytest.raises(ShareFlowError, match="no id"):
        share_id(bare)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{}",
        b"not json",
        b"[2]",
        b"[1, 1, 2, 3]",
        orjson.dumps([1, "w", "a", "j", -1, 1.0, 1.0, 1.0, "00", None, "00" * 32]),
        orjson.dumps([1, "w", "a", "j", 1, "x", 1.0, 1.0, "00", None, "00" * 32]),
        orjson.dumps([1, "w", "a", "j", 1, 1.0, 1.0, 1.0, "00", None, "zz" * 32]),
        orjson.dumps([1, "w", "a", "j", 1, 1.0, 1.0, 1.0, "00", "ab", "00" * 32]),
        orjson.dumps([1, "w", "a", "j", True, 1.0, 1.0, 1.0, "00", None, "00" * 32]),
        orjson.dumps([1, "w", 5, "j", 1, 1.0, 1.0, 1.0, "00", None, "00" * 32]),
    ],
)
def test_decode_refuses_what_is_not_a_share(payload: bytes) -> None:
    with pytest.raises(ShareFlowError):
        decode_share(payload)


def test_block_roundtrip_and_message_ids(small_block: Block) -> None:
    submitted = BlockRecord(482683, small_block.hash_hex(), 1_256_817_877, "alice.rig1",
                            "alice", 1_504_119_737.0, True, None)  # fmt: skip
    refused = BlockRecord(482683, small_block.hash_hex(), 1_256_817_877, "alice.rig1",
                          "alice", 1_504_119_738.0, False, "high-hash")  # fmt: skip
    assert decode_block(encode_block(submitted)) == submitted
    assert decode_block(encode_block(refused)) == refused
    # the submission and a later verdict on the same hash are two messages, never deduplicated
    assert block_msg_id(submitted) != block_msg_id(refused)
    assert block_msg_id(submitted) == block_msg_id(submitted)
    with pytest.raises(ShareFlowError):
        decode_block(encode_share(judged_share(small_block)))


def test_subjects() -> None:
    assert subjects("hashfarm") == ("hashfarm.shares", "hashfarm.blocks", "hashfarm.jobterms")


# -- job terms and the front end's run (PPS/FPPS in cluster roles) -------------------------


def test_a_share_names_its_front_ends_run_and_the_ledger_stores_the_run_qualified_job(
    small_block: Block,
) -> None:
    rec = judged_share(small_block)
    run = new_run(5)
    assert run[:2] == "05"
    assert len(run) == 16
    assert new_run(5) != run
    back, got = decode_share_run(encode_share(rec, run=run))
    assert got == run
    assert back.job_id == cluster_job_id(rec.job_id, run) == f"{rec.job_id}@{run}"
    assert replace(back, job_id=rec.job_id) == rec  # every other field as judged
    # a front end publishing no terms (solo mode), and the previous version's format 1
    assert decode_share_run(encode_share(rec)) == (rec, None)
    v1 = orjson.loads(encode_share(rec))[:-1]
    v1[0] = 1
    assert decode_share_run(orjson.dumps(v1)) == (rec, None)
    with pytest.raises(ShareFlowError, match="run id"):
        decode_share_run(encode_share(rec, run="05zz"))
    with pytest.raises(ValueError, match=r"not in 0\.\.255"):
        new_run(256)


def test_job_terms_roundtrip_as_the_ledger_stores_them(small_block: Block) -> None:
    job, _ = job_of(small_block)
    run = new_run(3)
    row = terms_row(job, "mainnet", run, 1_700_000_000.5)
    back = decode_terms(encode_terms(row))
    assert back == replace(row, job_id=cluster_job_id(job.job_id, run))
    assert back.subsidy_sats + back.fees_sats == back.coinbase_value == job.template.coinbase_value
    assert back.network_difficulty == job.template.difficulty
    assert terms_msg_id(run, job.job_id) == f"t{run}.{job.job_id}"


@pytest.mark.parametrize(
    "change",
    [
        {1: "not-a-run"},
        {2: ""},
        {2: "a\nb"},
        {4: "zz" * 32},
        {5: -1},
        {7: 0.0},
        {7: float("inf")},
        {8: -5},
        {9: 1},  # subsidy + fees no longer the coinbase value
        {11: "yesterday"},
        {0: 2},
    ],
)
def test_decode_terms_refuses_impossible_terms(
    small_block: Block, change: dict[int, object]
) -> None:
    job, _ = job_of(small_block)
    doc = orjson.loads(encode_terms(terms_row(job, "mainnet", new_run(3), 1.0)))
    for i, v in change.items():
        doc[i] = v
    with pytest.raises(ShareFlowError):
        decode_terms(orjson.dumps(doc))  # (orjson writes infinity as null)


async def test_a_front_end_publishes_each_jobs_terms_and_its_shares_name_its_run(
    small_block: Block, tmp_path: Path
) -> None:
    """Through a real Publisher with no broker: what the front end acknowledged is in its
    spool, exactly as it will reach the ledger."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pub = Publisher(f"nats://127.0.0.1:{port}", "T", list(subjects("hf")), tmp_path, name="fe")
    await pub.start(connect_wait=0.1)
    ledger = BrokerLedger(pub, "hf", network="mainnet", frontend_id=7)
    assert ledger.job_terms is not None
    assert ledger.run.startswith("07")
    job, _ = job_of(small_block)
    ledger.job_terms.note(job)
    ledger.job_terms.note(job, plan=object())  # a TIDES plan: refused, not published
    await ledger.record_share(judged_share(small_block))
    await pub.close()
    assert (ledger.job_terms.published, ledger.job_terms.refused) == (1, 1)
    spool = Spool(tmp_path, 1 << 20)
    spool.open()
    records = [r for path in spool.sealed() for r in spool.read(path)]
    spool.close()
    assert [(r.subject, r.msg_id) for r in records] == [
        ("hf.jobterms", terms_msg_id(ledger.run, job.job_id)),  # the terms before the share
        ("hf.shares", small_block.hash_hex()),
    ]
    row = decode_terms(records[0].payload)
    share, run = decode_share_run(records[1].payload)
    assert run == ledger.run == row.pool_run
    assert (share.height, share.job_id) == (row.height, row.job_id)  # the ledger's lookup key


def test_extranonce_of_judged_share_is_the_miners(small_block: Block) -> None:
    _, en = job_of(small_block)
    assert judged_share(small_block).extranonce1_hex == en[:EN1_SIZE].hex()
    assert len(en) == EN1_SIZE + EN2_SIZE
