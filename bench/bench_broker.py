"""Broker choice benchmark: durable publish with acks, NATS JetStream vs Redis Streams.

Measured on the local servers (NATS JetStream 127.0.0.1:4222, Redis 127.0.0.1:6379):

* sequential: one publish at a time, each awaiting its ack (JetStream PubAck with a
  Nats-Msg-Id; Redis XADD reply): p50/p99 latency, what one share waits at low load;
* loaded: `sessions` closed-loop producers, each waiting for its ack before the next (as a
  front end waits before answering a share): acked messages/s and p50/p99 latency. JetStream
  through hashfarm.broker.Publisher (pipelined PubAcks on one connection); Redis through
  redis-py's asyncio client (one pooled connection per concurrent command);
* offered rate: `--rate` publishes a second through the Publisher, open loop (a pool
  process answers 10,000 to 15,000 shares a second): the latency each share waits;
* spool only: the same Publisher with the broker unreachable, acking after its own
  group-committed fsync (what a front end does during an outage).

Reference in the same run: a bare loopback TCP round trip (asyncio echo of the same payload);
every latency is also given as a ratio to it. Medians over `--runs`.

Run: .venv/bin/python bench/bench_broker.py [--samples 2000] [--sessions 64] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import redis.asyncio as aioredis

from hashfarm.broker import Publisher

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import percentile

NATS_URL = "nats://127.0.0.1:4222"
REDIS_URL = "redis://127.0.0.1:6379"
Figures = dict[str, float]


async def sequential(samples: int, call: Callable[[int], Awaitable[object]]) -> Figures:
    """p50/p99 (ms) of `samples` calls made one after another."""
    for n in range(min(100, samples)):  # warm up connections and caches
        await call(-1 - n)
    lat = []
    for n in range(samples):
        t = time.perf_counter()
        await call(n)
        lat.append(time.perf_counter() - t)
    return {"p50": percentile(lat, 0.5) * 1e3, "p99": percentile(lat, 0.99) * 1e3}


async def loaded(
    sessions: int, seconds: float, call: Callable[[int], Awaitable[object]]
) -> Figures:
    """Closed-loop producers for `seconds`: acked/s and p50/p99 latency (ms)."""
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def session(k: int) -> None:
        n = k
        while time.perf_counter() < stop:
            t = time.perf_counter()
            await call(n)
            lat.append(time.perf_counter() - t)
            n += sessions

    start = time.perf_counter()
    await asyncio.gather(*(session(k) for k in range(sessions)))
    wall = time.perf_counter() - start
    return {"rate": len(lat) / wall, "p50": percentile(lat, 0.5) * 1e3,
            "p99": percentile(lat, 0.99) * 1e3}  # fmt: skip


async def tcp_reference(samples: int, payload: bytes) -> Figures:
    """The reference: a bare loopback TCP round trip of `payload` (asyncio echo server)."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def call(_: int) -> None:
        writer.write(payload)
        await reader.readexactly(len(payload))

    figures = await sequential(samples, call)
    writer.close()
    server.close()
    return figures


async def nats_figures(args: argparse.Namespace, payload: bytes) -> dict[str, Figures]:
    """JetStream: sequential PubAcks (nats-py), loaded and spool-only through Publisher."""
    stream = f"BENCH_{secrets.token_hex(4)}"
    subject = f"{stream}.shares"
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[subject], storage="file", duplicate_window=120)
    out: dict[str, Figures] = {}
    try:
        run = secrets.token_hex(4)

        async def seq_call(n: int) -> None:
            await js.publish(subject, payload, headers={"Nats-Msg-Id": f"s{run}-{n}"})

        out["nats sequential"] = await sequential(args.samples, seq_call)
        with tempfile.TemporaryDirectory() as spool:
            out["nats loaded"] = await publisher_load(
                NATS_URL, stream, subject, Path(spool), args, payload
            )
        with tempfile.TemporaryDirectory() as spool:
            out[f"nats at {args.rate}/s offered"] = await publisher_rate(
                stream, subject, Path(spool), args, payload
            )
        with tempfile.TemporaryDirectory() as spool:  # nothing listens on port 1
            out["spool only"] = await publisher_load(
                "nats://127.0.0.1:1", stream, subject, Path(spool), args, payload
            )
    finally:
        await js.delete_stream(stream)
        await nc.close()
    return out


async def publisher_load(
    url: str, stream: str, subject: str, spool: Path, args: argparse.Namespace, payload: bytes
) -> Figures:
    pub = Publisher(url, stream, [subject], spool, name="bench")
    await pub.start(connect_wait=2.0 if url == NATS_URL else 0.1)
    loop = asyncio.get_running_loop()
    run = secrets.token_hex(4)

    async def call(n: int) -> None:
        fut = loop.create_future()
        pub.publish(subject, f"{run}-{n}", payload, fut.set_result)
        if (exc := await fut) is not None:
            raise exc

    try:
        figures = await loaded(args.sessions, args.seconds, call)
        figures.update(await publish_call_cost(pub, subject, run))
        return figures
    finally:
        pub.close_flush_s = 0.5
        await pub.close()


async def publisher_rate(
    stream: str, subject: str, spool: Path, args: argparse.Namespace, payload: bytes
) -> Figures:
    """Open loop: `args.rate` publishes a second (a pool process's share rate), issued every
    millisecond for `args.seconds`; the publish-to-done latency of each."""
    pub = Publisher(NATS_URL, stream, [subject], spool, name="bench")
    await pub.start()
    lat: list[float] = []
    run, n, total = secrets.token_hex(4), 0, int(args.rate * args.seconds)
    finished = asyncio.Event()

    def done_at(t0: float) -> Callable[[BaseException | None], None]:
        def done(exc: BaseException | None) -> None:
            lat.append(time.perf_counter() - t0)
            if len(lat) == total:
                finished.set()

        return done

    start = time.perf_counter()
    while n < total:  # catch up to the schedule, then sleep a tick
        due = min(total, int((time.perf_counter() - start) * args.rate) + 1)
        while n < due:
            pub.publish(subject, f"{run}-{n}", payload, done_at(time.perf_counter()))
            n += 1
        await asyncio.sleep(0.001)
    await finished.wait()
    wall = time.perf_counter() - start
    pub.close_flush_s = 0.5
    await pub.close()
    return {"rate": total / wall, "p50": percentile(lat, 0.5) * 1e3,
            "p99": percentile(lat, 0.99) * 1e3}  # fmt: skip


async def publish_call_cost(pub: Publisher, subject: str, run: str) -> Figures:
    """What publish() itself costs the share path (µs per call, its done() not awaited)."""
    n = 5000
    settled = asyncio.Event()
    left = n

    def done(_: BaseException | None) -> None:
        nonlocal left
        left -= 1
        if left == 0:
            settled.set()

    t = time.perf_counter()
    for k in range(n):
        pub.publish(subject, f"{run}-call-{k}", b"x" * 200, done)
    cost = (time.perf_counter() - t) / n
    await settled.wait()
    return {"call_us": cost * 1e6}


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


async def redis_figures(args: argparse.Namespace, payload: bytes) -> dict[str, Figures]:
    """Redis Streams: XADD acks, sequential and loaded; notes its persistence settings."""
    key = f"bench:{secrets.token_hex(4)}"
    r = aioredis.from_url(REDIS_URL, max_connections=args.sessions + 4)
    out: dict[str, Figures] = {}
    try:
        config = await r.config_get("appendonly")
        config.update(await r.config_get("appendfsync"))
        config.update(await r.config_get("save"))
        print(f"redis persistence here: {config}")

        async def call(n: int) -> None:
            await r.xadd(key, {"id": str(n), "p": payload})

        out["redis sequential"] = await sequential(args.samples, call)
        out["redis loaded"] = await loaded(args.sessions, args.seconds, call)
    finally:
        await r.delete(key)
        await r.aclose()
    return out


def median_of(runs: list[dict[str, Figures]]) -> dict[str, Figures]:
    return {name: {k: statistics.median(r[name][k] for r in runs) for k in runs[0][name]}
            for name in runs[0]}  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    payload = secrets.token_bytes(args.payload)
    runs = []
    for _ in range(args.runs):
        figures = {"tcp round trip (reference)": await tcp_reference(args.samples, payload)}
        if reachable("127.0.0.1", 4222):
            figures.update(await nats_figures(args, payload))
        else:
            print("NATS JetStream not reachable on 127.0.0.1:4222: its rows are skipped")
        if reachable("127.0.0.1", 6379):
            figures.update(await redis_figures(args, payload))
        else:
            print("Redis not reachable on 127.0.0.1:6379: its rows are skipped")
        runs.append(figures)
    result = median_of(runs)
    ref = result["tcp round trip (reference)"]["p50"]
    print(f"payload {args.payload} B, {args.samples} sequential samples, {args.sessions} "
          f"sessions x {args.seconds} s loaded, median of {args.runs} runs")  # fmt: skip
    print(f"{'':30} {'acked/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p50/ref':>8}")
    for name, f in result.items():
        rate = f"{f['rate']:9.0f}" if "rate" in f else f"{'-':>9}"
        print(f"{name:30} {rate} {f['p50']:8.3f} {f['p99']:8.3f} {f['p50'] / ref:8.1f}")
    for name, f in result.items():
        if "call_us" in f:
            print(f"{name}: publish() itself costs {f['call_us']:.2f} µs a call")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=2000, help="sequential publishes per run")
    p.add_argument("--sessions", type=int, default=64, help="closed-loop producers when loaded")
    p.add_argument("--seconds", type=float, default=2.0, help="length of each loaded run")
    p.add_argument("--rate", type=int, default=15000, help="open-loop publishes a second")
    p.add_argument("--payload", type=int, default=200, help="message size in bytes (a share)")
    p.add_argument("--runs", type=int, default=3)
    asyncio.run(main(p.parse_args()))
