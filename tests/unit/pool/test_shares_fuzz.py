"""Fuzzing the share path: `shares.parse` + `shares.judge` on a job built from a real block.

The job's coinbase, branch and template are mainnet block 482683's, so the block's own
extranonce, ntime and nonce make a real share (a block). Properties: any params never
crash the path and a reject always names a reason and says why; whatever is accepted
really hashes to the header the reference builder gives and meets its target; the real
share is accepted, and every mutation of it (another header) is rejected.
Bounded and deterministic (derandomized, no example database) so `make test` runs it.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pool_helpers import EN1_SIZE, EN2_SIZE, job_of

from hashfarm.chain.block import Block
from hashfarm.pool import records as r
from hashfarm.pool.jobs import PoolJob, SeenHashes
from hashfarm.pool.shares import Limits, Verdict, judge, parse, share_target
from hashfarm.stratum.messages import Submit
from hashfarm.stratum.work import apply_version_bits, u32_hex
from realdata import load_block_bytes

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
MASK = 0x1FFFE000
BLOCK = Block.parse(load_block_bytes("mainnet-482683.raw"))
JOB, EXTRANONCE = job_of(BLOCK)
EN1 = EXTRANONCE[:EN1_SIZE]


def limits(difficulty: float = 1.0, tip: bytes | None = None) -> Limits:
    return Limits(EN1, EN2_SIZE, MASK, difficulty, tip or JOB.template.prev_hash, 7200, 0)


def run(params: Any, lim: Limits, seen: SeenHashes | None = None) -> Verdict:
    """What the session does with a submit's params: parse, look the job up, judge."""
    share = parse(params, EN2_SIZE)
    if isinstance(share, Verdict):
        return share
    job: PoolJob | None = JOB if share.job_id == JOB.job_id else None
    return judge(job, share, lim, SeenHashes() if seen is None else seen, {})


def real_params() -> list[Any]:
    return [
        "w.1",
        JOB.job_id,
        EXTRANONCE[EN1_SIZE:].hex(),
        u32_hex(BLOCK.header.time),
        u32_hex(BLOCK.header.nonce),
    ]


_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64),
        st.floats(),
        st.text(max_size=20),
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
_u32_hex = st.integers(0, 2**32 - 1).map(u32_hex)
_near_time = st.integers(-30, 7300).map(lambda d: u32_hex(JOB.work.time + d))
# A well-formed share of the job (any extranonce2, ntime near the job's, any nonce, version
# bits or none), then up to two of its fields replaced by junk of the kind miners send.
_valid_params = st.tuples(
    st.text(max_size=10),
    st.just(JOB.job_id),
    st.binary(min_size=EN2_SIZE, max_size=EN2_SIZE).map(bytes.hex),
    _near_time,
    _u32_hex,
).flatmap(
    lambda five: (
        st.just(list(five))
        | st.integers(0, 2**32 - 1).map(lambda bits: [*five, u32_hex(bits & MASK)])
    )
)
_junk = (
    st.sampled_from([JOB.job_id + "0", "", "ff", "zz" * 4, "0" * 9])
    | st.binary(max_size=12).map(bytes.hex)
    | _u32_hex
    | st.text(max_size=10)
    | _json
)
_near_params = st.tuples(
    _valid_params, st.lists(st.tuples(st.integers(0, 6), _junk), max_size=2)
).map(lambda pj: _corrupt(*pj))


def _corrupt(params: list[Any], junk: list[tuple[int, Any]]) -> list[Any]:
    out = list(params)
    for index, value in junk:
        if index < len(out):
            out[index] = value
        else:
            out.append(value)  # a sixth (or seventh) param
    return out


_difficulties = st.sampled_from([1e-12, 1e-12, 1e-6, 1.0, 1e30])  # 1e-12: every hash meets it


def check(verdict: Verdict, lim: Limits) -> None:
    """The invariants of every verdict."""
    if not verdict.accepted:
        assert verdict.reason in r.REJECT_REASONS
        assert verdict.message
        return
    share, header, digest = verdict.share, verdict.header, verdict.hash
    assert share is not None
    assert header is not None
    assert digest is not None
    assert verdict.job is JOB
    assert verdict.difficulty == lim.difficulty
    version = (
        JOB.work.version
        if share.version_bits is None
        else apply_version_bits(JOB.work.version, share.version_bits, MASK)
    )
    reference = JOB.work.header(EN1, share.extranonce2, share.ntime, share.nonce, version)
    assert header == reference
    assert digest == hashlib.sha256(hashlib.sha256(header).digest()).digest()
    assert verdict.is_block or int.from_bytes(digest, "little") <= share_target(lim.difficulty)


@FUZZ
@given(params=st.lists(_json, max_size=7), difficulty=_difficulties)
def test_arbitrary_params_never_crash_and_rejects_say_why(
    params: list[Any], difficulty: float
) -> None:
    lim = limits(difficulty)
    verdict = run(tuple(params), lim)
    check(verdict, lim)


@FUZZ
@given(params=_near_params, difficulty=_difficulties, stale=st.booleans())
def test_near_valid_params_are_judged_consistently(
    params: list[Any], difficulty: float, stale: bool
) -> None:
    lim = limits(difficulty, bytes(32) if stale else None)
    seen = SeenHashes()
    verdict = run(tuple(params), lim, seen)
    check(verdict, lim)
    if verdict.accepted or verdict.is_block:
        assert seen == {verdict.hash}  # it counted: the same again is a duplicate
        assert run(tuple(params), lim, seen).reason == r.REJECT_DUPLICATE
    else:
        assert not seen  # junk never takes a place in the duplicate set
    if verdict.accepted:
        assert not stale or verdict.is_block


def test_the_real_share_is_accepted_as_the_block() -> None:
    verdict = run(real_params(), limits())
    assert verdict.accepted, verdict.message
    assert verdict.is_block
    assert verdict.hash == BLOCK.hash()


_fields = st.sampled_from(["extranonce2", "ntime", "nonce", "version_bits"])


@FUZZ
@given(field=_fields, value=st.integers(0, 2**64 - 1))
def test_every_mutation_of_the_real_share_is_rejected(field: str, value: int) -> None:
    share = parse(real_params(), EN2_SIZE)
    assert isinstance(share, Submit)
    if field == "extranonce2":
        mutated = replace(share, extranonce2=value.to_bytes(8, "big"))
    elif field == "version_bits":
        bits = value & 0xFFFFFFFF
        # bits that leave the header's version as it is do not make another header
        same = apply_version_bits(JOB.work.version, bits, MASK) == JOB.work.version
        assume(not (same and bits & ~MASK == 0))
        mutated = replace(share, version_bits=bits)
    elif field == "ntime":
        mutated = replace(share, ntime=value & 0xFFFFFFFF)
    else:
        mutated = replace(share, nonce=value & 0xFFFFFFFF)
    assume(mutated != share)
    verdict = judge(JOB, mutated, limits(), SeenHashes(), {})
    assert not verdict.accepted
    assert not verdict.is_block
    assert verdict.reason in (
        r.REJECT_LOW_DIFFICULTY,
        r.REJECT_NTIME,
        r.REJECT_VERSION_BITS,
    )


def test_the_near_valid_strategy_reaches_every_outcome() -> None:
    """The fuzzer above is only as good as what it reaches: accepted shares, blocks aside,
    and each kind of reject the fields can cause."""
    reasons: set[str | None] = set()

    @FUZZ
    @given(params=_near_params, difficulty=_difficulties, stale=st.booleans())
    def collect(params: list[Any], difficulty: float, stale: bool) -> None:
        lim = limits(difficulty, bytes(32) if stale else None)
        reasons.add(run(tuple(params), lim).reason)

    collect()
    assert {None, r.REJECT_MALFORMED, r.REJECT_UNKNOWN_JOB, r.REJECT_NTIME} <= reasons
    assert {r.REJECT_STALE, r.REJECT_LOW_DIFFICULTY, r.REJECT_VERSION_BITS} <= reasons
