"""Micro-benchmark of hashfarm.chain on real data, each figure beside a reference from the
same run (medians over several runs, so a busy machine shifts both sides alike).

1. Parse the 2020-transaction mainnet block 481829 and compute its merkle root; the
   reference is the hashing floor: sha256d of every transaction's bytes (sliced in advance)
   plus the same merkle tree, i.e. all the hashing and none of the parsing.
2. Header hashing (the pool's hot path): `sha256d(header80)` and `BlockHeader.hash()`
   against a raw inline `hashlib.sha256(hashlib.sha256(b).digest()).digest()`.

Run: .venv/bin/python bench/bench_chain.py [--runs 7] [--hashes 200000]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hashfarm.chain import Block, BlockHeader, merkle_root, sha256d

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from realdata import load_block_bytes

BLOCK = "mainnet-481829"


def medians(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median wall time of each function; the functions take turns within every round, so a
    load spike on this machine hits the figure and its reference alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_block(runs: int) -> None:
    """Parse + merkle root vs the hashing floor of the same block."""
    raw = load_block_bytes(BLOCK)
    parsed = Block.parse(raw)
    tx_bytes = [tx.serialize(witness=False) for tx in parsed.transactions]

    def ours() -> bytes:
        return Block.parse(raw).compute_merkle_root()

    def floor() -> bytes:
        return merkle_root([hashlib.sha256(hashlib.sha256(b).digest()).digest() for b in tx_bytes])

    assert ours() == floor() == parsed.header.merkle_root
    t = medians({"parse": lambda: Block.parse(raw), "ours": ours, "floor": floor}, runs)
    t_parse, t_ours, t_floor = t["parse"], t["ours"], t["floor"]
    print(f"block {BLOCK}: {len(raw):,} bytes, {len(parsed.transactions)} txs")
    print(f"  parse                     {t_parse * 1e3:8.2f} ms")
    print(f"  parse + merkle root       {t_ours * 1e3:8.2f} ms")
    print(f"  reference: hashing only   {t_floor * 1e3:8.2f} ms   ratio {t_ours / t_floor:5.2f}x")


def bench_headers(runs: int, count: int) -> None:
    """Header hashes per second through our API vs raw hashlib, same headers."""
    header = Block.parse(load_block_bytes(BLOCK)).header
    prefix = header.serialize()[:76]
    headers = [prefix + n.to_bytes(4, "little") for n in range(count)]
    objects = [BlockHeader.parse(h) for h in headers[: count // 10]]
    sha = hashlib.sha256

    def raw() -> None:
        for h in headers:
            sha(sha(h).digest()).digest()

    def ours() -> None:
        for h in headers:
            sha256d(h)

    def via_object() -> None:
        for obj in objects:
            obj.hash()

    t = medians({"raw": raw, "ours": ours, "object": via_object}, runs)
    t_raw, t_ours, t_obj = t["raw"], t["ours"], t["object"] * 10  # object: scaled to `count`
    print(f"header hashing, {count:,} headers:")
    print(f"  reference: raw hashlib    {count / t_raw / 1e6:6.3f} MH/s")
    for name, secs in (("chain.sha256d(header80)", t_ours), ("BlockHeader.hash()", t_obj)):
        print(f"  {name:<25} {count / secs / 1e6:6.3f} MH/s   ratio {secs / t_raw:5.2f}x")


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per figure (median)")
    parser.add_argument("--hashes", type=int, default=200_000, help="headers per hashing run")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, medians of {args.runs} runs")
    bench_block(args.runs)
    bench_headers(args.runs, args.hashes)


if __name__ == "__main__":
    main()
