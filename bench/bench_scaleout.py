"""Scale-out: 1, 2 and 4 `hashfarm pool --role stratum` front ends, one ledger, NATS, PostgreSQL.

Every front end is its own process (as in production), on the mainnet-sized template that
bench/bench_pool.py serves (fixture block 481829, 2,020 transactions, the tip moved on demand
and announced over ZMQ `hashblock`); one `--role ledger` process consumes the NATS JetStream
stream at 127.0.0.1:4222 into a scratch PostgreSQL database (127.0.0.1:5432, created and
dropped here). The load generator (bench/loadgen.py, this process) holds `--connections`
miners per front end. Per front-end count it reports:

1. answered shares/s, closed loop (every miner sends `--burst` shares, waits for their
   answers, `--shares` in all): each share fully validated, published, PubAck'ed by
   JetStream before its `true`; the CPU of every part per share (front ends, ledger,
   nats-server, PostgreSQL, this load generator) and the ledger's insert rate
   (rows in PostgreSQL from the first share until all are there);
2. new tip -> last `mining.notify` read, across all front ends' connections (median of
   `--tips` tips); each front end watches the node itself (ZMQ + getblocktemplate);
3. the front ends' RSS per connection.
Ratios against one front end (the reference measured in the same run) are printed; counts
given more than once (the default 1,2,4,4,2,1, against drift on a shared machine) are
reported as medians. Since other work on the machine takes CPU too, the rate per core used
by this run's own processes is printed beside the raw rate.

Then the broker's added latency per share: one front end (`--role stratum`) against the
single process (`--role all`, SQLite `synchronous=FULL` on tmpfs), same connections, same
open-loop rate (`--rate`), alternating rounds (all, stratum, all, stratum...): p50/p99 of
submit written -> answer read and the differences.

NATS or PostgreSQL absent: prints why and exits 0 (1 with HASHFARM_REQUIRE_SERVICES=1).

Run: .venv/bin/python bench/bench_scaleout.py [--front-ends 1,2,4,4,2,1] [--connections 2500]
     [--shares 40000] [--tips 3] [--rate 2000] [--latency-seconds 8] [--latency-rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from hashfarm.node.bcoin import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pool import (
    HASHFARM,
    PAYOUT,
    TemplateNode,
    rss_mb,
    save_log,
    start_node,
    start_pool,
    text,
)
from bench_pool_tail import Tail, open_loop, wait_answers
from loadgen import Miner, connect_many, percentile
from nodes import REQUIRE_SERVICES, create_database, drop_database, postgres_problem

NATS = ("127.0.0.1", 4222)
TICK_CLK = os.sysconf("SC_CLK_TCK")


def nats_problem() -> str | None:
    """Why the broker cannot be used (None: a NATS server with JetStream answers)."""
    try:
        with socket.create_connection(NATS, timeout=2) as s:
            hello = s.recv(512)
    except OSError as exc:
        return f"no NATS server on {NATS[0]}:{NATS[1]}: {exc}"
    if not hello.startswith(b"INFO ") or b'"jetstream":true' not in hello.replace(b" ", b""):
        return f"the server on {NATS[0]}:{NATS[1]} is not NATS with JetStream"
    return None


def pids_named(*names: str) -> list[int]:
    """Processes whose command name is one of `names` (nats-server, postgres backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system) of `pids` so far; vanished ones count 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK_CLK


class Parts:
    """The processes whose CPU a share costs, sampled together."""

    def __init__(self, front_ends: list[int], ledger: int) -> None:
        self.groups = {"front ends": front_ends, "ledger": [ledger],
                       "nats-server": pids_named("nats-server"),
                       "postgres": pids_named("postgres", "postmaster")}  # fmt: skip

    def sample(self) -> dict[str, float]:
        out = {name: cpu_of(pids) for name, pids in self.groups.items()}
        out["load generator"] = time.process_time()
        return out


def machine_cpu() -> float:
    """CPU seconds the whole machine spent busy so far (every process, this bench's and not)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / TICK_CLK  # less idle and iowait


class Cluster:
    """The ledger and the front ends of one run, on a stream of their own."""

    def __init__(self, rpc_url: str, zmq_url: str, pg_url: str, tmp: Path) -> None:
        self.rpc_url, self.zmq_url, self.pg_url, self.tmp = rpc_url, zmq_url, pg_url, tmp
        self.tag = "hfscale" + uuid.uuid4().hex[:8]
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self) -> dict[str, str]:
        return {**os.environ, "HASHFARM_NETWORK": "mainnet", "HASHFARM_MODE": "pooled",
                "HASHFARM_PAYOUT_ADDRESS": PAYOUT, "HASHFARM_NODE_CHECK_COINBASE": "false",
                "HASHFARM_NODE_LONGPOLL": "false", "HASHFARM_VARDIFF_ENABLED": "false",
                "HASHFARM_VARDIFF_INITIAL": "1e-12", "HASHFARM_VARDIFF_MINIMUM": "1e-12",
                "HASHFARM_STRATUM_IDLE_TIMEOUT": "3600",
                "HASHFARM_CLUSTER_BROKER_URL": f"nats://{NATS[0]}:{NATS[1]}",
                "HASHFARM_CLUSTER_STREAM": self.tag, "HASHFARM_CLUSTER_SUBJECT_PREFIX": self.tag,
                "HASHFARM_CLUSTER_DURABLE": self.tag + "-ledger",
                "HASHFARM_CLUSTER_SPOOL_DIR": str(self.tmp / "spool")}  # fmt: skip

    def spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=self.env())
        self.procs.append(proc)
        return proc

    async def start_ledger(self) -> tuple[subprocess.Popen[bytes], int]:
        http = free_port()
        proc = self.spawn([str(HASHFARM), "pool", "--role", "ledger", "--db", self.pg_url,
                           "--rpc-url", self.rpc_url, "--rpc-password", "x",
                           "--http-port", str(http)], self.tmp / "ledger.log")  # fmt: skip
        await wait_health(proc, http, self.tmp / "ledger.log")
        return proc, http

    async def start_front_end(self, fid: int) -> tuple[subprocess.Popen[bytes], int, Path]:
        port, http, log = free_port(), free_port(), self.tmp / f"fe{fid}.log"
        proc = self.spawn([str(HASHFARM), "pool", "--role", "stratum", "--frontend-id", str(fid),
                           "--rpc-url", self.rpc_url, "--rpc-password", "x",
                           "--zmq-hashblock", self.zmq_url, "--stratum-port", str(port),
                           "--http-port", str(http)], log)  # fmt: skip
        await wait_health(proc, http, log)
        return proc, port, log

    def stop(self, procs: list[subprocess.Popen[bytes]] | None = None) -> None:
        for proc in procs if procs is not None else self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs if procs is not None else self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_health(proc: subprocess.Popen[bytes], http: int, log: Path) -> None:
    url = f"http://127.0.0.1:{http}/health"
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit(f"a process exited at start:\n{text(log)[-3000:]}")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"not ready in 60 s:\n{text(log)[-3000:]}")


async def stored(pg_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM shares")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def closed_loop(
    miners: list[Miner], per_miner: int, burst: int, parts: Parts, pg_url: str
) -> dict[str, Any]:
    """Every miner sends `per_miner` shares in bursts; rates, CPU per share, ledger rate."""
    batches = [m.prepare(per_miner) for m in miners]
    for m in miners:
        m.answers.clear()
    before_rows = await stored(pg_url)
    cpu0, t0, all0 = parts.sample(), time.perf_counter(), machine_cpu()
    await asyncio.gather(*(m.submit(b, burst=burst) for m, b in zip(miners, batches, strict=True)))
    wall = time.perf_counter() - t0
    cpu1, all1 = parts.sample(), machine_cpu()
    answers = [a for m in miners for a in m.answers.values()]
    ok = sum(a.ok for a in answers)
    rows, deadline = before_rows, time.perf_counter() + 120
    while rows - before_rows < ok and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
        rows = await stored(pg_url)
    ledger_wall = time.perf_counter() - t0
    if rows - before_rows < ok:
        print(f"  WARNING: the ledger stored {rows - before_rows:,} of {ok:,} acknowledged "
              f"shares within 120 s", flush=True)  # fmt: skip
    cpu2 = parts.sample()
    lat = [a.latency * 1e3 for a in answers]
    return {
        "rate": len(answers) / wall,
        "ok": ok / max(1, len(answers)),
        "p50": percentile(lat, 0.5),
        "p99": percentile(lat, 0.99),
        "rows": rows - before_rows,
        "ledger_rate": (rows - before_rows) / ledger_wall,
        "cpu": {k: (cpu1[k] - cpu0[k]) / max(1, len(answers)) * 1e6 for k in cpu0},
        # the ledger and PostgreSQL may finish after the answers: counted to the last row
        "cpu_ledger": {
            k: (cpu2[k] - cpu0[k]) / max(1, rows - before_rows) * 1e6
            for k in ("ledger", "postgres", "nats-server")
        },
        "cpu_busy": sum(cpu1[k] - cpu0[k] for k in cpu0) / wall,
        "machine_busy": (all1 - all0) / wall,
    }


async def new_tip(node: TemplateNode, miners: list[Miner], logs: list[Path]) -> dict[str, float]:
    """Move the tip; the last notify read over all front ends, and their own fan-outs."""
    before = [len(m.notify_times) for m in miners]
    node.new_tip()
    deadline = time.perf_counter() + 60
    while any(len(m.notify_times) == n for m, n in zip(miners, before, strict=True)):
        if time.perf_counter() > deadline:
            raise SystemExit("not every connection got the new job in 60 s")
        await asyncio.sleep(0.005)
    firsts = [m.notify_times[n][0] for m, n in zip(miners, before, strict=True)]
    fans = []
    for log in logs:
        found = re.findall(r"notified (\d+) sessions in ([\d.]+) ms", text(log))
        fans.append(float(found[-1][1]) if found else float("nan"))
    return {"last": (max(firsts) - node.tip_moved_at) * 1e3,
            "first": (min(firsts) - node.tip_moved_at) * 1e3,
            "fanout": max(fans)}  # fmt: skip


async def scale_run(
    args: argparse.Namespace, n: int, node: TemplateNode, cluster: Cluster, ledger_pid: int
) -> dict[str, Any]:
    started = [await cluster.start_front_end(fid) for fid in range(n)]
    procs = [p for p, _, _ in started]
    try:
        rss0 = [rss_mb(p.pid) for p in procs]
        miners: list[Miner] = []
        for fid, (_, port, _) in enumerate(started):
            users = [f"bench.f{fid}c{i}" for i in range(args.connections)]
            miners += await connect_many("127.0.0.1", port, users, parallel=200)
        grown = [rss_mb(p.pid) - r0 for p, r0 in zip(procs, rss0, strict=True)]
        rss = [g * 1024 / args.connections for g in grown]
        tips = [await new_tip(node, miners, [log for _, _, log in started])
                for _ in range(args.tips)]  # fmt: skip
        await asyncio.sleep(0.5)
        parts = Parts([p.pid for p in procs], ledger_pid)
        per_miner = max(args.burst, args.shares * n // len(miners))
        load = os.getloadavg()[0]
        res = await closed_loop(miners, per_miner, args.burst, parts, cluster.pg_url)
        for m in miners:
            await m.close()
        res.update(
            n=n, conns=len(miners), load=load, rss_kb=statistics.median(rss),
            rss_mb=statistics.median(rss_mb(p.pid) for p in procs),
            last=statistics.median(t["last"] for t in tips),
            first=statistics.median(t["first"] for t in tips),
            fanout=statistics.median(t["fanout"] for t in tips),
        )  # fmt: skip
        return res
    finally:
        cluster.stop(procs)


async def latency_round(
    args: argparse.Namespace, role: str, node_url: str, node: TemplateNode, cluster: Cluster
) -> dict[str, float]:
    """One process under the open-loop load: `all` (SQLite on tmpfs) or `stratum`."""
    with tempfile.TemporaryDirectory(dir=args.tmpfs) as t:
        if role == "all":
            proc, port, log = start_pool(node_url, node.zmq_url, Path(t), "FULL")
            cluster.procs.append(proc)
            for _ in range(600):
                if "pool ready" in text(log) or proc.poll() is not None:
                    break
                await asyncio.sleep(0.05)
        else:
            proc, port, log = await cluster.start_front_end(200)
        try:
            users = [f"bench.l{i}" for i in range(args.connections)]
            miners = await connect_many("127.0.0.1", port, users, parallel=200)
            per = int(args.rate * (args.latency_seconds + 1) / len(miners)) + 1
            shares = [m.prepare(per) for m in miners]
            cut = max(1, per // (args.latency_seconds + 1))
            tails = [Tail(m) for m in miners]
            _, sent = await open_loop(tails, [s[:cut] for s in shares], args.rate, 1.0)
            await wait_answers(tails, sent)
            for tl in tails:
                tl.latencies.clear()
                tl.refused.clear()
            wall, sent = await open_loop(tails, [s[cut:] for s in shares], args.rate,
                                         args.latency_seconds)  # fmt: skip
            await wait_answers(tails, sent)
            lat = [x * 1e3 for tl in tails for x in tl.latencies]
            refused = sum(len(tl.refused) for tl in tails)
            for tl in tails:
                tl.transport.close()
            return {"rate": sent / wall, "answered": len(lat) / max(1, sent),
                    "ok": (len(lat) - refused) / max(1, len(lat)),
                    "p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99)}  # fmt: skip
        finally:
            cluster.stop([proc])


def per_core(r: dict[str, Any]) -> float:
    """Answered shares per second per core this run's processes used (others' work aside)."""
    return float(r["rate"] / max(r["cpu_busy"], 1e-9))


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per front-end count (in first-seen order): the median of its runs."""
    out = []
    for n in dict.fromkeys(r["n"] for r in runs):
        mine = [r for r in runs if r["n"] == n]
        row: dict[str, Any] = {"runs": len(mine)}
        for key, value in mine[0].items():
            if isinstance(value, dict):
                row[key] = {k: statistics.median(r[key][k] for r in mine) for k in value}
            else:
                row[key] = statistics.median(r[key] for r in mine)
        out.append(row)
    return out


def show_scale(results: list[dict[str, Any]]) -> None:
    ref = results[0]
    print(f"{'FEs':>3} {'conns':>6} {'load':>5} {'shares/s':>9} {'vs 1':>5} {'acc%':>5} "
          f"{'p50 ms':>7} {'p99 ms':>8} {'busy':>5} {'/core':>6} {'vs 1':>5} {'ledger/s':>9} "
          f"{'notify ms':>9} {'vs 1':>5} {'FE fan-out':>10} {'kB/conn':>7}")  # fmt: skip
    for r in results:
        print(f"{r['n']:>3} {r['conns']:>6,.0f} {r['load']:>5.1f} {r['rate']:>9,.0f} "
              f"{r['rate'] / ref['rate']:>5.2f} {r['ok'] * 100:>5.1f} {r['p50']:>7.1f} "
              f"{r['p99']:>8.1f} {r['cpu_busy']:>5.2f} {per_core(r):>6,.0f} "
              f"{per_core(r) / per_core(ref):>5.2f} {r['ledger_rate']:>9,.0f} "
              f"{r['last']:>9.1f} {r['last'] / ref['last']:>5.2f} {r['fanout']:>10.1f} "
              f"{r['rss_kb']:>7.1f}")  # fmt: skip
    print("busy: cores used by this run's processes (front ends, ledger, nats-server, postgres, "
          "load generator) in the closed loop; /core: shares/s per busy core")  # fmt: skip
    print("machine busy (every process, other work included): "
          + ", ".join(f"{r['machine_busy']:.2f}" for r in results)
          + f" of {os.cpu_count()} cores; runs per row: "
          + ", ".join(str(r["runs"]) for r in results))  # fmt: skip
    print("CPU per answered share, us (the ledger, PostgreSQL and nats-server counted to the "
          "last row stored):")  # fmt: skip
    for r in results:
        c, cl = r["cpu"], r["cpu_ledger"]
        total = c["front ends"] + c["load generator"] + sum(cl.values())
        print(f"  {r['n']} FE: total {total:.0f}: front ends {c['front ends']:.0f}, "
              f"ledger {cl['ledger']:.0f}, "
              f"nats-server {cl['nats-server']:.0f}, postgres {cl['postgres']:.0f}, "
              f"load generator {c['load generator']:.0f}; front-end RSS {r['rss_mb']:.0f} MB "
              f"each")  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    problem = nats_problem() or postgres_problem()
    if problem:
        print(f"skipped: {problem}")
        raise SystemExit(1 if REQUIRE_SERVICES else 0)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    counts = [int(x) for x in args.front_ends.split(",")]
    if max(counts) * args.connections + 200 > hard:
        raise SystemExit(f"{max(counts)} x {args.connections} connections exceed the fd limit "
                         f"{hard} of this process")  # fmt: skip
    pg_url = create_database()
    node, runner, url = await start_node()
    print(f"template: block 481829 (2,020 txs, mainnet bits); {args.connections:,} connections "
          f"per front end; NATS JetStream {NATS[0]}:{NATS[1]}; PostgreSQL scratch database; "
          f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.1f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(url, node.zmq_url, pg_url, Path(tmp))
        try:
            ledger, _ = await cluster.start_ledger()
            results = []
            for n in counts:
                results.append(await scale_run(args, n, node, cluster, ledger.pid))
                print(f"  {n} front end(s): {results[-1]['rate']:,.0f} shares/s, last notify "
                      f"{results[-1]['last']:.1f} ms, load {os.getloadavg()[0]:.1f}",
                      flush=True)  # fmt: skip
            print(f"closed loop, bursts of {args.burst} per connection, {args.tips} tips "
                  f"(medians); 'vs 1' = ratio to one front end in this run:")  # fmt: skip
            show_scale(medians(results))
            if args.latency_rounds > 0:
                await broker_latency(args, url, node, cluster)
        finally:
            cluster.stop()
            if args.logs:
                keep_logs(Path(tmp), Path(args.logs))
            await runner.cleanup()
            await delete_stream(cluster.tag)
            drop_database(pg_url)


async def broker_latency(
    args: argparse.Namespace, url: str, node: TemplateNode, cluster: Cluster
) -> None:
    """The front end against the single process, alternating, under the same open loop."""
    lat: dict[str, list[dict[str, float]]] = {"all": [], "stratum": []}
    for r in range(args.latency_rounds):
        for role in ("all", "stratum") if r % 2 == 0 else ("stratum", "all"):
            res = await latency_round(args, role, url, node, cluster)
            lat[role].append(res)
            print(f"  round {r + 1} {role:7s} p50 {res['p50']:6.2f} ms  p99 "
                  f"{res['p99']:7.2f} ms  load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    med = {k: {f: statistics.median(x[f] for x in v) for f in v[0]} for k, v in lat.items()}
    a, s = med["all"], med["stratum"]
    print(f"broker's added latency per share: {args.connections:,} connections, "
          f"{args.rate:,.0f} shares/s offered open loop, {args.latency_seconds:g} s, "
          f"median of {args.latency_rounds} rounds (ABBA), load "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
    for name, m in (("single process, SQLite FULL on tmpfs", a),
                    ("front end --role stratum (JetStream PubAck)", s)):  # fmt: skip
        print(f"  {name:44s} {m['rate']:6,.0f}/s answered {m['answered'] * 100:5.1f}% "
              f"accepted {m['ok'] * 100:5.1f}%  p50 {m['p50']:6.2f} ms  "
              f"p99 {m['p99']:7.2f} ms")  # fmt: skip
    print(f"  added by the broker: p50 {s['p50'] - a['p50']:+.2f} ms "
          f"(x{s['p50'] / max(a['p50'], 1e-9):.2f}), p99 {s['p99'] - a['p99']:+.2f} ms "
          f"(x{s['p99'] / max(a['p99'], 1e-9):.2f})")  # fmt: skip


def keep_logs(tmp: Path, to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    for log in tmp.glob("*.log"):
        save_log(log, to / log.name)


async def delete_stream(tag: str) -> None:
    import nats  # only to leave nothing behind on the shared server

    nc = await nats.connect(f"nats://{NATS[0]}:{NATS[1]}")
    try:
        await nc.jetstream().delete_stream(tag)
    except Exception:  # never created: nothing to delete
        pass
    finally:
        await nc.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--front-ends", default="1,2,4,4,2,1", help="counts (ABBA); 1st = ref")
    parser.add_argument("--connections", type=int, default=2500, help="per front end")
    parser.add_argument("--shares", type=int, default=20_000, help="per front end, closed loop")
    parser.add_argument("--burst", type=int, default=2, help="shares in flight per connection")
    parser.add_argument("--tips", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2000.0, help="open loop, shares/s")
    parser.add_argument("--latency-seconds", type=int, default=8)
    parser.add_argument("--latency-rounds", type=int, default=2)
    parser.add_argument("--tmpfs", default="/dev/shm", help="the single process's SQLite dir")
    parser.add_argument("--logs", help="copy the processes' logs into this directory")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ns = parser.parse_args()
    if ns.quick:
        ns.front_ends, ns.connections, ns.shares, ns.tips = "1,2", 20, 200, 1
        ns.rate, ns.latency_seconds, ns.latency_rounds = 200.0, 1, 1
    asyncio.run(main(ns))
