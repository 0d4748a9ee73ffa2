"""Group-commit ledger benchmark: record_share throughput and latency, SQLite and PostgreSQL.

`sessions` concurrent producers each call `record_share` in a loop (a session waits for its
share to be durable before the next, as the pool does before acknowledging). Reported per
configuration: shares/s, p50/p99 latency of record_share, shares per commit. Reference in the
same run: the same ledger with batch_max=1 (one share per transaction), i.e. what the
ledger would cost without group commit.

Run: .venv/bin/python bench/bench_pool_ledger.py [--sessions 64] [--seconds 2] [--pg URL]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hashfarm.pool.records import ShareRecord
from hashfarm.pool.storage import GroupCommitLedger
from hashfarm.pool.storage.postgres import PostgresLedger
from hashfarm.pool.storage.sqlite import SQLiteLedger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import percentile


def share(n: int) -> ShareRecord:
    return ShareRecord("bench.rig", "bench", f"{n % 97:x}", 800_000, 1e-3, 2e-3 + n, True, None,
                       time.time(), "0a0b0c0d", None)  # fmt: skip


async def drive(ledger: GroupCommitLedger, sessions: int, seconds: float) -> dict[str, float]:
    """Closed-loop producers for `seconds`; rate, latency percentiles, shares per commit."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def session(k: int) -> None:
        n = k
        while time.perf_counter() < stop:
            t = time.perf_counter()
            await ledger.record_share(share(n))
            latencies.append(time.perf_counter() - t)
            n += sessions

    await ledger.start()
    start = time.perf_counter()
    await asyncio.gather(*(session(k) for k in range(sessions)))
    wall = time.perf_counter() - start
    per_commit = ledger.records_committed / max(ledger.batches_committed, 1)
    await ledger.close()
    return {"rate": len(latencies) / wall, "p50": percentile(latencies, 0.5) * 1e3,
            "p99": percentile(latencies, 0.99) * 1e3, "batch": per_commit}  # fmt: skip


def line(label: str, r: dict[str, float], reference: float) -> str:
    return (
        f"{label:38s} {r['rate']:8,.0f} shares/s  p50 {r['p50']:6.2f} ms  p99 "
        f"{r['p99']:6.2f} ms  {r['batch']:6.1f}/commit  x{r['rate'] / reference:,.0f} vs "
        "one-per-transaction"
    )


async def compare(
    label: str, make: Callable[..., GroupCommitLedger], args: argparse.Namespace
) -> None:
    """The ledger at batch_max=1 (one share per transaction: the reference), then grouped."""
    ref_runs = [await drive(make(batch_max=1, batch_wait=0.0), args.sessions, args.seconds)
                for _ in range(args.runs)]  # fmt: skip
    ref = statistics.median(r["rate"] for r in ref_runs)
    print(f"{label}: one share per transaction (reference) {ref:,.0f} shares/s")
    for wait in (0.0, 0.001, 0.005):
        runs = [await drive(make(batch_max=512, batch_wait=wait), args.sessions, args.seconds)
                for _ in range(args.runs)]  # fmt: skip
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(line(f"  group commit, batch_wait {wait * 1e3:g} ms", med, ref))


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        names = (f"{tmp}/{i}.sqlite3" for i in itertools.count())
        for sync in ("FULL", "NORMAL"):

            def make(sync: str = sync, **kw: float) -> GroupCommitLedger:
                return SQLiteLedger(next(names), synchronous=sync, **kw)  # type: ignore[arg-type]

            await compare(f"SQLite WAL synchronous={sync}", make, args)
    if args.pg:
        await compare("PostgreSQL", lambda **kw: PostgresLedger(args.pg, **kw), args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", help="postgresql://... of an empty database (optional)")
    asyncio.run(main(parser.parse_args()))
