"""Fleet poll benchmark: 5,000 simulated machines polled every 30 s by one process.

The machines (`fleet.simulate.SimulatedFarm`, API only, no mining: every profile in turn,
S19 Pro, S9, LuxOS, Whatsminer, Avalon, bosminer, Bitaxe) run in a child process on loopback
addresses from `--base` (127.4.0.1: machine i at base + i). The poller runs here as the
service would: `Poller.run` on the real clock, each round written to a SQLite fleet store and
judged by the alert engine. Its process is measured alone (`time.process_time`, all its
threads, the store's included), so the simulator's CPU is not counted.

Reported: the core's busy share (poller CPU seconds / wall seconds over the whole run, idle
waits included: 1.0 would be a core saturated), CPU per round, the round duration (first
machine asked to last sample) median and p99 and its ratio to the period, and the p99 of
one machine's poll latency.

Run: .venv/bin/python bench/bench_fleet_poll.py [--machines 5000] [--interval 30] [--rounds 3]
     [--store postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hashfarm.fleet.alerts import AlertEngine, AlertService
from hashfarm.fleet.poller import Machine, Poller, PollSettings, Round
from hashfarm.fleet.simulate import SimulatedFarm, farm_addresses
from hashfarm.fleet.store import open_fleet_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import percentile


def farm_process(count: int, base: str, cg_port: int, http_port: int, ready, stop, cpu) -> None:  # type: ignore[no-untyped-def]
    """The simulated farm, serving until `stop` is set; its serving CPU seconds go to `cpu`."""

    async def serve() -> None:
        async with SimulatedFarm(count, base_address=base, cgminer_port=cg_port,
                                 http_port=http_port):  # fmt: skip
            started = time.process_time()
            ready.set()
            await asyncio.to_thread(stop.wait)
            cpu.value = time.process_time() - started

    asyncio.run(serve())


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def main(args: argparse.Namespace) -> None:
    cg_port = args.port or free_port(args.base)
    http_port = free_port(args.base) if not args.port else args.port + 1
    addresses = farm_addresses(args.base, args.machines)
    size = -(-args.machines // args.farm_procs)
    slices = [(addresses[i], min(size, args.machines - i)) for i in range(0, args.machines, size)]
    machines = []
    for base, count in slices:  # the address plan of each child's farm (not started here)
        plan = SimulatedFarm(count, base_address=base, cgminer_port=cg_port, http_port=http_port)
        machines += [Machine(m.address, m.port, m.profile.backend, m.profile.model)
                     for m in plan.machines]  # fmt: skip
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    children = []
    for base, count in slices:
        ready, used = ctx.Event(), ctx.Value("d", 0.0)
        farm_args = (count, base, cg_port, http_port, ready, stop, used)
        child = ctx.Process(target=farm_process, args=farm_args, daemon=True)
        child.start()
        children.append((child, ready, used))
    for _, ready, _ in children:
        if not ready.wait(120):
            raise SystemExit("a simulated farm did not start within 120 s")
    rounds: list[Round] = []

    async def keep(r: Round) -> None:
        rounds.append(r)

    with tempfile.TemporaryDirectory() as tmp:
        store = await open_fleet_store(args.store or f"sqlite:///{tmp}/fleet.db")
        settings = PollSettings(interval_s=args.interval, timeout_s=min(5.0, args.interval),
                                concurrency=args.concurrency)  # fmt: skip
        poller = Poller(machines, settings, sinks=[store, AlertService(AlertEngine(),
                        recorder=store), keep])  # fmt: skip
        wall, cpu = time.perf_counter(), time.process_time()
        await poller.run(rounds=args.rounds)
        # the last round's period counts too: the core is idle until the next one is due
        elapsed = time.perf_counter() - wall
        await asyncio.sleep(max(0.0, args.rounds * args.interval - elapsed))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        samples = await store.call(lambda sql: sql.q("SELECT COUNT(*) FROM fleet_samples"))
        await store.close()
    stop.set()
    for child, _, _ in children:
        child.join(30)
    farm_s = sum(used.value for _, _, used in children)

    durations = [r.duration_s for r in rounds]
    latencies = [s.latency_s for r in rounds for s in r.samples]
    errors = sum(r.errors for r in rounds)
    print(
        f"{args.machines} machines, {args.rounds} rounds every {args.interval:g} s, "
        f"concurrency {args.concurrency}; {samples[0][0]} samples stored, {errors} errors"
    )
    print(
        f"  poller busy share: {cpu:.2f} s CPU / {wall:.1f} s wall = {cpu / wall:.3f} of one "
        f"core ({cpu / len(rounds):.2f} s CPU per round, "
        f"{cpu / len(rounds) / args.machines * 1e3:.2f} ms per machine)"
    )
    print(
        f"  reference, the simulated machines answering ({args.farm_procs} processes): "
        f"{farm_s / len(rounds):.2f} s CPU per round; poller / farm = {cpu / farm_s:.2f}"
    )
    p99 = percentile(durations, 0.99)
    print(
        f"  round duration: median {statistics.median(durations):.2f} s, p99 {p99:.2f} s "
        f"= {p99 / args.interval:.3f} of the period"
    )
    print(
        f"  one machine's poll: p50 {percentile(latencies, 0.5) * 1e3:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--machines", type=int, default=5000)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=PollSettings().concurrency)
    parser.add_argument("--farm-procs", type=int, default=2, help="processes serving the farm")
    parser.add_argument("--store", help="fleet store URL (default: a temporary SQLite file); "
                        "postgresql://... of an empty database to measure PostgreSQL")  # fmt: skip
    parser.add_argument("--base", default="127.4.0.1")
    parser.add_argument("--port", type=int, default=0, help="cgminer port (0: a free one)")
    asyncio.run(main(parser.parse_args()))
