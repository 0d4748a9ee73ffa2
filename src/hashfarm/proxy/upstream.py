"""One Stratum V1 client session to an upstream pool, for the proxy.

The miner's client (`hashfarm.miner.client`) is a sibling layer the proxy may not import, and
it drives a hashing engine; this one only relays: handshake (subscribe, configure,
authorize), notifications to the proxy, and submits whose answers come back through a
callback with the pool's verdict as sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from hashfarm.errors import StratumError
from hashfarm.proxy.settings import Upstream
from hashfarm.proxy.split import IdMap
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import (
    ErrorCode,
    LineBuffer,
    Notification,
    Request,
    Response,
    decode,
    encode,
)

log = logging.getLogger(__name__)

READ_SIZE = 65536
MAX_LINE = 64 * 1024  # an upstream's notify with a big coinbase still fits

SUBMIT_IDS_FROM = 1_000_000  # submit ids; the handshake's are below

OnVerdict = Callable[[object, object, object, Response], None]
"""(downstream connection, downstream request id, share info, the upstream's response)."""


class UpstreamSession:
    """A connected, authorized session; `closed` is set when it ends."""

    def __init__(
        self,
        target: Upstream,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_notification: Callable[[UpstreamSession, Notification], None],
        on_verdict: OnVerdict,
    ) -> None:
        self.target = target
        self._reader, self._writer = reader, writer
        self._on_notification = on_notification
        self._next_id = 100
        self._waiting: dict[int, asyncio.Future[Response]] = {}
        self._on_verdict = on_verdict
        self.submits = IdMap(SUBMIT_IDS_FROM)
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.version_mask: int | None = None
        self.closed = asyncio.Event()
        self._reader_task: asyncio.Task[None] | None = None
        self.early: list[Notification] = []  # notifications before the handshake finished
        self._ready = False

    @classmethod
    async def open(
        cls,
        target: Upstream,
        user: str,
        password: str,
        version_mask: int | None,
        connect_s: float,
        idle: float,
        on_notification: Callable[[UpstreamSession, Notification], None],
        on_verdict: OnVerdict,
    ) -> UpstreamSession:
        """Connect, subscribe, configure, authorize; StratumError/OSError if any fails."""
        async with asyncio.timeout(connect_s):
            reader, writer = await asyncio.open_connection(target.host, target.port)
        session = cls(target, reader, writer, on_notification, on_verdict)
        session._reader_task = asyncio.create_task(session._read(idle))
        try:
            async with asyncio.timeout(connect_s):
                if version_mask is not None:
                    res = await session._call(lambda i: m.configure(i, version_mask))
                    session.version_mask = m.parse_configure_result(res.result) if res.ok else None
                res = await session._call(lambda i: m.subscribe(i, "hashfarm-proxy/0.1"))
                if not res.ok:
                    raise StratumError(f"{target} refused subscribe: {res.error}")
                sub = m.parse_subscribe_result(res.result)
                session.extranonce1, session.extranonce2_size = (
                    sub.extranonce1,
                    sub.extranonce2_size,
                )
                res = await session._call(lambda i: m.authorize(i, user, password))
                if not res.ok or res.result is not True:
                    raise StratumError(f"{target} refused {user}: {res.error or res.result}")
        except BaseException:
            await session.close()
            raise
        session._ready = True
        return session

    async def _call(self, build: Callable[[int], Request]) -> Response:
        msg_id = self._take_id()
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = future
        self._writer.write(encode(build(msg_id)))
        closed: asyncio.Future[Any] = asyncio.ensure_future(self.closed.wait())
        waiting: set[asyncio.Future[Any]] = {future, closed}
        try:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if future not in done:
            raise ConnectionResetError(f"{self.target} closed during the handshake")
        return future.result()

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def submit(self, params: list[Any], conn: object, downstream_id: object, info: object) -> bool:
        """Forward a mining.submit under a fresh upstream id; the answer goes to `on_verdict`
        with the machine's connection and id. False (nothing sent) if the session is closed."""
        if self.closed.is_set() or self._writer.is_closing():
            return False
        msg_id = self.submits.add(conn, downstream_id, info)
        self._writer.write(encode(Request(msg_id, m.SUBMIT, tuple(params))))
        return True

    @property
    def pending(self) -> int:
        """Submits sent and not answered yet."""
        return len(self.submits)

    async def _read(self, idle: float) -> None:
        buffer = LineBuffer(MAX_LINE)
        try:
            while True:
                async with asyncio.timeout(idle):
                    data = await self._reader.read(READ_SIZE)
                if not data:
                    break
                for line in buffer.feed(data):
                    self._handle(line)
        except (OSError, TimeoutError, StratumError) as exc:
            log.warning("upstream %s lost: %s", self.target, exc)
        finally:
            self._lost()

    def _handle(self, line: bytes) -> None:
        try:
            message = decode(line)
        except StratumError as exc:
            log.warning("upstream %s: bad line: %s", self.target, exc)
            return
        if isinstance(message, Response):
            mid = message.id
            if type(mid) is int:
                entry = self.submits.pop(mid)
                if entry is not None:
                    self._on_verdict(*entry, message)
                    return
                future = self._waiting.pop(mid, None)
                if future is not None and not future.done():
                    future.set_result(message)
            return
        if isinstance(message, Notification):
            if self._ready:
                self._on_notification(self, message)
            else:
                self.early.append(message)

    def _lost(self) -> None:
        """The connection ended: every unanswered submit is refused (never acknowledged)."""
        if self.closed.is_set():
            return
        self.closed.set()
        with contextlib.suppress(Exception):
            self._writer.close()
        lost = m.error(None, ErrorCode.OTHER, f"upstream {self.target} lost before answering")
        for conn, downstream_id, info in self.submits.drain():
            self._on_verdict(conn, downstream_id, info, lost)

    async def close(self) -> None:
        """Close the connection; unanswered submits are refused."""
        task = self._reader_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lost()
