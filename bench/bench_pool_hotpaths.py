"""Pool hot paths, measured inside one pool process (the pool core's own micro-benchmark).

1. fanout: new template -> last `mining.notify` written, with N real connections on 127.0.0.1
   (clients in a child process that reads and discards). Reference in the same run: the
   bare floor, one tight loop of `transport.write(line)` over the same transports.
2. submit: mining.submit lines fed to real connections' protocols (decode -> validate ->
   answer written to the socket); rejected (low difficulty) and accepted (in-memory ledger)
   shares. Reference in the same run: the bare hashing of one share (coinbase -> branch ->
   header -> sha256d).
3. solo jobs: one job per payout address for a new template, 1,000 addresses.
   Reference in the same run: the template's merkle branch alone.

The template is fixture block 481829 (2,020 transactions, an 11-level branch, mainnet).
Run: .venv/bin/python bench/bench_pool_hotpaths.py [--connections 10000] [--runs 5]
     [--loop asyncio|uvloop] [--only fanout,submit,solo]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import multiprocessing as mp
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import hashfarm
from hashfarm.chain.address import script_to_address
from hashfarm.chain.block import Block
from hashfarm.chain.networks import get_network
from hashfarm.node.template import Template
from hashfarm.pool import service
from hashfarm.pool.jobs import JobBook, payout_outputs
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.service import Pool
from hashfarm.pool.settings import NodeSettings, PoolSettings, StratumSettings, VardiffSettings
from hashfarm.stratum.work import u32_hex

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from realdata import load_block_bytes

PAYOUT = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"


def template() -> Template:
    """Fixture block 481829 as a template."""
    return Template.from_block(Block.parse(load_block_bytes("mainnet-481829")))


def next_tip(tpl: Template, n: int) -> Template:
    """The same template on a made-up new tip."""
    prev = hashlib.sha256(n.to_bytes(8, "little")).digest()
    return replace(tpl, prev_hash=prev, height=tpl.height + n)


class MemoryLedger:
    """Keeps records in lists (the ledger's cost is the storage benchmark's business)."""

    def __init__(self) -> None:
        self.shares: list[ShareRecord] = []
        self.blocks: list[BlockRecord] = []

    async def record_share(self, share: ShareRecord) -> None:
        self.shares.append(share)

    async def record_block(self, block: BlockRecord) -> None:
        self.blocks.append(block)


def make_pool(mode: str = "pooled") -> Pool:
    settings = PoolSettings(
        network="mainnet",
        mode=mode,  # type: ignore[arg-type]
        payout_address=PAYOUT if mode == "pooled" else None,
        node=NodeSettings(check_coinbase=False),
        stratum=StratumSettings(port=0, raise_nofile=False, **_unpaced()),
        vardiff=VardiffSettings(enabled=False, initial=1e-9, minimum=1e-12),
    )
    return Pool(settings, None, MemoryLedger())  # type: ignore[arg-type]  # no node needed


def _unpaced() -> dict[str, float]:
    """The submit run feeds 20,000 lines without yielding: measure the share path, not the
    per-connection pacing (stratum.lines_per_second; absent in older code for --before)."""
    names = {f.name for f in dataclasses.fields(StratumSettings)}
    return {"lines_per_second": 1e12} if "lines_per_second" in names else {}


# -- the client side: many sockets in a child process ------------------------------------


def clients(port: int, count: int, user: str, ready: Any, stop: Any) -> None:
    """Connect `count` sockets, subscribe and authorize each, then read and discard."""
    raise_nofile()
    sel = selectors.DefaultSelector()
    socks = []
    hello = (
        b'{"id":1,"method":"mining.subscribe","params":["bench"]}\n'
        b'{"id":2,"method":"mining.authorize","params":["' + user.encode() + b'.w","x"]}\n'
    )
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(hello)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    ready.set()
    while not stop.is_set():
        for key, _ in sel.select(0.1):
            try:
                if not key.fileobj.recv(1 << 16):  # type: ignore[union-attr]
                    sel.unregister(key.fileobj)
            except BlockingIOError:
                pass
    for s in socks:
        s.close()


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def open_clients(pool: Pool, count: int, user: str) -> tuple[Any, Any]:
    ctx = mp.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=clients, args=(pool.stratum_port, count, user, ready, stop))
    proc.start()
    while not ready.is_set() or sum(len(g) for g in pool.server.groups.values()) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the first notifies drain
    return proc, stop


# -- 1. fan-out ----------------------------------------------------------------------------


async def fanout(count: int, runs: int) -> None:
    pool = make_pool()
    tpl = template()
    await pool.server.start()
    await pool._on_template(tpl, "bench")
    proc, stop = await open_clients(pool, count, PAYOUT)
    held = len(pool.server.sessions)
    transports = [p.transport for p in pool.server.sessions.values() if p.transport]
    line = pool.current_job().notify_line  # type: ignore[union-attr]
    ours, floor = [], []
    for n in range(1, runs + 1):
        await pool._on_template(next_tip(tpl, n), "bench")
        ours.append(pool.last_fanout_ms)
        await asyncio.sleep(0.3)
        start = time.perf_counter()
        for t in transports:
            t.write(line)
        floor.append((time.perf_counter() - start) * 1000.0)
        await asyncio.sleep(0.3)
    whole, steps = [], [0.0]  # the periodic sweep's longest stall of the loop, whole and in parts
    parts = getattr(service, "SWEEP_PARTS", 0)  # 0: older code, one whole sweep only
    for _ in range(runs):
        start = time.perf_counter()
        pool.server.sweep(time.time())
        whole.append((time.perf_counter() - start) * 1000.0)
        for part in range(parts):
            start = time.perf_counter()
            pool.server.sweep(time.time(), part, parts)  # type: ignore[call-arg,unused-ignore]
            steps.append((time.perf_counter() - start) * 1000.0)
            await asyncio.sleep(0.01)
    stop.set()
    proc.join()
    await pool.server.stop()
    w, s = statistics.median(whole), statistics.median(steps)
    print(f"sweep of {held:,} connections: whole {w:.1f} ms; one of {parts} steps {s:.2f} ms")
    o, f = statistics.median(ours), statistics.median(floor)
    print(f"fan-out, {held:,} connections, {len(line):,}-byte notify (medians of {runs}):")
    print(
        f"  pool: new template -> last notify written  {o:7.1f} ms  {o * 1000 / held:5.1f} us/conn"
    )
    print(
        f"  floor: bare transport.write loop           {f:7.1f} ms  {f * 1000 / held:5.1f} us/conn"
    )
    print(f"  ratio pool / floor                         {o / f:7.2f}x")


# -- 2. submit -----------------------------------------------------------------------------


def share_lines(pool: Pool, count: int) -> list[bytes]:
    """Distinct valid shares for the current job (each one's verdict is set by difficulty)."""
    job = pool.current_job()
    assert job is not None
    lines = []
    for i in range(count):
        en2 = (i // 64).to_bytes(8, "big")  # a miner rolls the nonce many times per extranonce2
        lines.append(
            b'{"id":%d,"method":"mining.submit","params":["%s.w","%s","%s","%s","%s"]}\n'
            % (
                i + 10,
                PAYOUT.encode(),
                job.job_id.encode(),
                en2.hex().encode(),
                u32_hex(job.work.time).encode(),
                u32_hex(i).encode(),
            )
        )
    return lines


async def submit(runs: int, count: int) -> None:
    pool = make_pool()
    await pool.server.start()
    await pool._on_template(template(), "bench")
    proc, stop = await open_clients(pool, 1, PAYOUT)
    proto = next(iter(pool.server.sessions.values()))
    session = next(iter(pool.server.sessions))
    job = pool.current_job()
    assert job is not None
    floor = hashing_floor(job, session.extranonce1, count)
    results: dict[str, list[float]] = {"low difficulty (rejected)": [], "accepted": []}
    for _ in range(runs):
        for label in results:
            await pool._on_template(next_tip(template(), len(results[label]) + 1), "bench")
            # every share meets 1e-12; none meets 1e30 (all fully hashed, none a block)
            session.vardiff.difficulty = 1e-12 if label == "accepted" else 1e30  # type: ignore[misc]
            session._history.clear()  # the difficulty above applies to every job
            session._lim = None
            lines = share_lines(pool, count)
            start = time.perf_counter()
            for i in range(0, count, 16):  # 16 lines per read, as a busy socket delivers them
                proto.data_received(b"".join(lines[i : i + 16]))
            while pool._tasks:  # noqa: ASYNC110  (the accepted shares' ledger writes)
                await asyncio.sleep(0)
            results[label].append(count / (time.perf_counter() - start))
            await asyncio.sleep(0.1)
    stop.set()
    proc.join()
    await pool.server.stop()
    print(f"submit path, {count:,} shares per run, one connection (medians of {runs}):")
    print(f"  reference: hashing floor of one share             {floor:9,.0f} shares/s")
    for label, rates in results.items():
        rate = statistics.median(rates)
        print(
            f"  {label:<30} {rate:9,.0f} shares/s  {1e6 / rate:5.1f} us/share"
            f"  floor/this {floor / rate:4.2f}x"
        )


def hashing_floor(job: Any, en1: bytes, count: int) -> float:
    sha = hashlib.sha256
    work = job.work
    start = time.perf_counter()
    for i in range(count):
        cb = work.coinb1 + en1 + i.to_bytes(8, "big") + work.coinb2
        root = sha(sha(cb).digest()).digest()
        for b in work.merkle_branch:
            root = sha(sha(root + b).digest()).digest()
        header = work.version.to_bytes(4, "little") + work.prev_hash + root + bytes(12)
        sha(sha(header).digest()).digest()
    return count / (time.perf_counter() - start)


# -- 3. solo jobs ---------------------------------------------------------------------------


def solo(runs: int, addresses: int) -> None:
    net = get_network("mainnet")
    scripts = [
        bytes.fromhex("0014") + hashlib.sha256(b"%d" % i).digest()[:20] for i in range(addresses)
    ]
    assert script_to_address(scripts[0], net)
    tpl = template()
    times, branch_times = [], []
    for n in range(runs):
        book = JobBook(
            payout_outputs(None, 0.0), tag=b"/hashfarm/", extranonce2_size=8, generations_kept=4
        )
        book.set_template(next_tip(tpl, n + 1))
        start = time.perf_counter()
        book.job_for(scripts[0])
        first = time.perf_counter()
        for s in scripts[1:]:
            book.job_for(s)
        end = time.perf_counter()
        branch_times.append((first - start) * 1000.0)
        times.append((end - first) * 1e6 / (addresses - 1))
    per, first_ms = statistics.median(times), statistics.median(branch_times)
    print(f"solo jobs, {addresses:,} payout addresses for one template (medians of {runs}):")
    print(f"  first job (template's merkle branch included)  {first_ms:6.2f} ms")
    print(
        f"  each further address                           {per:6.1f} us"
        f"  ({per * addresses / 1000:.1f} ms for {addresses:,})"
    )


# -- 4. winning share -> submitblock ---------------------------------------------------------


class SubmitClock:
    """Stands in for the node's RPC client: notes when `submitblock` is called (the request
    would leave right there) and answers like a node that accepts the block."""

    def __init__(self) -> None:
        self.called: list[float] = []

    async def submitblock(self, block_hex: str) -> str | None:
        self.called.append(time.perf_counter())
        return None

    async def getblockhash(self, height: int) -> str:
        return ""

    async def getbestblockhash(self) -> str:
        return ""


async def winning(runs: int) -> None:
    pool = make_pool()
    clock = SubmitClock()
    pool.blocks.rpc = clock  # type: ignore[assignment]
    await pool.server.start()
    easy = replace(template(), bits=0x207FFFFF)  # every share meets the target: a block
    await pool._on_template(easy, "bench")
    proc, stop = await open_clients(pool, 1, PAYOUT)
    proto = next(iter(pool.server.sessions.values()))
    lines = share_lines(pool, runs * 20)
    took = []
    for line in lines:  # about half of them are blocks at this target
        before, start = len(clock.called), time.perf_counter()
        proto.data_received(line)
        for _ in range(5):  # the submit task's first step comes at the loop's next turn
            await asyncio.sleep(0)
            if len(clock.called) > before:
                took.append((clock.called[-1] - start) * 1e6)
                break
    for task in list(pool.blocks._tasks):
        task.cancel()
    stop.set()
    proc.join()
    await pool.server.stop()
    first = took[0]  # the process's first block: its ~2 MB hex lands in fresh memory
    took.sort()
    n = len(took)
    print(f"winning share -> submitblock called ({len(easy.transactions):,} txs, {n} shares):")
    print(f"  first {first:6.0f} us  p50 {took[n // 2]:6.0f} us  p99 {took[n * 99 // 100]:6.0f} us")


async def main(args: argparse.Namespace) -> None:
    only = set(args.only.split(","))
    print(
        f"hashfarm from {Path(hashfarm.__file__).parent.parent}  "
        f"loop: {type(asyncio.get_running_loop()).__module__}  load: {os.getloadavg()[0]:.1f}"
    )
    if "solo" in only:
        solo(args.runs, 1000)
    if "submit" in only:
        await submit(args.runs, args.shares)
    if "block" in only:
        await winning(args.runs)
    if "fanout" in only:
        await fanout(args.connections, args.runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--shares", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--only", default="solo,submit,block,fanout")
    parser.add_argument("--before", help="a src/ dir (e.g. a git worktree): measure it first")
    a = parser.parse_args()
    if a.before:  # the same script on the older code, in this run, for a before/after ratio
        argv = [x for x in sys.argv[1:] if x not in (a.before, "--before")]
        env = {**os.environ, "PYTHONPATH": a.before}
        subprocess.run([sys.executable, __file__, *argv], env=env, check=True)
        print()
    raise_nofile()
    if a.loop == "uvloop":
        import uvloop

        uvloop.run(main(a))
    else:
        asyncio.run(main(a))
