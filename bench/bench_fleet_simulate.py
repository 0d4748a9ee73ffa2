"""What a simulated farm costs: `hashfarm fleet simulate --no-mining` with `--machines`
machines, as its own process, read by `--rounds` poll rounds of every command of every
machine (one connection per command, 200 at a time, the project's `cgminer_request`).

Reports the simulator process's start (wall, CPU, RSS) and, per round, its CPU per request
(from /proc/PID/stat), against the CPU this process spent sending the same requests and
reading the replies (`time.process_time`, no parsing): the reference measured in the same
run. The cgminer-family profiles only (the AxeOS HTTP profile needs another client).

Run: .venv/bin/python bench/bench_fleet_simulate.py [--machines 5000] [--rounds 2]
     [--base-address 127.60.0.1]   (Linux: reads /proc)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from hashfarm.fleet.sim_state import PROFILES
from hashfarm.fleet.simulate import farm_addresses
from hashfarm.fleet.sources.transport import cgminer_request

HASHFARM = Path(sys.executable).parent / "hashfarm"
MODELS = [name for name, p in PROFILES.items() if p.transport == "cgminer-rpc"]
CONCURRENCY = 200  # requests in flight


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    """Resident memory of `pid`, kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def poll_round(addresses: list[str]) -> int:
    """Every command of every machine once; the number of requests."""
    gate = asyncio.Semaphore(CONCURRENCY)
    sent = 0

    async def one(index: int, address: str) -> None:
        nonlocal sent
        async with gate:
            for command in PROFILES[MODELS[index % len(MODELS)]].commands:
                await cgminer_request(address, command, timeout_s=30)
                sent += 1

    await asyncio.gather(*(one(i, a) for i, a in enumerate(addresses)))
    return sent


async def main(args: argparse.Namespace) -> None:
    began = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        str(HASHFARM), "fleet", "simulate", "--no-mining", "--count", str(args.machines),
        "--base-address", args.base_address, "--models", ",".join(MODELS),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        await process.stdout.readline()  # "serving N machines ..." once all listen
        print(
            f"{args.machines} machines listening after {time.monotonic() - began:.2f} s wall, "
            f"simulator CPU {cpu_s(process.pid):.2f} s (with interpreter start), "
            f"RSS {rss_kb(process.pid) / 1024:.0f} MiB"
        )
        addresses = farm_addresses(args.base_address, args.machines)
        for number in range(args.rounds):
            sim0, ours0, wall0 = cpu_s(process.pid), time.process_time(), time.monotonic()
            sent = await poll_round(addresses)
            sim = cpu_s(process.pid) - sim0
            ours = time.process_time() - ours0
            print(
                f"round {number}: {sent} requests in {time.monotonic() - wall0:.2f} s; "
                f"simulator CPU {sim:.2f} s ({sim / sent * 1e6:.0f} us/request); "
                f"client CPU {ours:.2f} s; simulator/client {sim / ours:.2f}"
            )
    finally:
        process.send_signal(signal.SIGINT)
        await process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--base-address", default="127.60.0.1")
    asyncio.run(main(parser.parse_args()))
