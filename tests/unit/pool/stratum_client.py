"""A small Stratum V1 test miner: real socket, project codec, hashlib grinding.

At regtest's difficulty (about 4.7e-10) one hash in two meets the share target, so grinding
in Python is instant. The miner keeps what the pool told it (extranonce1, difficulty, the
latest job, every notification in order) so tests can check the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from hashfarm.chain.pow import difficulty_to_target
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import LineBuffer, Notification, Request, Response, decode, encode
from hashfarm.stratum.work import Job, apply_version_bits, u32_hex


@dataclass
class MinedShare:
    """One share this miner submitted and what the pool answered."""

    job: Job
    header: bytes
    extranonce2: bytes
    response: Response

    @property
    def hash(self) -> bytes:
        """Internal-order sha256d of the header."""
        return hashlib.sha256(hashlib.sha256(self.header).digest()).digest()


@dataclass
class StratumTestMiner:
    """Connects, negotiates and grinds shares against a Stratum pool on 127.0.0.1."""

    port: int
    username: str
    host: str = "127.0.0.1"
    extranonce1: bytes = b""
    extranonce2_size: int = 0
    difficulty: float | None = None
    job: Job | None = None
    version_mask: int = 0
    notifications: list[Notification] = field(default_factory=list)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _task: asyncio.Task[None] | None = None
    _pending: dict[int, asyncio.Future[Response]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _en2: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _new_job: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self) -> None:
        """Open the TCP connection and start reading."""
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._task = asyncio.ensure_future(self._read_loop())

    async def close(self) -> None:
        """Close the connection."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _read_loop(self) -> None:
        assert self._reader is not None
        buffer = LineBuffer(1 << 20)
        while data := await self._reader.read(65536):
            for line in buffer.feed(data):
                self._dispatch(decode(line))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("pool closed the connection"))

    def _dispatch(self, msg: Request | Notification | Response) -> None:
        if isinstance(msg, Response):
            fut = self._pending.pop(msg.id, None)  # type: ignore[arg-type]
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        if isinstance(msg, Notification):
            self.notifications.append(msg)
            if msg.method == m.SET_DIFFICULTY:
                self.difficulty = m.parse_set_difficulty(msg.params)
            elif msg.method == m.NOTIFY:
                self.job = m.parse_notify(msg.params)
                self._new_job.set()

    async def send_raw(self, data: bytes) -> None:
        """Write raw bytes (for malformed-input tests)."""
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def request(self, method: str, *params: Any, wait_s: float = 10.0) -> Response:
        """Send a request and wait for its response."""
        msg_id = next(self._ids)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self.send_raw(encode(Request(msg_id, method, tuple(params))))
        return await asyncio.wait_for(fut, wait_s)

    async def configure(self, mask: int = 0xFFFFFFFF, **extra: Any) -> Response:
        """BIP 310 mining.configure asking for version-rolling on `mask` (plus `extra`)."""
        exts = ["version-rolling", *extra.pop("extensions", [])]
        params = {"version-rolling.mask": u32_hex(mask), "version-rolling.min-bit-count": 2}
        params.update(extra)
        resp = await self.request(m.CONFIGURE, exts, params)
        self.version_mask = m.parse_configure_result(resp.result) or 0
        return resp

    async def subscribe(self, session_id: str | None = None) -> Response:
        """mining.subscribe (resuming `session_id` when given)."""
        params: list[Any] = ["hashfarm-test/1.0"] + ([session_id] if session_id else [])
        resp = await self.request(m.SUBSCRIBE, *params)
        if resp.ok:
            sub = m.parse_subscribe_result(resp.result)
            self.extranonce1, self.extranonce2_size = sub.extranonce1, sub.extranonce2_size
        return resp

    async def authorize(self, username: str | None = None) -> Response:
        """mining.authorize."""
        return await self.request(m.AUTHORIZE, username or self.username, "x")

    async def start(self) -> None:
        """(connect +) subscribe + authorize, and wait for the first job."""
        if self._writer is None:
            await self.connect()
        assert (await self.subscribe()).ok
        auth = await self.authorize()
        assert auth.ok, auth.error
        await self.wait_job()

    async def wait_job(self, wait_s: float = 10.0) -> Job:
        """Wait until a job newer than the last one waited for arrives."""
        await asyncio.wait_for(self._new_job.wait(), wait_s)
        self._new_job.clear()
        assert self.job is not None
        return self.job

    def grind(self, job: Job, target: int, version_bits: int | None = None) -> tuple[bytes, bytes]:
        """Find (header, extranonce2) whose hash meets `target` (hashlib, nonce from 0)."""
        en2 = next(self._en2).to_bytes(self.extranonce2_size, "little")
        version = job.version
        if version_bits is not None:
            version = apply_version_bits(job.version, version_bits, self.version_mask)
        head = job.header(self.extranonce1, en2, job.time, 0, version)[:76]
        for nonce in range(1 << 32):
            header = head + nonce.to_bytes(4, "little")
            digest = hashlib.sha256(hashlib.sha256(header).digest()).digest()
            if int.from_bytes(digest, "little") <= target:
                return header, en2
        raise AssertionError("no nonce found")

    async def mine_share(self, version_bits: int | None = None) -> MinedShare:
        """Grind one share at the current difficulty for the current job and submit it."""
        job = self.job
        assert job is not None
        assert self.difficulty is not None
        header, en2 = self.grind(job, difficulty_to_target(self.difficulty), version_bits)
        resp = await self.submit(job, header, en2, version_bits)
        return MinedShare(job, header, en2, resp)

    async def submit(
        self, job: Job, header: bytes, en2: bytes, version_bits: int | None = None
    ) -> Response:
        """mining.submit for a header this miner built."""
        ntime = int.from_bytes(header[68:72], "little")
        nonce = int.from_bytes(header[76:80], "little")
        share = m.Submit(self.username, job.job_id, en2, ntime, nonce, version_bits)
        request = m.submit(0, share)
        return await self.request(m.SUBMIT, *request.params)
