"""SHA-256 as 32-bit words, for backends that hash a header themselves (numba, CUDA).

hashlib hides the compression function, yet every fast miner needs it: the first 64 bytes
of a header do not change while the nonce runs, so their compression (the *midstate*) is
computed once per work unit here, in plain Python, and handed to the compiled kernels with
the three fixed message words of the second chunk. The code follows FIPS 180-4 section 6.2.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "HEADER76_SIZE",
    "IV",
    "K",
    "WorkWords",
    "bswap32",
    "compress",
    "sha256_padded_words",
    "target_top_word",
    "work_words",
]

HEADER76_SIZE = 76  # version..bits of a block header: everything but the nonce
MASK32 = 0xFFFFFFFF

# FIPS 180-4 4.2.2: first 32 bits of the fractional parts of the cube roots of the first 64 primes.
K: tuple[int, ...] = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
)  # fmt: skip

# FIPS 180-4 5.3.3: the initial hash value H(0).
IV: tuple[int, ...] = (
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
)  # fmt: skip

_WORDS16 = struct.Struct(">16I")
_WORDS3 = struct.Struct(">3I")


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & MASK32


def _schedule(block_words: tuple[int, ...]) -> list[int]:
    """The 64-word message schedule W of one 16-word block."""
    w = list(block_words)
    for t in range(16, 64):
        s0 = _rotr(w[t - 15], 7) ^ _rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
        s1 = _rotr(w[t - 2], 17) ^ _rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & MASK32)
    return w


def compress(state: tuple[int, ...], block_words: tuple[int, ...]) -> tuple[int, ...]:
    """One SHA-256 compression: the 8-word state after absorbing a 16-word block."""
    a, b, c, d, e, f, g, h = state
    for k, w in zip(K, _schedule(block_words), strict=True):
        t1 = h + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + (g ^ (e & (f ^ g))) + k + w
        t2 = (_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) | (c & (a | b)))
        a, b, c, d, e, f, g, h = (t1 + t2) & MASK32, a, b, c, (d + t1) & MASK32, e, f, g
    return tuple((x + y) & MASK32 for x, y in zip(state, (a, b, c, d, e, f, g, h), strict=True))


def sha256_padded_words(message: bytes) -> list[tuple[int, ...]]:
    """The padded 16-word blocks of `message` (FIPS 180-4 5.1.1), for tests and midstates."""
    padded = message + b"\x80" + bytes((55 - len(message)) % 64) + (8 * len(message)).to_bytes(8)
    return [_WORDS16.unpack_from(padded, i) for i in range(0, len(padded), 64)]


def bswap32(x: int) -> int:
    """Reverse the byte order of a 32-bit word (header fields are little-endian, SHA big)."""
    return int.from_bytes(x.to_bytes(4, "little"), "big")


@dataclass(frozen=True)
class WorkWords:
    """What a kernel needs to hash every nonce of one 76-byte header prefix.

    `midstate` is the state after the first 64 header bytes; `tail` holds message words
    0-2 of the second chunk (the end of the merkle root, the time, the bits); word 3 is
    the byte-swapped nonce and the rest is the fixed padding of an 80-byte message.
    """

    midstate: tuple[int, ...]
    tail: tuple[int, int, int]


def work_words(header76: bytes) -> WorkWords:
    """Midstate and second-chunk words of a 76-byte header prefix (version..bits)."""
    if len(header76) != HEADER76_SIZE:
        raise ValueError(f"header76 must be {HEADER76_SIZE} bytes, got {len(header76)}")
    midstate = compress(IV, _WORDS16.unpack_from(header76, 0))
    t0, t1, t2 = _WORDS3.unpack_from(header76, 64)
    return WorkWords(midstate=midstate, tail=(t0, t1, t2))


def target_top_word(target: int) -> int:
    """The most significant 32 bits of a 256-bit target.

    A header hash read as a little-endian number has the byte-swapped last digest word
    as its top 32 bits, so a kernel rejects a nonce as soon as that word exceeds this one
    (the early rejection every miner does: the other words matter only on a tie).
    """
    return target >> 224
