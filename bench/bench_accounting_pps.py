"""PPS/FPPS pricing cost: one batch of shares priced at their own jobs' terms and credited.

`crediting.next_pps_batch` + `post_pps_batch`, as the crediting service runs them every pass:
read a batch of accepted shares from the pool's SQLite `shares` table, find each share's job
in `acct_job_terms` (by height, job id and time), price them exactly (`share_value`, grouped
by account, job and difficulty), and credit whole satoshis from the reserve with the exact
amounts owed carried in `acct_pps_accrual`. The shares are written into a real pool ledger
file (the pool's own migrations) with `--accounts` accounts, vardiff-like difficulties (a
few values per account, as vardiff holds a miner near one), one job every `--per-job`
shares.

Reference in the same run, on the same data: the plain rule, `schemes.PpsAccrual` fed one
`share_value` per share (a `Fraction` each) then `settle()`; its credits must equal ours to
the satoshi. Figures: medians of `--runs` runs, wall and CPU; ratio = reference / ours.
Run: taskset -c 1 .venv/bin/python bench/bench_accounting_pps.py [--shares 50000]
     [--accounts 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from hashfarm.accounting.crediting import (
    PpsBatch,
    format_spec,
    next_pps_batch,
    note_scheme,
    post_pps_batch,
)
from hashfarm.accounting.inputs import JobTerms, Share
from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import Pps, PpsAccrual, share_value
from hashfarm.accounting.store import connect
from hashfarm.pool.storage.sqlite import migrate_sqlite as migrate_pool

SCHEME = Pps(Fee.bps(200), full=True)
SUBSIDY = 312_500_000
ND = 101_646_843_652_785.2  # a mainnet-like network difficulty


def build(path: Path, shares: int, accounts: int, per_job: int) -> list[tuple[Share, JobTerms]]:
    """Write the pool's tables, jobs and shares; return (share, its job's terms) in order."""
    rng = random.Random(7)
    conn = sqlite3.connect(path, isolation_level=None)
    migrate_pool(conn)
    conn.close()
    sql = connect(f"sqlite:///{path}")  # accounting's migrations
    note_scheme(sql, format_spec(SCHEME), 0.0)
    diffs = {a: [rng.choice([2**k for k in range(10, 20)]) * 1.0 for _ in range(3)]
             for a in range(accounts)}  # fmt: skip
    jobs: list[tuple[int, str, float, JobTerms]] = []
    rows = []
    out: list[tuple[Share, JobTerms]] = []
    t = 1_700_000_000.0
    for i in range(shares):
        if i % per_job == 0:
            height, job_id = 900_000 + len(jobs) // 3, f"{len(jobs) + 1:x}"
            terms = JobTerms(ND, SUBSIDY, rng.randrange(0, 50_000_000))
            jobs.append((height, job_id, t, terms))
            t += 0.01
        height, job_id, _, terms = jobs[-1]
        account = f"acct{rng.randrange(accounts)}"
        d = rng.choice(diffs[int(account[4:])])
        t += 0.001
        rows.append((t, f"{account}.rig", account, job_id, height, d, d, True, None, "00", None))
        out.append((Share(i + 1, account, d, t, height), terms))
    with sql.tx():
        sql.many(
            "INSERT INTO acct_job_terms (pool_run, job_id, generation, prev_hash, height, bits, "
            "network_difficulty, subsidy_sats, fees_sats, coinbase_value, published_at) "
            "VALUES ('run', ?, 0, '00', ?, 0, ?, ?, ?, ?, ?)",
            [
                (j, h, tr.network_difficulty, tr.subsidy_sats, tr.fees_sats,
                 tr.subsidy_sats + tr.fees_sats, at)
                for h, j, at, tr in jobs
            ] + [("last", 0, ND, SUBSIDY, 0, SUBSIDY, t + 1.0)],
        )  # fmt: skip
        sql.many(
            "INSERT INTO shares (time, worker, account, job_id, height, difficulty, "
            "share_difficulty, accepted, reject_reason, extranonce1, block_hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    sql.close()
    return out


def ours(path: Path, limit: int) -> dict[str, int]:
    """Price every share in batches of `limit`, as the service does; the credits."""
    sql = connect(f"sqlite:///{path}")
    try:
        with sql.tx():  # a fresh start each run
            sql.q("DELETE FROM acct_pps_batches")
            sql.q("DELETE FROM acct_pps_accrual")
            sql.q("DELETE FROM acct_postings")
            sql.q("DELETE FROM acct_transactions")
            sql.q("DELETE FROM acct_balances")
        while True:
            batch = next_pps_batch(sql, limit)
            if not isinstance(batch, PpsBatch):
                break
            post_pps_batch(sql, batch, 0.0)
        return sql.balances("miner:")
    finally:
        sql.close()


def reference(priced: list[tuple[Share, JobTerms]]) -> dict[str, int]:
    """The plain rule: one exact value per share, then settle."""
    accrual = PpsAccrual()
    for share, terms in priced:
        accrual.add(share, share_value(share.difficulty, terms, SCHEME))
    return {f"miner:{a}": v for a, v in sorted(accrual.settle().items()) if v}


def timed(fn: object, *args: object) -> tuple[float, float, object]:
    w, c = time.perf_counter(), time.process_time()
    result = fn(*args)  # type: ignore[operator]
    return (time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shares", type=int, default=50_000)
    ap.add_argument("--accounts", type=int, default=1_000)
    ap.add_argument("--per-job", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool.sqlite3"
        priced = build(path, args.shares, args.accounts, args.per_job)
        mine: list[tuple[float, float]] = []
        ref: list[tuple[float, float]] = []
        for _ in range(args.runs):  # interleaved: a loaded machine slows both alike
            w, c, got = timed(ours, path, args.batch)
            mine.append((w, c))
            w, c, want = timed(reference, priced)
            ref.append((w, c))
            assert got == want, "credits differ from the plain rule"
    mw, mc = (statistics.median(x) for x in zip(*mine, strict=True))
    rw, rc = (statistics.median(x) for x in zip(*ref, strict=True))
    print(f"{args.shares:,} shares, {args.accounts:,} accounts, a job every {args.per_job:,}, "
          f"batches of {args.batch:,}, median of {args.runs}")  # fmt: skip
    print(f"  ours (SQL read + terms lookup + exact pricing + credit): {mw:,.0f} ms wall, "
          f"{mc:,.0f} ms CPU ({mc * 1000 / args.shares:.1f} us CPU per share)")  # fmt: skip
    print(f"  plain rule in memory (a Fraction per share, no SQL): {rw:,.0f} ms wall, "
          f"{rc:,.0f} ms CPU (ratio {rc / mc:.2f}x ours, CPU)")  # fmt: skip


if __name__ == "__main__":
    main()
