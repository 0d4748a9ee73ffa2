"""Hashrate of the miner's hashing backends, each beside a reference measured in the same run.

The reference is raw hashlib on one thread: `sha256(sha256(header80).digest()).digest()` over
pre-built 80-byte headers, no midstate, no target check: what any Python code gets for free.
Each run measures the reference and then every backend (1 thread, and one per core), so a
busy machine slows both sides alike; the figures are medians over `--runs` runs.

Run: .venv/bin/python bench/bench_hashing.py [--runs 5] [--seconds 2] [--backends hashlib,numba]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time

from hashfarm.miner.backends import available_backends, get_backend
from hashfarm.miner.backends.benchmark import GENESIS_HEADER76, calibrate_chunk, measure
from hashfarm.units import format_hashrate

REFERENCE_HEADERS = 200_000  # 80-byte headers hashed per reference measurement


def reference_rate(count: int = REFERENCE_HEADERS) -> float:
    """Raw hashlib double SHA-256 of full 80-byte headers, hashes per second (1 thread)."""
    headers = [GENESIS_HEADER76 + n.to_bytes(4, "little") for n in range(count)]
    sha = hashlib.sha256
    started = time.perf_counter()
    for header in headers:
        sha(sha(header).digest()).digest()
    return count / (time.perf_counter() - started)


def configurations(names: list[str]) -> list[tuple[str, int]]:
    """(backend, threads) pairs: one thread, and one per core where the backend uses cores."""
    cores = os.cpu_count() or 1
    pairs = []
    for name in names:
        pairs.append((name, 1))
        if name != "cuda" and cores > 1:
            pairs.append((name, cores))
    return pairs


def run(names: list[str], runs: int, seconds: float) -> None:
    """Measure every configuration `runs` times, interleaved with the reference, and print."""
    pairs = configurations(names)
    backends = {pair: get_backend(pair[0], pair[1]) for pair in pairs}
    chunks = {pair: calibrate_chunk(backend) for pair, backend in backends.items()}
    rates: dict[tuple[str, int], list[float]] = {pair: [] for pair in pairs}
    references = []
    for _ in range(runs):
        references.append(reference_rate())
        for pair, backend in backends.items():
            sample = measure(backend, seconds, pair[1], chunks[pair])
            rates[pair].append(sample.hashes_per_second)
    for backend in backends.values():
        backend.close()
    report(rates, statistics.median(references), runs, seconds)


def report(
    rates: dict[tuple[str, int], list[float]], reference: float, runs: int, seconds: float
) -> None:
    """Print the medians and their ratio to the reference."""
    print(f"hashing backends: medians of {runs} runs of {seconds:g} s, {os.cpu_count()} cores")
    print(f"  reference: raw hashlib sha256d(header80), 1 thread: {format_hashrate(reference)}")
    print(f"  {'backend':8} {'threads':>7} {'total':>12} {'per thread':>12} {'ratio/thread':>13}")
    for (name, threads), values in rates.items():
        total = statistics.median(values)
        per_thread = total / threads
        print(
            f"  {name:8} {threads:>7} {format_hashrate(total):>12} "
            f"{format_hashrate(per_thread):>12} {per_thread / reference:>12.2f}x"
        )


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per configuration")
    parser.add_argument("--seconds", type=float, default=2.0, help="hashing time per run")
    parser.add_argument("--backends", default="", help="comma-separated (default: all here)")
    args = parser.parse_args()
    names = args.backends.split(",") if args.backends else available_backends()
    run(names, args.runs, args.seconds)


if __name__ == "__main__":
    main()
