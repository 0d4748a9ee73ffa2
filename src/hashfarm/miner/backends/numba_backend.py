"""The fast CPU backend: SHA-256d compiled by numba, many nonces per SIMD instruction.

Per work unit the midstate is computed once (`sha256_words.work_words`). The kernel hashes
16 nonces per loop iteration (vectorized by LLVM, see `numba_sha256.scan_kernel`), keeps only the
top word of each hash and compares it with the target's top word: a smaller word is a
winner, a larger one a loser, and an equal one (about one nonce in 2**32) is settled by
the hashlib reference. The kernel releases the GIL (`nogil=True`), so `threads` workers
scan slices of the range in parallel threads of this process; it is compiled once and then
loaded from numba's on-disk cache (`cache=True`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .base import check_scan_args, is_winner, scan_in_slices
from .numba_sha256 import U32, scan_kernel
from .sha256_words import target_top_word, work_words

__all__ = ["NumbaBackend", "create"]

BUFFER = 1 << 16  # winners the kernel may report per call before it returns to Python


class NumbaBackend:
    """SHA-256d scanner compiled with numba; `threads` worker threads share each range."""

    name = "numba"

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def scan(self, header76: bytes, nonce_start: int, count: int, target: int) -> list[int]:
        """All winning nonces of the range, ascending (see `Backend.scan`)."""
        check_scan_args(header76, nonce_start, count, target)
        if self._pool is None:
            return self._scan_slice(header76, nonce_start, count, target)
        return scan_in_slices(
            self._pool, self._scan_slice, header76, nonce_start, count, target, self.threads
        )

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    @staticmethod
    def _scan_slice(header76: bytes, nonce_start: int, count: int, target: int) -> list[int]:
        words = work_words(header76)
        midstate = tuple(U32(x) for x in words.midstate)
        tail = tuple(U32(x) for x in words.tail)
        top = U32(target_top_word(target))
        hits = np.empty(BUFFER, np.uint32)
        ties = np.empty(BUFFER, np.uint32)
        found: list[int] = []
        while count > 0:
            n_hits, n_ties, done = scan_kernel(midstate, tail, top, nonce_start, count, hits, ties)
            found += hits[:n_hits].tolist()
            found += [n for n in ties[:n_ties].tolist() if is_winner(header76, n, target)]
            nonce_start, count = nonce_start + done, count - done
        return sorted(found)


def create(threads: int) -> NumbaBackend:
    """Factory used by `get_backend("numba", threads)`."""
    return NumbaBackend(threads)
