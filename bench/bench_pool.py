"""Pool load benchmark: one `hashfarm pool` process under many Stratum connections.

The pool runs as its own process (as in production) against a small JSON-RPC server in this
script that serves a full mainnet-sized template taken from fixture block 481829 (2,020
transactions, mainnet bits, 11-level merkle branch) and can move the tip on demand. The load
generator (bench/loadgen.py) drives it from this process over 127.0.0.1 and reports:

1. shares/s of accepted shares (each one fully validated and group-committed to SQLite
   before its answer) and of rejected ones (low difficulty: fully validated, not written),
   with p50/p99 submit->answer latency and the pool's CPU use; reference in the same run:
   the hashing floor of one share (coinbase + merkle branch + header sha256d) in-process;
2. connections held and the pool's RSS;
3. new tip -> last `mining.notify` with all connections open (the tip announced over ZMQ
   `hashblock`, as Bitcoin Core does; the 100 ms poll runs too): detection as seen by
   the node, the pool's own fan-out time (from its log) and the last notify read by a client.

Run: .venv/bin/python bench/bench_pool.py [--connections 10000] [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq
from aiohttp import web

from hashfarm.chain.block import Block
from hashfarm.node.bcoin import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import Miner, connect_many, percentile
from realdata import load_block_bytes

HASHFARM = Path(sys.executable).parent / "hashfarm"
PAYOUT = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"  # pooled mode: every session shares one job
CKPOOL = {"conns_mb": 72, "shares_s": 20_000, "p99_ms": 2.0, "fanout_us": 19}  # the issue


_TIP_CALLS = ("getbestblockhash", "getblocktemplate")


class TemplateNode:
    """Answers the pool's node calls from block 481829; `new_tip()` moves the tip."""

    def __init__(self) -> None:
        block = Block.parse(load_block_bytes("mainnet-481829"))
        self.block = block
        coinbase = block.transactions[0]
        commitment = next(o.script_pubkey for o in coinbase.outputs
                          if o.script_pubkey.startswith(bytes.fromhex("6a24aa21a9ed")))  # fmt: skip
        self.template: dict[str, Any] = {
            "version": block.header.version,
            "previousblockhash": block.header.prev_hash[::-1].hex(),
            "height": block.height_from_coinbase(),
            "bits": f"{block.header.bits:08x}",
            "curtime": block.header.time,
            "mintime": block.header.time - 3600,
            "coinbasevalue": sum(o.value for o in coinbase.outputs),
            "transactions": [
                {"data": t.serialize().hex(), "txid": t.txid_hex(), "fee": 0}
                for t in block.transactions[1:]
            ],
            "default_witness_commitment": commitment.hex(),
            "rules": ["segwit"],
        }
        self.tips = 0  # how many times the tip moved
        self.zmq = zmq.Context.instance().socket(zmq.PUB)  # Core's -zmqpubhashblock
        self.zmq_url = f"tcp://127.0.0.1:{free_port()}"
        self.zmq.bind(self.zmq_url)
        self.tip_moved_at = 0.0  # perf_counter when new_tip() ran
        self.tip_seen_at = 0.0  # first call that shows the pool knows of the new tip
        self.gbt_served_at = 0.0  # first template served on the new tip

    def new_tip(self) -> None:
        """The next block arrives: a new previous-block hash (a made-up one after the first)."""
        self.tips += 1
        prev = self.block.header.hash_hex() if self.tips == 1 else hashlib.sha256(
            str(self.tips).encode()).hexdigest()  # fmt: skip
        self.template = {**self.template, "previousblockhash": prev,
                         "height": self.template["height"] + 1}  # fmt: skip
        self.tip_moved_at, self.tip_seen_at, self.gbt_served_at = time.perf_counter(), 0.0, 0.0
        self.zmq.send_multipart(
            [b"hashblock", bytes.fromhex(prev), self.tips.to_bytes(4, "little")]
        )

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json(loads=__import__("orjson").loads)
        calls = body if isinstance(body, list) else [body]
        answers = [self._answer(c) for c in calls]
        out = answers if isinstance(body, list) else answers[0]
        return web.Response(body=__import__("orjson").dumps(out), content_type="application/json")

    def _answer(self, call: dict[str, Any]) -> dict[str, Any]:
        method, now = call["method"], time.perf_counter()
        result: Any = None
        if self.tip_moved_at and not self.tip_seen_at and method in _TIP_CALLS:
            self.tip_seen_at = now  # by the poll, or by ZMQ (then straight to the template)
        if method == "getbestblockhash":
            result = self.template["previousblockhash"]
        elif method == "getblocktemplate":
            result = self.template
            if self.tip_moved_at and not self.gbt_served_at:
                self.gbt_served_at = now
        elif method == "getblockhash":
            result = self.template["previousblockhash"]
        elif method != "submitblock":
            return {"id": call.get("id"), "result": None,
                    "error": {"code": -32601, "message": f"no {method} here"}}  # fmt: skip
        return {"id": call.get("id"), "result": result, "error": None}


async def start_node() -> tuple[TemplateNode, web.AppRunner, str]:
    node = TemplateNode()
    app = web.Application(client_max_size=1 << 24)
    app.router.add_post("/", node.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return node, runner, f"http://127.0.0.1:{port}/"


def start_pool(
    rpc_url: str, zmq_url: str, workdir: Path, synchronous: str, extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Start `hashfarm pool` (environment `extra` added, e.g. PYTHONPATH for older code)."""
    port, log = free_port(), workdir / "pool.log"
    env = {**os.environ, **(extra or {}), "HASHFARM_NETWORK": "mainnet", "HASHFARM_MODE": "pooled",
           "HASHFARM_PAYOUT_ADDRESS": PAYOUT, "HASHFARM_NODE_CHECK_COINBASE": "false",
           "HASHFARM_NODE_LONGPOLL": "false", "HASHFARM_VARDIFF_ENABLED": "false",
           "HASHFARM_VARDIFF_INITIAL": "1e-12",  # every hash is a share: all accepted
           "HASHFARM_VARDIFF_MINIMUM": "1e-12",  # (below mainnet's default floor)
           "HASHFARM_STRATUM_IDLE_TIMEOUT": "3600",
           "HASHFARM_STORAGE_SQLITE_SYNCHRONOUS": synchronous}  # fmt: skip
    args = [str(HASHFARM), "pool", "--rpc-url", rpc_url, "--rpc-password", "x",
            "--zmq-hashblock", zmq_url, "--stratum-port", str(port), "--http-port", "0",
            "--db", f"sqlite:///{workdir / 'bench.sqlite3'}"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, port, log


async def wait_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"pool exited:\n{text(log)[-3000:]}")
        if "pool ready" in text(log):
            return
        await asyncio.sleep(0.05)
    raise SystemExit("pool did not start in 30 s")


def text(log: Path) -> str:
    """The pool's output so far."""
    return log.read_text(errors="replace")


def save_log(log: Path, to: Path) -> None:
    """Keep the pool's log after the run."""
    to.write_text(text(log))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time of the process and of its live children (the ledger's writer process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) for child in children(pid))


def host_ticks() -> tuple[int, int]:
    """(steal, all) CPU ticks of the host since boot, from /proc/stat: the time the
    hypervisor ran someone else on our virtual CPUs, beside all of it. A figure taken while
    a tenth of the CPU is stolen is not one taken on a quiet host: the benchmarks print it."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return ticks[7], sum(ticks)
    return 0, 0


def steal_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of the host's CPU time stolen between two `host_ticks` readings."""
    return (after[0] - before[0]) / max(after[1] - before[1], 1)


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (those that exited since are not counted)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


async def share_run(miners: list[Miner], per_miner: int, pid: int, burst: int) -> dict[str, float]:
    """Submit `per_miner` prepared shares from every miner, in bursts of `burst` per
    connection; rate, latency, pool CPU."""
    batches = [m.prepare(per_miner) for m in miners]
    for m in miners:
        m.answers.clear()
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(m.submit(b, burst=burst) for m, b in zip(miners, batches, strict=True)))
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    answers = [a for m in miners for a in m.answers.values()]
    lat = [a.latency for a in answers]
    return {"rate": len(answers) / wall, "ok": sum(a.ok for a in answers) / len(answers),
            "p50": percentile(lat, 0.5) * 1e3, "p99": percentile(lat, 0.99) * 1e3,
            "cpu": cpu / wall}  # fmt: skip


def hashing_floor(miner: Miner, count: int = 20_000) -> float:
    """Shares/s of the bare per-share hashing (coinbase, branch, header) in this process."""
    job = miner.job
    assert job is not None
    d = lambda b: hashlib.sha256(hashlib.sha256(b).digest()).digest()  # noqa: E731
    en = miner.extranonce1 + bytes(8)
    start = time.perf_counter()
    for nonce in range(count):
        h = d(job.coinb1 + en + job.coinb2)
        for step in job.merkle_branch:
            h = d(h + step)
        d(b"\0" * 36 + h + nonce.to_bytes(8, "little") * 2)
    return count / (time.perf_counter() - start)


async def fanout(node: TemplateNode, miners: list[Miner], log: Path) -> dict[str, float]:
    """Move the tip; time detection, the pool's fan-out and the last notify received."""
    before = [len(m.notify_times) for m in miners]
    node.new_tip()
    deadline = time.perf_counter() + 30
    while any(len(m.notify_times) == n for m, n in zip(miners, before, strict=True)):
        if time.perf_counter() > deadline:
            raise SystemExit("not every connection got the new job in 30 s")
        await asyncio.sleep(0.01)
    last = max(m.notify_times[-1][0] for m in miners)
    fanned = re.findall(r"new tip.*notified (\d+) sessions in ([\d.]+) ms", text(log))
    return {"detect": (node.tip_seen_at - node.tip_moved_at) * 1e3,
            "gbt": (node.gbt_served_at - node.tip_moved_at) * 1e3,
            "pool_fanout": float(fanned[-1][1]) if fanned else float("nan"),
            "last_notify": (last - node.tip_moved_at) * 1e3}  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    node, runner, url = await start_node()
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, log = start_pool(url, node.zmq_url, Path(tmp), args.synchronous)
        try:
            await wait_ready(proc, log)
            await report(args, node, proc, port, log)
        finally:
            if args.log:
                save_log(log, Path(args.log))
            proc.terminate()
            proc.wait(10)
            await runner.cleanup()


async def report(
    args: argparse.Namespace,
    node: TemplateNode,
    proc: subprocess.Popen[bytes],
    port: int,
    log: Path,
) -> None:
    rss_idle = rss_mb(proc.pid)
    workers = await connect_many(
        "127.0.0.1", port, [f"bench.s{i}" for i in range(args.share_conns)]
    )
    lows = await connect_many("127.0.0.1", port, [f"bench.l{i}" for i in range(args.share_conns)],
                              suggest=1e6)  # fmt: skip
    floor = statistics.median(hashing_floor(workers[0]) for _ in range(3))
    print(f"pool pid {proc.pid}; template: block 481829, 2020 txs, mainnet bits; "
          f"ledger SQLite synchronous={args.synchronous}")  # fmt: skip
    print(f"reference: per-share hashing floor in one Python process {floor:,.0f} shares/s")
    runs = [
        ("accepted, saturated (bursts of 16)", workers, 16),
        ("accepted, closed loop (one in flight)", workers, 1),
        ("rejected, saturated (bursts of 16)", lows, 16),
        ("rejected, closed loop (one in flight)", lows, 1),
    ]
    for label, group, burst in runs:
        per = args.shares // len(group) // (4 if burst == 1 else 1)
        res = [await share_run(group, per, proc.pid, burst) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in res) for k in res[0]}
        print(
            f"{label:33s} {med['rate']:7,.0f} shares/s  p50 {med['p50']:6.2f} ms  "
            f"p99 {med['p99']:6.2f} ms  pool CPU {med['cpu'] * 100:3.0f}%  "
            f"accepted {med['ok'] * 100:3.0f}%  vs floor {med['rate'] / floor:.2f}  "
            f"per pool core {med['rate'] / max(med['cpu'], 0.01):7,.0f}/s"
        )
    print(
        f"(C pool on the reference machine: {CKPOOL['shares_s']:,} shares/s, "
        f"p99 {CKPOOL['p99_ms']} ms)"
    )
    idle = await connect_many("127.0.0.1", port, [f"bench.c{i}" for i in range(args.connections)],
                              parallel=500)  # fmt: skip
    held = len(idle) + 2 * args.share_conns
    rss = rss_mb(proc.pid)
    print(
        f"connections held {held:,}: pool RSS {rss:.0f} MB (idle {rss_idle:.0f} MB, "
        f"{(rss - rss_idle) * 1024 / held:.1f} kB/conn; C pool: {CKPOOL['conns_mb']} MB/10k)"
    )
    fans = [await fanout(node, workers + lows + idle, log) for _ in range(args.runs)]
    med = {k: statistics.median(f[k] for f in fans) for k in fans[0]}
    print(
        f"new tip (ZMQ hashblock), {held:,} connections: first node call {med['detect']:.1f} ms, "
        f"template requested {med['gbt']:.1f} ms, pool fan-out {med['pool_fanout']:.1f} ms "
        f"({med['pool_fanout'] * 1e3 / held:.1f} us/conn; C pool {CKPOOL['fanout_us']} us), "
        f"last notify read {med['last_notify']:.1f} ms"
    )
    for m in workers + lows + idle:
        await m.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--share-conns", type=int, default=32)
    parser.add_argument("--shares", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--log", help="copy the pool's log to this file")
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"],
                        help="the ledger's SQLite synchronous setting")  # fmt: skip
    ns = parser.parse_args()
    if ns.quick:
        ns.connections, ns.shares, ns.runs = 500, 4000, 1
    asyncio.run(main(ns))
