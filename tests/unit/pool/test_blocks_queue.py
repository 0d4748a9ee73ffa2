"""The block-candidate policy (pure, time passed in) and the submitter's bounded retries.

The policy tests drive `CandidateQueue` with plain items. The submitter tests use a small
recording `submitblock` stub only to count calls and script an outage; the end-to-end claims
(a real flood on the regtest node, a real node stop) are in
tests/integration/test_pool_block_flood.py.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from pool_helpers import job_of

from hashfarm.chain.block import Block
from hashfarm.errors import NodeUnavailable
from hashfarm.pool.blocks import BlockSubmitter, Found
from hashfarm.pool.candidates import (
    NODE_AWAY,
    QUEUE_FULL,
    SIBLING_ACCEPTED,
    SLOTS_KEPT,
    STOPPED,
    TIP_MOVED,
    UNANSWERED,
    CandidateQueue,
    Dropped,
    Pending,
    Verdict,
)
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.settings import BlockSettings

A, B, C = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32


def queue(per_slot: int = 3, total: int = 8, patience: float = 60.0) -> CandidateQueue[str]:
    q: CandidateQueue[str] = CandidateQueue(per_slot, total, patience)
    q.set_tip(A)
    return q


def sent(decision: Pending[str] | Dropped[str] | None) -> Pending[str]:
    assert isinstance(decision, Pending), decision
    return decision


def reason(decision: Pending[str] | Dropped[str] | None) -> str:
    assert isinstance(decision, Dropped), decision
    return decision.reason


# -- the policy ---------------------------------------------------------------------------


def test_first_candidate_goes_at_once_the_rest_wait_in_a_bounded_queue() -> None:
    q = queue(per_slot=3)
    first = sent(q.offer("a1", A, 0.0))
    assert [q.offer(f"a{i}", A, 0.0) for i in range(2, 5)] == [None, None, None]
    assert reason(q.offer("a5", A, 0.0)) == QUEUE_FULL
    assert (q.in_flight, q.waiting, q.sent(A)) == (1, 3, 1)
    assert first.item == "a1"


def test_accepted_block_drops_its_waiting_and_later_siblings() -> None:
    q = queue()
    first = sent(q.offer("a1", A, 0.0))
    q.offer("a2", A, 0.0)
    q.offer("a3", A, 0.0)
    ready, dropped = q.done(first, Verdict.TAKEN, 1.0)
    assert ready == []
    assert [(d.item, d.reason) for d in dropped] == [
        ("a2", SIBLING_ACCEPTED),
        ("a3", SIBLING_ACCEPTED),
    ]
    assert reason(q.offer("a4", A, 2.0)) == SIBLING_ACCEPTED
    assert q.sent(A) == 1  # one submitblock for the height, however many candidates


def test_rejected_block_lets_the_next_sibling_go_one_at_a_time() -> None:
    q = queue()
    first = sent(q.offer("a1", A, 0.0))
    q.offer("a2", A, 0.0)
    q.offer("a3", A, 0.0)
    ready, dropped = q.done(first, Verdict.REJECTED, 1.0)
    assert [p.item for p in ready] == ["a2"]
    assert dropped == []
    assert q.in_flight == 1
    assert q.waiting == 1


def test_new_tip_candidate_never_waits_behind_stale_ones() -> None:
    q = queue()
    old = sent(q.offer("a1", A, 0.0))  # still with the node
    q.offer("a2", A, 0.0)
    dropped = q.set_tip(B)  # the tip moved on (someone else's block)
    assert [(d.item, d.reason) for d in dropped] == [("a2", TIP_MOVED)]
    assert sent(q.offer("b1", B, 1.0)).item == "b1"  # at once, a1 notwithstanding
    assert reason(q.offer("a3", A, 1.0)) == TIP_MOVED  # a1 already went for that height
    ready, dropped = q.done(old, Verdict.REJECTED, 2.0)
    assert ready == []
    assert dropped == []


def test_a_stale_block_is_sent_once_if_its_height_had_none_and_one_at_a_time() -> None:
    q = queue()
    q.set_tip(C)
    stale = sent(q.offer("a1", A, 0.0))  # first ever for A: may still be tested by the node
    assert reason(q.offer("b1", B, 0.0)) == TIP_MOVED  # one stale submission at a time
    q.done(stale, Verdict.TAKEN, 1.0)
    assert sent(q.offer("b2", B, 1.0)).item == "b2"
    assert reason(q.offer("b3", B, 1.0)) == TIP_MOVED


def test_the_global_bound_holds_across_heights() -> None:
    q = queue(per_slot=3, total=4)
    sent(q.offer("a0", A, 0.0))
    for i in range(3):
        assert q.offer(f"a{i + 1}", A, 0.0) is None
    q.set_tip(B)  # drops A's waiting
    sent(q.offer("b0", B, 0.0))
    assert [q.offer(f"b{i + 1}", B, 0.0) for i in range(3)] == [None, None, None]
    assert reason(q.offer("b4", B, 0.0)) == QUEUE_FULL
    assert q.waiting == 3


def test_outage_one_probe_at_a_time_tip_first_then_resume() -> None:
    q = queue(per_slot=4, total=8, patience=30.0)
    a1 = sent(q.offer("a1", A, 0.0))
    assert q.done(a1, Verdict.AWAY, 1.0) == ([], [])
    assert q.away_since == 1.0
    for i in range(2, 5):  # candidates found while the node is away queue, none is sent
        assert q.offer(f"a{i}", A, 2.0) is None
    assert q.ready() == []
    probe, dropped = q.probe(3.0)
    assert probe is not None
    assert probe.item == "a1"
    assert dropped == []
    assert q.probe(3.5) == (None, [])  # the probe out answers for the node
    q.done(probe, Verdict.AWAY, 4.0)
    probe, _ = q.probe(5.0)
    assert probe is not None
    ready, dropped = q.done(probe, Verdict.TAKEN, 6.0)  # back: siblings dropped
    assert q.away_since is None
    assert ready == []
    assert {d.reason for d in dropped} == {SIBLING_ACCEPTED}
    assert len(dropped) == 3


def test_outage_past_patience_drops_with_node_away() -> None:
    q = queue(patience=30.0)
    a1 = sent(q.offer("a1", A, 0.0))
    q.done(a1, Verdict.AWAY, 1.0)
    q.offer("a2", A, 20.0)
    probe, dropped = q.probe(31.0)  # a1 is past its patience, a2 is not
    assert [(d.item, d.reason) for d in dropped] == [("a1", NODE_AWAY)]
    assert probe is not None
    assert probe.item == "a2"


def test_drain_reports_what_is_out_and_what_waits() -> None:
    q = queue()
    sent(q.offer("a1", A, 0.0))
    q.offer("a2", A, 0.0)
    assert {(d.item, d.reason) for d in q.drain()} == {("a1", UNANSWERED), ("a2", STOPPED)}
    assert q.in_flight == 0
    assert q.waiting == 0


def test_remembered_heights_are_bounded() -> None:
    q = queue()
    for height in range(SLOTS_KEPT * 4):
        prev = height.to_bytes(32, "little")
        q.set_tip(prev)
        q.done(sent(q.offer(f"c{height}", prev, float(height))), Verdict.TAKEN, float(height))
    assert len(q._slots) <= SLOTS_KEPT


def test_a_simulated_flood_costs_one_submitblock_per_height() -> None:
    """1,000 candidates a height over 50 heights, the node taking the first of each."""
    q = queue(per_slot=4, total=32)
    calls = 0
    for height in range(50):
        prev = height.to_bytes(32, "little")
        q.set_tip(prev)
        out: list[Pending[str]] = []
        for i in range(1000):
            decision = q.offer(f"{height}.{i}", prev, float(height))
            if isinstance(decision, Pending):
                out.append(decision)
            if i == 10:  # the node answers the first while later ones arrive
                calls += len(out)
                for p in out:
                    q.done(p, Verdict.TAKEN, float(height))
                out = []
        calls += len(out)
    assert calls == 50


# -- the submitter's bounded retries --------------------------------------------------------


class Ledger:
    """Keeps what the submitter records (a real ledger is in the integration tests)."""

    def __init__(self) -> None:
        self.blocks: list[BlockRecord] = []

    async def record_share(self, rec: ShareRecord) -> None:
        raise AssertionError("the submitter records blocks only")

    async def record_block(self, rec: BlockRecord) -> None:
        self.blocks.append(rec)

    async def close(self) -> None:
        pass


class AwayNode:
    """A `submitblock` that fails as an unreachable node would until `up` is set."""

    def __init__(self) -> None:
        self.up = False
        self.calls = 0

    async def submitblock(self, block_hex: str) -> str | None:
        self.calls += 1
        await asyncio.sleep(0.001)
        if not self.up:
            raise NodeUnavailable("submitblock: cannot connect: connection refused")
        return None

    async def getblockhash(self, height: int) -> str:
        raise NodeUnavailable("not asked in these tests")


def candidates(block: Block, count: int) -> list[Found]:
    job, extranonce = job_of(block)
    header = block.header.serialize()
    return [
        Found(job, header, i.to_bytes(32, "little"), extranonce, "w.1", "w") for i in range(count)
    ]


async def test_node_away_one_retry_loop_bounded_calls_one_log_line(
    small_block: Block, caplog: pytest.LogCaptureFixture
) -> None:
    node, ledger = AwayNode(), Ledger()
    settings = BlockSettings(queue_per_height=4, queue_max=8, submit_patience=60.0, stop_drain=1)
    job = candidates(small_block, 1)[0].job
    subs = BlockSubmitter(
        node, ledger, [], settings, retry_max=0.2, tip=lambda: job.template.prev_hash
    )  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, "hashfarm.pool.blocks")
    for found in candidates(small_block, 2000):  # a flood, all while the node is away
        subs.submit(found, 0.0)
        await asyncio.sleep(0)
    await asyncio.sleep(1.5)
    # one first try plus one retry at a time at 0.25, 0.45, 0.65... s: about 8, not thousands
    assert 2 <= node.calls <= 12, node.calls
    assert subs.queue.waiting <= settings.queue_max + 1
    outage_lines = [r for r in caplog.records if "node unreachable" in r.getMessage()]
    assert len(outage_lines) == 1
    node.up = True
    await asyncio.sleep(0.6)
    assert subs.queue.waiting == 0
    assert node.calls <= 14  # the node took one; its waiting siblings were not sent
    verdicts = {rec.node_verdict for rec in ledger.blocks}
    assert SIBLING_ACCEPTED in verdicts
    assert QUEUE_FULL in verdicts
    assert len(ledger.blocks) >= 1999  # every candidate recorded, sent or not
    await subs.drain()


async def test_stop_with_the_node_away_is_prompt_and_logs_blocks_by_hash(
    small_block: Block, caplog: pytest.LogCaptureFixture
) -> None:
    node, ledger = AwayNode(), Ledger()
    settings = BlockSettings(queue_per_height=4, queue_max=8, submit_patience=60.0, stop_drain=1)
    founds = candidates(small_block, 5)
    subs = BlockSubmitter(
        node, ledger, [], settings, retry_max=5.0, tip=lambda: founds[0].job.template.prev_hash
    )  # type: ignore[arg-type]
    for found in founds:
        subs.submit(found, 0.0)
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await subs.drain()
    assert loop.time() - started < settings.stop_drain + 1.0
    assert not subs.busy()
    lines = [r.getMessage() for r in caplog.records]
    for found in founds:
        assert any(found.hash_hex in ln and "NOT SUBMITTED" in ln for ln in lines), found
    manual = [ln for ln in lines if ln.startswith("to submit block")]
    assert len(manual) == 1  # the hex once per height, siblings by hash only
    assert {rec.node_verdict for rec in ledger.blocks} <= {STOPPED, UNANSWERED}
    assert len(ledger.blocks) == 5


class TakingNode:
    """A node that takes every block; it writes down what the pool asked, in order."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def submitblock(self, block_hex: str) -> str | None:
        self.events.append("submitblock")
        await asyncio.sleep(0.01)
        return None

    async def getblockhash(self, height: int) -> str:
        self.events.append("getblockhash")
        return "00" * 32  # not ours: the confirmation polls on, as for a slow node


async def test_miners_move_to_the_new_tip_before_the_block_is_confirmed(
    small_block: Block,
) -> None:
    events: list[str] = []
    found = candidates(small_block, 1)[0]

    async def new_work(hash_hex: str) -> None:
        events.append(f"new work on {hash_hex}")

    subs = BlockSubmitter(
        TakingNode(events),  # type: ignore[arg-type]
        Ledger(),
        [],
        BlockSettings(),
        tip=lambda: found.job.template.prev_hash,
        on_accepted=new_work,
    )
    subs.submit(found, 0.0)
    await asyncio.sleep(0.05)
    assert events[:3] == ["submitblock", f"new work on {found.hash_hex}", "getblockhash"]
    await subs.drain()
