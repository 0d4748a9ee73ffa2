"""The web dashboard under load, inside one pool process (the pool, its API and its pages).

1. render: the pool's pages rendered server-side with 10,000 connected workers: 10,000 real
   Stratum connections on 127.0.0.1 (clients in a child process, as in
   bench_pool_hotpaths.py) and 10,000 workers in the statistics (three accepted shares each
   over the last hour, fed through the pool's observer). Time inside the server (from the
   handler's start to its finished response, by a middleware) and end to end (a client in
   this process, one request at a time), warm (the overview's busiest-workers list is shared
   for 2 s) and cold (each request after that: the list computed afresh, the figure that
   counts). Reference in the same run: `/api/pool`, the JSON
   the overview's headline figures come from, and the whole worker list as JSON (the old
   `/api/workers`, served here on a bench-only route: the public route answers pages).
   Target: the overview under 200 ms.
   `/api/workers` pages (100 by default, 1000 at most; the ranking of every worker and the
   encoded pages are shared for 2 s): warm, cold (each request after those 2 s) and the
   last page of 1000 cold, each with its ratio to the whole list.
2. live: the pool's share path with and without 500 live SSE clients (`/events`, the
   dashboard's live stream; raw sockets in a child process from 32 loopback addresses, 16
   each, the hub's per-address cap). Shares come from bench/loadgen.py miners in another
   child process (real TCP, prepared shares, bursts), all accepted into an in-memory ledger.
   While shares flow, events are published to the hub at each of `--event-rates` per second
   (the feed looks once a second and publishes only what changed: a block, new workers, a
   new tip), so with clients every event is 500 writes. Rounds alternate without/with
   (ABAB...); medians of shares/s, of per-share p50/p99 latency, of this process's CPU per
   share (the pool's cost, whatever else the machine runs), and of this process's CPU for
   one second of events with no shares (the hub alone); the load average beside each rate;
   and whether every client got every event. Target: under 5 %.

Run: .venv/bin/python bench/bench_web.py [--connections 10000] [--workers 10000]
     [--sse-clients 500] [--runs 5] [--event-rates 0,1,10] [--parts render,live] [--quick]
Server time is wall time inside the handler; on a shared machine it includes waiting for a
core, so the CPU time this process spent meanwhile is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import selectors
import socket
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from hashfarm.api import web as dashboard
from hashfarm.api.readmodel import WORKERS_TTL, PoolInfo, ReadModel, worker_json
from hashfarm.api.server import make_app
from hashfarm.api.web.feed import BUSIEST_TTL
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.service import Pool
from hashfarm.pool.settings import NodeSettings, PoolSettings, StratumSettings, VardiffSettings
from hashfarm.pool.stats import PoolStats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pool_hotpaths import PAYOUT, open_clients, raise_nofile, template
from loadgen import connect_many, percentile

PER_IP = 16  # the hub's streams per address (api/live.py PER_IP_MAX)


class MemoryLedger:
    """Shares and blocks kept in memory (the share path without a database)."""

    def __init__(self) -> None:
        self.shares = 0
        self.blocks: list[BlockRecord] = []

    async def record_share(self, share: ShareRecord) -> None:
        self.shares += 1

    async def record_block(self, block: BlockRecord) -> None:
        self.blocks.append(block)

    async def recent_blocks(self, limit: int = 50) -> list[BlockRecord]:
        return self.blocks[::-1][:limit]


def make_pool(ledger: MemoryLedger, stats: PoolStats) -> Pool:
    settings = PoolSettings(
        network="mainnet",
        mode="pooled",
        payout_address=PAYOUT,
        node=NodeSettings(check_coinbase=False),
        stratum=StratumSettings(
            port=0,
            raise_nofile=False,
            lines_per_second=1e12,
            max_connections_per_ip=100_000,
            max_unauthorized_per_ip=100_000,
        ),
        vardiff=VardiffSettings(enabled=False, initial=1e-9, minimum=1e-12),
    )
    return Pool(settings, None, ledger, observers=(stats,))  # type: ignore[arg-type]


def feed_workers(stats: PoolStats, count: int, now: float) -> None:
    """`count` workers (10 per account) with three accepted shares each in the last hour."""
    for i in range(count):
        account = f"acct{i // 10}"
        for ago, diff in ((3000.0, 4096.0), (600.0, 8192.0), (20.0, 16384.0 + i)):
            stats.on_share(ShareRecord(
                worker=f"{account}.rig{i % 10}", account=account, job_id="1", height=953_000,
                difficulty=4096.0, share_difficulty=diff, accepted=True, reject_reason=None,
                time=now - ago, extranonce1_hex=f"{i:08x}", block_hash_hex=None,
            ))  # fmt: skip


# -- 1. render -------------------------------------------------------------------------------


class Timer:
    """A middleware noting each request's time inside the server, by path."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = defaultdict(list)
        self.cpu: dict[str, list[float]] = defaultdict(list)  # this process's CPU meanwhile

        @web.middleware
        async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
            start, cpu = time.perf_counter(), time.process_time()
            response = await handler(request)
            self.ms[request.path_qs].append((time.perf_counter() - start) * 1000.0)
            self.cpu[request.path_qs].append((time.process_time() - cpu) * 1000.0)
            return response

        self.middleware = timed


async def render(base: str, timer: Timer, paths: list[str], requests: int,
                 pause: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """Median server and end-to-end ms per path, and the body size; `pause` seconds before
    each request (past the overview's shared-list TTL: every request computes it afresh)."""
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        for path in paths:
            async with http.get(base + path) as resp:  # warm: templates compiled, caches filled
                await resp.read()
            timer.ms[path].clear()
            timer.cpu[path].clear()
            e2e, size = [], 0
            for _ in range(requests):
                await asyncio.sleep(pause)
                start = time.perf_counter()
                async with http.get(base + path) as resp:
                    body = await resp.read()
                    assert resp.status == 200, (path, resp.status, body[:200])
                e2e.append((time.perf_counter() - start) * 1000.0)
                size = len(body)
            server = timer.ms[path]
            out[path] = {"server": statistics.median(server), "p90": percentile(server, 0.9),
                         "cpu": statistics.median(timer.cpu[path]),
                         "e2e": statistics.median(e2e), "bytes": size}  # fmt: skip
    return out


# -- 2. live: child processes ---------------------------------------------------------------


def sse_clients(port: int, count: int, ready: Any, stop: Any, events: Any) -> None:
    """`count` raw SSE streams on /events from 127.0.1.x (PER_IP each), read and discarded."""
    raise_nofile()
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(count):
        s = socket.socket()
        s.bind((f"127.0.1.{1 + i // PER_IP}", 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    ok = 0
    seen = 0
    started: set[int] = set()
    while not stop.is_set():
        for key, _ in sel.select(0.1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(sock)
                continue
            if sock.fileno() not in started and data.startswith(b"HTTP/1.1 200"):
                started.add(sock.fileno())
                ok += 1
                if ok == count:
                    ready.set()
            seen += data.count(b"\nevent: ") + data.startswith(b"event: ")
    events.value = seen
    for s in socks:
        s.close()


def share_load(port: int, miners: int, shares: int, burst: int, conn: Any) -> None:
    """loadgen miners on the pool; on each "run" submit `shares` prepared shares per miner
    and send back (shares/s, p50 ms, p99 ms, accepted fraction)."""

    async def main() -> None:
        users = [f"{PAYOUT}.load{i}" for i in range(miners)]
        crowd = await connect_many("127.0.0.1", port, users)
        conn.send("ready")
        while conn.recv() == "run":
            batches = [m.prepare(shares, keep=lambda d: d >= 2e-9) for m in crowd]  # all accepted
            for m in crowd:
                m.answers.clear()
            conn.send("prepared")
            conn.recv()
            start = time.perf_counter()
            await asyncio.gather(*(m.submit(b, burst=burst)
                                   for m, b in zip(crowd, batches, strict=True)))  # fmt: skip
            wall = time.perf_counter() - start
            answers = [a for m in crowd for a in m.answers.values()]
            lat = [a.latency for a in answers]
            ok = sum(a.ok for a in answers) / len(answers)
            conn.send((len(answers) / wall, percentile(lat, 0.5) * 1e3,
                       percentile(lat, 0.99) * 1e3, ok))  # fmt: skip
        for m in crowd:
            await m.close()

    asyncio.run(main())


async def publishing(hub: Any, rate: float, stop: asyncio.Event) -> None:
    """Publish an event `rate` times a second until `stop` (a worker-joined-sized payload);
    none at rate 0 (the clients' mere presence: their streams and heartbeats). Paced by
    the clock, so a busy loop does not lower the rate."""
    if rate <= 0:
        await stop.wait()
        return
    n = 0
    start = time.perf_counter()
    while not stop.is_set():
        n += 1
        hub.publish("worker", {"new": [f"{PAYOUT}.rig{n % 100}"], "new_count": 1,
                               "workers": 10_000 + n})  # fmt: skip
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))


async def live(args: argparse.Namespace, pool: Pool, app: web.Application, api_port: int) -> None:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    load = ctx.Process(target=share_load, args=(pool.stratum_port, args.miners, args.shares,
                                                args.burst, child))  # fmt: skip
    load.start()
    await asyncio.to_thread(parent.recv)  # "ready"
    hub = app[dashboard.SITE_KEY].hub
    print(f"\n2. share path with and without {args.sse_clients} live SSE clients "
          f"({args.miners} miners x {args.shares:,} shares per round, bursts of {args.burst}; "
          f"medians of {args.runs} rounds each, alternating without/with; pool CPU is this "
          "process's own):")  # fmt: skip
    for rate in args.event_rates:
        results: dict[bool, list[tuple[float, ...]]] = {False: [], True: []}
        delivered, expected = [], []
        load0 = os.getloadavg()[0]
        for n in range(2 * args.runs):
            with_clients = n % 2 == 1
            sse = None
            if with_clients:
                ready, stop_sse, events = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
                sse = ctx.Process(target=sse_clients, args=(api_port, args.sse_clients, ready,
                                                            stop_sse, events))  # fmt: skip
                sse.start()
                if not await asyncio.to_thread(ready.wait, 60):
                    raise RuntimeError(f"not all {args.sse_clients} SSE streams opened: "
                                       f"{hub.counters}")  # fmt: skip
                assert hub.clients == args.sse_clients, hub.clients
            published0 = hub.counters.published
            parent.send("run")
            await asyncio.to_thread(parent.recv)  # "prepared": hashing done; the timed part
            stop = asyncio.Event()
            publisher = asyncio.create_task(publishing(hub, rate, stop))
            cpu0 = time.process_time()
            parent.send("go")
            shares_s, p50, p99, ok = await asyncio.to_thread(parent.recv)
            cpu = time.process_time() - cpu0
            stop.set()
            await publisher
            # the hub's own cost, no shares: this process's CPU for a second of events
            idle0, wall0 = time.process_time(), time.perf_counter()
            stop = asyncio.Event()
            publisher = asyncio.create_task(publishing(hub, rate, stop))
            await asyncio.sleep(1.0)
            stop.set()
            await publisher
            idle = (time.process_time() - idle0) / (time.perf_counter() - wall0)
            per_share = cpu / (args.miners * args.shares) * 1e6
            results[with_clients].append((shares_s, p50, p99, ok, per_share, idle))
            if sse is not None:
                await asyncio.sleep(0.3)  # the last events reach the clients
                stop_sse.set()
                await asyncio.to_thread(sse.join)
                delivered.append(events.value)
                expected.append(hub.counters.published - published0)
                while hub.clients:  # noqa: ASYNC110  (the hub notices the closed streams)
                    await asyncio.sleep(0.05)
        print(f"  {rate:g} events/s published to the hub (load average {load0:.1f} -> "
              f"{os.getloadavg()[0]:.1f}):")  # fmt: skip
        rows = []
        for label, runs in (("without SSE clients (reference)", results[False]),
                            (f"with {args.sse_clients} SSE clients", results[True])):  # fmt: skip
            med = [statistics.median(r[i] for r in runs) for i in range(6)]
            ok = min(r[3] for r in runs)
            rows.append(med)
            print(f"    {label:<32} {med[0]:8,.0f} shares/s  p50 {med[1]:6.2f} ms  "
                  f"p99 {med[2]:7.2f} ms  pool CPU {med[4]:5.1f} us/share  "
                  f"idle pool CPU {100 * med[5]:5.1f} %  accepted {ok:.0%}")  # fmt: skip
        a, b = rows
        print(f"    cost of the clients: throughput lost {100 * (1 - b[0] / a[0]):.1f} %, "
              f"pool CPU per share {100 * (b[4] / a[4] - 1):+.1f} %, p50 "
              f"{100 * (b[1] / a[1] - 1):+.1f} %, p99 {100 * (b[2] / a[2] - 1):+.1f} %; "
              f"idle CPU {100 * (b[5] - a[5]):+.1f} points (target: under 5 %)")  # fmt: skip
        if rate > 0:  # the hub's own CPU (no shares), steadier than the share-path figures
            hub_cpu = b[5] - a[5]  # core-seconds per second
            per = hub_cpu / rate / args.sse_clients * 1e6
            share = 100 * hub_cpu / (a[0] * a[4] * 1e-6)
            print(f"    the hub alone: {per:.1f} us of pool CPU per client per event; "
                  f"{share:.1f} % of the CPU the share path spends at the reference "
                  "rate")  # fmt: skip
        if delivered:
            got = sum(delivered)
            want = sum(expected) * args.sse_clients
            print(f"    events delivered: {got:,} of {want:,} published x clients "
                  f"({100 * got / want if want else 100:.1f} %)")  # fmt: skip
    parent.send("stop")
    await asyncio.to_thread(load.join)
    print(f"  hub: {hub.counters}")


# -- main ------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    raise_nofile()
    stats, ledger = PoolStats(), MemoryLedger()
    pool = make_pool(ledger, stats)
    await pool.server.start()
    await pool._on_template(template(), "bench")
    model = ReadModel(PoolInfo("mainnet", "pooled", pool.stratum_port, time.time()), pool,
                      stats, ledger)  # fmt: skip
    timer = Timer()
    app = make_app(model)
    app.middlewares.append(timer.middleware)

    async def whole_list(request: web.Request) -> web.Response:  # the old /api/workers
        body = orjson.dumps([worker_json(w) for w in stats.workers()])
        return web.Response(body=body, content_type="application/json")

    app.router.add_get("/bench/workers-all", whole_list)  # bench only: never on a pool
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    try:
        proc, stop = await open_clients(pool, args.connections, PAYOUT)
        feed_workers(stats, args.workers, time.time())
        await asyncio.sleep(1.5)  # the feed's first looks (hashrate history, new workers)
        paths = ["/", "/pool/fragments/workers", "/miner/acct7", "/blocks", "/api/pool",
                 "/api/workers", "/bench/workers-all"]  # fmt: skip
        got = await render(base, timer, paths, args.requests)
        held, workers = len(pool.sessions()), stats.pool().workers
        print(f"1. pages rendered server-side with {held:,} connections and {workers:,} "
              f"workers (medians of {args.requests} requests):")  # fmt: skip
        for path, r in got.items():
            print(f"  {path:<26} server {r['server']:7.1f} ms (p90 {r['p90']:6.1f}, CPU "
                  f"{r['cpu']:6.1f})  end to end {r['e2e']:7.1f} ms  "
                  f"{r['bytes']:>10,} bytes")  # fmt: skip
        cold = await render(base, timer, ["/", "/miner/acct7"], args.cold, BUSIEST_TTL + 0.1)
        for path, r in cold.items():
            print(f"  {path + ' (cold)':<26} server {r['server']:7.1f} ms (p90 "
                  f"{r['p90']:6.1f}, CPU {r['cpu']:6.1f})  end to end {r['e2e']:7.1f} ms  "
                  f"(each after {BUSIEST_TTL + 0.1:g} s: the busiest-workers list computed "
                  "afresh)")  # fmt: skip
        page, ref = cold["/"]["server"], got["/bench/workers-all"]["server"]
        print(f"  overview (cold) / the whole worker list as JSON: {page / ref:.2f}x; overview "
              f"{'under' if page < 200 else 'OVER'} the 200 ms target")  # fmt: skip
        last = f"/api/workers?limit=1000&offset={max(0, workers - 1000)}"
        api = ["/api/workers", "/api/workers?limit=1000", last]
        warm = await render(base, timer, api, args.requests)
        cold_api = await render(base, timer, api, args.cold, WORKERS_TTL + 0.1)
        whole = got["/bench/workers-all"]
        print(f"  /api/workers pages vs the whole list ({whole['server']:.1f} ms, CPU "
              f"{whole['cpu']:.1f} ms, {whole['bytes']:,} bytes), server time:")  # fmt: skip
        for path in api:
            w, c = warm[path], cold_api[path]
            print(f"    {path:<36} warm {w['server']:6.1f} ms  cold {c['server']:6.1f} ms "
                  f"(p90 {c['p90']:6.1f}; CPU {c['cpu']:6.1f}; ratio "
                  f"{c['server'] / whole['server']:.3f}, CPU {c['cpu'] / whole['cpu']:.3f})  "
                  f"{c['bytes']:>9,} bytes")  # fmt: skip
        stop.set()
        await asyncio.to_thread(proc.join)
        if "live" in args.parts:
            await live(args, pool, app, port)
    finally:
        await runner.cleanup()
        await pool.server.stop()


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=10_000)
    p.add_argument("--requests", type=int, default=20, help="requests per page")
    p.add_argument("--cold", type=int, default=8, help="overview requests past the list's TTL")
    p.add_argument("--sse-clients", type=int, default=500)
    p.add_argument("--miners", type=int, default=20)
    p.add_argument("--shares", type=int, default=3000, help="shares per miner per round")
    p.add_argument("--burst", type=int, default=8)
    p.add_argument("--runs", type=int, default=5, help="rounds with and without, each")
    p.add_argument(
        "--event-rates",
        default="0,1,10",
        help="events published per second while shares flow, comma separated "
        "(the feed publishes at most a few a second: its look is 1 s)",
    )
    p.add_argument("--parts", default="render,live", help="render, live or both (default)")
    p.add_argument("--quick", action="store_true", help="small sizes (the smoke test)")
    args = p.parse_args()
    args.event_rates = [float(r) for r in args.event_rates.split(",")]
    if args.quick:
        args.connections, args.workers, args.requests, args.cold = 200, 500, 3, 2
        args.sse_clients, args.miners, args.shares, args.runs = 40, 4, 200, 1
        args.event_rates = [10.0]
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
