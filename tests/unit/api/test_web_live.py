"""The SSE hub on a real socket: events reach every client, the client bound answers 503,
one address cannot take every slot, a client that falls behind or stops reading is dropped,
and stopping the server ends open streams at once."""

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
        a.close()
        b.close()
    assert hub.counters.published == 2


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


async def test_a_client_that_falls_behind_is_dropped(serve: Started) -> None:
    hub = LiveHub(queue_max=8)
    url = await start(serve, hub)
    async with aiohttp.ClientSession() as http:
        slow = await http.get(url)
        await wait_until(lambda: hub.clients == 1)
        for i in range(20):  # published faster than its stream task can run: the queue fills
            hub.publish("tip", {"height": i})
        assert hub.counters.dropped_slow == 1
        events = await read_events(slow, 8)  # what was queued is still written, then the end
        assert [d["height"] for _, d in events] == list(range(8))
        rest = await asyncio.wait_for(slow.content.read(), 5)  # returns: the server closed it
        assert rest.strip() == b""
        await wait_until(lambda: hub.clients == 0)


async def test_a_client_that_stops_reading_is_dropped_when_a_write_stalls(serve: Started) -> None:
    hub = LiveHub(write_timeout=0.5, queue_max=1000)
    url = await start(serve, hub)
    port = int(url.split(":")[2].split("/")[0])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")  # then never reads
    try:
        await wait_until(lambda: hub.clients == 1)
        payload = {"pad": "x" * 60_000}
        deadline = time.monotonic() + 20
        while hub.counters.dropped_slow == 0:  # fill the socket's buffers until a write stalls
            assert time.monotonic() < deadline, "a stalled client was never dropped"
            hub.publish("alert", payload)
            await asyncio.sleep(0.05)
        await wait_until(lambda: hub.clients == 0)
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
