"""JobBook, extranonce allocation and block assembly, on real mainnet blocks."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from pool_helpers import job_of, template_of

from hashfarm.chain.block import Block
from hashfarm.chain.coinbase import bip34_height
from hashfarm.chain.tx import Transaction
from hashfarm.errors import NodeError
from hashfarm.node.template import parse_template
from hashfarm.pool.blocks import assemble_block, block_hex
from hashfarm.pool.jobs import CoinbaseLayout, JobBook, NotifyLayout, payout_outputs
from hashfarm.pool.server import ExtranonceAllocator
from hashfarm.pool.shares import Limits, judge
from hashfarm.stratum import messages
from hashfarm.stratum.codec import decode, encode
from hashfarm.stratum.messages import Submit

SCRIPT_A = bytes.fromhex("0014") + bytes(range(20))
SCRIPT_B = bytes.fromhex("0014") + bytes(range(20, 40))
FEE = bytes.fromhex("0014") + bytes(20)


def book(generations: int = 3, fee: float = 0.0, seen_per_tip: int = 1 << 22) -> JobBook:
    return JobBook(
        payout_outputs(FEE if fee else None, fee),
        tag=b"/hashfarm/",
        extranonce2_size=8,
        generations_kept=generations,
        seen_per_tip=seen_per_tip,
    )


def test_assembled_block_is_byte_identical_to_the_real_one(real_block: Block) -> None:
    job, extranonce = job_of(real_block)
    raw = assemble_block(job, real_block.header.serialize(), extranonce)
    assert raw == real_block.serialize()
    assert block_hex(job, real_block.header.serialize(), extranonce) == raw.hex()
    tail = "".join(tx.serialize().hex() for tx in real_block.transactions[1:])
    with_node_hex = replace(job, template=replace(job.template, transactions_hex=tail))
    assert block_hex(with_node_hex, real_block.header.serialize(), extranonce) == raw.hex()


def test_one_job_per_payout_script_sharing_one_branch(small_block: Block) -> None:
    jobs = book()
    assert jobs.set_template(template_of(small_block)) is True  # first template: clean
    a, b = jobs.job_for(SCRIPT_A), jobs.job_for(SCRIPT_B)
    assert jobs.job_for(SCRIPT_A) is a  # built once, then shared
    assert a.job_id != b.job_id
    assert a.work.merkle_branch == b.work.merkle_branch
    assert a.notify_line != b.notify_line
    cb_a = Transaction.parse(a.coinbase.serialize(bytes(12)))
    assert cb_a.outputs[0].script_pubkey == SCRIPT_A
    assert cb_a.outputs[0].value == small_block.transactions[0].total_out()
    assert bip34_height(cb_a.inputs[0].script_sig) == 482683
    assert b"/hashfarm/" in cb_a.inputs[0].script_sig


@pytest.mark.parametrize("fee", [0.0, 1.5])
def test_jobs_filled_from_the_templates_layouts_equal_jobs_built_in_full(
    real_block: Block, fee: float
) -> None:
    b = book(fee=fee)
    b.set_template(template_of(real_block))
    scripts = [SCRIPT_A, SCRIPT_B, bytes.fromhex("76a914") + bytes(20) + bytes.fromhex("88ac")]
    scripts.append(bytes.fromhex("5120") + bytes(range(32)))  # P2TR: a longer coinb2
    jobs = [b.job_for(s) for s in scripts]
    assert NotifyLayout.of(jobs[0].work) is not None  # the later jobs were filled in, not built
    outputs = payout_outputs(FEE if fee else None, fee)(jobs[0].template.coinbase_value, SCRIPT_A)
    assert CoinbaseLayout.of(jobs[0].coinbase, outputs) is not None
    for script, job in zip(scripts, jobs, strict=True):
        alone = book(fee=fee)  # a book whose first job is this script's: built in full
        alone.set_template(template_of(real_block))
        full = alone.job_for(script)
        assert job.coinbase == full.coinbase
        assert replace(job.work, job_id=full.job_id) == full.work
        assert job.notify_line == encode(messages.notify(job.work))
        assert messages.parse_notify(decode(job.notify_line).params) == job.work  # type: ignore[union-attr]
    assert len({job.work.coinb1 for job in jobs}) == 1
    assert len({job.work.coinb2 for job in jobs}) == len(scripts)


def test_fee_output_and_witness_commitment(small_block: Block) -> None:
    jobs = book(fee=2.0)
    jobs.set_template(template_of(small_block))
    tx = jobs.job_for(SCRIPT_A).coinbase.transaction(bytes(12))
    value = small_block.transactions[0].total_out()
    fee = value * 2 // 100
    assert [(o.value, o.script_pubkey) for o in tx.outputs[:2]] == [
        (value - fee, SCRIPT_A),
        (fee, FEE),
    ]
    assert tx.outputs[2].script_pubkey[:6].hex() == "6a24aa21a9ed"
    assert tx.inputs[0].witness == (bytes(32),)  # the reserved value travels with the block


def test_clean_only_on_a_new_prevhash_and_old_jobs_age_out(small_block: Block) -> None:
    jobs = book(generations=2)
    tpl = template_of(small_block)
    jobs.set_template(tpl)
    first = jobs.job_for(SCRIPT_A)
    assert jobs.set_template(replace(tpl, curtime=tpl.curtime + 30)) is False  # refresh
    refreshed = jobs.job_for(SCRIPT_A)
    assert json.loads(refreshed.notify_line)["params"][8] is False
    assert jobs.get(first.job_id) is first  # kept: a late share is still judged
    assert jobs.set_template(replace(tpl, prev_hash=bytes(32))) is True  # new tip
    assert json.loads(jobs.job_for(SCRIPT_A).notify_line)["params"][8] is True
    assert jobs.get(first.job_id) is None  # two templates back: gone
    assert jobs.get(refreshed.job_id) is refreshed


def test_unknown_job_ids_do_not_grow_the_book(small_block: Block) -> None:
    jobs = book()
    jobs.set_template(template_of(small_block))
    jobs.seen("nope").add(b"x")
    jobs.roots("nope")[b"x"] = b"y"
    assert not jobs.seen("nope")
    assert not jobs.roots("nope")


NTIME_AFTER_MINTIME = 3600  # mintime is the same for every template of the fixture block


def _share_on(jobs: JobBook, job_id: str, nonce: int) -> tuple[bool, str | None]:
    """Judge one share (the same extranonce, ntime and nonce whatever the job) in the book."""
    job = jobs.get(job_id)
    assert job is not None
    lim = Limits(b"\x00" * 4, 8, 0, 1e-12, jobs.tip, 7200, 0)  # 1e-12: every hash counts
    share = Submit("w", job_id, bytes(8), job.template.mintime + NTIME_AFTER_MINTIME, nonce, None)
    verdict = judge(job, share, lim, jobs.seen_for(job), jobs.roots(job_id))
    return verdict.accepted, verdict.reason


def test_a_refresh_on_the_same_tip_cannot_credit_one_header_twice(small_block: Block) -> None:
    jobs = book(generations=4)
    tpl = template_of(small_block)
    jobs.set_template(tpl)
    first = jobs.job_for(SCRIPT_A)
    assert jobs.set_template(replace(tpl, curtime=tpl.curtime + 20)) is False  # the refresh
    second = jobs.job_for(SCRIPT_A)
    assert first.job_id != second.job_id
    assert (first.work.coinb1, first.work.coinb2) == (second.work.coinb1, second.work.coinb2)
    assert _share_on(jobs, first.job_id, 7) == (True, None)
    assert _share_on(jobs, second.job_id, 7) == (False, "duplicate")  # the same header
    assert _share_on(jobs, second.job_id, 8) == (True, None)
    assert _share_on(jobs, first.job_id, 8) == (False, "duplicate")
    assert jobs.seen(first.job_id) is jobs.seen(second.job_id)


def test_a_tips_set_lives_while_any_job_on_it_is_judged(small_block: Block) -> None:
    jobs = book(generations=2)
    tpl = template_of(small_block)
    jobs.set_template(tpl)
    old = jobs.job_for(SCRIPT_A)
    assert _share_on(jobs, old.job_id, 7) == (True, None)
    old_seen = jobs.seen_for(old)
    jobs.set_template(replace(tpl, prev_hash=bytes(32)))  # a new tip: a fresh set
    new = jobs.job_for(SCRIPT_A)
    assert jobs.seen_for(new) is not old_seen
    assert len(jobs.seen_for(new)) == 0
    assert jobs.seen_for(old) is old_seen  # the old tip's job is still judged: its set too
    assert _share_on(jobs, old.job_id, 7) == (False, "duplicate")
    jobs.set_template(replace(tpl, prev_hash=bytes(32), curtime=tpl.curtime + 20))
    assert jobs.get(old.job_id) is None  # aged out, and with it the old tip's set
    assert old.work.prev_hash not in jobs._seen
    assert set(jobs._seen) == {bytes(32)}


def test_the_duplicate_set_is_bounded_per_tip(small_block: Block) -> None:
    jobs = book(seen_per_tip=3)
    jobs.set_template(template_of(small_block))
    job_id = jobs.job_for(SCRIPT_A).job_id
    assert [_share_on(jobs, job_id, n)[0] for n in range(3)] == [True, True, True]
    assert _share_on(jobs, job_id, 3) == (False, "duplicate-check-full")
    assert _share_on(jobs, job_id, 0) == (False, "duplicate")
    assert len(jobs.seen(job_id)) == 3


def test_no_template_yet() -> None:
    with pytest.raises(NodeError, match="no block template"):
        book().job_for(SCRIPT_A)


def test_parse_template_names_a_bad_field() -> None:
    with pytest.raises(NodeError, match="previousblockhash"):
        parse_template({"height": 1, "version": 4, "transactions": []})


def test_extranonce1_unique_among_live_sessions() -> None:
    alloc = ExtranonceAllocator(resume_window=60.0)
    values = {alloc.claim(object(), None, 0.0) for _ in range(1000)}  # type: ignore[arg-type]
    assert len(values) == 1000
    assert all(len(v) == 4 for v in values)


def test_released_extranonce1_is_reserved_for_its_owner_then_freed() -> None:
    alloc = ExtranonceAllocator(resume_window=60.0, values=iter([7, 7, 8, 7, 7, 9]))
    seven = (7).to_bytes(4, "big")
    assert alloc.claim(object(), None, 0.0) == seven  # type: ignore[arg-type]
    alloc.release(seven, now=10.0)
    # a newcomer is offered 7 again but it is reserved until 70: it gets 8
    assert alloc.claim(object(), None, 20.0) == (8).to_bytes(4, "big")  # type: ignore[arg-type]
    # the owner resumes with its old id and gets it back
    assert alloc.claim(object(), seven, 30.0) == seven  # type: ignore[arg-type]
    alloc.release(seven, now=40.0)
    assert alloc.claim(object(), None, 100.0) == seven  # type: ignore[arg-type]
    live = alloc.in_use[seven]
    # while it is live, a resume request for it gets another value
    assert alloc.claim(object(), seven, 101.0) != seven  # type: ignore[arg-type]
    assert alloc.in_use[seven] is live
