"""Proof of work: compact `bits` <-> target <-> difficulty, and hash checks.

Follows Bitcoin Core: `arith_uint256::SetCompact/GetCompact` for the compact form,
`GetDifficulty` (double arithmetic on nBits) for the displayed difficulty, and
`CheckProofOfWork` for validity. Pool share difficulty is the float pools use:
DIFF1_TARGET / target, exact for any positive float, including far below 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from hashfarm.chain.networks import Network
from hashfarm.errors import ChainError

__all__ = [
    "DIFF1_TARGET",
    "MAX_TARGET",
    "Compact",
    "bits_to_difficulty",
    "bits_to_target",
    "block_work",
    "check_proof_of_work",
    "decode_compact",
    "difficulty_to_target",
    "encode_compact",
    "hash_difficulty",
    "hash_to_int",
    "meets_target",
    "next_work_required",
    "target_to_bits",
    "target_to_difficulty",
]

# Difficulty 1: the target of bits 0x1d00ffff (0xffff * 2**208), as Core and pools define it.
DIFF1_TARGET = 0xFFFF << 208
# Largest 256-bit value: the easiest possible share target.
MAX_TARGET = (1 << 256) - 1


@dataclass(frozen=True, slots=True)
class Compact:
    """Core's SetCompact result: the value plus its negative and overflow flags."""

    value: int  # the 256-bit value (may be truncated mod 2**256 when overflowing)
    negative: bool  # sign bit set with a nonzero mantissa
    overflow: bool  # the value does not fit 256 bits


def decode_compact(bits: int) -> Compact:
    """Decode compact `bits` exactly as Core's `arith_uint256::SetCompact` does."""
    size = (bits >> 24) & 0xFF
    word = bits & 0x007FFFFF
    if size <= 3:
        word >>= 8 * (3 - size)
        value = word
    else:
        value = (word << (8 * (size - 3))) & MAX_TARGET
    negative = word != 0 and bool(bits & 0x00800000)
    overflow = word != 0 and (
        size > 34 or (word > 0xFF and size > 33) or (word > 0xFFFF and size > 32)
    )
    return Compact(value, negative, overflow)


def bits_to_target(bits: int) -> int:
    """The target encoded by compact `bits`; ChainError if it is negative or overflows."""
    c = decode_compact(bits)
    if c.negative:
        raise ChainError(f"bits {bits:#010x} encode a negative target")
    if c.overflow:
        raise ChainError(f"bits {bits:#010x} encode a target over 256 bits")
    return c.value


def encode_compact(value: int, negative: bool = False) -> int:
    """Core's `arith_uint256::GetCompact(negative)` for 0 <= value < 2**256."""
    if not 0 <= value <= MAX_TARGET:
        raise ChainError(f"value out of the 256-bit range: {value:#x}")
    size = (value.bit_length() + 7) // 8
    mantissa = value << (8 * (3 - size)) if size <= 3 else value >> (8 * (size - 3))
    if mantissa & 0x00800000:  # would read back as negative: shift into the next byte
        mantissa >>= 8
        size += 1
    if negative and mantissa:
        mantissa |= 0x00800000
    return mantissa | (size << 24)


def target_to_bits(target: int) -> int:
    """Compact `bits` of a target (precision beyond 3 bytes is truncated, as in Core)."""
    return encode_compact(target)


def bits_to_difficulty(bits: int) -> float:
    """Difficulty of `bits` for display, with Core's `GetDifficulty` double arithmetic."""
    shift = (bits >> 24) & 0xFF
    mantissa = bits & 0x00FFFFFF
    if mantissa == 0:
        raise ChainError(f"bits {bits:#010x} have a zero mantissa")
    diff = 0x0000FFFF / mantissa
    while shift < 29:
        diff *= 256.0
        shift += 1
    while shift > 29:
        diff /= 256.0
        shift -= 1
    return diff


def target_to_difficulty(target: int) -> float:
    """Pool difficulty of a target: DIFF1_TARGET / target, correctly rounded."""
    if target <= 0:
        raise ChainError(f"target must be positive, got {target}")
    return DIFF1_TARGET / target


def difficulty_to_target(difficulty: float) -> int:
    """Share target for a pool difficulty (floor of DIFF1_TARGET / difficulty, capped at 2**256-1).

    Exact rational arithmetic on the float, so tiny difficulties (CPU miners on regtest)
    and huge ones (network difficulty) both come out right.
    """
    if not math.isfinite(difficulty) or difficulty <= 0:
        raise ChainError(f"difficulty must be a positive finite number, got {difficulty!r}")
    d = Fraction(difficulty)
    return min(MAX_TARGET, DIFF1_TARGET * d.denominator // d.numerator)


def hash_to_int(hash_internal: bytes) -> int:
    """A hash in internal byte order as the 256-bit integer compared with targets."""
    return int.from_bytes(hash_internal, "little")


def hash_difficulty(hash_internal: bytes) -> float:
    """The share difficulty a hash achieves (DIFF1_TARGET / hash); inf for a zero hash."""
    value = int.from_bytes(hash_internal, "little")
    return math.inf if value == 0 else DIFF1_TARGET / value


def meets_target(hash_internal: bytes, target: int) -> bool:
    """True when the hash, read as a little-endian integer, is <= target."""
    return int.from_bytes(hash_internal, "little") <= target


def check_proof_of_work(hash_internal: bytes, bits: int, network: Network) -> bool:
    """Core's `CheckProofOfWork`: bits must decode to a target in (0, pow_limit], hash <= it."""
    c = decode_compact(bits)
    if c.negative or c.overflow or c.value == 0 or c.value > network.pow_limit:
        return False
    return meets_target(hash_internal, c.value)


def block_work(bits: int) -> int:
    """Expected hashes to find a block at `bits` (Core's `GetBlockProof`): 2**256 / (target+1)."""
    c = decode_compact(bits)
    if c.negative or c.overflow or c.value == 0:
        return 0
    return (1 << 256) // (c.value + 1)


def next_work_required(last_bits: int, first_time: int, last_time: int, network: Network) -> int:
    """Bits for the next epoch (Core's `CalculateNextWorkRequired`).

    `first_time`/`last_time` are the times of the epoch's first and last blocks; the measured
    timespan is clamped to a factor of 4 either way and the target capped at the pow limit.
    `last_bits` are the last block's bits, except on `network.enforce_bip94` (testnet4),
    where Core starts from the epoch's first block's bits: pass those instead.
    """
    if network.no_retargeting:
        return last_bits
    target_timespan = network.retarget_interval * network.target_spacing
    timespan = min(max(last_time - first_time, target_timespan // 4), target_timespan * 4)
    target = bits_to_target(last_bits) * timespan // target_timespan
    return target_to_bits(min(target, network.pow_limit))
