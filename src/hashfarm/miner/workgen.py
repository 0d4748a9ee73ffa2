"""Work distribution, pure: which headers each hashing thread scans, and in what order.

Each thread owns the extranonce2 values `thread, thread + T, thread + 2T, ...` (T threads),
so threads never hash the same header. Within one extranonce2 a thread scans the nonce
space in chunks; when it runs out it rolls the negotiated version bits (BIP 310/320: a new
header without recomputing the merkle root), and when those run out it moves to its next
extranonce2. A new job resets every cursor; the same job rebound to a new difficulty keeps
them, so no work is repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

from hashfarm.chain.hashes import sha256d
from hashfarm.chain.pow import hash_difficulty, hash_to_int
from hashfarm.miner.protocol import FoundShare, MinerJob
from hashfarm.stratum.work import U32_MAX

MAX_RESULTS = 64  # winners expected per scan at most (bounds the list a scan returns)


@dataclass(frozen=True, slots=True)
class WorkUnit:
    """One scan call: `count` nonces from `nonce_start` on the 76-byte header prefix."""

    work: MinerJob
    thread: int
    extranonce2: bytes
    version: int
    ntime: int
    header76: bytes
    nonce_start: int
    count: int
    target: int  # share target (the backend reports nonces whose hash is <= it)


def deposit_bits(value: int, mask: int) -> int:
    """Spread the low bits of `value` over the set bits of `mask` (PDEP)."""
    result, bit = 0, 1
    while mask:
        low = mask & -mask
        if value & bit:
            result |= low
        mask ^= low
        bit <<= 1
    return result


def results_cap(target: int) -> int:
    """Nonces per scan that yield about MAX_RESULTS winners on average: on regtest every
    other hash meets the target, and a scan must not return millions of nonces."""
    return max(1, (MAX_RESULTS << 256) // (target + 1))


def rolling_mask(work: MinerJob) -> int:
    """The bits this job lets us roll: negotiated, and clear in the job's own version
    (so the rolled version is the same under BIP 310's formula and pools that OR the bits)."""
    return work.version_mask & ~work.job.version & U32_MAX


@dataclass(slots=True)
class _Cursor:
    """Where one thread is in its share of the search space."""

    en2_index: int = 0  # the thread's n-th extranonce2
    version_index: int = 0  # the n-th pattern of the rolling mask
    nonce: int = 0  # next nonce to scan
    root: bytes | None = None  # merkle root for the current extranonce2 (cached)
    exhausted: bool = False


class WorkSource:
    """Hands each thread its next WorkUnit for the current job."""

    def __init__(self, threads: int, nonce_space: int = 1 << 32) -> None:
        self.threads = threads
        self.nonce_space = nonce_space
        self.work: MinerJob | None = None
        self._cursors = [_Cursor() for _ in range(threads)]

    def set_work(self, work: MinerJob | None) -> None:
        """Switch to new work; keeps the cursors when only difficulty or mask changed."""
        same_job = (
            work is not None
            and self.work is not None
            and work.job == self.work.job
            and work.extranonce1 == self.work.extranonce1
            and work.generation == self.work.generation
        )
        if not same_job:
            self._cursors = [_Cursor() for _ in range(self.threads)]
        elif (
            work is not None
            and self.work is not None
            and work.version_mask != self.work.version_mask
        ):
            for cursor in self._cursors:  # pattern order changed: continue on fresh extranonce2
                self._next_extranonce2(cursor)
        self.work = work

    def next_unit(self, thread: int, count: int) -> WorkUnit | None:
        """The next chunk of at most `count` nonces for `thread`, or None when idle."""
        work, cursor = self.work, self._cursors[thread]
        if work is None or cursor.exhausted:
            return None
        en2 = self._extranonce2(work, thread, cursor.en2_index)
        if en2 is None:
            cursor.exhausted = True
            return None
        if cursor.root is None:
            cursor.root = work.job.merkle_root(work.extranonce1, en2)
        version = work.job.version | deposit_bits(cursor.version_index, rolling_mask(work))
        header76 = _header76(work, version, cursor.root)
        start = cursor.nonce
        count = min(count, self.nonce_space - start, results_cap(work.share_target))
        self._advance(cursor, work, count)
        return WorkUnit(
            work, thread, en2, version, work.job.time, header76, start, count, work.share_target
        )

    def _advance(self, cursor: _Cursor, work: MinerJob, count: int) -> None:
        cursor.nonce += count
        if cursor.nonce < self.nonce_space:
            return
        cursor.nonce = 0
        cursor.version_index += 1
        if cursor.version_index >= 1 << rolling_mask(work).bit_count():
            self._next_extranonce2(cursor)

    @staticmethod
    def _next_extranonce2(cursor: _Cursor) -> None:
        cursor.en2_index += 1
        cursor.version_index = 0
        cursor.nonce = 0
        cursor.root = None

    def _extranonce2(self, work: MinerJob, thread: int, index: int) -> bytes | None:
        value = thread + index * self.threads
        if value >= 1 << (8 * work.extranonce2_size):
            return None
        return value.to_bytes(work.extranonce2_size, "big")


def _header76(work: MinerJob, version: int, root: bytes) -> bytes:
    job = work.job
    return (
        (version & U32_MAX).to_bytes(4, "little")
        + job.prev_hash
        + root
        + job.time.to_bytes(4, "little")
        + job.bits.to_bytes(4, "little")
    )


def check_nonce(unit: WorkUnit, nonce: int) -> FoundShare | None:
    """Re-hash a nonce a backend reported; None when it does not meet the target
    (a backend fault: counted as a hardware error, never submitted)."""
    digest = sha256d(unit.header76 + nonce.to_bytes(4, "little"))
    if hash_to_int(digest) > unit.target:
        return None
    return FoundShare(
        unit.work,
        unit.extranonce2,
        unit.ntime,
        nonce,
        unit.version,
        digest,
        hash_difficulty(digest),
        unit.thread,
    )
