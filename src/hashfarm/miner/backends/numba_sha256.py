"""SHA-256d scan kernel compiled by numba, written so that LLVM can vectorize it.

`scan_kernel` calls `top_word` for a batch of nonces in a plain loop; once every
helper here is inlined (`inline="always"`, at numba's IR level, because LLVM will not inline
a function this large) the loop body is straight-line code that the loop vectorizer turns
into 8- or 16-lane SIMD (AVX2/AVX-512), with every value in a register.

Two rules keep it fast:
- numba widens uint32 arithmetic to 64 bits; every value used more than once is truncated
  back with `U32(...)` so that LLVM narrows the whole round to 32-bit lanes (without it the
  vectors hold 64-bit lanes and run at half speed);
- nothing is computed that the caller does not use: `top_word` reads one word of the second
  hash, so LLVM deletes the last three rounds and the rest of the feed-forward, and it hoists
  the first three rounds of the first hash (they do not depend on the nonce) out of the loop.

The kernel lives in this file with everything it inlines because numba's on-disk cache
checks only the source file of the cached function: a helper edited in another file would
leave a stale kernel in the cache.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from .sha256_words import IV as _IV
from .sha256_words import K as _K

__all__ = ["IV", "LANES", "U32", "bswap", "compress", "scan_kernel", "top_word"]

U32 = np.uint32
K = np.array(_K, dtype=np.uint32)  # a global array: numba freezes it into the code
IV = tuple(U32(x) for x in _IV)
PAD_WORD = U32(0x80000000)  # the 0x80 byte that starts SHA-256 padding
HEADER_BITS = U32(640)  # length field of an 80-byte message
DIGEST_BITS = U32(256)  # length field of a 32-byte message
LANES = 16  # nonces per loop iteration: two AVX2 registers' worth, enough for LLVM to interleave

_inline = njit(inline="always", cache=True)


@_inline
def _rotr(x: Any, n: int) -> Any:
    return U32((x >> n) | (x << (32 - n)))


@_inline
def _round(a: Any, b: Any, c: Any, d: Any, e: Any, f: Any, g: Any, h: Any, kw: Any) -> Any:
    """One round, Bitcoin Core style: returns the new d and h; the caller renames the rest."""
    t1 = U32(h + U32(_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + U32(g ^ (e & (f ^ g))) + kw)
    t2 = U32(U32(_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + U32((a & b) | (c & (a | b))))
    return U32(d + t1), U32(t1 + t2)


@_inline
def _expand(w0: Any, w1: Any, w9: Any, w14: Any) -> Any:
    """W[t] from W[t-16], W[t-15], W[t-7] and W[t-2]."""
    s0 = U32(_rotr(w1, 7) ^ _rotr(w1, 18) ^ (w1 >> 3))
    s1 = U32(_rotr(w14, 17) ^ _rotr(w14, 19) ^ (w14 >> 10))
    return U32(w0 + s0 + w9 + s1)


@_inline
def _rounds16(s: Any, w: Any, r: int) -> Any:
    """Rounds r..r+15 over the 16 schedule words `w`; the variable names rotate instead of
    the values, so no round moves any data."""
    a, b, c, d, e, f, g, h = s
    d, h = _round(a, b, c, d, e, f, g, h, K[r + 0] + w[0])
    c, g = _round(h, a, b, c, d, e, f, g, K[r + 1] + w[1])
    b, f = _round(g, h, a, b, c, d, e, f, K[r + 2] + w[2])
    a, e = _round(f, g, h, a, b, c, d, e, K[r + 3] + w[3])
    h, d = _round(e, f, g, h, a, b, c, d, K[r + 4] + w[4])
    g, c = _round(d, e, f, g, h, a, b, c, K[r + 5] + w[5])
    f, b = _round(c, d, e, f, g, h, a, b, K[r + 6] + w[6])
    e, a = _round(b, c, d, e, f, g, h, a, K[r + 7] + w[7])
    d, h = _round(a, b, c, d, e, f, g, h, K[r + 8] + w[8])
    c, g = _round(h, a, b, c, d, e, f, g, K[r + 9] + w[9])
    b, f = _round(g, h, a, b, c, d, e, f, K[r + 10] + w[10])
    a, e = _round(f, g, h, a, b, c, d, e, K[r + 11] + w[11])
    h, d = _round(e, f, g, h, a, b, c, d, K[r + 12] + w[12])
    g, c = _round(d, e, f, g, h, a, b, c, K[r + 13] + w[13])
    f, b = _round(c, d, e, f, g, h, a, b, K[r + 14] + w[14])
    e, a = _round(b, c, d, e, f, g, h, a, K[r + 15] + w[15])
    return (a, b, c, d, e, f, g, h)


@_inline
def _next16(w: Any) -> Any:
    """The next 16 words of the message schedule."""
    w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15 = w
    w0 = _expand(w0, w1, w9, w14)
    w1 = _expand(w1, w2, w10, w15)
    w2 = _expand(w2, w3, w11, w0)
    w3 = _expand(w3, w4, w12, w1)
    w4 = _expand(w4, w5, w13, w2)
    w5 = _expand(w5, w6, w14, w3)
    w6 = _expand(w6, w7, w15, w4)
    w7 = _expand(w7, w8, w0, w5)
    w8 = _expand(w8, w9, w1, w6)
    w9 = _expand(w9, w10, w2, w7)
    w10 = _expand(w10, w11, w3, w8)
    w11 = _expand(w11, w12, w4, w9)
    w12 = _expand(w12, w13, w5, w10)
    w13 = _expand(w13, w14, w6, w11)
    w14 = _expand(w14, w15, w7, w12)
    w15 = _expand(w15, w0, w8, w13)
    return (w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15)


@_inline
def compress(s: Any, w: Any) -> Any:
    """SHA-256 compression of the 16-word block `w` into the 8-word state `s`."""
    t = _rounds16(s, w, 0)
    w = _next16(w)
    t = _rounds16(t, w, 16)
    w = _next16(w)
    t = _rounds16(t, w, 32)
    w = _next16(w)
    t = _rounds16(t, w, 48)
    return (
        U32(s[0] + t[0]), U32(s[1] + t[1]), U32(s[2] + t[2]), U32(s[3] + t[3]),
        U32(s[4] + t[4]), U32(s[5] + t[5]), U32(s[6] + t[6]), U32(s[7] + t[7]),
    )  # fmt: skip


@_inline
def bswap(x: Any) -> Any:
    """Byte-swap a 32-bit word (LLVM turns this into one instruction or shuffle)."""
    return U32(((x & 0xFF) << 24) | ((x & 0xFF00) << 8) | ((x >> 8) & 0xFF00) | (x >> 24))


@_inline
def top_word(midstate: Any, tail: Any, nonce: Any) -> Any:
    """The top 32 bits of sha256d(header) read as a little-endian number.

    `midstate` and `tail` come from `sha256_words.work_words`; `nonce` is the header's
    nonce as a number (the header stores it little-endian, SHA reads words big-endian).
    """
    z = U32(0)
    nonce_word = bswap(nonce)
    t0, t1, t2 = tail
    chunk2 = (t0, t1, t2, nonce_word, PAD_WORD, z, z, z, z, z, z, z, z, z, z, HEADER_BITS)
    s = compress(midstate, chunk2)
    s0, s1, s2, s3, s4, s5, s6, s7 = s
    digest1 = (s0, s1, s2, s3, s4, s5, s6, s7, PAD_WORD, z, z, z, z, z, z, DIGEST_BITS)
    return bswap(compress(IV, digest1)[7])


@njit(nogil=True, cache=True)
def scan_kernel(
    midstate: Any, tail: Any, top: Any, nonce_start: int, count: int, hits: Any, ties: Any
) -> tuple[int, int, int]:
    """Scan until the range ends or a buffer may overflow.

    Returns (winners written to `hits`, nonces whose top word ties the target's written
    to `ties`, nonces scanned); the caller resumes after the scanned ones.
    """
    tops = np.empty(LANES, np.uint32)
    end = nonce_start + count
    n_hits = n_ties = 0
    base = nonce_start
    while base < end and n_hits + LANES <= hits.size and n_ties + LANES <= ties.size:
        for lane in range(LANES):  # the vectorized loop: no branches, no calls
            tops[lane] = top_word(midstate, tail, U32(base + lane))
        for lane in range(min(LANES, end - base)):
            if tops[lane] < top:
                hits[n_hits] = base + lane
                n_hits += 1
            elif tops[lane] == top:
                ties[n_ties] = base + lane
                n_ties += 1
        base += LANES
    return n_hits, n_ties, min(base, end) - nonce_start
