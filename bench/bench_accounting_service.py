"""The crediting service's cost per block: a PPLNS window read from the pool's SQLite file.

`crediting.compute_credit` end to end, as the service runs it when a block is first seen on
the chain: read the window's accepted shares newest first from the `shares` table (in chunks),
the exact window (`fastwindow`, numpy), the exact split. The shares are written into a real
pool ledger file (the pool's own migrations) with `--accounts` accounts; the network
difficulty is set so that the window (2 x D) covers ~99% of the `--shares` shares.

References in the same run, on the same file:

* read floor: only `SELECT id, account, difficulty ... ORDER BY id DESC` of the same shares
  (what any exact method must at least read);
* naive SQL: the window edge with `SUM() OVER (ORDER BY id DESC)` and `GROUP BY account` in
  SQLite (floats), then the same exact split.

Figures: medians of `--runs` runs (wall and CPU); ratios = reference / ours.
Run: .venv/bin/python bench/bench_accounting_service.py [--shares 1000000] [--accounts 10000]
     [--runs 5] [--db /tmp/bench-acct.sqlite3]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from hashfarm.accounting.crediting import OpenBlock, compute_credit, format_spec
from hashfarm.accounting.lifecycle import BlockState
from hashfarm.accounting.money import Fee, split_exact
from hashfarm.accounting.schemes import Pplns
from hashfarm.accounting.store import SqlStore, connect
from hashfarm.pool.storage.sqlite import migrate_sqlite as migrate_pool

FEE = Fee.bps(200)
REWARD = 312_500_000 + 23_456_789
SCHEME = Pplns(FEE, Fraction(2))
SQL_WINDOW = """
WITH newest AS (
    SELECT account, difficulty,
           SUM(difficulty) OVER (ORDER BY id DESC ROWS UNBOUNDED PRECEDING) AS upto
    FROM shares WHERE accepted
)
SELECT account, SUM(CASE WHEN upto <= :size THEN difficulty ELSE difficulty - (upto - :size) END)
FROM newest WHERE upto - difficulty < :size GROUP BY account
"""


def write_pool_file(path: Path, shares: int, accounts: int, seed: int) -> float:
    """A pool ledger file with `shares` accepted shares; the network difficulty to use."""
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    rng = random.Random(seed)
    db = sqlite3.connect(path, isolation_level=None)
    migrate_pool(db)
    weights = [1.0 / (k + 1) for k in range(accounts)]  # a few big farms, many small miners
    owners = rng.choices(range(accounts), weights=weights, k=shares)
    diffs = [rng.choice((1024.0, 2048.0, 4096.0, 8192.0)) * rng.uniform(0.5, 2.0) for _ in owners]
    rows = (
        (1.0 + i, f"m{a}.rig", f"m{a}", "j", 1, d, d, 1, None, "00", None)
        for i, (a, d) in enumerate(zip(owners, diffs, strict=True))
    )
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO shares (time, worker, account, job_id, height, difficulty, "
        "share_difficulty, accepted, reject_reason, extranonce1, block_hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.execute("COMMIT")
    db.close()
    return sum(diffs) * 0.99 / 2  # the window of 2 x D covers 99% of the shares


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `runs` calls."""
    walls, cpus = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    """Run the measurements and print one line each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shares", type=int, default=1_000_000)
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--db", type=Path, default=Path("/tmp/bench-acct-service.sqlite3"))
    args = ap.parse_args()
    network = write_pool_file(args.db, args.shares, args.accounts, seed=1)
    sql: SqlStore = connect(f"sqlite:///{args.db}")
    block = OpenBlock(
        "ab" * 32, 1, REWARD, format_spec(SCHEME), BlockState.FOUND, 0, args.shares, 1.0, 0.0, "m0"
    )

    def ours() -> dict[str, int]:
        return compute_credit(sql, block, network)[0].credits

    def read_floor() -> int:
        rows = sql.q(
            "SELECT id, account, difficulty FROM shares WHERE accepted AND id <= ? "
            "ORDER BY id DESC",
            (args.shares,),
        )
        return len(rows)

    def naive_sql() -> dict[str, int]:
        size = float(2 * Fraction(network))
        sums = dict(sql.conn.execute(SQL_WINDOW, {"size": size}).fetchall())
        return split_exact(
            REWARD - FEE.of(REWARD), {a: Fraction(v) for a, v in sums.items() if v > 0}
        )

    credits = ours()
    assert sum(credits.values()) == REWARD - FEE.of(REWARD)
    mine = timed(ours, args.runs)
    floor = timed(read_floor, args.runs)
    naive = timed(naive_sql, args.runs)
    print(f"{args.shares:,} shares, {len(credits):,} accounts credited, {args.runs} runs")
    for label, (wall, cpu) in (
        ("ours: read + exact window + split", mine),
        ("read floor: the SELECT alone", floor),
        ("naive SQL window + GROUP BY", naive),
    ):
        print(
            f"{label:<36} wall {wall * 1e3:8,.0f} ms  CPU {cpu * 1e3:8,.0f} ms  "
            f"ours/this {mine[0] / wall:5.2f} (wall) {mine[1] / cpu:5.2f} (CPU)"
        )
    sql.close()


if __name__ == "__main__":
    main()
