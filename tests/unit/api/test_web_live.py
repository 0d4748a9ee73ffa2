"""The SSE hub on a real socket: events reach every client, the client bound answers 503,
one address cannot take every slot, a client that never reads is dropped with the memory it
held bounded (and one that stalls under that bound after `write_timeout`, but not one that
catches up in time), an HTTP/1.0 client gets unchunked frames, and stopping the server ends
open streams at once."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from hashfarm.api.live import LiveHub

Started = list[tuple[LiveHub, str, web.AppRunner]]


@pytest.fixture
async def serve() -> AsyncIterator[Started]:
    """`await start(hub)` -> base URL of an app serving `hub.stream` at /events."""
    started: Started = []
    yield started
    for hub, _, runner in started:
        hub.close()
        await runner.cleanup()


async def start(started: Started, hub: LiveHub) -> str:
    app = web.Application()
    app.router.add_get("/events", hub.stream)
    app.on_shutdown.append(lambda _: _close(hub))
    runner = web.AppRunner(app, shutdown_timeout=30)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/events"
    started.append((hub, url, runner))
    return url


async def _close(hub: LiveHub) -> None:
    hub.close()


async def read_events(resp: aiohttp.ClientResponse, count: int) -> list[tuple[str, Any]]:
    """The next `count` events (name, data) from an open stream."""
    events: list[tuple[str, Any]] = []
    name = None
    while len(events) < count:
        line = (await asyncio.wait_for(resp.content.readline(), 5)).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name is not None:
            events.append((name, orjson.loads(line[6:])))
            name = None
    return events


async def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_every_client_gets_each_event_in_order(serve: Started) -> None:
    hub = LiveHub()
    url = await start(serve, hub)
    async with aiohttp.ClientSession() as http:
        a = await http.get(url)
        b = await http.get(url)
        assert a.status == b.status == 200
        assert a.headers["Content-Type"] == "text/event-stream"
        await wait_until(lambda: hub.clients == 2)
        hub.publish("block", {"height": 1})
        hub.publish("worker", {"new": ["x.rig1"]})
        for resp in (a, b):
            assert await read_events(resp, 2) == [
                ("block", {"height": 1}),
                ("worker", {"new": ["x.rig1"]}),
            ]
        hub.close()  # each stream ends with the last chunk: the client reads a clean end
        for resp in (a, b):  # the rest of the last event, then the end (no error)
            assert (await asyncio.wait_for(resp.content.read(), 5)).strip() == b""
    assert hub.counters.published == 2
    assert hub.counters.written == 4


async def test_events_published_together_go_out_in_one_write(serve: Started) -> None:
    hub = LiveHub(coalesce=0.2)
    url = await start(serve, hub)
    async with aiohttp.ClientSession() as http:
        resp = await http.get(url)
        await wait_until(lambda: hub.clients == 1)
        began = time.monotonic()
        for height in range(5):  # a look of the feed: several events at once
            hub.publish("tip", {"height": height})
        assert hub.counters.written == 0  # nothing yet: they wait for the others
        events = await read_events(resp, 5)
        assert 0.15 < time.monotonic() - began < 2
        assert [d["height"] for _, d in events] == list(range(5))
        assert (hub.counters.rounds, hub.counters.written) == (1, 5)
        hub.publish("tip", {"height": 5})
        hub.close()  # what is pending goes out before the stream ends
        assert await read_events(resp, 1) == [("tip", {"height": 5})]
        assert hub.counters.rounds == 2


async def test_beyond_the_client_bound_is_a_503_with_a_reason(serve: Started) -> None:
    hub = LiveHub(max_clients=2, per_ip_max=10)
    url = await start(serve, hub)
    async with aiohttp.ClientSession() as http:
        first, second = await http.get(url), await http.get(url)
        third = await http.get(url)
        assert third.status == 503
        assert third.headers["Retry-After"] == "30"
        assert "too many live clients" in (await third.json())["error"]
        assert hub.counters.refused == 1
        first.close()  # a slot frees when a client goes (found at the next write)
        hub.publish("tip", {"height": 2})
        await wait_until(lambda: hub.clients == 1)
        fourth = await http.get(url)
        assert fourth.status == 200
        second.close()
        fourth.close()


async def test_one_address_cannot_take_every_slot(serve: Started) -> None:
    hub = LiveHub(max_clients=100, per_ip_max=3, loopback_is_proxy=False)
    url = await start(serve, hub)
    async with aiohttp.ClientSession() as http:
        held = [await http.get(url) for _ in range(3)]
        assert all(r.status == 200 for r in held)
        refused = await http.get(url)
        assert refused.status == 503
        for r in held:
            r.close()


async def test_loopback_is_a_proxy_bound_only_by_the_total(serve: Started) -> None:
    hub = LiveHub(max_clients=5, per_ip_max=1)  # 127.0.0.1: a reverse proxy in front
    url = await start(serve, hub)
    async with aiohttp.ClientSession() as http:
        held = [await http.get(url) for _ in range(5)]
        assert [r.status for r in held] == [200] * 5
        assert (await http.get(url)).status == 503
        for r in held:
            r.close()


def raw_stream(url: str, version: str = "1.1", rcvbuf: int | None = None) -> socket.socket:
    """A plain socket that asked for the stream (and, unless read, never reads it)."""
    port = int(url.split(":")[2].split("/")[0])
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /events HTTP/{version}\r\nHost: x\r\n\r\n".encode())
    return sock


def read_all(sock: socket.socket, seconds: float = 10.0, until: bytes = b"") -> tuple[bytes, str]:
    """Everything the server sends until it closes (or resets) the connection, or until
    the data ends with `until` ("ended": an HTTP/1.1 response's end, the connection kept)."""
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if until and data.endswith(until):
                return data, "ended"
    except ConnectionResetError:
        return data, "reset"
    return data, "closed"


def count_events(sock: socket.socket, wanted: int, seconds: float) -> int:
    """Read until `wanted` events arrived (or `seconds` passed); how many did."""
    sock.settimeout(seconds)
    seen, tail = 0, b""
    while seen < wanted:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        seen += (tail + chunk).count(b"\nevent: ")  # a marker split between two reads too
        tail = chunk[-7:]  # shorter than the marker: never counted twice
    return seen


async def test_a_client_that_never_reads_is_dropped_with_bounded_memory(serve: Started) -> None:
    """A reader that never reads fills its socket, then its transport's buffer: it is
    dropped once that passes the bound, and what the pool held for it never exceeded the
    bound plus one event. A client reading beside it (a thread) gets every event."""
    bound = 256 * 1024
    hub = LiveHub(backlog_bytes=bound, coalesce=0)
    url = await start(serve, hub)
    stalled = raw_stream(url, rcvbuf=4096)
    healthy = raw_stream(url)
    got: list[tuple[bytes, str]] = []
    reader = asyncio.create_task(
        asyncio.to_thread(lambda: got.append(read_all(healthy, 30, b"\r\n0\r\n\r\n")))
    )
    try:
        await wait_until(lambda: hub.clients == 2)
        payload = {"pad": "x" * 60_000}
        frame = 60_100  # one event's bytes on the wire, about
        held, published = [], 0
        while hub.counters.dropped_slow == 0:
            assert published < 1000, "60 MB published and the stalled client is still there"
            hub.publish("alert", payload)
            published += 1
            held.append(hub.backlog())
            await asyncio.sleep(0.005)  # the healthy reader's thread runs
        assert max(held) > bound // 2  # the stalled client's buffer did grow...
        assert (
            max(held) <= bound + 2 * frame
        )  # ...and never past the bound (plus the healthy one's)
        assert hub.clients == 1  # its slot is free at once
        assert hub.backlog() < bound  # and its backlog is gone with its connection
        hub.publish("tip", {"height": 7})
        hub.close()
        await reader
        data, how = got[0]
        assert how == "ended"  # the healthy stream ended cleanly (the last chunk)
        assert data.count(b"event: alert") == published
        assert b'data: {"height":7}' in data
        data, how = await asyncio.to_thread(read_all, stalled)
        assert how in ("closed", "reset")  # the stalled one was cut off: what its socket
        assert data.count(b"event: alert") < published - bound // frame  # held, not the backlog
    finally:
        stalled.close()
        healthy.close()


async def test_a_stalled_client_under_the_byte_bound_is_dropped_after_write_timeout(
    serve: Started,
) -> None:
    hub = LiveHub(backlog_bytes=1 << 30, write_timeout=0.5, check_every=0.1, coalesce=0)
    url = await start(serve, hub)
    sock = raw_stream(url, rcvbuf=4096)
    try:
        await wait_until(lambda: hub.clients == 1)
        deadline = time.monotonic() + 20
        while hub.backlog() == 0:  # fill its socket until bytes wait in the pool
            assert time.monotonic() < deadline, "the socket never filled"
            hub.publish("alert", {"pad": "x" * 60_000})
            await asyncio.sleep(0.001)
        began = time.monotonic()
        await wait_until(lambda: hub.counters.dropped_slow == 1, 5)
        assert 0.4 <= time.monotonic() - began < 3  # write_timeout (0.5 s), at the timer's look
        assert hub.clients == 0
        assert hub.backlog() == 0
    finally:
        sock.close()


async def test_a_reader_behind_for_less_than_write_timeout_stays(serve: Started) -> None:
    hub = LiveHub(backlog_bytes=1 << 30, write_timeout=3, check_every=0.1, coalesce=0)
    url = await start(serve, hub)
    sock = raw_stream(url, rcvbuf=4096)
    try:
        await wait_until(lambda: hub.clients == 1)
        for _ in range(100):
            hub.publish("alert", {"pad": "x" * 60_000})
        assert hub.backlog() > 0  # 6 MB: more than its socket takes
        await asyncio.sleep(0.5)  # the timer looks 5 times meanwhile
        seen = await asyncio.to_thread(count_events, sock, 100, 5.0)
        assert seen == 100  # caught up within write_timeout
        assert hub.counters.dropped_slow == 0
        assert hub.clients == 1
        assert hub.backlog() == 0
    finally:
        sock.close()


async def test_an_http_1_0_client_gets_bare_frames(serve: Started) -> None:
    hub = LiveHub()
    url = await start(serve, hub)
    sock = raw_stream(url, version="1.0")
    try:
        await wait_until(lambda: hub.clients == 1)
        hub.publish("tip", {"height": 9})
        hub.close()
        data, how = await asyncio.to_thread(read_all, sock)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200")
        assert b"chunked" not in head.lower()
        assert body == b'retry: 5000\n: hashfarm live\n\nid: 1\nevent: tip\ndata: {"height":9}\n\n'
        assert how == "closed"
    finally:
        sock.close()


async def test_stopping_the_server_ends_open_streams_at_once(serve: Started) -> None:
    hub = LiveHub()
    url = await start(serve, hub)
    _, _, runner = serve.pop()
    async with aiohttp.ClientSession() as http:
        resp = await http.get(url)
        await wait_until(lambda: hub.clients == 1)
        began = time.monotonic()
        await runner.cleanup()  # on_shutdown closes the hub: no 30 s wait for the stream
        assert time.monotonic() - began < 5
        resp.close()
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(url)


def test_event_names_and_sizes_are_checked() -> None:
    hub = LiveHub()
    with pytest.raises(ValueError, match="letters, digits"):
        hub.publish("bad\nname", {})
    with pytest.raises(ValueError, match="bytes"):
        hub.publish("big", {"pad": "x" * 70_000})


async def test_a_client_that_goes_frees_its_slot_without_any_event(serve: Started) -> None:
    hub = LiveHub(check_every=0.2, per_ip_max=1, loopback_is_proxy=False)
    url = await start(serve, hub)
    async with aiohttp.ClientSession() as http:
        gone = await http.get(url)
        await wait_until(lambda: hub.clients == 1)
        gone.close()  # the browser tab closed: nothing is published meanwhile
        await wait_until(lambda: hub.clients == 0, 3)
        again = await http.get(url)  # the address's single slot is free again
        assert again.status == 200
        again.close()
    assert hub.counters.published == 0


async def test_a_quiet_stream_gets_keep_alive_comments(serve: Started) -> None:
    hub = LiveHub(check_every=0.05, heartbeat=0.2)
    url = await start(serve, hub)
    async with aiohttp.ClientSession() as http:
        resp = await http.get(url)
        lines = [(await asyncio.wait_for(resp.content.readline(), 5)) for _ in range(6)]
        assert b": keep-alive\n" in lines
        resp.close()
