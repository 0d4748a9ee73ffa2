"""The farm proxy's notify fan-out beside the pool's own, on a mainnet-sized template.

Issue 12's target: the proxy holds 10,000 downstream connections with its notify fan-out at
or below the pool's own figure on the same machine. In one process and event loop this runs
the project's pool (pooled mode, mainnet, in-memory ledger; bench_pool_hotpaths.make_pool)
on fixture block 481829 as its template (2,020 transactions, an 11-level merkle branch) and
moves the tip `--rounds` times in each of two set-ups:

* proxy: the farm proxy (`hashfarm.proxy.server.Proxy`) holds one upstream session to the
  pool and N downstream connections (subscribed and authorized);
* pool (reference, same run): the same pool with the same N connections made to it directly.

The N connections live in a child process (raw sockets, as bench_pool_hotpaths.clients)
that notes when the last of them has read the round's `mining.notify` (CLOCK_MONOTONIC,
which time.perf_counter reads in both processes on Linux). Per round, from the pool's
new-template call (t0):
  pool direct: t0 -> last notify written (Pool.last_fanout_ms) and -> last one read;
  proxy: t0 -> the upstream notify decoded by the proxy -> last downstream notify written
  (the proxy's `_new_job` is wrapped on the instance to take the two times) -> last read.
The headline is proxy / pool on "t0 -> last written" (p50 and p99 over the rounds). RSS is
the process's VmRSS before and after the N idle connections (proxy set-up first, in a fresh
process, so the delta is the proxy's own per-connection cost plus one upstream session).

Run: .venv/bin/python bench/bench_proxy.py [--connections 1000,10000] [--rounds 7] [--pool-first]
     [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import selectors
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from hashfarm.proxy import server
from hashfarm.proxy.server import Proxy
from hashfarm.proxy.settings import ProxySettings, Upstream
from hashfarm.stratum.work import Job

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pool_hotpaths import PAYOUT, make_pool, next_tip, raise_nofile, template
from loadgen import percentile

NOTIFY = b"mining.notify"


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


# -- the client side: N sockets in a child process that time each round's last notify -----


def clients(port: int, count: int, user: str, conn: Any) -> None:
    """Connect, subscribe and authorize `count` sockets; say "ready" once each has a job;
    then per "arm" from the parent, answer with the time the last socket read a notify."""
    raise_nofile()
    sel = selectors.DefaultSelector()
    hello = (
        b'{"id":1,"method":"mining.subscribe","params":["bench"]}\n'
        b'{"id":2,"method":"mining.authorize","params":["' + user.encode() + b'.w","x"]}\n'
    )
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(hello)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    sel.register(conn, selectors.EVENT_READ, "pipe")
    tails: dict[int, bytes] = {}
    got: set[int] = set()
    armed = False
    ready_sent = False
    running = True
    while running:
        for key, _ in sel.select(0.1):
            if key.data == "pipe":
                cmd = conn.recv()
                if cmd == "arm":
                    got.clear()
                    armed = True
                    conn.send("armed")
                elif cmd == "stop":
                    running = False
                continue
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(sock)
                continue
            fd = sock.fileno()
            if NOTIFY in tails.get(fd, b"") + data:
                got.add(fd)
            tails[fd] = data[-len(NOTIFY) :]
        if not ready_sent and len(got) == count:
            ready_sent = True
            conn.send("ready")
        elif armed and len(got) == count:
            armed = False
            conn.send(time.perf_counter())
    for s in socks:
        s.close()


class Clients:
    def __init__(self, port: int, count: int) -> None:
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=clients, args=(port, count, PAYOUT, child))
        self.proc.start()

    async def recv(self, wait_s: float = 600.0) -> Any:
        deadline = time.monotonic() + wait_s
        while not self.conn.poll():
            if time.monotonic() > deadline:
                raise TimeoutError("clients did not answer")
            await asyncio.sleep(0.005)  # the loop keeps serving the sockets meanwhile
        return self.conn.recv()

    async def arm(self) -> None:
        self.conn.send("arm")
        assert await self.recv() == "armed"

    def stop(self) -> None:
        self.conn.send("stop")
        self.proc.join()


# -- the two set-ups ------------------------------------------------------------------------


async def via_proxy(n: int, rounds: int, base: int) -> dict[str, Any]:
    pool = make_pool()
    tpl = template()
    await pool.server.start()
    await pool._on_template(tpl, "bench")
    settings = ProxySettings(
        upstream=Upstream("127.0.0.1", pool.stratum_port),
        user=f"{PAYOUT}.proxy",
        port=0,
        max_connections_per_ip=n + 16,
    )
    proxy = Proxy(settings)
    marks: list[float] = []
    owner: Any = getattr(server, "Channel", Proxy)  # the class whose `_new_job` relays a notify
    inner = owner._new_job

    def timed_new_job(self: Any, job: Job) -> None:  # the proxy's notify path, timed
        marks.append(time.perf_counter())
        inner(self, job)
        marks.append(time.perf_counter())

    owner._new_job = timed_new_job
    await proxy.start()
    before = rss_mb()
    clients = Clients(proxy.port, n)
    assert await clients.recv() == "ready"
    await asyncio.sleep(0.5)
    held = sum(1 for d in proxy.machines if d.ready)
    after = rss_mb()
    reach, fan, written, read = [], [], [], []
    for r in range(rounds):
        await clients.arm()
        marks.clear()
        t0 = time.perf_counter()
        await pool._on_template(next_tip(tpl, base + r), "bench")
        last = await clients.recv()
        assert len(marks) >= 2, "the proxy relayed no notify"
        reach.append((marks[0] - t0) * 1000.0)
        fan.append((marks[1] - marks[0]) * 1000.0)
        written.append((marks[1] - t0) * 1000.0)
        read.append((last - t0) * 1000.0)
        await asyncio.sleep(0.3)
    owner._new_job = inner
    floor = bare_writes(
        [d.transport for d in proxy.machines if d.transport], notify_line(pool), rounds
    )
    clients.stop()
    await proxy.stop()
    await pool.server.stop()
    return {
        "floor": floor,
        "held": held,
        "rss": (before, after),
        "reach": reach,
        "fan": fan,
        "written": written,
        "read": read,
    }


async def direct(n: int, rounds: int, base: int) -> dict[str, Any]:
    pool = make_pool()
    tpl = template()
    await pool.server.start()
    await pool._on_template(tpl, "bench")
    before = rss_mb()
    clients = Clients(pool.stratum_port, n)
    assert await clients.recv() == "ready"
    await asyncio.sleep(0.5)
    held = sum(len(g) for g in pool.server.groups.values())
    after = rss_mb()
    written, read = [], []
    for r in range(rounds):
        await clients.arm()
        t0 = time.perf_counter()
        await pool._on_template(next_tip(tpl, base + r), "bench")
        written.append(pool.last_fanout_ms)
        last = await clients.recv()
        read.append((last - t0) * 1000.0)
        await asyncio.sleep(0.3)
    floor = bare_writes(
        [t for g in pool.server.groups.values() for t in g.values()], notify_line(pool), rounds
    )
    clients.stop()
    await pool.server.stop()
    return {"floor": floor, "held": held, "rss": (before, after), "written": written, "read": read}


def bare_writes(transports: list[Any], line: bytes, rounds: int) -> list[float]:
    """Reference: one tight loop of transport.write(line) over the same transports (ms)."""
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        for t in transports:
            t.write(line)
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def notify_line(pool: Any) -> bytes:
    job = pool.current_job()
    assert job is not None
    return bytes(job.notify_line)


def p(values: list[float]) -> str:
    return f"p50 {statistics.median(values):7.1f} ms  p99 {percentile(values, 0.99):7.1f} ms"


async def main(args: argparse.Namespace) -> None:
    raise_nofile()
    sizes = [50] if args.quick else [int(x) for x in args.connections.split(",")]
    rounds = 2 if args.quick else args.rounds
    print(f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}; {os.cpu_count()} cores")
    for i, n in enumerate(sizes):
        cpu0 = time.process_time()
        if args.pool_first:  # the other order, to see what the order itself shifts
            po = await direct(n, rounds, 1000 * i + 500)
            px = await via_proxy(n, rounds, 1000 * i + 1)
        else:
            px = await via_proxy(n, rounds, 1000 * i + 1)
            po = await direct(n, rounds, 1000 * i + 500)
        b, a = px["rss"]
        pb, pa = po["rss"]
        print(
            f"N = {n:,} (proxy held {px['held']:,}, pool held {po['held']:,}), "
            f"new tip, {rounds} rounds, template of 2,020 txs:"
        )
        print(f"  pool direct: new template -> last notify written    {p(po['written'])}")
        print(f"  pool direct: new template -> last notify read       {p(po['read'])}")
        print(f"  proxy: new template -> upstream notify at the proxy {p(px['reach'])}")
        print(f"  proxy: its own fan-out (notify in -> last written)  {p(px['fan'])}")
        print(f"  proxy: new template -> last notify written          {p(px['written'])}")
        print(f"  floor: bare transport.write loop, proxy's sockets   {p(px['floor'])}")
        print(f"  floor: bare transport.write loop, pool's sockets    {p(po['floor'])}")
        print(f"  proxy: new template -> last notify read             {p(px['read'])}")
        pw, ow = statistics.median(px["written"]), statistics.median(po["written"])
        pr, orr = statistics.median(px["read"]), statistics.median(po["read"])
        pf = statistics.median(px["fan"])
        print(
            f"  ratio proxy / pool (p50): written {pw / ow:.2f}x, read {pr / orr:.2f}x, "
            f"proxy's own fan-out / pool's {pf / ow:.2f}x"
        )
        print(
            f"  RSS with {n:,} idle connections: proxy process {a:.0f} MB "
            f"(+{a - b:.1f} MB, {(a - b) * 1024 / n:.1f} kB/conn); "
            f"pool direct +{pa - pb:.1f} MB ({(pa - pb) * 1024 / n:.1f} kB/conn)"
        )
        print(f"  bench process CPU {time.process_time() - cpu0:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pool-first", action="store_true", help="pool set-up first")
    parser.add_argument("--quick", action="store_true", help="50 connections, 2 rounds")
    asyncio.run(main(parser.parse_args()))
