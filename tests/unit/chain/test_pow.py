"""PoW arithmetic against Bitcoin Core's own test vectors and the real mainnet epochs."""

from __future__ import annotations

import csv
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.chain import MAINNET, REGTEST, SIGNET, TESTNET3, TESTNET4, sha256d
from hashfarm.chain.pow import (
    DIFF1_TARGET,
    MAX_TARGET,
    bits_to_difficulty,
    bits_to_target,
    block_work,
    check_proof_of_work,
    decode_compact,
    difficulty_to_target,
    encode_compact,
    hash_difficulty,
    hash_to_int,
    meets_target,
    next_work_required,
    target_to_bits,
    target_to_difficulty,
)
from hashfarm.errors import ChainError
from realdata import DATA_DIR

# Core src/test/arith_uint256_tests.cpp (bignum_SetCompact):
# bits -> (value, negative, overflow, GetCompact(negative) of the value).
SET_COMPACT = [
    (0x00000000, 0, False, False, 0),
    (0x00123456, 0, False, False, 0),
    (0x01003456, 0, False, False, 0),
    (0x02000056, 0, False, False, 0),
    (0x03000000, 0, False, False, 0),
    (0x04000000, 0, False, False, 0),
    (0x00923456, 0, False, False, 0),
    (0x01803456, 0, False, False, 0),
    (0x02800056, 0, False, False, 0),
    (0x03800000, 0, False, False, 0),
    (0x04800000, 0, False, False, 0),
    (0x01123456, 0x12, False, False, 0x01120000),
    (0x01FEDCBA, 0x7E, True, False, 0x01FE0000),
    (0x02123456, 0x1234, False, False, 0x02123400),
    (0x03123456, 0x123456, False, False, 0x03123456),
    (0x04123456, 0x12345600, False, False, 0x04123456),
    (0x04923456, 0x12345600, True, False, 0x04923456),
    (0x05009234, 0x92340000, False, False, 0x05009234),
    (0x20123456, 0x123456 << 232, False, False, 0x20123456),
]


@pytest.mark.parametrize(("bits", "value", "negative", "overflow", "compact"), SET_COMPACT)
def test_core_set_compact_vectors(
    bits: int, value: int, negative: bool, overflow: bool, compact: int
) -> None:
    c = decode_compact(bits)
    assert (c.value, c.negative, c.overflow) == (value, negative, overflow)
    assert encode_compact(c.value, negative=c.negative) == compact


def test_core_compact_overflow_and_sign_bit() -> None:
    c = decode_compact(0xFF123456)
    assert (c.negative, c.overflow) == (False, True)
    with pytest.raises(ChainError, match="over 256 bits"):
        bits_to_target(0xFF123456)
    with pytest.raises(ChainError, match="negative"):
        bits_to_target(0x04923456)
    # Core: "Make sure that we don't generate compacts with the 0x00800000 bit set"
    assert target_to_bits(0x80) == 0x02008000


# Core src/test/blockchain_tests.cpp: GetDifficulty, compared within 1e-5 as Core does.
@pytest.mark.parametrize(
    ("bits", "difficulty"),
    [
        (0x1F111111, 0.000001),
        (0x1EF88F6F, 0.000016),
        (0x1DF88F6F, 0.004023),
        (0x1CF88F6F, 1.029916),
        (0x12345678, 5913134931067755359633408.0),
    ],
)
def test_core_get_difficulty_vectors(bits: int, difficulty: float) -> None:
    assert abs(bits_to_difficulty(bits) - difficulty) < 0.00001 * max(1.0, difficulty)


# Core src/test/pow_tests.cpp: CalculateNextWorkRequired on mainnet.
@pytest.mark.parametrize(
    ("last_bits", "first_time", "last_time", "expected"),
    [
        (0x1D00FFFF, 1261130161, 1262152739, 0x1D00D86A),  # no constraint applies
        (0x1D00FFFF, 1231006505, 1233061996, 0x1D00FFFF),  # capped at the pow limit
        (0x1C05A3F4, 1279008237, 1279297671, 0x1C0168FD),  # timespan clamped below
        (0x1C387F6F, 1263163443, 1269211443, 0x1D00E1FD),  # timespan clamped above
    ],
)
def test_core_next_work_vectors(
    last_bits: int, first_time: int, last_time: int, expected: int
) -> None:
    assert next_work_required(last_bits, first_time, last_time, MAINNET) == expected


def test_regtest_never_retargets() -> None:
    assert next_work_required(0x207FFFFF, 0, 10**9, REGTEST) == 0x207FFFFF


def test_check_proof_of_work_rejects_bad_bits() -> None:
    """Core's CheckProofOfWork cases: negative, overflow, zero and too-easy targets."""
    easy_hash = bytes(32)  # the best possible hash, so only the bits decide
    limit_bits = target_to_bits(MAINNET.pow_limit)
    assert check_proof_of_work(easy_hash, limit_bits, MAINNET)
    assert not check_proof_of_work(easy_hash, encode_compact(MAINNET.pow_limit, True), MAINNET)
    assert not check_proof_of_work(easy_hash, ~0x00800000 & 0xFFFFFFFF, MAINNET)
    assert not check_proof_of_work(easy_hash, target_to_bits(MAINNET.pow_limit * 2), MAINNET)
    assert not check_proof_of_work(easy_hash, 0, MAINNET)
    above = (bits_to_target(limit_bits) + 1).to_bytes(32, "little")
    assert not check_proof_of_work(above, limit_bits, MAINNET)


@pytest.mark.parametrize("network", [MAINNET, TESTNET3, TESTNET4, SIGNET, REGTEST])
def test_pow_limits_are_consistent(network) -> None:  # type: ignore[no-untyped-def]
    assert target_to_bits(network.pow_limit) == network.pow_limit_bits
    assert bits_to_target(network.pow_limit_bits) <= network.pow_limit


def test_pow_limit_values() -> None:
    """Core chainparams: powLimit of each network, as hex."""
    assert f"{MAINNET.pow_limit:064x}" == "00000000" + "f" * 56
    assert TESTNET4.pow_limit == TESTNET3.pow_limit == MAINNET.pow_limit
    assert f"{SIGNET.pow_limit:064x}" == "00000377ae" + "0" * 54
    assert f"{REGTEST.pow_limit:064x}" == "7" + "f" * 63


def test_only_testnet4_retargets_from_the_first_block() -> None:
    """Core chainparams: consensus.enforce_BIP94 is true for testnet4 alone."""
    assert TESTNET4.enforce_bip94
    assert not any(n.enforce_bip94 for n in (MAINNET, TESTNET3, SIGNET, REGTEST))


def _epochs() -> list[dict[str, str]]:
    with (DATA_DIR / "difficulty_epochs.csv").open() as f:
        return list(csv.DictReader(f))


def test_all_mainnet_epochs() -> None:
    rows = _epochs()
    assert len(rows) == 474
    for row in rows:
        bits = int(row["bits"], 16)
        target = int(row["target_hex"], 16)
        assert bits_to_target(bits) == target, row["epoch"]
        assert target_to_bits(target) == bits, row["epoch"]
        assert bits_to_difficulty(bits) == float(row["difficulty"]), row["epoch"]
        assert math.isclose(target_to_difficulty(target), float(row["difficulty"]), rel_tol=1e-12)


def test_epoch_spot_checks() -> None:
    def epoch_of(height: int) -> dict[str, str]:
        return next(
            r for r in _epochs() if int(r["start_height"]) <= height <= int(r["end_height"])
        )

    assert epoch_of(840000)["bits"] == "17034219"
    assert epoch_of(100000)["bits"] == "1b04864c"
    assert bits_to_difficulty(0x1B04864C) == 14484.162361225399
    assert bits_to_difficulty(0x17034219) == 86388558925171.02
    assert bits_to_difficulty(0x1D00D86A) == 1.1828995343128408


def test_pool_difficulty_conversions() -> None:
    assert difficulty_to_target(1.0) == DIFF1_TARGET
    assert difficulty_to_target(2.0) == DIFF1_TARGET // 2
    assert difficulty_to_target(1e-12) == MAX_TARGET  # capped: cannot exceed 2**256-1
    assert difficulty_to_target(0.5) == DIFF1_TARGET * 2
    assert difficulty_to_target(65536.0) == DIFF1_TARGET >> 16
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ChainError, match="positive finite"):
            difficulty_to_target(bad)


def test_hash_helpers_on_genesis() -> None:
    genesis = bytes.fromhex(
        "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b2"
        "7ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
    )
    h = sha256d(genesis)
    assert hash_to_int(h) == 0x000000000019D6689C085AE165831E934FF763AE46A2A6C172B3F1B60A8CE26F
    assert meets_target(h, DIFF1_TARGET)
    assert not meets_target(h, hash_to_int(h) - 1)
    assert hash_difficulty(h) == DIFF1_TARGET / hash_to_int(h)
    assert hash_difficulty(bytes(32)) == math.inf
    assert block_work(0x1D00FFFF) == 0x100010001  # Core: GetBlockProof of the genesis block


@given(st.integers(min_value=1, max_value=MAX_TARGET))
def test_target_bits_roundtrip(target: int) -> None:
    bits = target_to_bits(target)
    decoded = bits_to_target(bits)
    assert decoded <= target  # compact keeps the top 3 significant bytes
    assert target_to_bits(decoded) == bits
    assert target - decoded < 1 << max(0, target.bit_length() - 15)


@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_decode_compact_matches_bits_to_target(bits: int) -> None:
    c = decode_compact(bits)
    if c.negative or c.overflow:
        with pytest.raises(ChainError):
            bits_to_target(bits)
    else:
        assert bits_to_target(bits) == c.value


@given(st.floats(min_value=1e-12, max_value=1e30, allow_nan=False))
def test_difficulty_target_roundtrip(difficulty: float) -> None:
    target = difficulty_to_target(difficulty)
    if target < MAX_TARGET:
        assert math.isclose(target_to_difficulty(target), difficulty, rel_tol=1e-12)
