"""The one small interface every hashing backend offers, and the registry that builds them.

A backend scans a range of nonces of one work unit (a 76-byte header prefix) against a
target and returns every winning nonce. The `hashlib` backend is the reference; the fast
ones (`numba`, `cuda`) are always tested against it. Backends load lazily by name so that
`hashfarm bench --backend hashlib` never pays for numba, and only `gpu*` modules touch GPU
libraries.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Protocol, runtime_checkable

from hashfarm.chain.hashes import sha256d
from hashfarm.chain.pow import MAX_TARGET, meets_target
from hashfarm.errors import ConfigError

from .sha256_words import HEADER76_SIZE

__all__ = [
    "BACKENDS",
    "MAX_TARGET",
    "NONCE_SPACE",
    "Backend",
    "available_backends",
    "check_scan_args",
    "get_backend",
    "is_winner",
    "scan_in_slices",
    "split_range",
]

NONCE_SPACE = 1 << 32  # a header nonce is a 32-bit field
_NONCE = struct.Struct("<I")

# name -> "module:factory"; a factory takes `threads` and returns a Backend or raises
# ConfigError saying why it cannot run here (library missing, no GPU).
BACKENDS: dict[str, str] = {
    "hashlib": "hashfarm.miner.backends.hashlib_backend:create",
    "numba": "hashfarm.miner.backends.numba_backend:create",
    "cuda": "hashfarm.miner.backends.gpu_cuda:create",
}
EXTRAS: dict[str, str] = {"numba": "numba", "cuda": "cuda"}  # backend -> the pip extra it needs


@runtime_checkable
class Backend(Protocol):
    """A hashing backend: finds the nonces of a work unit whose header meets a target."""

    name: str

    def scan(self, header76: bytes, nonce_start: int, count: int, target: int) -> list[int]:
        """All nonces n in [nonce_start, nonce_start + count), ascending, such that
        sha256d(header76 + n as 4 little-endian bytes), read as a little-endian number,
        is <= target."""
        ...

    def close(self) -> None:
        """Release worker threads or processes; the backend is not used afterwards."""
        ...


def check_scan_args(header76: bytes, nonce_start: int, count: int, target: int) -> None:
    """Raise ValueError naming the argument when a scan request is malformed."""
    if len(header76) != HEADER76_SIZE:
        raise ValueError(f"header76 must be {HEADER76_SIZE} bytes, got {len(header76)}")
    if not 0 <= nonce_start < NONCE_SPACE:
        raise ValueError(f"nonce_start {nonce_start} is outside the 32-bit nonce space")
    if count < 0 or nonce_start + count > NONCE_SPACE:
        raise ValueError(f"count {count} from nonce {nonce_start} leaves the 32-bit nonce space")
    if not 0 <= target <= MAX_TARGET:
        raise ValueError(f"target {target:#x} is not a 256-bit unsigned number")


def is_winner(header76: bytes, nonce: int, target: int) -> bool:
    """The reference check of one nonce: the full double SHA-256 compared with the target."""
    return meets_target(sha256d(header76 + _NONCE.pack(nonce)), target)


def split_range(nonce_start: int, count: int, parts: int) -> Iterator[tuple[int, int]]:
    """Cut [nonce_start, nonce_start + count) into at most `parts` contiguous (start, count)
    pieces of near-equal size, in order, none of them empty."""
    base, extra = divmod(count, parts)
    start = nonce_start
    for i in range(parts):
        size = base + (1 if i < extra else 0)
        if size:
            yield start, size
            start += size


ScanSlice = Callable[[bytes, int, int, int], list[int]]  # (header76, start, count, target)


def scan_in_slices(
    pool: Executor, scan_slice: ScanSlice, header76: bytes, nonce_start: int, count: int,
    target: int, parts: int,
) -> list[int]:  # fmt: skip
    """Scan the range as up to `parts` contiguous slices on `pool`; the winners, ascending."""
    futures = [
        pool.submit(scan_slice, header76, start, size, target)
        for start, size in split_range(nonce_start, count, parts)
    ]
    return [nonce for future in futures for nonce in future.result()]


def get_backend(name: str, threads: int = 1) -> Backend:
    """Build the backend called `name` that hashes with `threads` workers.

    Raises ConfigError naming the backend when it is unknown or cannot run on this machine.
    """
    target = BACKENDS.get(name)
    if target is None:
        known = ", ".join(BACKENDS)
        raise ConfigError(f"backend: unknown hashing backend {name!r} (known: {known})")
    if threads < 1:
        raise ConfigError(f"threads: must be at least 1, got {threads}")
    module_name, factory = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # the optional extra is not installed
        if (exc.name or "").startswith("hashfarm"):
            raise  # our own module is missing: a broken install, not a missing extra
        hint = f": pip install 'hashfarm[{EXTRAS[name]}]'" if name in EXTRAS else ""
        raise ConfigError(
            f"backend: {name!r} needs {exc.name or 'a missing library'}, "
            f"which is not installed{hint}"
        ) from exc
    backend: Backend = getattr(module, factory)(threads)
    return backend


def available_backends() -> list[str]:
    """Names of the backends that can run here (their libraries import, their device exists)."""
    names = []
    for name in BACKENDS:
        try:
            backend = get_backend(name)
        except ConfigError:
            continue
        backend.close()
        names.append(name)
    return names
