"""Live updates for the dashboard: a Server-Sent Events hub with bounded cost per client.

`LiveHub.publish(event, data)` encodes the event once; the events published within
`coalesce` seconds (0.25) go out together, the same bytes written straight to every
client's socket transport (`transport.write`: non-blocking, one `send()` per client per
write round, no task wakes up, no per-client queue), so a look of the feed that publishes a
block, an alert and a tip costs one write per client, and a burst of events no more than
four writes a second. Each client's request handler only waits on a future until its
stream ends. One hub timer (every `check_every` seconds, only while
streams are open) finds the clients that went, drops the stalled ones and sends the
keep-alive comment. Bounds, all hostile-input proof:

* at most `max_clients` streams at once, and `per_ip_max` per remote address (except
  loopback, where a reverse proxy in front of the pool brings every browser from): the next
  one is answered 503 with a JSON reason and a Retry-After (EventSource stops retrying);
* a client's backlog is the bytes its transport could not hand to the kernel yet
  (`get_write_buffer_size()`; what a slow or stalled reader leaves behind): a client whose
  backlog is over `backlog_bytes` when an event is published is dropped (its connection
  aborted, its backlog freed), so the memory one client holds is at most `backlog_bytes`
  plus one event (`EVENT_BYTES_MAX`), never buffered without end;
* a client whose backlog has not drained for `write_timeout` seconds is dropped too (a
  stalled reader that stays under the byte bound);
* a client that closed its connection frees its slot at the next event or within
  `check_every` seconds (2 s); a comment line every `heartbeat` seconds without an event
  keeps proxies from closing a quiet stream.

Events are `event: NAME` + one JSON `data:` line + an `id:` (a counter, so a client can tell
it missed some). The browser side (`web/static/js/site.js`) turns each into a DOM event
`hf:NAME` on `document.body`, which htmx fragments listen to (`hx-trigger="hf:block from:body"`).

The stream's first bytes (status, headers, the `retry:` line) go through aiohttp; after
that the hub writes to the transport itself, framed as aiohttp would have (HTTP/1.1 chunked
transfer encoding, or bare bytes for an HTTP/1.0 client), so the end of a stream closed by
the hub is still aiohttp's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from hashfarm.api.admin import error

log = logging.getLogger("hashfarm.api.live")

MAX_CLIENTS = 500  # streams open at once (the benchmark's 500 live clients)
PER_IP_MAX = 16  # streams from one remote address
BACKLOG_BYTES = 65_536  # unsent bytes one client may hold before it is dropped as too slow
WRITE_TIMEOUT = 10.0  # seconds a client's backlog may go without draining before it is dropped
HEARTBEAT = 15.0  # seconds without an event before a keep-alive comment
CHECK_EVERY = 2.0  # seconds between the hub timer's looks at its clients
COALESCE = 0.25  # seconds events wait to go out together (one write per client for them all)
EVENT_BYTES_MAX = 65_536  # an event larger than this is a bug: refused at publish
_HELLO = b"retry: 5000\n: hashfarm live\n\n"
_KEEP_ALIVE = b": keep-alive\n\n"


@dataclass(eq=False, slots=True)
class _Client:
    peer: str
    done: asyncio.Future[None]  # resolved when the stream ends, whoever ends it
    transport: asyncio.Transport | None = None  # once the headers are out: the hub writes
    chunked: bool = True  # HTTP/1.1 chunked framing (False: an HTTP/1.0 client)
    stalled_since: float | None = None  # when its backlog was last seen non-empty first


@dataclass
class HubCounters:
    """What the hub has done since start (for the page footer, tests and the benchmark)."""

    published: int = 0  # events published
    written: int = 0  # event frames handed to client transports (events x clients)
    rounds: int = 0  # write rounds (the events of up to `coalesce` seconds in each)
    refused: int = 0  # streams answered 503 (too many clients)
    dropped_slow: int = 0  # clients dropped: backlog over the bound, or not draining
    gone: int = 0  # clients found closed by their side
    heartbeats: int = 0  # keep-alive rounds sent


@dataclass(eq=False)
class _Frame:
    """One event's bytes, encoded once for every client."""

    raw: bytes
    chunked: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.chunked = b"%x\r\n%s\r\n" % (len(self.raw), self.raw)


class LiveHub:
    """Fan-out of small JSON events to at most `max_clients` SSE streams."""

    def __init__(
        self,
        *,
        max_clients: int = MAX_CLIENTS,
        per_ip_max: int = PER_IP_MAX,
        backlog_bytes: int = BACKLOG_BYTES,
        write_timeout: float = WRITE_TIMEOUT,
        heartbeat: float = HEARTBEAT,
        check_every: float = CHECK_EVERY,
        coalesce: float = COALESCE,
        loopback_is_proxy: bool = True,
    ) -> None:
        self.max_clients = max_clients
        self.per_ip_max = per_ip_max
        self.backlog_bytes = backlog_bytes
        self.write_timeout = write_timeout
        self.heartbeat = heartbeat
        self.check_every = check_every
        self.coalesce = coalesce
        self.loopback_is_proxy = loopback_is_proxy
        self.counters = HubCounters()
        self._clients: set[_Client] = set()
        self._per_ip: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._last_sent = time.monotonic()  # the last event or keep-alive written
        self._timer: asyncio.Task[None] | None = None
        self._pending: list[bytes] = []  # events published since the last write round
        self._pending_bytes = 0
        self._flush_at: asyncio.TimerHandle | None = None

    @property
    def clients(self) -> int:
        """Streams open now."""
        return len(self._clients)

    def backlog(self) -> int:
        """Bytes written to the open streams that their sockets have not taken yet (in all)."""
        return sum(c.transport.get_write_buffer_size() for c in self._clients
                   if c.transport is not None and not c.transport.is_closing())  # fmt: skip

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Send `data` (JSON-encodable) as `event` to every client; drop those too far behind."""
        if not event.replace("-", "").isalnum():
            raise ValueError(f"event name {event!r}: letters, digits and '-' only")
        body = orjson.dumps(data)
        if len(body) > EVENT_BYTES_MAX:
            raise ValueError(f"event {event!r} is {len(body)} bytes (at most {EVENT_BYTES_MAX})")
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (next(self._ids), event.encode(), body)
        self.counters.published += 1
        if not self._clients:
            return
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if self.coalesce <= 0 or self._pending_bytes > self.backlog_bytes:
            self._flush()  # at once (or: so much at once that waiting would only hold memory)
        elif self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_later(self.coalesce, self._flush)

    def _flush(self) -> None:
        """One write round: every event published since the last one, to every client."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        frames, self._pending, self._pending_bytes = self._pending, [], 0
        if frames and self._clients:
            self.counters.rounds += 1
            self.counters.written += self._send(_Frame(b"".join(frames))) * len(frames)

    def _send(self, frame: _Frame) -> int:
        """Write `frame` to every streaming client (the hot loop: three transport calls per
        client); end the ones that went and drop the ones over the backlog bound."""
        self._last_sent = time.monotonic()
        limit = self.backlog_bytes
        ended: list[tuple[_Client, str]] = []
        sent = 0
        for client in self._clients:
            transport = client.transport
            if transport is None:
                continue  # its headers are still on their way
            if transport.is_closing():
                ended.append((client, ""))
            elif transport.get_write_buffer_size() > limit:
                ended.append((client, f"more than {limit} bytes waiting"))
            else:
                transport.write(frame.chunked if client.chunked else frame.raw)
                sent += 1
        for client, why in ended:
            self._end(client, why)
        return sent

    def _end(self, client: _Client, why: str = "") -> None:
        """Take `client` out now (its slot is free at once); `why`: dropped as too slow, its
        connection aborted and its backlog freed. Idempotent."""
        if client not in self._clients:
            return
        self._clients.discard(client)
        left = self._per_ip.get(client.peer, 1) - 1
        if left:
            self._per_ip[client.peer] = left
        else:
            self._per_ip.pop(client.peer, None)
        transport = client.transport
        if why:
            self.counters.dropped_slow += 1
            log.info("live: dropped the stream of %s (%s)", client.peer, why)
            if transport is not None:
                transport.abort()
        elif transport is not None and transport.is_closing():
            self.counters.gone += 1
        if not client.done.done():
            client.done.set_result(None)

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
        client = _Client(peer, asyncio.get_running_loop().create_future())
        self._clients.add(client)
        self._per_ip[peer] = self._per_ip.get(peer, 0) + 1
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # proxies: pass each event on at once
            }
        )
        try:
            await resp.prepare(request)
            await resp.write(_HELLO)  # the headers and the first chunk, through aiohttp
            transport = request.transport
            if client.done.done() or transport is None or transport.is_closing():
                return resp  # closed meanwhile (or the client went): the stream ends here
            client.chunked = resp.headers.get("Transfer-Encoding", "").lower() == "chunked"
            client.transport = transport  # from now on the hub writes to it
            self._start_timer()
            await client.done
            if not transport.is_closing() and transport.get_write_buffer_size():
                transport.abort()  # ended with a backlog (hub closing): no drain to wait on
            return resp  # aiohttp ends the stream (the last chunk) or finds it closed
        except ConnectionError:
            return resp  # the client went before the stream began; aiohttp sees it closed
        finally:
            self._end(client)

    def _start_timer(self) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._tick(), name="live-hub")

    async def _tick(self) -> None:
        """Every `check_every` s while streams are open: end the clients that went, drop the
        ones whose backlog has not drained for `write_timeout` s, and send the keep-alive
        when nothing was sent for `heartbeat` s."""
        while self._clients and not self._closed:
            await asyncio.sleep(self.check_every)
            now = time.monotonic()
            ended: list[tuple[_Client, str]] = []
            for client in self._clients:
                transport = client.transport
                if transport is None:
                    continue
                if transport.is_closing():
                    ended.append((client, ""))
                elif transport.get_write_buffer_size() == 0:
                    client.stalled_since = None
                elif client.stalled_since is None:
                    client.stalled_since = now
                elif now - client.stalled_since >= self.write_timeout:
                    ended.append((client, f"nothing drained for {self.write_timeout:g} s"))
            for client, why in ended:
                self._end(client, why)
            if now - self._last_sent >= self.heartbeat and self._clients:
                self.counters.heartbeats += 1
                self._send(_Frame(_KEEP_ALIVE))

    def _exempt(self, peer: str) -> bool:
        """Loopback peers are a reverse proxy in front of the pool (docs/security.md): every
        browser arrives from its address, so only the total bound applies to them."""
        if not self.loopback_is_proxy:
            return False
        try:
            return ipaddress.ip_address(peer).is_loopback
        except ValueError:
            return False

    def close(self) -> None:
        """End every stream (at shutdown, so the server need not wait for them)."""
        self._closed = True
        self._flush()  # what was published goes out before the streams end
        for client in list(self._clients):
            self._end(client)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
