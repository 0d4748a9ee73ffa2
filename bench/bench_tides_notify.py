"""New-tip notify delay with and without TIDES (pool/tides.py), on a mainnet-sized template.

The issue's budget: building a TIDES coinbase for 500 outputs must not delay the new-tip
notify by more than 5 ms. Three pools get the same new tips (fixture block 481829 as the
template: 2,020 transactions, an 11-level merkle branch) and each is timed from the tip
handed over by the watcher (`Pool._on_template`) to its notify written to every connection:

* plain: pooled mode without accounting (the coinbase pays the pool's address);
* tides: `[accounting] scheme = "tides"`, 500 outputs from a window of 10,000 accounts: the
  first job at the new tip is the empty block from the plan precomputed for that height
  (the worker's plan for the full template follows off the tip path and is not timed here);
* full: the full template's TIDES job once the worker's plan has arrived (a non-clean job
  a few ms after the tip; on the event loop, so it is timed too, without the planning);
* naive (reference): the plan computed on the tip path, as a pool without the precomputation
  would: read the window and split it (`TidesPlanner.plan`, 10,000 accounts), then publish.

The ledger is a real SQLite file with the pool's tables: 200,000 accepted shares of 10,000
accounts (mainnet P2WPKH addresses), all inside the window of 8 x the network difficulty;
dust_sats 1 and a coinbase budget of 1 MB so that the plan pays 500 outputs (the defaults
would pay 41). Medians of wall and CPU time (time.process_time: the machine is shared).

Run: .venv/bin/python bench/bench_tides_notify.py [--runs 15] [--connections 0]
     [--accounts 10000] [--shares 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from hashfarm.accounting.schemes import Tides
from hashfarm.accounting.store import connect
from hashfarm.chain.address import address_to_script, script_to_address
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.node.template import Template
from hashfarm.pool.service import Pool
from hashfarm.pool.settings import (
    AccountingSettings,
    NodeSettings,
    PoolSettings,
    StorageSettings,
    StratumSettings,
    VardiffSettings,
)
from hashfarm.pool.storage import make_ledger
from hashfarm.pool.tides import TidesPlanner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pool_hotpaths import MemoryLedger, next_tip, open_clients, template

PAYOUT = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
PAYOUT_SCRIPT = address_to_script(PAYOUT, "mainnet")
OUTPUTS = 500


def addresses(n: int) -> list[str]:
    out = []
    for i in range(n):
        key_hash = hashlib.sha256(b"bench-%d" % i).digest()[:20]
        address = script_to_address(b"\x00\x14" + key_hash, "mainnet")
        assert address is not None
        out.append(address)
    return out


async def make_ledger_file(path: Path, tpl: Template, accounts: int, shares: int) -> str:
    """The pool's tables in a SQLite file, then 200,000 shares of 10,000 accounts."""
    url = f"sqlite:///{path}"
    ledger = make_ledger(StorageSettings(url=url, sqlite_synchronous="NORMAL"))
    await ledger.start()
    await ledger.close()
    names = addresses(accounts)
    per_share = 8 * bits_to_difficulty(tpl.bits) / shares * 0.9  # all inside the window
    rows = [
        (f"{names[i % accounts]}.w", names[i % accounts], "1", tpl.height - 1,
         per_share * (0.5 + (i * 7919 % 1000) / 1000), per_share, 1, None,
         1_700_000_000.0 + i, "00000000", None)
        for i in range(shares)
    ]  # fmt: skip
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT INTO shares (worker, account, job_id, height, difficulty, share_difficulty, "
        "accepted, reject_reason, time, extranonce1, block_hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.commit()
    db.close()
    connect(url).close()  # accounting's tables too (the planner reads acct_* tables)
    return url


def settings(url: str, tides: bool) -> PoolSettings:
    acct = AccountingSettings(
        enabled=tides,
        scheme="tides",
        fee_bps=100,
        dust_sats=1,
        max_outputs=OUTPUTS,
        coinbase_max_bytes=1_000_000,
    )
    return PoolSettings(
        network="mainnet",
        mode="pooled",
        payout_address=PAYOUT,
        node=NodeSettings(check_coinbase=False),
        stratum=StratumSettings(port=0, raise_nofile=False),
        vardiff=VardiffSettings(enabled=False, initial=1e-9, minimum=1e-12),
        storage=StorageSettings(url=url),
        accounting=acct,
    )


def timed(fn: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) * 1000.0, (time.process_time() - cpu) * 1000.0


async def tip_path(pool: Pool, tip: Template) -> tuple[float, float]:
    """The watcher hands `tip` over; the pool's job is built and its notify written to every
    connection (with none connected, the job is built here as the first session would)."""
    wall, cpu = time.perf_counter(), time.process_time()
    await pool._on_template(tip, "bench")
    assert pool.pool_script is not None
    pool.jobs.job_for(pool.pool_script)
    return (time.perf_counter() - wall) * 1000.0, (time.process_time() - cpu) * 1000.0


async def main(args: argparse.Namespace) -> None:
    tpl = template()
    with tempfile.TemporaryDirectory() as tmp:
        url = await make_ledger_file(Path(tmp) / "pool.sqlite3", tpl, args.accounts, args.shares)
        plain = Pool(settings(url, False), None, MemoryLedger())  # type: ignore[arg-type]
        tides = Pool(settings(url, True), None, MemoryLedger())  # type: ignore[arg-type]
        assert tides.tides is not None
        tides.tides.close()  # the worker's full-template plans are not what is timed here
        tides.tides = None
        configured = settings(url, True).accounting.to_scheme()
        assert isinstance(configured, Tides)
        planner = TidesPlanner(connect(url), configured, "mainnet", 1_000_000)
        procs = []
        for pool in (plain, tides):
            await pool.server.start()
            pool._publish(tpl, "bench", None)  # a first template (its plan is irrelevant)
            if args.connections:
                procs.append(await open_clients(pool, args.connections, PAYOUT))
        rows: dict[str, list[tuple[float, float]]] = {
            "plain": [],
            "tides": [],
            "full": [],
            "naive": [],
        }
        outputs = 0
        for n in range(1, args.runs + 1):
            tip = next_tip(tpl, n)
            rows["plain"].append(await tip_path(plain, tip))
            # the plan the worker computed for this height's empty block before the tip
            tides._next = planner.plan(tides._request(tip, empty=True))
            tides.tides = _NoWorker()  # type: ignore[assignment]  # tip path only
            rows["tides"].append(await tip_path(tides, tip))
            if tides._planning is not None:
                tides._planning.cancel()
            tides.tides = None
            job = tides.current_job()
            assert job is not None
            assert not job.template.transactions
            outputs = len(job.coinbase.transaction(bytes(12)).outputs)
            full = replace(tip, prev_hash=hashlib.sha256(b"naive-%d" % n).digest())

            def naive(full: Template = full) -> None:
                result = planner.plan(tides._request(full, empty=False))
                tides._publish(full, "naive", result)
                tides.jobs.job_for(PAYOUT_SCRIPT)

            rows["naive"].append(timed(naive))
            result = planner.plan(tides._request(full, empty=False))
            refresh = replace(full, curtime=full.curtime + 1)

            def follow(refresh: Template = refresh, result: Any = result) -> None:
                tides._publish(refresh, "full template", result)  # what the worker's plan
                tides.jobs.job_for(PAYOUT_SCRIPT)  # does on the loop when it arrives

            rows["full"].append(timed(follow))
            await asyncio.sleep(0.05)
        for proc, stop in procs:
            stop.set()
            proc.join()
        for pool in (plain, tides):
            await pool.server.stop()
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in rows.items()}  # fmt: skip
    print(
        f"new tip -> notify written, {args.connections} connections, template of "
        f"{len(tpl.transactions):,} txs, TIDES: {outputs} outputs (empty block: no commitment) "
        f"from {args.accounts:,} accounts, {args.shares:,} shares; medians of {args.runs}:"
    )
    for key, label in (
        ("plain", "plain pooled coinbase"),
        ("tides", "TIDES, precomputed plan (empty block)"),
        ("full", "TIDES full template, plan ready (off tip)"),
        ("naive", "TIDES planned on the tip path (reference)"),
    ):
        wall, cpu = med[key]
        print(f"  {label:42s} {wall:8.2f} ms wall {cpu:8.2f} ms CPU")
    pw, pc = med["plain"]
    tw, tc = med["tides"]
    nw, nc = med["naive"]
    print(f"  TIDES - plain: {tw - pw:+.2f} ms wall, {tc - pc:+.2f} ms CPU (budget: 5 ms)")
    print(f"  ratio TIDES / plain: {tw / pw:.2f}x wall, {tc / pc:.2f}x CPU")
    print(f"  ratio naive / TIDES: {nw / tw:.1f}x wall, {nc / tc:.1f}x CPU")


class _NoWorker:
    """Stands in for the worker during the timed tip path (its plan task is cancelled)."""

    async def plan(self, req: Any) -> Any:
        await asyncio.sleep(3600)

    def close(self) -> None:
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--connections", type=int, default=0)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--shares", type=int, default=200_000)
    asyncio.run(main(parser.parse_args()))
