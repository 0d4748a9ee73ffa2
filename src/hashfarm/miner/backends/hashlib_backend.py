"""The reference backend: hashlib's SHA-256 (OpenSSL), portable and obviously right.

The first 64 header bytes are absorbed once per scan and the hash object is copied per
nonce (`sha256().copy()` carries the midstate), so each nonce costs one compression for
the second chunk plus one for the second SHA-256. hashlib holds the GIL for inputs this
small, so `threads > 1` means worker processes, each scanning one slice of the range.
"""

from __future__ import annotations

import multiprocessing
import struct
from concurrent.futures import Executor, ProcessPoolExecutor
from hashlib import sha256

from .base import check_scan_args, scan_in_slices

__all__ = ["HashlibBackend", "create", "scan_range"]

_NONCE = struct.Struct("<I")


def scan_range(header76: bytes, nonce_start: int, count: int, target: int) -> list[int]:
    """Scan one contiguous slice in this process (arguments already checked)."""
    # The hash object of the 76 bytes holds the midstate of the first 64 and buffers the
    # other 12, so each copy needs only the nonce to finish the header.
    copy, pack, number = sha256(header76).copy, _NONCE.pack, int.from_bytes
    found = []
    for nonce in range(nonce_start, nonce_start + count):
        h = copy()
        h.update(pack(nonce))
        if number(sha256(h.digest()).digest(), "little") <= target:
            found.append(nonce)
    return found


class HashlibBackend:
    """Reference SHA-256d scanner over hashlib, in-process or over `threads` processes."""

    name = "hashlib"

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._pool: Executor | None = None

    def scan(self, header76: bytes, nonce_start: int, count: int, target: int) -> list[int]:
        """All winning nonces of the range, ascending (see `Backend.scan`)."""
        check_scan_args(header76, nonce_start, count, target)
        if self.threads == 1:
            return scan_range(header76, nonce_start, count, target)
        return scan_in_slices(
            self._executor(), scan_range, header76, nonce_start, count, target, self.threads
        )

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _executor(self) -> Executor:
        if self._pool is None:
            # spawn, not fork: the miner calling us runs threads and an event loop.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.threads, mp_context=context)
        return self._pool


def create(threads: int) -> HashlibBackend:
    """Factory used by `get_backend("hashlib", threads)`."""
    return HashlibBackend(threads)
