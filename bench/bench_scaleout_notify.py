"""New tip -> `mining.notify` on every front end, each front end watching the node itself.

Question (issue 14, work distribution): with N Stratum front ends, does every one serve the
new tip's work within milliseconds when each watches the node on its own, or should one
process watch and publish jobs through the broker? This measures the first design on the
real parts: a bcoin regtest node, N `hashfarm pool --role stratum` processes on the NATS
JetStream server at 127.0.0.1:4222 (no ledger is needed for work), and M load-generator
miners per front end. Each block is mined with `generatetoaddress`; the latency of a miner
is from that RPC's return to its clean `mining.notify` for the new tip (one clock: this
process's perf_counter). Reference in the same run: one front end (N = 1), the single
process's own path. Figures: median and p99 over every miner and block, the spread between
the first and the last front end to notify per block, and the ratio of N front ends' median
to one front end's.

Run: .venv/bin/python bench/bench_scaleout_notify.py [--front-ends 1,3] [--miners 20]
     [--blocks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the regtest node
from hashfarm.node.bcoin import free_port
from hashfarm.node.rpc import RPCClient
from loadgen import Miner, connect_many, percentile
from nodes import RegtestNode

HASHFARM = Path(sys.executable).parent / "hashfarm"


async def start_front_ends(
    node: RegtestNode, count: int, tmp: Path, tag: str
) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    procs, ports = [], []
    env = {**os.environ, "HASHFARM_CLUSTER_STREAM": tag, "HASHFARM_CLUSTER_SUBJECT_PREFIX": tag,
           "HASHFARM_CLUSTER_SPOOL_DIR": str(tmp / "spool")}  # fmt: skip
    for fid in range(count):
        port = free_port()
        args = [str(HASHFARM), "pool", "--role", "stratum", "--frontend-id", str(fid),
                "--rpc-url", node.rpc_url, "--rpc-password", node.api_key,
                "--stratum-port", str(port), "--http-port", "0",
                "--log-level", "warning"]  # fmt: skip
        procs.append(spawn(args, env, tmp / f"fe{fid}.log"))
        ports.append(port)
    for proc, port in zip(procs, ports, strict=True):
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit(f"a front end exited at start: see {tmp}")
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
    return procs, ports


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)


async def measure(
    node: RegtestNode, rpc: RPCClient, count: int, miners_per: int, blocks: int, tmp: Path
) -> tuple[list[float], list[float]]:
    """(per-miner latencies ms, per-block spread between front ends ms)."""
    tag = "hfbench" + secrets.token_hex(4)
    procs, ports = await start_front_ends(node, count, tmp, tag)
    miners: list[list[Miner]] = []
    try:
        user = await node.payout_address()
        for port in ports:
            names = [f"{user}.n{i}" for i in range(miners_per)]
            miners.append(await connect_many("127.0.0.1", port, names))
        latencies: list[float] = []
        spreads: list[float] = []
        for _ in range(blocks):
            await asyncio.sleep(0.3)  # let the previous tip's refresh settle
            t0 = time.perf_counter()
            (block_hash,) = await rpc.generatetoaddress(1, user)
            prev = bytes.fromhex(block_hash)[::-1]
            firsts = []
            for group in miners:
                for m in group:
                    for _ in range(500):
                        hit = [t for t, job in m.notify_times if job.prev_hash == prev]
                        if hit:
                            break
                        await asyncio.sleep(0.005)
                    else:
                        raise SystemExit("a miner never got the new tip's job")
                    latencies.append((hit[0] - t0) * 1000.0)
                firsts.append(min(latencies[-miners_per:]))
            spreads.append(max(firsts) - min(firsts))
        return latencies, spreads
    finally:
        for group in miners:
            for m in group:
                await m.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
        await delete_stream(tag)


async def delete_stream(tag: str) -> None:
    import nats  # the broker's client, only to leave nothing behind on the shared server

    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        await nc.jetstream().delete_stream(tag)
    except Exception:  # never created (no share was published): nothing to delete
        pass
    finally:
        await nc.close()


async def main(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.front_ends.split(",")]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        node = RegtestNode(tmp / "bcoin", memory=True, wallet=True)
        await node.start()
        try:
            await node.warm_up()
            rpc = RPCClient(node.rpc_url, password=node.api_key)
            results = []  # in the order asked (e.g. 1,3,3,1: ABBA against drift)
            for n in counts:
                results.append((n, await measure(node, rpc, n, args.miners, args.blocks, tmp)))
            await rpc.close()
        finally:
            await node.stop()
    print(f"new tip -> clean mining.notify, {args.miners} miners per front end, "
          f"{args.blocks} blocks, bcoin regtest, NATS JetStream 127.0.0.1:4222")  # fmt: skip
    print(f"{'front ends':>10} {'p50 ms':>8} {'p99 ms':>8} {'spread p50':>11} "
          f"{'spread max':>11} {'p50 / 1 FE':>11}")  # fmt: skip
    base = statistics.median(results[0][1][0])
    for n, (lat, spread) in results:
        print(f"{n:>10} {statistics.median(lat):>8.2f} {percentile(lat, 0.99):>8.2f} "
              f"{statistics.median(spread):>11.2f} {max(spread):>11.2f} "
              f"{statistics.median(lat) / base:>11.2f}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--front-ends", default="1,3", help="front-end counts, first = reference")
    parser.add_argument("--miners", type=int, default=20, help="miners per front end")
    parser.add_argument("--blocks", type=int, default=20, help="blocks mined per count")
    asyncio.run(main(parser.parse_args()))
