"""Submit latency tail: open-loop load on `hashfarm pool`, this tree against an older one.

The pool runs as its own process (pooled mode, mainnet settings, SQLite ledger with
`synchronous=FULL`) on the template that bench/bench_pool.py serves (fixture block 481829,
2,020 transactions). `--connections` miners (bench/loadgen.py, one process) each send one
prepared, valid, accepted share every `connections / rate` seconds, staggered so that the
pool sees an even `--rate` shares/s: an open loop, whose send times do not wait for answers
(a closed loop would hide a stall by sending less during it). The first `--warmup` seconds are
not counted. Reported per run: answered fraction, p50 / p99 / p99.9 / max submit -> answer
latency, the pool's CPU, the load generator's loop lag and the share of the host's CPU
stolen by the hypervisor meanwhile (a shared VM's tail follows it); medians over the rounds.

Reference in the same run: with `--before-src DIR` (the `src` of an older checkout, e.g.
`git worktree add /tmp/before <commit>`), every round also runs that code's pool, in
alternation (before, after, before, after...), so a machine shared with other jobs shifts
both alike; the after/before ratios are printed.

With `--floor`, every round also runs the after-pool with each share replaced by a request it
answers without judging a share or touching the ledger (`mining.extranonce.subscribe`, same
ids, same rate): what the load generator, the sockets and the pool's framing cost alone; the
after/floor ratios and the difference say what judging and recording a share add.

Run: .venv/bin/python bench/bench_pool_tail.py [--connections 1000] [--rate 10000]
     [--seconds 10] [--rounds 3] [--before-src /tmp/before/src] [--floor]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pool import (
    cpu_seconds,
    host_ticks,
    save_log,
    start_node,
    start_pool,
    steal_fraction,
    wait_ready,
)
from loadgen import Miner, Share, connect_many, percentile

SRC = Path(__file__).resolve().parent.parent / "src"
CKPOOL_P99_MS = 1.7  # the side-by-side run: ckpool p99 at 1,000 conns, 10,000/s
TICK = 0.001  # seconds between the driver's sends (each sends the shares due by then)


class Tail(asyncio.Protocol):
    """A miner's connection once set up by loadgen: sends prepared shares and notes, per
    answer, written -> read latency; parses no more than the answer's id (so the load
    generator stays light and its own delays weigh little in the figures)."""

    def __init__(self, miner: Miner) -> None:
        self.transport = miner.writer.transport
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.refused: list[bytes] = []  # answers other than `true`
        self._rest = b""
        if miner._task is not None:
            miner._task.cancel()
        self.transport.set_protocol(self)

    def send(self, share: Share) -> None:
        self.sent[share.msg_id] = time.perf_counter()
        self.transport.write(share.line)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        *lines, self._rest = (self._rest + data).split(b"\n")
        for line in lines:
            # an answer; notifications (a template refresh's notify) have "id":null
            if line.startswith(b'{"id":') and not line.startswith(b'{"id":null'):
                sent = self.sent.pop(int(line[6 : line.index(b",")]), None)
                if sent is not None:
                    self.latencies.append(now - sent)
                    if b'"result":true' not in line:
                        self.refused.append(line)

    def answered(self) -> int:
        return len(self.latencies)


async def open_loop(
    tails: list[Tail], shares: list[list[Share]], rate: float, seconds: float
) -> tuple[float, int]:
    """Send shares round-robin at `rate`/s for `seconds`; (wall time, shares sent)."""
    sent, start, n = 0, time.perf_counter(), len(tails)
    total = min(int(rate * seconds), sum(len(s) for s in shares))
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            tails[sent % n].send(shares[sent % n][sent // n])
            sent += 1
        await asyncio.sleep(TICK)
    return time.perf_counter() - start, sent


async def lag_monitor(lags: list[float]) -> None:
    """The load generator's own event-loop lag (how late a 1 ms timer fires): its stalls
    would show in the latencies as if they were the pool's."""
    while True:
        start = time.perf_counter()
        await asyncio.sleep(TICK)
        lags.append(time.perf_counter() - start - TICK)


async def wait_answers(tails: list[Tail], expected: int, limit: float = 30.0) -> None:
    """Until every sent share has its answer (or `limit` seconds)."""
    deadline = time.perf_counter() + limit
    while sum(t.answered() for t in tails) < expected and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


def floor_line(share: Share) -> Share:
    """The same request id, as a request the pool answers `true` without judging a share or
    writing its ledger (`mining.extranonce.subscribe`): the floor of the harness, the sockets
    and the pool's framing and dispatch, for the `--floor` reference."""
    body = f'{{"id":{share.msg_id},"method":"mining.extranonce.subscribe","params":[]}}\n'
    return Share(share.msg_id, body.encode(), share.job_id, share.difficulty)


async def one_run(
    args: argparse.Namespace, src: Path, workdir: Path, floor: bool = False
) -> dict[str, float]:
    """Start the pool of `src`, load it, stop it; its figures (with `floor`, every share
    replaced by a request answered without judging: see floor_line)."""
    node, runner, url = await start_node()
    proc, port, log = start_pool(url, node.zmq_url, workdir, "FULL", {"PYTHONPATH": str(src)})
    try:
        await wait_ready(proc, log)
        users = [f"bench.t{i}" for i in range(args.connections)]
        miners = await connect_many("127.0.0.1", port, users, parallel=200)
        per = int(args.rate * (args.seconds + args.warmup) / len(miners)) + 1
        shares = [m.prepare(per) for m in miners]
        if floor:
            shares = [[floor_line(x) for x in s] for s in shares]
        cut = int(per * args.warmup / (args.seconds + args.warmup))
        tails = [Tail(m) for m in miners]
        _, sent = await open_loop(tails, [s[:cut] for s in shares], args.rate, args.warmup)
        await wait_answers(tails, sent)
        for t in tails:
            t.latencies.clear()
            t.refused.clear()
        cpu0, own0, host0 = cpu_seconds(proc.pid), time.process_time(), host_ticks()
        lags: list[float] = []
        monitor = asyncio.ensure_future(lag_monitor(lags))
        wall, sent = await open_loop(tails, [s[cut:] for s in shares], args.rate, args.seconds)
        cpu, own = cpu_seconds(proc.pid) - cpu0, time.process_time() - own0
        steal = steal_fraction(host0, host_ticks())
        monitor.cancel()
        await wait_answers(tails, sent)
        lat = [x * 1e3 for t in tails for x in t.latencies]
        refused = sum(len(t.refused) for t in tails)
        for t in tails:
            t.transport.close()
        return {
            "rate": sent / wall,
            "answered": len(lat) / sent,
            "ok": (len(lat) - refused) / max(1, len(lat)),
            "p50": percentile(lat, 0.5),
            "p99": percentile(lat, 0.99),
            "p999": percentile(lat, 0.999),
            "max": max(lat, default=0.0),
            "cpu": cpu / wall,
            "us_share": cpu / sent * 1e6,
            "loadgen": own / wall,
            "lag99": percentile(lags, 0.99) * 1e3,
            "lagmax": max(lags, default=0.0) * 1e3,
            "steal": steal,
        }
    finally:
        proc.terminate()
        proc.wait(10)
        await runner.cleanup()
        if args.log:
            save_log(log, Path(args.log))


def line(label: str, med: dict[str, float]) -> str:
    return (
        f"  {label:7s} {med['rate']:7,.0f} shares/s  answered {med['answered'] * 100:5.1f}%  "
        f"accepted {med['ok'] * 100:5.1f}%  p50 {med['p50']:5.2f}  p99 {med['p99']:5.2f}  "
        f"p99.9 {med['p999']:6.2f}  max {med['max']:6.1f} ms  pool CPU {med['cpu'] * 100:3.0f}% "
        f"({med['us_share']:3.0f} us/share)  load generator CPU {med['loadgen'] * 100:3.0f}%, "
        f"its loop lag p99 {med['lag99']:4.1f} max {med['lagmax']:5.1f} ms; "
        f"host CPU stolen {med['steal'] * 100:4.1f}%"
    )


async def main(args: argparse.Namespace) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    variants = [("after", Path(args.after_src) if args.after_src else SRC)]
    if args.before_src:
        variants.insert(0, ("before", Path(args.before_src)))
    if args.floor:
        variants.append(("floor", variants[-1][1]))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    print(
        f"open loop: {args.connections:,} connections, {args.rate:,.0f} accepted shares/s "
        f"offered, {args.seconds:g} s measured after {args.warmup:g} s warm-up, "
        f"{args.rounds} rounds; SQLite synchronous=FULL; load average {os.getloadavg()[0]:.1f}"
    )
    for r in range(args.rounds):
        for name, src in variants:
            with tempfile.TemporaryDirectory(dir=args.db_dir) as tmp:
                res = await one_run(args, src, Path(tmp), floor=name == "floor")
            results[name].append(res)
            print(f"round {r + 1} {line(name, res).strip()}", flush=True)
    print(f"medians of {args.rounds} rounds (latencies in ms, submit written -> answer read):")
    meds = {n: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for n, rs in results.items()}
    for name, med in meds.items():
        print(line(name, med))
    if "before" in meds:
        b, a = meds["before"], meds["after"]
        print(
            f"  after/before: p50 {a['p50'] / b['p50']:.2f}  p99 {a['p99'] / b['p99']:.2f}  "
            f"p99.9 {a['p999'] / b['p999']:.2f}  pool CPU per share "
            f"{a['us_share'] / max(b['us_share'], 1e-9):.2f}"
        )
    if "floor" in meds:
        a, f = meds["after"], meds["floor"]
        print(
            f"  after/floor (the same pool answering a request it does not judge): "
            f"p50 {a['p50'] / f['p50']:.2f}  p99 {a['p99'] / f['p99']:.2f}  "
            f"p99.9 {a['p999'] / f['p999']:.2f}; a share adds p50 {a['p50'] - f['p50']:.2f} "
            f"p99 {a['p99'] - f['p99']:.2f} ms"
        )
    print(f"  (ckpool in the issue's side-by-side run: p99 {CKPOOL_P99_MS} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10_000.0, help="shares/s offered")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not counted")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before-src", help="src/ of an older checkout to compare against")
    parser.add_argument("--after-src", help="src/ to measure as 'after' (default: this tree)")
    parser.add_argument("--db-dir", help="where the ledger's file goes (default: the temp dir)")
    parser.add_argument("--log", help="copy the last pool's log to this file")
    parser.add_argument("--uvloop", action="store_true", help="run the load generator on uvloop")
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (smoke)")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="reference: each round also runs the after-pool answering a request it does not "
        "judge in place of every share (the harness's and the sockets' floor)",
    )
    ns = parser.parse_args()
    if ns.quick:
        ns.connections, ns.rate, ns.seconds, ns.warmup, ns.rounds = 50, 500.0, 1.0, 0.5, 1
    if ns.uvloop:
        import uvloop

        uvloop.run(main(ns))
    else:
        asyncio.run(main(ns))
