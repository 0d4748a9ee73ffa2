"""Fleet scan benchmark: a /20 (4,094 addresses) of dead hosts, and one of hung listeners.

Ranges, both on loopback so nothing leaves the machine:
- **dead**: `--dead` (default 127.2.0.0/20), where nothing listens: every connect is refused;
- **hung**: `--hung` (default 127.3.0.0/20), where every address has a listener on the cgminer
  port that never accepts, so a connect succeeds and the request gets no answer: each host
  costs the probe timeout (the worst case short of a blackholed address, which costs the
  connect timeout instead).

Reference in the same run: a bare sweep of the same addresses with the same concurrency that
only opens and closes a TCP connection to each probed port (no probing, no parsing), i.e.
what a scan could cost at the least. Reported per range: median wall and CPU seconds of
`--runs` scans, and the ratios scan / reference and scan / the issue's 10 s target.

Run: .venv/bin/python bench/bench_fleet_scan.py [--runs 3] [--dead CIDR] [--hung CIDR|none]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import time
from collections.abc import Awaitable, Callable

from hashfarm.fleet.scan import ScanSettings, hosts_of, scan

TARGET_S = 10.0  # the issue: a /20 with 4,000 dead addresses in under 10 s


async def bare_sweep(cidr: str, s: ScanSettings) -> None:
    """Open and close one connection to each probed port of each address, nothing else."""
    queue = iter(hosts_of(cidr))

    async def connect(host: str, port: int) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(s.connect_timeout_s):
                _, writer = await asyncio.open_connection(host, port)
            writer.close()

    async def worker() -> None:
        for host in queue:
            await asyncio.gather(connect(host, s.cgminer_port), connect(host, s.http_port))

    await asyncio.gather(*(worker() for _ in range(s.concurrency)))


async def timed(run: Callable[[], Awaitable[object]], runs: int) -> tuple[float, float, object]:
    walls, cpus = [], []
    result: object = None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = await run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def hung_listeners(cidr: str, port: int) -> list[socket.socket]:
    """A listener on `port` at every address of `cidr` that never accepts."""
    sockets = []
    for host in hosts_of(cidr):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sockets.append(sock)
    return sockets


async def bench(label: str, cidr: str, s: ScanSettings, runs: int) -> None:
    ref_wall, ref_cpu, _ = await timed(lambda: bare_sweep(cidr, s), runs)
    wall, cpu, result = await timed(lambda: scan(cidr, s), runs)
    r = result  # the last run's result
    print(f"{label} {cidr} ({r.scanned} addresses, concurrency {s.concurrency}, "  # type: ignore[attr-defined]
          f"connect {s.connect_timeout_s:g} s, probe {s.probe_timeout_s:g} s)")  # fmt: skip
    print(f"  found {len(r.found)}, errors {len(r.errors)}, dead {r.dead}, "  # type: ignore[attr-defined]
          f"not reached {r.not_reached}")  # type: ignore[attr-defined]  # fmt: skip
    print(f"  reference (bare connects): wall {ref_wall:6.2f} s  cpu {ref_cpu:6.2f} s")
    print(f"  scan:                      wall {wall:6.2f} s  cpu {cpu:6.2f} s  "
          f"x{wall / ref_wall:.2f} the reference, "
          f"{wall / TARGET_S:.2f} of the 10 s target")  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    port = 4028
    with socket.socket() as probe:  # a port free on the hung range's first address
        probe.bind((hosts_of(args.hung)[0] if args.hung != "none" else "127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = ScanSettings(cgminer_port=port, http_port=port + 1 if port < 65535 else port - 1,
                     concurrency=args.concurrency, probe_timeout_s=args.probe_timeout)  # fmt: skip
    print(f"median of {args.runs} runs each")
    await bench("dead", args.dead, s, args.runs)
    if args.hung != "none":
        listeners = hung_listeners(args.hung, port)
        try:
            await bench("hung", args.hung, s, args.runs)
        finally:
            for sock in listeners:
                sock.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dead", default="127.2.0.0/20")
    parser.add_argument("--hung", default="127.3.0.0/20", help="a CIDR, or none")
    parser.add_argument("--concurrency", type=int, default=ScanSettings().concurrency)
    parser.add_argument("--probe-timeout", type=float, default=ScanSettings().probe_timeout_s)
    asyncio.run(main(parser.parse_args()))
