"""Measure a backend's hashrate: what `hashfarm bench` and bench/bench_hashing.py report.

The backend scans nonces of a real header (the genesis block's) against the difficulty-1
target, so the kernels take their usual early-rejection path. A warm-up run (numba loads or
compiles its kernel, worker processes start, the GPU builds its module) and a chunk-size
calibration come first and are not counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hashfarm.chain import DIFF1_TARGET
from hashfarm.units import HashesPerSecond

from .base import NONCE_SPACE, Backend

__all__ = ["GENESIS_HEADER76", "HashrateSample", "calibrate_chunk", "measure"]

# Version..bits of the mainnet genesis block header (its nonce was 0x7c2bac1d).
GENESIS_HEADER76 = bytes.fromhex(
    "01000000" + "00" * 32
    + "3ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a"
    + "29ab5f49" + "ffff001d"
)  # fmt: skip
WARMUP_CHUNK = 1 << 12  # nonces of the very first (uncounted) scan
CHUNK_SECONDS = 0.05  # calibrate a scan to last at least this long, so call overhead is noise
MAX_CHUNK = 1 << 30  # nonces per scan at most (a fast GPU still returns often)


@dataclass(frozen=True)
class HashrateSample:
    """One measurement: `hashes` double SHA-256 computed in `seconds` of wall time, while
    this process used `cpu_seconds` of CPU (its threads included, worker processes not)."""

    backend: str
    threads: int
    seconds: float
    hashes: int
    cpu_seconds: float

    @property
    def hashes_per_second(self) -> HashesPerSecond:
        """Total rate over all workers."""
        return HashesPerSecond(self.hashes / self.seconds)

    @property
    def hashes_per_second_per_thread(self) -> HashesPerSecond:
        """Total rate divided by the number of workers."""
        return HashesPerSecond(self.hashes_per_second / self.threads)

    @property
    def hashes_per_cpu_second(self) -> float:
        """Hashes per second of this process's CPU time: the per-core speed, even on a
        machine that other jobs keep busy (meaningless when workers are other processes)."""
        return self.hashes / self.cpu_seconds if self.cpu_seconds else 0.0


def _timed_scan(backend: Backend, nonce_start: int, count: int) -> float:
    started = time.perf_counter()
    backend.scan(GENESIS_HEADER76, nonce_start, count, DIFF1_TARGET)
    return time.perf_counter() - started


def calibrate_chunk(backend: Backend) -> int:
    """Warm the backend up and return a chunk size whose scan takes >= CHUNK_SECONDS."""
    _timed_scan(backend, 0, WARMUP_CHUNK)
    chunk = WARMUP_CHUNK
    while chunk < MAX_CHUNK and _timed_scan(backend, 0, chunk) < CHUNK_SECONDS:
        chunk *= 2
    return chunk


def measure(backend: Backend, seconds: float, threads: int = 1, chunk: int = 0) -> HashrateSample:
    """Hash for about `seconds` after a warm-up; `threads` is the backend's worker count
    (for the per-thread figure); `chunk` 0 means calibrate it first."""
    chunk = chunk or calibrate_chunk(backend)
    hashes, nonce = 0, 0
    started, cpu_started = time.perf_counter(), time.process_time()
    elapsed = 0.0
    while elapsed < seconds:
        if nonce + chunk > NONCE_SPACE:
            nonce = 0
        backend.scan(GENESIS_HEADER76, nonce, chunk, DIFF1_TARGET)
        hashes += chunk
        nonce += chunk
        elapsed = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    return HashrateSample(backend.name, threads, elapsed, hashes, cpu_seconds)
