"""Share validation (pure): every reject reason, judged on real mainnet blocks."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pool_helpers import EN1_SIZE, EN2_SIZE, job_of, with_time

from hashfarm.chain.block import Block
from hashfarm.pool import records as r
from hashfarm.pool.jobs import PoolJob, SeenHashes
from hashfarm.pool.shares import Limits, Verdict, header_for, judge, parse
from hashfarm.stratum.codec import ErrorCode
from hashfarm.stratum.messages import Submit
from hashfarm.stratum.work import u32_hex

MASK = 0x1FFFE000


def limits(job: PoolJob, extranonce: bytes, **kw: object) -> Limits:
    base = Limits(
        extranonce1=extranonce[:EN1_SIZE],
        extranonce2_size=EN2_SIZE,
        version_mask=MASK,
        difficulty=1.0,
        tip=job.template.prev_hash,
        ntime_future=7200,
        ntime_past=0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def params_for(block: Block, job: PoolJob, extranonce: bytes, **kw: object) -> list[object]:
    p: list[object] = [
        "worker.1",
        job.job_id,
        extranonce[EN1_SIZE:].hex(),
        u32_hex(block.header.time),
        u32_hex(block.header.nonce),
    ]
    if "version_bits" in kw:
        p.append(kw["version_bits"])
    return p


def run(
    block: Block, job: PoolJob, extranonce: bytes, params: list[object], **lim: object
) -> Verdict:
    share = parse(params, EN2_SIZE)
    assert isinstance(share, Submit), share
    return judge(job, share, limits(job, extranonce, **lim), SeenHashes())


def test_real_block_is_accepted_as_block(real_block: Block) -> None:
    job, en = job_of(real_block)
    verdict = run(real_block, job, en, params_for(real_block, job, en))
    assert verdict.accepted, verdict.message
    assert verdict.is_block
    assert verdict.hash == real_block.hash()
    assert verdict.header == real_block.header.serialize()
    assert verdict.share_difficulty > 1e9  # a mainnet block is a very hard share


def test_version_rolling_applies_bits_inside_mask(small_block: Block) -> None:
    job, en = job_of(small_block)
    real_version = small_block.header.version
    rolled_job = replace(job, work=replace(job.work, version=real_version ^ 0x00AB6000))
    bits = u32_hex(real_version & MASK)
    verdict = run(small_block, rolled_job, en, params_for(small_block, job, en, version_bits=bits))
    assert verdict.accepted
    assert verdict.is_block


def test_version_bits_outside_mask(small_block: Block) -> None:
    job, en = job_of(small_block)
    verdict = run(small_block, job, en, params_for(small_block, job, en, version_bits="e0000000"))
    assert verdict.reason == r.REJECT_VERSION_BITS
    assert verdict.code == ErrorCode.OTHER
    assert "outside mask 1fffe000" in verdict.message


def test_no_version_rolling_negotiated_rejects_any_bits(small_block: Block) -> None:
    job, en = job_of(small_block)
    params = params_for(small_block, job, en, version_bits="00002000")
    verdict = run(small_block, job, en, params, version_mask=0)
    assert verdict.reason == r.REJECT_VERSION_BITS


def test_duplicate_is_keyed_on_the_whole_header(small_block: Block) -> None:
    job, en = job_of(small_block)
    lim = limits(job, en)
    seen = SeenHashes()
    first = parse(params_for(small_block, job, en), EN2_SIZE)
    assert isinstance(first, Submit)
    assert judge(job, first, lim, seen).accepted
    again = judge(job, first, lim, seen)
    assert again.reason == r.REJECT_DUPLICATE
    assert again.code == ErrorCode.DUPLICATE_SHARE
    assert not again.is_block  # already submitted the first time
    rolled = replace(first, version_bits=0x00002000)  # other version bits: another header
    assert judge(job, rolled, lim, seen).reason != r.REJECT_DUPLICATE


def test_unknown_job(small_block: Block) -> None:
    job, en = job_of(small_block)
    share = parse(params_for(small_block, job, en), EN2_SIZE)
    assert isinstance(share, Submit)
    verdict = judge(None, share, limits(job, en), SeenHashes())
    assert verdict.reason == r.REJECT_UNKNOWN_JOB
    assert verdict.code == ErrorCode.JOB_NOT_FOUND


def test_stale_share_is_still_tested_as_a_block(small_block: Block) -> None:
    job, en = job_of(small_block)
    verdict = run(small_block, job, en, params_for(small_block, job, en), tip=bytes(32))
    assert verdict.reason == r.REJECT_STALE
    assert verdict.code == ErrorCode.JOB_NOT_FOUND
    assert verdict.is_block  # the caller still submits it


def test_low_difficulty_against_the_jobs_difficulty(small_block: Block) -> None:
    job, en = job_of(small_block)
    params = params_for(small_block, job, en)
    params[4] = u32_hex(small_block.header.nonce ^ 1)  # another nonce: an ordinary hash
    verdict = run(small_block, job, en, params, difficulty=1.0)
    assert verdict.reason == r.REJECT_LOW_DIFFICULTY
    assert verdict.code == ErrorCode.LOW_DIFFICULTY
    assert not verdict.is_block
    easy = run(small_block, job, en, params, difficulty=verdict.share_difficulty / 2)
    assert easy.accepted
    assert not easy.is_block


@pytest.mark.parametrize("delta", [-1, 7201])
def test_ntime_out_of_range(small_block: Block, delta: int) -> None:
    job, en = job_of(small_block)
    job = with_time(job, small_block.header.time)
    params = params_for(small_block, job, en)
    params[3] = u32_hex(small_block.header.time + delta)
    verdict = run(small_block, job, en, params)
    assert verdict.reason == r.REJECT_NTIME
    assert verdict.code == ErrorCode.OTHER


@pytest.mark.parametrize(
    ("index", "value", "needle"),
    [
        (2, "zz" * 8, "extranonce2 is not hex"),
        (2, "00" * 4, "extranonce2 must be 8 bytes, got 4"),
        (3, "1234", "ntime must be 8 hex digits"),
        (4, 12345, "nonce must be 8 hex digits"),
    ],
)
def test_malformed_fields(small_block: Block, index: int, value: object, needle: str) -> None:
    job, en = job_of(small_block)
    params = params_for(small_block, job, en)
    params[index] = value
    verdict = parse(params, EN2_SIZE)
    assert isinstance(verdict, Verdict)
    assert verdict.reason == r.REJECT_MALFORMED
    assert verdict.code == ErrorCode.OTHER
    assert needle in verdict.message


def test_wrong_param_count_is_malformed() -> None:
    verdict = parse(["w", "1", "00" * 8, "00000000"], EN2_SIZE)
    assert isinstance(verdict, Verdict)
    assert verdict.reason == r.REJECT_MALFORMED


def test_fast_header_matches_the_stratum_reference(real_block: Block) -> None:
    job, en = job_of(real_block)
    share = parse(params_for(real_block, job, en), EN2_SIZE)
    assert isinstance(share, Submit)
    for version in (job.work.version, job.work.version | 0x1FFFE000):
        reference = job.work.header(
            en[:EN1_SIZE], share.extranonce2, share.ntime, share.nonce, version
        )
        assert header_for(job, share, en[:EN1_SIZE], version) == reference


def test_merkle_roots_are_cached_by_extranonce(small_block: Block) -> None:
    job, en = job_of(small_block)
    roots: dict[bytes, bytes] = {}
    params = params_for(small_block, job, en)
    share = parse(params, EN2_SIZE)
    assert isinstance(share, Submit)
    first = judge(job, share, limits(job, en), SeenHashes(), roots)
    assert roots == {en: small_block.header.merkle_root}
    other_nonce = replace(share, nonce=share.nonce ^ 1)
    second = judge(job, other_nonce, limits(job, en), SeenHashes(), roots)
    assert first.header is not None
    assert second.header is not None
    assert second.header[36:68] == first.header[36:68] == small_block.header.merkle_root


def _ordinary(block: Block, job: PoolJob, en: bytes, flip: int) -> Submit:
    """A share of `job` with another nonce than the block's: an ordinary, non-block hash."""
    params = params_for(block, job, en)
    params[4] = u32_hex(block.header.nonce ^ flip)
    share = parse(params, EN2_SIZE)
    assert isinstance(share, Submit)
    return share


def test_only_shares_that_count_enter_the_duplicate_set(small_block: Block) -> None:
    job, en = job_of(small_block)
    seen = SeenHashes()
    junk = _ordinary(small_block, job, en, 1)
    for _ in range(3):  # junk resent is judged, and rejected, again: never a duplicate
        low = judge(job, junk, limits(job, en, difficulty=1e6), seen)
        assert low.reason == r.REJECT_LOW_DIFFICULTY
    stale = judge(job, junk, limits(job, en, difficulty=1e-12, tip=bytes(32)), seen)
    assert stale.reason == r.REJECT_STALE
    assert not stale.is_block
    assert len(seen) == 0  # neither took a place in the set
    counted = judge(job, junk, limits(job, en, difficulty=1e-12), seen)
    assert counted.accepted
    assert seen == {counted.hash}
    assert judge(job, junk, limits(job, en, difficulty=1e-12), seen).reason == r.REJECT_DUPLICATE
    block = parse(params_for(small_block, job, en), EN2_SIZE)
    assert isinstance(block, Submit)
    stale_block = judge(job, block, limits(job, en, tip=bytes(32)), seen)
    assert stale_block.reason == r.REJECT_STALE
    assert stale_block.is_block  # submitted once...
    again = judge(job, block, limits(job, en), seen)
    assert again.reason == r.REJECT_DUPLICATE  # ...and never again, stale or not
    assert not again.is_block


def test_a_full_set_refuses_shares_but_never_lets_one_through_or_loses_a_block(
    small_block: Block,
) -> None:
    job, en = job_of(small_block)
    seen = SeenHashes(limit=2)
    easy = limits(job, en, difficulty=1e-12)
    assert judge(job, _ordinary(small_block, job, en, 1), easy, seen).accepted
    assert judge(job, _ordinary(small_block, job, en, 2), easy, seen).accepted
    full = judge(job, _ordinary(small_block, job, en, 3), easy, seen)
    assert full.reason == r.REJECT_SEEN_FULL
    assert full.code == ErrorCode.OTHER
    assert "duplicate check full" in full.message
    assert len(seen) == 2
    assert judge(job, _ordinary(small_block, job, en, 3), easy, seen).reason == r.REJECT_SEEN_FULL
    dup = judge(job, _ordinary(small_block, job, en, 1), easy, seen)
    assert dup.reason == r.REJECT_DUPLICATE  # still detected when full
    block = parse(params_for(small_block, job, en), EN2_SIZE)
    assert isinstance(block, Submit)
    found = judge(job, block, easy, seen)
    assert found.accepted  # a block always counts, full set or not
    assert found.is_block
    assert len(seen) == 3
    assert judge(job, block, easy, seen).reason == r.REJECT_DUPLICATE


@pytest.mark.parametrize("difficulty", [1e-12, 3.5])
def test_the_verdict_carries_the_difficulty_it_was_judged_at(
    small_block: Block, difficulty: float
) -> None:
    job, en = job_of(small_block)
    verdict = judge(
        job,
        _ordinary(small_block, job, en, 1),
        limits(job, en, difficulty=difficulty),
        SeenHashes(),
    )
    assert verdict.difficulty == difficulty
    assert verdict.accepted is (difficulty < 1.0)
