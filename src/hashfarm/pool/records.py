"""Records the pool emits, and the narrow interfaces that consume them.

The pool core produces a `ShareRecord` for every judged share and a `BlockRecord` for every
block it submits. Storage (`pool/storage`, a `ShareLedger`) makes them durable; observers
(`pool/stats`, a `PoolObserver`) keep cheap in-memory views for the API. Both are declared
here by the consumer side's contract and handed to `Pool` by `cli`.

Durability: `record_share` returns only once the share is durable under the ledger's
documented policy, and the session acknowledges the miner only after it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

# Reject reasons carried in ShareRecord.reject_reason (stable strings: stats group by them).
REJECT_UNKNOWN_JOB = "unknown-job"
REJECT_STALE = "stale"
REJECT_DUPLICATE = "duplicate"
REJECT_LOW_DIFFICULTY = "low-difficulty"
REJECT_NTIME = "ntime-out-of-range"
REJECT_VERSION_BITS = "version-bits-outside-mask"
REJECT_MALFORMED = "malformed"
REJECT_UNAUTHORIZED = "unauthorized"
REJECT_SEEN_FULL = "duplicate-check-full"  # the tip's duplicate set is full (pool/jobs.py)

REJECT_REASONS = (
    REJECT_UNKNOWN_JOB,
    REJECT_STALE,
    REJECT_DUPLICATE,
    REJECT_LOW_DIFFICULTY,
    REJECT_NTIME,
    REJECT_VERSION_BITS,
    REJECT_MALFORMED,
    REJECT_UNAUTHORIZED,
    REJECT_SEEN_FULL,
)


@dataclass(frozen=True, slots=True)
class ShareRecord:
    """One judged share, accepted or not: what accounting and stats need."""

    worker: str  # full Stratum username as authorized ("ADDRESS.rig1" or "alice.rig1")
    account: str  # the part before the first "." (solo: the payout address)
    job_id: str  # Stratum job id the share answered
    height: int  # height of the block the job would have made
    difficulty: float  # share target difficulty that applied to that job for this session
    share_difficulty: float  # the hash's actual difficulty (0.0 when the share was malformed)
    accepted: bool  # True: counted for accounting
    reject_reason: str | None  # one of REJECT_REASONS when not accepted
    time: float  # UNIX seconds when the pool judged the share
    extranonce1_hex: str  # the session's extranonce1
    block_hash_hex: str | None  # display-order hash when the share met the network target
    # The share's header hash, internal order (None when it could not be hashed): the share
    # id a scaled-out pool credits exactly once (pool/shareflow.py); not stored by SQLite.
    header_hash: bytes | None = None


_new = object.__new__
_SET_SHARE = tuple(vars(ShareRecord)[f.name].__set__ for f in fields(ShareRecord))


def new_share_record(
    worker: str,
    account: str,
    job_id: str,
    height: int,
    difficulty: float,
    share_difficulty: float,
    accepted: bool,
    reject_reason: str | None,
    time: float,
    extranonce1_hex: str,
    block_hash_hex: str | None,
    header_hash: bytes | None = None,
) -> ShareRecord:
    """`ShareRecord(...)` (same fields, same order), built at half the cost for the share
    path: a frozen dataclass's `__init__` sets each field through `object.__setattr__`, the
    slots' own setters are direct."""
    rec = _new(ShareRecord)
    (s_worker, s_account, s_job_id, s_height, s_difficulty, s_share_difficulty, s_accepted,
     s_reject_reason, s_time, s_extranonce1_hex, s_block_hash_hex,
     s_header_hash) = _SET_SHARE  # fmt: skip
    s_worker(rec, worker)
    s_account(rec, account)
    s_job_id(rec, job_id)
    s_height(rec, height)
    s_difficulty(rec, difficulty)
    s_share_difficulty(rec, share_difficulty)
    s_accepted(rec, accepted)
    s_reject_reason(rec, reject_reason)
    s_time(rec, time)
    s_extranonce1_hex(rec, extranonce1_hex)
    s_block_hash_hex(rec, block_hash_hex)
    s_header_hash(rec, header_hash)
    return rec


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One block the pool submitted, with what the node said about it."""

    height: int  # height the block was built for
    hash_hex: str  # block hash, display order
    reward_sats: int  # coinbase value (subsidy + fees) in satoshis
    finder_worker: str  # worker whose share made the block
    finder_account: str  # that worker's account (solo: the address paid)
    time: float  # UNIX seconds when the block was submitted
    accepted_by_node: bool  # True: the node took it and reports it in its chain
    node_verdict: str | None  # None when accepted, else the node's reason ("high-hash"...)


class ShareLedger(Protocol):
    """Durable storage of shares and blocks (implemented by pool/storage)."""

    async def record_share(self, rec: ShareRecord) -> None:
        """Store one share; return once it is durable under the documented policy."""
        ...

    async def record_block(self, rec: BlockRecord) -> None:
        """Store one submitted block and the node's verdict."""
        ...

    async def close(self) -> None:
        """Flush whatever is pending and release the connection."""
        ...


class PoolObserver(Protocol):
    """A cheap synchronous listener (stats, metrics); must never block or raise."""

    def on_share(self, rec: ShareRecord) -> None:
        """Called once per judged share, after the ledger has it."""
        ...

    def on_block(self, rec: BlockRecord) -> None:
        """Called once per submitted block, after the node's verdict is known."""
        ...
