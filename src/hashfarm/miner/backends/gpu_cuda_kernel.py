"""CUDA C source of the GPU scan kernel (compiled at run time by NVRTC through CuPy).

Kept as plain C so that it can also be compiled for the CPU by the tests, with a small
header standing in for the CUDA intrinsics: the same arithmetic is then checked against
the hashlib reference on machines without a GPU.

Each thread hashes `per_thread` consecutive nonces. Within its loop the first three rounds
of the second chunk and the first schedule words do not depend on the nonce, so the
compiler hoists them; the second hash is reduced to the one word that decides (the last
three rounds are dead code and vanish). Winners go to a small buffer through atomics:

    out[0] = winners found, out[1] = ties found (top word equal to the target's: the host
    settles them), out[2 : 2+capacity] = winners, out[2+capacity : 2+2*capacity] = ties.

Counts keep growing past `capacity`, so the host knows when to run the range again with
a buffer big enough.
"""

from __future__ import annotations

from collections.abc import Sequence

from .sha256_words import IV, K

__all__ = ["KERNEL_NAME", "KERNEL_SOURCE"]

KERNEL_NAME = "sha256d_scan"

# The round constants and the initial state come from sha256_words (one copy in the
# project), written into the C source as hex literals where @K@ and @IV@ stand.
_TEMPLATE = r"""
typedef unsigned int u32;
typedef unsigned long long u64;

__constant__ u32 K[64] = {@K@};

__device__ __forceinline__ u32 rotr(u32 x, u32 n) { return __funnelshift_r(x, x, n); }
__device__ __forceinline__ u32 bswap(u32 x) { return __byte_perm(x, 0, 0x0123); }
__device__ __forceinline__ u32 big_s0(u32 a) { return rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22); }
__device__ __forceinline__ u32 big_s1(u32 e) { return rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25); }
__device__ __forceinline__ u32 small_s0(u32 w) { return rotr(w, 7) ^ rotr(w, 18) ^ (w >> 3); }
__device__ __forceinline__ u32 small_s1(u32 w) { return rotr(w, 17) ^ rotr(w, 19) ^ (w >> 10); }
__device__ __forceinline__ u32 ch(u32 e, u32 f, u32 g) { return g ^ (e & (f ^ g)); }
__device__ __forceinline__ u32 maj(u32 a, u32 b, u32 c) { return (a & b) | (c & (a | b)); }

/* SHA-256 compression of the 16 words w (overwritten: the schedule rolls in place) into s. */
__device__ __forceinline__ void compress(u32 s[8], u32 w[16]) {
    u32 a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
#pragma unroll
    for (int i = 0; i < 64; ++i) {
        if (i >= 16) {
            w[i & 15] += small_s0(w[(i + 1) & 15]) + w[(i + 9) & 15] + small_s1(w[(i + 14) & 15]);
        }
        u32 t1 = h + big_s1(e) + ch(e, f, g) + K[i] + w[i & 15];
        u32 t2 = big_s0(a) + maj(a, b, c);
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
}

extern "C" __global__ void sha256d_scan(
    u32 m0, u32 m1, u32 m2, u32 m3, u32 m4, u32 m5, u32 m6, u32 m7,  /* midstate */
    u32 t0, u32 t1, u32 t2,                                          /* words 0-2 of chunk 2 */
    u32 top, u32 nonce_start, u64 count, u32 per_thread, u32 capacity, u32* __restrict__ out) {
    u64 first = ((u64)blockIdx.x * blockDim.x + threadIdx.x) * per_thread;
    for (u32 k = 0; k < per_thread && first + k < count; ++k) {
        u32 nonce = nonce_start + (u32)(first + k);
        u32 s[8] = {m0, m1, m2, m3, m4, m5, m6, m7};
        u32 w[16] = {t0, t1, t2, bswap(nonce), 0x80000000u, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 640};
        compress(s, w);
        u32 h[8] = {@IV@};
        u32 w2[16] = {s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
                      0x80000000u, 0, 0, 0, 0, 0, 0, 256};
        compress(h, w2);
        u32 v = bswap(h[7]);  /* the hash's top 32 bits, read as a little-endian number */
        if (v <= top) {
            u32 which = (v == top);  /* 0: winner, 1: tie for the host to settle */
            u32 slot = atomicAdd(&out[which], 1u);
            if (slot < capacity) out[2 + which * capacity + slot] = nonce;
        }
    }
}
"""


def _c_words(words: Sequence[int]) -> str:
    """32-bit words as a C initializer list, eight to a line."""
    lines = (", ".join(f"0x{w:08x}" for w in words[i : i + 8]) for i in range(0, len(words), 8))
    return "\n    " + ",\n    ".join(lines)


KERNEL_SOURCE = _TEMPLATE.replace("@K@", _c_words(K)).replace("@IV@", _c_words(IV))
