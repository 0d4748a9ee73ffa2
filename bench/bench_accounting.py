"""Accounting hot paths: crediting a block over a big PPLNS/TIDES window, building a TIDES coinbase.

1. Credit one block over a window of `--shares` shares from `--accounts` accounts:
   `fastwindow.fast_pplns_window` (exact, numpy) + `money.split_exact` (exact satoshis).
   Reference in the same run: the naive SQL way on the same data, SQLite in memory: the window
   edge with a `SUM() OVER (ORDER BY id DESC)` window function, then `GROUP BY account`,
   then the same exact split of the (float) sums. Both exclude loading the data; ratio =
   SQL median / ours. Unless `--no-check`, the pure-Python `window.pplns_window` (one
   `Fraction` per share) is run once and must give exactly the same weights and credits.
2. Build the coinbase of a TIDES job: `tides.plan_coinbase` over `--outputs - 1` and
   `--accounts` random integer weights, and over the TIDES window of part 1 as `Window` holds
   it (Fraction weights) and as `FastWindow` holds it (integers over one denominator: the
   same plan), bounded to `--outputs` outputs; then `chain.build_coinbase` with P2WPKH
   outputs and a witness commitment. Interleaved in the same runs: the plan alone, and the
   plan with the previous `split_exact` (`accounting_previous.py`), which must be identical.
   The issue's budget: it must not delay the new-tip notify by more than 5 ms.

Figures are medians of `--runs` runs, on one core (numpy's sort/bincount are single-threaded).
Run: .venv/bin/python bench/bench_accounting.py [--shares 1000000] [--accounts 10000]
     [--runs 5] [--outputs 500] [--no-check]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from accounting_previous import split_exact as previous_split
from hashfarm.accounting import Fee, FoundBlock, Share, Tides, plan_coinbase, tides
from hashfarm.accounting.fastwindow import fast_pplns_window
from hashfarm.accounting.money import split_exact
from hashfarm.accounting.schemes import BlockCredit, credit_weights
from hashfarm.accounting.tides import CoinbasePlan
from hashfarm.accounting.window import pplns_window, window_size
from hashfarm.chain.coinbase import build_coinbase
from hashfarm.chain.tx import TxOut

FEE = Fee.bps(200)
REWARD = 312_500_000 + 23_456_789  # subsidy + fees of a busy block
TIDES_FACTOR = 8


def make_shares(n: int, accounts: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Accounts (skewed: a few big farms, many small miners) and vardiff-like difficulties.

    Returns (account index per share, difficulty per share, network difficulty) with the
    network difficulty set so that 8 x it covers ~99% of the shares: a full TIDES window.
    """
    rng = np.random.default_rng(seed)
    acc = np.minimum(rng.zipf(1.3, n) - 1, accounts - 1).astype(np.int64)
    acc = (acc * 7919) % accounts  # spread the big ones over the id space
    base = 2.0 ** rng.integers(10, 24, accounts)  # each account's vardiff level
    steps = rng.choice([1.0, 1.37, 0.73, 2.9], size=n)  # retargets: arbitrary float products
    diff = base[acc] * steps
    net = float(diff.sum()) * 0.99 / TIDES_FACTOR
    return acc, diff, net


def median_wall_cpu(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds of `runs` calls (CPU time shows the cost on a machine
    shared with other work, where wall time also counts the waits for a core)."""
    wall, cpu, out = [], [], None
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(wall), statistics.median(cpu), out


def credit_fast(
    acc: np.ndarray, diff: np.ndarray, block: FoundBlock, names: list[str]
) -> BlockCredit:
    """Ours: exact numpy window, exact split."""
    size = window_size(TIDES_FACTOR, block.network_difficulty)
    w = fast_pplns_window(acc, diff, size)
    return credit_weights(block, "tides", FEE, {names[a]: v for a, v in w.weights.items()})


SQL_WINDOW = """
WITH newest AS (
    SELECT account, difficulty,
           SUM(difficulty) OVER (ORDER BY id DESC ROWS UNBOUNDED PRECEDING) AS upto
    FROM shares
)
SELECT account, SUM(CASE WHEN upto <= :size THEN difficulty ELSE difficulty - (upto - :size) END)
FROM newest WHERE upto - difficulty < :size GROUP BY account
"""


def credit_sql(db: sqlite3.Connection, block: FoundBlock) -> dict[str, int]:
    """Reference: the window and per-account sums in SQL (floats), then the exact split."""
    size = float(window_size(TIDES_FACTOR, block.network_difficulty))
    sums = dict(db.execute(SQL_WINDOW, {"size": size}).fetchall())
    miners = REWARD - FEE.of(REWARD)
    return split_exact(miners, {a: Fraction(v) for a, v in sums.items() if v > 0})


def load_sql(acc: np.ndarray, diff: np.ndarray, names: list[str]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE shares (id INTEGER PRIMARY KEY, account TEXT, difficulty REAL)")
    db.executemany(
        "INSERT INTO shares VALUES (?, ?, ?)",
        zip(range(len(diff)), (names[a] for a in acc.tolist()), diff.tolist(), strict=True),
    )
    return db


def check_reference(
    acc: np.ndarray, diff: np.ndarray, block: FoundBlock, names: list[str], ours: BlockCredit
) -> float:
    """Run the pure-Python reference once; it must agree to the satoshi. Its seconds."""
    shares = [
        Share(i, names[a], d, 0.0, 0)
        for i, (a, d) in enumerate(zip(acc.tolist(), diff.tolist(), strict=True))
    ]
    start = time.perf_counter()
    ref = pplns_window(shares, window_size(TIDES_FACTOR, block.network_difficulty))
    credit = credit_weights(block, "tides", FEE, ref.weights)
    took = time.perf_counter() - start
    if credit.credits != ours.credits:
        raise SystemExit("MISMATCH: the numpy window's credits differ from the reference")
    return took


def window_weights(
    acc: np.ndarray, diff: np.ndarray, net: float, names: list[str]
) -> tuple[dict[str, Fraction | int], dict[str, Fraction | int]]:
    """A TIDES window's weights as `Window` holds them (Fractions) and as `FastWindow` holds
    them (integers over one denominator: the same proportions, hence the same plan)."""
    w = fast_pplns_window(acc, diff, window_size(TIDES_FACTOR, net))
    fractions: dict[str, Fraction | int] = {
        names[a]: Fraction(v, w.denominator) for a, v in w.weights.items()
    }
    integers: dict[str, Fraction | int] = {names[a]: v for a, v in w.weights.items()}
    return fractions, integers


def bench_coinbase(
    weights: dict[str, Fraction | int], outputs: int, runs: int
) -> tuple[dict[str, tuple[float, float]], int, int]:
    """Median wall and CPU seconds, interleaved run by run, of: plan + serialize a TIDES
    coinbase, the plan alone, and the plan with the previous `split_exact`; outputs; bytes."""
    scripts = {a: b"\x00\x14" + i.to_bytes(20, "little") for i, a in enumerate(weights)}
    scheme = Tides(FEE, dust_sats=10_000, max_outputs=outputs)
    pool_script = b"\x00\x14" + b"\xee" * 20

    def build() -> tuple[int, int]:
        plan = plan_coinbase(REWARD, weights, scheme)
        outs = [TxOut(v, scripts[a]) for a, v in plan.outputs] + [
            TxOut(plan.pool_sats, pool_script)
        ]
        parts = build_coinbase(912_345, outs, extranonce_size=8, witness_commitment=b"\x00" * 32)
        return len(plan.outputs) + 1, len(parts.coinb1) + len(parts.coinb2) + 8

    def previous_plan() -> CoinbasePlan:
        module = vars(tides)  # plan_coinbase calls the split its module names
        with_previous, module["split_exact"] = module["split_exact"], previous_split
        try:
            return plan_coinbase(REWARD, weights, scheme)
        finally:
            module["split_exact"] = with_previous

    if previous_plan() != plan_coinbase(REWARD, weights, scheme):
        raise SystemExit("MISMATCH: the previous split plans this coinbase differently")
    fns: dict[str, Callable[[], Any]] = {
        "plan + serialize": build,
        "plan": lambda: plan_coinbase(REWARD, weights, scheme),
        "previous plan": previous_plan,
    }
    walls: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpus[name].append(time.process_time() - c0)
            walls[name].append(time.perf_counter() - w0)
    made, size = build()
    medians = {k: (statistics.median(walls[k]), statistics.median(cpus[k])) for k in fns}
    return medians, made, size


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shares", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--outputs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-check", action="store_true", help="skip the pure-Python reference")
    args = parser.parse_args()

    acc, diff, net = make_shares(args.shares, args.accounts, args.seed)
    names = [f"acct{i:05d}" for i in range(args.accounts)]
    block = FoundBlock("ab" * 32, 912_345, REWARD, names[int(acc[-1])], args.shares - 1, 0.0, net)

    ours_s, ours_cpu, ours = median_wall_cpu(
        lambda: credit_fast(acc, diff, block, names), args.runs
    )
    db = load_sql(acc, diff, names)
    sql_s, sql_cpu, sql_credits = median_wall_cpu(lambda: credit_sql(db, block), args.runs)
    in_window = len(ours.credits)
    print(
        f"credit one block: {args.shares:,} shares, {args.accounts:,} accounts, "
        f"window 8 x network difficulty ({in_window:,} accounts paid), runs={args.runs}"
    )
    print(
        f"  ours (exact numpy window + exact split): median {ours_s * 1e3:8.1f} ms wall,"
        f" {ours_cpu * 1e3:8.1f} ms CPU"
    )
    print(
        f"  naive SQL GROUP BY (SQLite :memory:)   : median {sql_s * 1e3:8.1f} ms wall,"
        f" {sql_cpu * 1e3:8.1f} ms CPU   ratio SQL/ours = {sql_s / ours_s:.1f}x wall,"
        f" {sql_cpu / ours_cpu:.1f}x CPU"
    )
    off = sum(abs(sql_credits.get(a, 0) - v) for a, v in ours.credits.items())
    print(
        f"  float SQL sums move {off:,} sats of {sum(ours.credits.values()):,} vs the exact split"
    )
    if not args.no_check:
        ref_s = check_reference(acc, diff, block, names, ours)
        print(
            f"  pure-Python Fraction reference (1 run) : {ref_s * 1e3:8.1f} ms"
            f"   ratio ref/ours = {ref_s / ours_s:.1f}x   credits identical: yes"
        )

    cb_runs = max(args.runs, 5) * 4
    rng = np.random.default_rng(args.seed)
    draws = rng.integers(1, 10**9, max(args.accounts, args.outputs))
    random_ints = {f"acct{i:05d}": int(w) for i, w in enumerate(draws)}
    fractions, integers = window_weights(acc, diff, net, names)
    cases: list[tuple[str, dict[str, Fraction | int]]] = [
        (
            f"{args.outputs - 1} random int weights",
            dict(list(random_ints.items())[: args.outputs - 1]),
        ),
        (f"{args.accounts:,} random int weights", dict(list(random_ints.items())[: args.accounts])),
        (f"window of {len(fractions):,} accounts, Fraction weights", fractions),
        (f"window of {len(integers):,} accounts, integer weights", integers),
    ]
    for label, weights in cases:
        got, made, size = bench_coinbase(weights, args.outputs, cb_runs)
        wall = got["plan + serialize"][0]
        print(
            f"TIDES coinbase, {label}, bound {args.outputs} outputs: {made} outputs, "
            f"{size:,} bytes (notify budget 5 ms: {'within' if wall < 0.005 else 'OVER'})"
        )
        for name, (w, c) in got.items():
            print(
                f"  {name:<17} median {w * 1e3:6.2f} ms wall {c * 1e3:6.2f} ms CPU"
                f"   this/plan {w / got['plan'][0]:5.2f} (wall) {c / got['plan'][1]:5.2f} (CPU)"
            )


if __name__ == "__main__":
    main()
