"""Live updates for the dashboard: a Server-Sent Events hub with bounded cost per client.

`LiveHub.publish(event, data)` encodes the event once and hands the same bytes to every
client's queue (O(clients), no I/O, never blocks, callable from any code on the loop);
each client's `stream` task writes its queue to its socket. Bounds, all hostile-input proof:

* at most `max_clients` streams at once, and `per_ip_max` per remote address (except
  loopback, where a reverse proxy in front of the pool brings every browser from): the next
  one is answered 503 with a JSON reason and a Retry-After (EventSource stops retrying);
* each client's queue holds at most `queue_max` events: a client that falls that far behind
  (a slow or stalled reader) is dropped, never buffered without end;
* a write that does not finish within `write_timeout` seconds drops the client too;
* a client that closed its connection frees its slot within `check_every` seconds (2 s);
  a comment line every `heartbeat` seconds keeps proxies from closing a quiet stream.

Events are `event: NAME` + one JSON `data:` line + an `id:` (a counter, so a client can tell
it missed some). The browser side (`web/static/js/site.js`) turns each into a DOM event
`hf:NAME` on `document.body`, which htmx fragments listen to (`hx-trigger="hf:block from:body"`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from hashfarm.api.admin import error

log = logging.getLogger("hashfarm.api.live")

MAX_CLIENTS = 500  # streams open at once (the benchmark's 500 live clients)
PER_IP_MAX = 16  # streams from one remote address
QUEUE_MAX = 64  # events waiting for one client before it is dropped as too slow
WRITE_TIMEOUT = 10.0  # seconds one write may take before the client is dropped
HEARTBEAT = 15.0  # seconds between keep-alive comments
CHECK_EVERY = 2.0  # seconds between looks at whether an idle client is still connected
EVENT_BYTES_MAX = 65_536  # an event larger than this is a bug: refused at publish
_CLOSE = b""  # queued to end a stream (shutdown, or the client fell behind)


@dataclass(eq=False)
class _Client:
    peer: str
    queue: asyncio.Queue[bytes]  # bounded: queue_max events plus the closing marker
    dropped: bool = False


@dataclass
class HubCounters:
    """What the hub has done since start (for the page footer, tests and the benchmark)."""

    published: int = 0  # events published
    refused: int = 0  # streams answered 503 (too many clients)
    dropped_slow: int = 0  # clients dropped because their queue was full or a write stalled


class LiveHub:
    """Fan-out of small JSON events to at most `max_clients` SSE streams."""

    def __init__(
        self,
        *,
        max_clients: int = MAX_CLIENTS,
        per_ip_max: int = PER_IP_MAX,
        queue_max: int = QUEUE_MAX,
        write_timeout: float = WRITE_TIMEOUT,
        heartbeat: float = HEARTBEAT,
        check_every: float = CHECK_EVERY,
        loopback_is_proxy: bool = True,
    ) -> None:
        self.max_clients = max_clients
        self.per_ip_max = per_ip_max
        self.queue_max = queue_max
        self.write_timeout = write_timeout
        self.heartbeat = heartbeat
        self.check_every = check_every
        self.loopback_is_proxy = loopback_is_proxy
        self.counters = HubCounters()
        self._clients: set[_Client] = set()
        self._per_ip: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def clients(self) -> int:
        """Streams open now."""
        return len(self._clients)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Send `data` (JSON-encodable) as `event` to every client; drop those too far behind."""
        if not event.replace("-", "").isalnum():
            raise ValueError(f"event name {event!r}: letters, digits and '-' only")
        body = orjson.dumps(data)
        if len(body) > EVENT_BYTES_MAX:
            raise ValueError(f"event {event!r} is {len(body)} bytes (at most {EVENT_BYTES_MAX})")
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (next(self._ids), event.encode(), body)
        self.counters.published += 1
        for client in self._clients:
            if client.dropped:
                continue
            if client.queue.qsize() >= self.queue_max:
                self._drop(client, "its queue is full")
            else:
                client.queue.put_nowait(frame)

    def _drop(self, client: _Client, why: str) -> None:
        client.dropped = True
        self.counters.dropped_slow += 1
        log.info("live: dropped the stream of %s (%s)", client.peer, why)
        with contextlib.suppress(asyncio.QueueFull):  # the slot kept free for this line
            client.queue.put_nowait(_CLOSE)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """The `/events` handler: an SSE stream until the client goes, falls behind or the
        hub closes; 503 when the hub is full (or full for this address)."""
        peer = request.remote or "?"
        if self._closed:
            return error(503, "the server is stopping", headers={"Retry-After": "5"})
        per_ip_full = self._per_ip.get(peer, 0) >= self.per_ip_max and not self._exempt(peer)
        if len(self._clients) >= self.max_clients or per_ip_full:
            self.counters.refused += 1
            return error(
                503,
                f"too many live clients (at most {self.max_clients}, {self.per_ip_max} per "
                "address): reload the page later for live updates",
                headers={"Retry-After": "30"},
            )
        client = _Client(peer, asyncio.Queue(self.queue_max + 1))
        self._clients.add(client)
        self._per_ip[peer] = self._per_ip.get(peer, 0) + 1
        try:
            resp = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-store",
                    "X-Accel-Buffering": "no",  # proxies: pass each event on at once
                }
            )
            await resp.prepare(request)
            await self._write(resp, b"retry: 5000\n: hashfarm live\n\n")
            quiet_since = time.monotonic()
            while True:
                try:
                    frame = await asyncio.wait_for(client.queue.get(), self.check_every)
                except TimeoutError:
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        break  # the client went: free its slot now, not at the next write
                    if time.monotonic() - quiet_since < self.heartbeat:
                        continue
                    frame = b": keep-alive\n\n"
                if frame == _CLOSE:
                    break
                await self._write(resp, frame)
                quiet_since = time.monotonic()
            return resp
        except (TimeoutError, ConnectionError, asyncio.CancelledError) as exc:
            if isinstance(exc, TimeoutError) and not client.dropped:
                self._drop(client, "a write stalled")
            if isinstance(exc, asyncio.CancelledError):
                raise
            return web.Response(status=204)  # never sent: the stream had begun
        finally:
            self._clients.discard(client)
            left = self._per_ip.get(peer, 1) - 1
            if left:
                self._per_ip[peer] = left
            else:
                self._per_ip.pop(peer, None)

    def _exempt(self, peer: str) -> bool:
        """Loopback peers are a reverse proxy in front of the pool (docs/security.md): every
        browser arrives from its address, so only the total bound applies to them."""
        if not self.loopback_is_proxy:
            return False
        try:
            return ipaddress.ip_address(peer).is_loopback
        except ValueError:
            return False

    async def _write(self, resp: web.StreamResponse, frame: bytes) -> None:
        await asyncio.wait_for(resp.write(frame), self.write_timeout)

    def close(self) -> None:
        """End every stream (at shutdown, so the server need not wait for them)."""
        self._closed = True
        for client in self._clients:
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(_CLOSE)
