"""Share validation, pure: no sockets, no clock, no node. The hot path of the pool.

`judge` rebuilds what the miner hashed (coinbase -> merkle root from the job's branch ->
80-byte header -> sha256d) and decides, in this order: malformed fields, unknown job,
ntime out of range, version bits outside the negotiated mask, duplicate (keyed on the
header hash, so version bits count, in one set per tip shared by every job on it: a
refresh re-issues the same coinbase under a new job id), block (any share, stale ones
included, whose hash meets the network target: the caller submits it at once), stale (the
job's prevhash is no longer the tip), low difficulty (against the difficulty that applied
to that job).

Only shares that count enter the duplicate set: accepted shares and blocks (stale ones
too, so a block is submitted once). Junk (low difficulty, stale non-blocks) never does, so
it cannot grow the set; resent junk is judged, and rejected, again. The set is bounded
(`jobs.SEEN_PER_TIP`): once full, a share that would count is rejected as
`duplicate-check-full` rather than accepted unchecked, except a block, which always counts.

Difficulty across a vardiff change: the share is held to the lower of the difficulty in
force when its job was sent and the current one, so shares in flight across a change in
either direction are not rejected.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from hashfarm.chain.pow import DIFF1_TARGET, bits_to_target, difficulty_to_target
from hashfarm.errors import StratumError
from hashfarm.pool import records as r
from hashfarm.pool.jobs import PoolJob, SeenHashes
from hashfarm.stratum.codec import ErrorCode, slot_setters
from hashfarm.stratum.messages import Submit, parse_submit
from hashfarm.stratum.work import apply_version_bits

CODES: dict[str, ErrorCode] = {
    r.REJECT_UNKNOWN_JOB: ErrorCode.JOB_NOT_FOUND,
    r.REJECT_STALE: ErrorCode.JOB_NOT_FOUND,
    r.REJECT_DUPLICATE: ErrorCode.DUPLICATE_SHARE,
    r.REJECT_LOW_DIFFICULTY: ErrorCode.LOW_DIFFICULTY,
    r.REJECT_NTIME: ErrorCode.OTHER,
    r.REJECT_VERSION_BITS: ErrorCode.OTHER,
    r.REJECT_MALFORMED: ErrorCode.OTHER,
    r.REJECT_UNAUTHORIZED: ErrorCode.UNAUTHORIZED,
    r.REJECT_SEEN_FULL: ErrorCode.OTHER,
}
"""Stratum error code sent for each reject reason."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What a share is judged against, beside its job (per session, per request)."""

    extranonce1: bytes
    extranonce2_size: int
    version_mask: int  # negotiated BIP 310 mask (0 when the miner did not negotiate)
    difficulty: float  # share difficulty that applies to this share's job
    tip: bytes | None  # internal-order prevhash of the current tip
    ntime_future: int  # seconds ntime may exceed the job's
    ntime_past: int  # seconds ntime may precede the job's


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one share. `header`/`hash` are set whenever the share could be hashed."""

    reason: str | None  # None: accepted; else one of records.REJECT_REASONS
    message: str  # a reason a human can read ("" when accepted)
    share: Submit | None
    job: PoolJob | None
    header: bytes | None  # the 80-byte header
    hash: bytes | None  # internal order
    share_difficulty: float
    is_block: bool  # the hash meets the network target: submit it now
    difficulty: float = 0.0  # the target difficulty it was judged against (0: not judged)

    @property
    def accepted(self) -> bool:
        """True when the share counts."""
        return self.reason is None

    @property
    def code(self) -> ErrorCode:
        """The Stratum error code for a rejected share."""
        return CODES[self.reason] if self.reason else ErrorCode.OTHER


_new = object.__new__
_SET_VERDICT = slot_setters(Verdict, *(f.name for f in fields(Verdict)))


def new_verdict(
    reason: str | None,
    message: str,
    share: Submit | None,
    job: PoolJob | None,
    header: bytes | None,
    digest: bytes | None,
    share_difficulty: float,
    is_block: bool,
    difficulty: float,
) -> Verdict:
    """`Verdict(...)`, built at half the cost: a frozen dataclass's `__init__` sets each field
    through `object.__setattr__`; the slots' own setters are direct (one per share)."""
    v = _new(Verdict)
    s_reason, s_message, s_share, s_job, s_header, s_hash, s_sdiff, s_block, s_diff = _SET_VERDICT
    s_reason(v, reason)
    s_message(v, message)
    s_share(v, share)
    s_job(v, job)
    s_header(v, header)
    s_hash(v, digest)
    s_sdiff(v, share_difficulty)
    s_block(v, is_block)
    s_diff(v, difficulty)
    return v


def reject(reason: str, message: str, share: Submit | None = None) -> Verdict:
    """A verdict for a share that could not be hashed."""
    return new_verdict(reason, message, share, None, None, None, 0.0, False, 0.0)


def parse(params: Sequence[Any], extranonce2_size: int) -> Submit | Verdict:
    """mining.submit params -> Submit, or a malformed-share verdict naming the bad field."""
    try:
        share = parse_submit(params)
    except StratumError as exc:
        return reject(r.REJECT_MALFORMED, str(exc))
    if len(share.extranonce2) != extranonce2_size:
        got = len(share.extranonce2)
        return reject(
            r.REJECT_MALFORMED, f"extranonce2 must be {extranonce2_size} bytes, got {got}", share
        )
    return share


_sha256 = hashlib.sha256
_u32 = struct.Struct("<I").pack
_tail = struct.Struct("<III").pack
share_target = functools.lru_cache(maxsize=4096)(difficulty_to_target)
"""difficulty_to_target, cached: sessions share a handful of difficulties."""
network_target = functools.lru_cache(maxsize=64)(bits_to_target)
"""bits_to_target, cached: one value per template."""


ROOTS_KEPT = 4096  # merkle roots remembered per job (by extranonce) at most


def merkle_root_for(job: PoolJob, extranonce: bytes) -> bytes:
    """coinb1 + extranonce + coinb2 -> coinbase txid -> up the branch to the merkle root."""
    work = job.work
    root = _sha256(_sha256(work.coinb1 + extranonce + work.coinb2).digest()).digest()
    for sibling in work.merkle_branch:
        root = _sha256(_sha256(root + sibling).digest()).digest()
    return root


def header_for(
    job: PoolJob,
    share: Submit,
    extranonce1: bytes,
    version: int,
    roots: dict[bytes, bytes] | None = None,
) -> bytes:
    """The 80-byte header the share claims: coinbase -> merkle root -> header.

    The same bytes as `stratum.work.build_header` (the reference; a test holds them equal),
    written out with hashlib bound locally because this runs for every share. `roots`
    caches merkle roots by extranonce: an ASIC rolls nonce, version and ntime many times
    per extranonce2, so most of its shares skip the dozen hashes of the branch.
    """
    extranonce = extranonce1 + share.extranonce2
    root = roots.get(extranonce) if roots is not None else None
    if root is None:
        root = merkle_root_for(job, extranonce)
        if roots is not None and len(roots) < ROOTS_KEPT:
            roots[extranonce] = root
    work = job.work
    return _u32(version) + work.prev_hash + root + _tail(share.ntime, work.bits, share.nonce)


def _check_fields(job: PoolJob, share: Submit, lim: Limits) -> Verdict | int:
    """ntime and version-bits checks; returns the header version when they pass."""
    low = max(job.work.time - lim.ntime_past, job.template.mintime)
    high = job.work.time + lim.ntime_future
    if not low <= share.ntime <= high:
        msg = f"ntime {share.ntime:08x} outside [{low:08x}, {high:08x}]"
        return reject(r.REJECT_NTIME, msg, share)
    if share.version_bits is None:
        return job.work.version
    if share.version_bits & ~lim.version_mask & 0xFFFFFFFF:
        msg = f"version bits {share.version_bits:08x} outside mask {lim.version_mask:08x}"
        return reject(r.REJECT_VERSION_BITS, msg, share)
    return apply_version_bits(job.work.version, share.version_bits, lim.version_mask)


def judge(
    job: PoolJob | None,
    share: Submit,
    lim: Limits,
    seen: SeenHashes,
    roots: dict[bytes, bytes] | None = None,
) -> Verdict:
    """Judge one parsed share against its job; a share that counts enters `seen`.

    `seen` is the duplicate set of the job's tip and `roots` the job's merkle roots by
    extranonce (JobBook keeps both). The verdict carries `lim.difficulty`, the difficulty
    it was judged at: what the ledger records, whatever vardiff does next.
    """
    if job is None:
        return reject(r.REJECT_UNKNOWN_JOB, f"job {share.job_id} not found", share)
    checked = _check_fields(job, share, lim)
    if isinstance(checked, Verdict):
        return checked
    header = header_for(job, share, lim.extranonce1, checked, roots)
    digest = _sha256(_sha256(header).digest()).digest()
    # The hash as an integer once, for the share difficulty and both targets (this is
    # chain.pow.hash_difficulty and meets_target written out: one conversion, not three).
    value = int.from_bytes(digest, "little")
    sdiff = DIFF1_TARGET / value if value else math.inf
    diff = lim.difficulty
    is_block = value <= network_target(job.work.bits)
    if digest in seen:
        msg = "duplicate share"
        return new_verdict(r.REJECT_DUPLICATE, msg, share, job, header, digest, sdiff, False, diff)
    reason, message = _grade(job, value, sdiff, lim, is_block)
    if is_block:
        seen.add(digest)  # always: a block is submitted once, whatever the set holds
    elif reason is None:
        if len(seen) >= seen.limit:  # full: refuse rather than accept a share unchecked
            reason, message = r.REJECT_SEEN_FULL, _full_message(seen.limit)
        else:
            seen.add(digest)
    return new_verdict(reason, message, share, job, header, digest, sdiff, is_block, diff)


def _full_message(limit: int) -> str:
    return f"duplicate check full: {limit} shares already counted on this tip; wait for the next"


def _grade(
    job: PoolJob, value: int, sdiff: float, lim: Limits, is_block: bool
) -> tuple[str | None, str]:
    if lim.tip is not None and job.template.prev_hash != lim.tip:
        return r.REJECT_STALE, f"stale share: job {job.job_id} builds on an old block"
    if is_block:  # a block always counts, whatever share difficulty the miner was set to
        return None, ""
    if value > share_target(lim.difficulty):
        return r.REJECT_LOW_DIFFICULTY, f"low difficulty share: {sdiff:.6g} < {lim.difficulty:.6g}"
    return None, ""
