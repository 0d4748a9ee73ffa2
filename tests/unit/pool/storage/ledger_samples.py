"""Share and block records for the ledger tests."""

from __future__ import annotations

from hashfarm.pool.records import BlockRecord, ShareRecord


def share(n: int = 0, *, accepted: bool = True, worker: str = "alice.rig1") -> ShareRecord:
    """A realistic share record; `n` makes it distinguishable (job id and time)."""
    return ShareRecord(
        worker=worker,
        account=worker.split(".")[0],
        job_id=f"{n:x}",
        height=500 + n % 7,
        difficulty=0.5,
        share_difficulty=0.75 + n,
        accepted=accepted,
        reject_reason=None if accepted else "low-difficulty",
        time=1_700_000_000.0 + n,
        extranonce1_hex="0a0b0c0d",
        block_hash_hex=None,
    )


def block(height: int, *, ok: bool = True, verdict: str | None = None) -> BlockRecord:
    """A block record at `height` with a hash derived from it."""
    return BlockRecord(
        height=height,
        hash_hex=f"{height:064x}",
        reward_sats=5_000_000_000,
        finder_worker="alice.rig1",
        finder_account="alice",
        time=1_700_000_000.0 + height,
        accepted_by_node=ok,
        node_verdict=verdict,
    )
