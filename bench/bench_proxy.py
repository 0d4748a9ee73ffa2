"""The farm proxy's notify fan-out beside the pool's own, on a mainnet-sized template.

Issue 12's target: the proxy holds 10,000 downstream connections with its notify fan-out at
or below the pool's own figure on the same machine. Two set-ups, each in a fresh process:

* proxy: the project's pool (pooled mode, mainnet, in-memory ledger;
  bench_pool_hotpaths.make_pool) on fixture block 481829 as its template (2,020
  transactions, an 11-level merkle branch), and the farm proxy
  (`hashfarm.proxy.server.Proxy`, shared mode) holding one upstream session to it and N
  downstream connections (subscribed and authorized);
* pool (reference): the same pool with the same N connections made to it directly.

The N connections live in a child process (raw sockets, as bench_pool_hotpaths.clients)
that notes when the last of them has read the round's `mining.notify` (CLOCK_MONOTONIC,
which time.perf_counter reads in both processes on Linux). Per round, from the pool's
new-template call (t0):
  pool direct: t0 -> last notify written (Pool.last_fanout_ms) and -> last one read;
  proxy: t0 -> the upstream notify decoded by the proxy -> last downstream notify written
  (the proxy's `_new_job` is wrapped to take the two times) -> last read;
  floor (each round, both set-ups): a bare `transport.write(line)` loop over the same
  sockets with the same bytes, just after the round: what the machine and this process's
  state allow at that moment;
  CPU time (`time.thread_time`, the loop thread's, `send`'s system time included) of the
  proxy's `_new_job`, of the pool's `Server.broadcast` and of the floor: on a shared
  machine the wall time of a 10,000-write loop is mostly waiting for a core.

Fairness against order: an earlier version ran both set-ups in one process one after the
other, and whichever ran first at 10,000 got a slower floor (104 vs 58 ms) that moved the
ratio between 0.93x and 1.47x. Here each set-up runs in its own process, `--pairs` times in
ABBA order (proxy, pool, pool, proxy, ...), and the headline is the ratio of the medians of
per-round (fan-out / own floor) of the two set-ups; raw per-pair ratios are printed beside it.

Run: .venv/bin/python bench/bench_proxy.py [--connections 1000,10000] [--rounds 7] [--pairs 2]
     [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import selectors
import socket
import statistics
import subprocess
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


# -- one set-up, in its own process ----------------------------------------------------------


async def one_setup(kind: str, n: int, rounds: int, base: int) -> dict[str, Any]:
    """Run one set-up (`proxy` or `pool`) and return its per-round figures (ms) and RSS."""
    raise_nofile()
    pool = make_pool()
    tpl = template()
    await pool.server.start()
    await pool._on_template(tpl, "bench")
    marks: list[float] = []
    cpu: list[float] = []  # this thread's CPU time (s) per fan-out: immune to preemption
    proxy: Proxy | None = None
    if kind == "proxy":
        owner: Any = getattr(server, "Channel", Proxy)  # the class whose `_new_job` relays
        inner = owner._new_job

        def timed_new_job(self: Any, job: Job) -> None:  # the proxy's notify path, timed
            c0 = time.thread_time()
            marks.append(time.perf_counter())
            inner(self, job)
            marks.append(time.perf_counter())
            cpu.append(time.thread_time() - c0)

        owner._new_job = timed_new_job
        settings = ProxySettings(
            upstream=Upstream("127.0.0.1", pool.stratum_port),
            user=f"{PAYOUT}.proxy",
            port=0,
            max_connections_per_ip=n + 16,
        )
        proxy = Proxy(settings)
        await proxy.start()
        port = proxy.port
    else:
        port = pool.stratum_port
        broadcast = pool.server.broadcast

        def timed_broadcast(job_for: Any) -> int:  # the pool's write loop, CPU-timed
            c0 = time.thread_time()
            count: int = broadcast(job_for)
            cpu.append(time.thread_time() - c0)
            return count

        pool.server.broadcast = timed_broadcast  # type: ignore[method-assign]
    before = rss_mb()
    clients = Clients(port, n)
    assert await clients.recv() == "ready"
    await asyncio.sleep(0.5)
    after = rss_mb()
    if proxy is not None:
        held = sum(1 for d in proxy.machines if d.ready)
        channel = proxy.shared
        assert channel is not None
        # The relay's own collection, in its order (ready order, as the pool's groups are in
        # join order): a set's order (`proxy.machines`) scatters the loop over memory.
        transports = list(channel.live.values())
    else:
        held = sum(len(g) for g in pool.server.groups.values())
        transports = [t for g in pool.server.groups.values() for t in g.values()]
    out: dict[str, Any] = {"kind": kind, "held": held, "rss": [before, after]}
    for key in ("reach", "fan", "written", "read", "floor", "fan_cpu", "floor_cpu"):
        out[key] = []
    for r in range(rounds):
        await clients.arm()
        marks.clear()
        cpu.clear()
        t0 = time.perf_counter()
        await pool._on_template(next_tip(tpl, base + r), "bench")
        written = pool.last_fanout_ms
        last = await clients.recv()
        if proxy is not None:
            assert len(marks) >= 2, "the proxy relayed no notify"
            out["reach"].append((marks[0] - t0) * 1000.0)
            out["fan"].append((marks[1] - marks[0]) * 1000.0)
            written = (marks[1] - t0) * 1000.0
        else:
            out["fan"].append(written)  # the pool's own fan-out: template -> last written
        out["written"].append(written)
        assert len(cpu) == 1, "one fan-out per round"
        out["fan_cpu"].append(cpu[0] * 1000.0)
        out["read"].append((last - t0) * 1000.0)
        await asyncio.sleep(0.2)
        c0 = time.thread_time()
        out["floor"].extend(bare_writes(transports, notify_line(pool), 1))
        out["floor_cpu"].append((time.thread_time() - c0) * 1000.0)
        await asyncio.sleep(0.3)  # the clients drain the floor's bytes
    clients.stop()
    if proxy is not None:
        await proxy.stop()
    await pool.server.stop()
    return out


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


# -- the parent: fresh processes in ABBA order, and the summary ------------------------------


def run_setup(kind: str, n: int, rounds: int, base: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--one", kind, "--n", str(n), "--rounds", str(rounds),
         "--base", str(base)],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{kind} set-up failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def med(values: list[float]) -> float:
    return statistics.median(values)


def p(values: list[float]) -> str:
    return f"p50 {med(values):7.1f} ms  p99 {percentile(values, 0.99):7.1f} ms"


def summarize(n: int, runs: list[dict[str, Any]], rounds: int) -> None:
    px = [r for r in runs if r["kind"] == "proxy"]
    po = [r for r in runs if r["kind"] == "pool"]

    def cat(group: list[dict[str, Any]], key: str) -> list[float]:
        return [v for r in group for v in r[key]]

    def norm(group: list[dict[str, Any]], fan: str = "fan", floor: str = "floor") -> list[float]:
        return [f / fl for r in group for f, fl in zip(r[fan], r[floor], strict=True)]

    print(
        f"N = {n:,} (proxy held {min(r['held'] for r in px):,}, pool held "
        f"{min(r['held'] for r in po):,}), new tip, {len(px)} + {len(po)} set-ups in ABBA "
        f"order, {rounds} rounds each, template of 2,020 txs:"
    )
    print(f"  pool direct: new template -> last notify written    {p(cat(po, 'written'))}")
    print(f"  pool direct: new template -> last notify read       {p(cat(po, 'read'))}")
    print(f"  proxy: new template -> upstream notify at the proxy {p(cat(px, 'reach'))}")
    print(f"  proxy: its own fan-out (notify in -> last written)  {p(cat(px, 'fan'))}")
    print(f"  proxy: new template -> last notify written          {p(cat(px, 'written'))}")
    print(f"  proxy: new template -> last notify read             {p(cat(px, 'read'))}")
    print(f"  floor: bare transport.write loop, proxy's sockets   {p(cat(px, 'floor'))}")
    print(f"  floor: bare transport.write loop, pool's sockets    {p(cat(po, 'floor'))}")
    for i, r in enumerate(runs):
        print(
            f"    set-up {i + 1} {r['kind']:5}: fan-out p50 {med(r['fan']):6.1f} ms, "
            f"floor p50 {med(r['floor']):6.1f} ms, fan-out / floor {med(norm([r])):.2f}"
        )
    npx, npo = med(norm(px)), med(norm(po))
    print(
        f"  fan-out / own floor, median of rounds: proxy {npx:.2f}, pool {npo:.2f}; "
        f"proxy / pool {npx / npo:.2f}x  (headline)"
    )
    cpx, cpo = med(norm(px, "fan_cpu", "floor_cpu")), med(norm(po, "fan_cpu", "floor_cpu"))
    fpx, fpo = med(cat(px, "floor_cpu")), med(cat(po, "floor_cpu"))
    print(
        f"  CPU time (thread), p50: proxy fan-out {med(cat(px, 'fan_cpu')):.1f} ms, pool's "
        f"broadcast (job built, then written) {med(cat(po, 'fan_cpu')):.1f} ms; floors "
        f"{fpx:.1f} / {fpo:.1f} ms; against own floor: proxy {cpx:.2f}, pool {cpo:.2f}; "
        f"proxy / pool {cpx / cpo:.2f}x"
    )
    pairs = [
        med(a["fan"]) / med(b["fan"]) if a["kind"] == "proxy" else med(b["fan"]) / med(a["fan"])
        for a, b in zip(runs[0::2], runs[1::2], strict=True)
    ]
    raw = ", ".join(f"{x:.2f}x" for x in pairs)
    print(f"  raw p50 fan-out proxy / pool, per pair: {raw}; median {med(pairs):.2f}x")
    print(
        f"  raw p50 proxy tip -> last written / pool's: "
        f"{med(cat(px, 'written')) / med(cat(po, 'written')):.2f}x"
    )

    def kb(group: list[dict[str, Any]]) -> str:
        per = [(r["rss"][1] - r["rss"][0]) * 1024 / n for r in group]
        return f"{med(per):.1f} kB/conn (median of {len(per)})"

    print(f"  RSS growth with {n:,} idle connections: proxy set-up {kb(px)}; pool direct {kb(po)}")


def main(args: argparse.Namespace) -> None:
    sizes = [50] if args.quick else [int(x) for x in args.connections.split(",")]
    rounds = 2 if args.quick else args.rounds
    pairs = 1 if args.quick else args.pairs
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load} at start; {os.cpu_count()} cores")
    if pairs % 2:
        print(f"note: {pairs} pairs is not whole ABBA blocks: the proxy runs first once more")
    for i, n in enumerate(sizes):
        runs = []
        t0 = time.monotonic()
        for k in range(pairs):
            order = ("proxy", "pool") if k % 2 == 0 else ("pool", "proxy")
            for j, kind in enumerate(order):
                runs.append(run_setup(kind, n, rounds, 10_000 * i + 1_000 * (2 * k + j) + 1))
        summarize(n, runs, rounds)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"  {time.monotonic() - t0:.0f} s wall; load average {load} after")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pairs", type=int, default=2, help="set-up pairs (even: ABBA)")
    parser.add_argument("--quick", action="store_true", help="50 connections, 2 rounds, 1 pair")
    parser.add_argument("--one", choices=("proxy", "pool"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--base", type=int, default=1, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.one:
        print(json.dumps(asyncio.run(one_setup(a.one, a.n, a.rounds, a.base))))
    else:
        main(a)
