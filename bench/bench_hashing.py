"""Hashrate of the miner's hashing backends, each beside a reference measured in the same run.

The reference is raw hashlib on one thread: `sha256(sha256(header80).digest()).digest()` over
pre-built 80-byte headers, no midstate, no target check: what any Python code gets for free.
Each run measures the reference and then every backend (1 thread, and one per core), so a
busy machine slows both sides alike; the figures are medians over `--runs` runs. The last
column divides by this process's CPU time instead of wall time: the speed of one core even
when other jobs share the machine (shown where the hashing runs in this process).

Run: .venv/bin/python bench/bench_hashing.py [--runs 5] [--seconds 2] [--backends hashlib,numba]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time

from hashfarm.miner.backends import available_backends, get_backend
from hashfarm.miner.backends.benchmark import (
    GENESIS_HEADER76,
    HashrateSample,
    calibrate_chunk,
    measure,
)
from hashfarm.units import format_hashrate

REFERENCE_HEADERS = 200_000  # 80-byte headers hashed per reference measurement


def reference_rate(count: int = REFERENCE_HEADERS) -> tuple[float, float]:
    """Raw hashlib double SHA-256 of full 80-byte headers on 1 thread: hashes per second of
    wall time and per second of CPU time."""
    headers = [GENESIS_HEADER76 + n.to_bytes(4, "little") for n in range(count)]
    sha = hashlib.sha256
    started, cpu_started = time.perf_counter(), time.process_time()
    for header in headers:
        sha(sha(header).digest()).digest()
    return count / (time.perf_counter() - started), count / (time.process_time() - cpu_started)


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
    samples: dict[tuple[str, int], list[HashrateSample]] = {pair: [] for pair in pairs}
    references = []
    for _ in range(runs):
        references.append(reference_rate())
        for pair, backend in backends.items():
            samples[pair].append(measure(backend, seconds, pair[1], chunks[pair]))
    for backend in backends.values():
        backend.close()
    wall = statistics.median(r[0] for r in references)
    cpu = statistics.median(r[1] for r in references)
    report(samples, (wall, cpu), runs, seconds)


def in_process(name: str, threads: int) -> bool:
    """Whether the hashing runs on this process's CPU time (hashlib's workers are processes,
    and the GPU's time is not CPU time)."""
    return name == "numba" or (name == "hashlib" and threads == 1)


def report(
    samples: dict[tuple[str, int], list[HashrateSample]],
    reference: float,
    runs: int,
    seconds: float,
) -> None:
    """Print the medians and their ratio to the reference."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"hashing backends: medians of {runs} runs of {seconds:g} s; {os.cpu_count()} cores,")
    print(f"  load average {load}")
    wall, cpu = (format_hashrate(r) for r in reference)
    print(f"  reference: raw hashlib sha256d(header80), 1 thread: {wall} ({cpu} per CPU-second)")
    head = f"{'backend':8} {'threads':>7} {'total':>11} {'per thread':>11} {'ratio':>7}"
    print(f"  {head} {'per CPU-second':>15} {'ratio':>7}")
    for (name, threads), runs_of in samples.items():
        total = statistics.median(s.hashes_per_second for s in runs_of)
        per_thread = total / threads
        per_cpu = statistics.median(s.hashes_per_cpu_second for s in runs_of)
        cpu, cpu_ratio = "-", "-"
        if in_process(name, threads):
            cpu, cpu_ratio = format_hashrate(per_cpu), f"{per_cpu / reference[1]:.2f}x"
        print(
            f"  {name:8} {threads:>7} {format_hashrate(total):>11} "
            f"{format_hashrate(per_thread):>11} {per_thread / reference[0]:>6.2f}x "
            f"{cpu:>15} {cpu_ratio:>7}"
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
