"""The crediting service's cost per block: a PPLNS window read from the pool's SQLite file.

`crediting.compute_credit` end to end, as the service runs it when a block is first seen on
the chain: read the window's accepted shares from the `shares` table (`windowread`: one
aggregate row per id range), the exact window (`fastwindow`, numpy), the exact split. The
shares are written into a real pool ledger file (the pool's own migrations) with
`--accounts` accounts and vardiff-like difficulties (every share a different float); the
network difficulty is set so that the window (2 x D) covers ~99% of the `--shares` shares.

References in the same run, on the same file, interleaved run by run (a loaded machine
slows them alike), each checked to give the same credits to the satoshi where exact:

* previous: the code before this pass: the row read (`windowread._row_window`, a Python
  tuple per share, chunks of 100,000) and the previous `split_exact`
  (`accounting_previous.py`, a big-integer divmod per key);
* read floor of the previous way: only `SELECT id, account, difficulty ... ORDER BY id DESC`;
* naive SQL: the window edge with `SUM() OVER (ORDER BY id DESC)` and `GROUP BY account` in
  SQLite (floats), then the exact split (its float sums move some satoshis: printed).

Figures: medians of `--runs` runs (wall and CPU); ratios = reference / ours.
Run: taskset -c 1 .venv/bin/python bench/bench_accounting_service.py [--shares 1000000]
     [--accounts 10000] [--runs 5] [--db /tmp/bench-acct.sqlite3] [--keep]
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

from accounting_previous import PREVIOUS_CHUNK
from accounting_previous import split_exact as previous_split
from hashfarm.accounting.crediting import OpenBlock, compute_credit, format_spec
from hashfarm.accounting.lifecycle import BlockState
from hashfarm.accounting.money import Fee, split_exact
from hashfarm.accounting.schemes import Pplns
from hashfarm.accounting.store import SqlStore, connect
from hashfarm.accounting.window import window_size
from hashfarm.accounting.windowread import _row_window
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


def timed(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds of `runs` calls of each, interleaved run by run."""
    walls: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            walls[name].append(time.perf_counter() - w)
            cpus[name].append(time.process_time() - c)
    return {k: (statistics.median(walls[k]), statistics.median(cpus[k])) for k in fns}


def main() -> None:
    """Run the measurements and print one line each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shares", type=int, default=1_000_000)
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--db", type=Path, default=Path("/tmp/bench-acct-service.sqlite3"))
    ap.add_argument("--keep", action="store_true", help="reuse --db if it exists")
    args = ap.parse_args()
    if args.keep and args.db.is_file():  # a file an earlier run wrote with the same flags
        with sqlite3.connect(args.db) as db:
            network = db.execute("SELECT sum(difficulty) FROM shares").fetchone()[0] * 0.99 / 2
    else:
        network = write_pool_file(args.db, args.shares, args.accounts, seed=1)
    sql: SqlStore = connect(f"sqlite:///{args.db}")
    block = OpenBlock(
        "ab" * 32, 1, REWARD, format_spec(SCHEME), BlockState.FOUND, 0, args.shares, 1.0, 0.0, "m0"
    )

    def ours() -> dict[str, int]:
        return compute_credit(sql, block, network)[0].credits

    def previous() -> dict[str, int]:
        size = window_size(SCHEME.factor, network)
        window = _row_window(sql, -1, args.shares, size, PREVIOUS_CHUNK)
        return previous_split(REWARD - FEE.of(REWARD), window.weights)

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
    if previous() != credits:
        raise SystemExit("MISMATCH: the previous implementation credits differently")
    naive = naive_sql()
    moved = sum(abs(naive.get(a, 0) - v) for a, v in credits.items())
    got = timed(
        {
            "ours: read + exact window + split": ours,
            "previous: row read + previous split": previous,
            "previous read floor: the SELECT": read_floor,
            "naive SQL window + GROUP BY": naive_sql,
        },
        args.runs,
    )
    print(f"{args.shares:,} shares, {len(credits):,} accounts credited, {args.runs} runs")
    mine = got["ours: read + exact window + split"]
    for label, (wall, cpu) in got.items():
        print(
            f"{label:<38} wall {wall * 1e3:8,.0f} ms  CPU {cpu * 1e3:8,.0f} ms  "
            f"this/ours {wall / mine[0]:5.2f} (wall) {cpu / mine[1]:5.2f} (CPU)"
        )
    print(f"previous credits identical to ours: yes; naive SQL floats move {moved:,} sats")
    sql.close()


if __name__ == "__main__":
    main()
