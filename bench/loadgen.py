"""A Stratum V1 load generator: many miner connections on 127.0.0.1 driven from one process.

Each `Miner` is one TCP connection that subscribes, authorizes, follows `mining.notify` and
`mining.set_difficulty`, and submits shares it prepared in advance (so the generator spends
its time on the socket, not on hashing, and the pool is the bottleneck being measured). It
records, per request, the time from writing the line to reading the answer, and the time each
`mining.notify` arrived. Used by bench/bench_pool.py and by the kill -9 durability test.

Shares are real: built from the job the pool sent (coinbase, merkle branch, header), with
unique (extranonce2, nonce) pairs. `keep` chooses which of them to send, e.g. only hashes
that meet the share target but not the network's (so a regtest run finds no blocks).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hashfarm.chain.hashes import sha256d
from hashfarm.chain.pow import hash_difficulty
from hashfarm.stratum import messages
from hashfarm.stratum.codec import LineBuffer, Notification, Response, decode, encode
from hashfarm.stratum.work import Job, serialize_header

Keep = Callable[[float], bool]
"""A share filter on the hash's difficulty (True: send it)."""


@dataclass(frozen=True, slots=True)
class Share:
    """A prepared share: the encoded submit line and what identifies it in the ledger."""

    msg_id: int
    line: bytes
    job_id: str
    difficulty: float  # the hash's actual difficulty (ShareRecord.share_difficulty)


@dataclass
class Answer:
    """What the pool said to one request and how long it took."""

    ok: bool
    result: Any
    error: Any
    latency: float  # seconds from write to answer


@dataclass
class Miner:
    """One Stratum connection of the load generator."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    user: str
    extranonce1: bytes = b""
    extranonce2_size: int = 8
    difficulty: float | None = None
    job: Job | None = None
    notify_times: list[tuple[float, Job]] = field(default_factory=list)
    answers: dict[int, Answer] = field(default_factory=dict)
    _sent: dict[int, float] = field(default_factory=dict)
    _waiters: dict[int, asyncio.Future[Answer]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(10))
    _en2: itertools.count[int] = field(default_factory=itertools.count)
    _task: asyncio.Task[None] | None = None
    first_job: asyncio.Event = field(default_factory=asyncio.Event)
    _unanswered: int = 0  # answers still due for the current burst
    _all_answered: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def connect(cls, host: str, port: int, user: str) -> Miner:
        """Open the connection and start reading (call `handshake` next)."""
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        miner = cls(reader, writer, user)
        miner._task = asyncio.create_task(miner._read_loop())
        return miner

    async def handshake(self, suggest: float | None = None, wait_s: float = 30.0) -> None:
        """subscribe, (suggest_difficulty), authorize; return once the first job arrived."""
        sub = await self.request(messages.subscribe(1, "hashfarm-loadgen/1"), wait_s)
        result = messages.parse_subscribe_result(sub.result)
        self.extranonce1, self.extranonce2_size = result.extranonce1, result.extranonce2_size
        if suggest is not None:
            self.send(encode(messages.suggest_difficulty(2, suggest)))
        auth = await self.request(messages.authorize(3, self.user, "x"), wait_s)
        if not auth.ok:
            raise RuntimeError(f"authorize {self.user} refused: {auth.error}")
        await asyncio.wait_for(self.first_job.wait(), wait_s)

    async def request(self, req: Any, wait_s: float = 30.0) -> Answer:
        """Send one request and wait for its answer."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiters[req.id] = future
        self.send(encode(req), req.id)
        return await asyncio.wait_for(future, wait_s)

    def send(self, line: bytes, msg_id: int | None = None) -> None:
        """Write one line, noting when for the latency of its answer."""
        if msg_id is not None:
            self._sent[msg_id] = time.perf_counter()
        self.writer.write(line)

    def prepare(self, count: int, keep: Keep | None = None) -> list[Share]:
        """`count` distinct shares on the current job (hashes filtered by `keep`)."""
        job = self.job
        assert job is not None, "no job yet"
        shares: list[Share] = []
        while len(shares) < count:
            en2 = next(self._en2).to_bytes(self.extranonce2_size, "big")
            root = job.merkle_root(self.extranonce1, en2)
            for nonce in range(count * 3):
                header = serialize_header(job.version, job.prev_hash, root, job.time, job.bits,
                                          nonce)  # fmt: skip
                diff = hash_difficulty(sha256d(header))
                if keep is None or keep(diff):
                    msg_id = next(self._ids)
                    submit = messages.Submit(self.user, job.job_id, en2, job.time, nonce)
                    line = encode(messages.submit(msg_id, submit))
                    shares.append(Share(msg_id, line, job.job_id, diff))
                    if len(shares) == count:
                        break
        return shares

    async def submit(self, shares: list[Share], burst: int = 16) -> None:
        """Send shares `burst` lines per write and wait for those answers before the next
        burst (a burst of 1 is a closed loop: one share in flight)."""
        for i in range(0, len(shares), burst):
            chunk = shares[i : i + burst]
            self._unanswered, self._all_answered = len(chunk), asyncio.Event()
            stamp = time.perf_counter()
            for share in chunk:
                self._sent[share.msg_id] = stamp
            self.writer.write(b"".join(share.line for share in chunk))
            done = asyncio.ensure_future(self._all_answered.wait())
            closed = asyncio.ensure_future(self.closed.wait())
            await asyncio.wait([done, closed], return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            closed.cancel()
            if self.closed.is_set():
                return

    async def close(self) -> None:
        """Hang up."""
        self.writer.close()
        if self._task is not None:
            self._task.cancel()
        self.closed.set()

    async def _read_loop(self) -> None:
        buffer = LineBuffer(1 << 20)
        try:
            while data := await self.reader.read(1 << 16):
                now = time.perf_counter()
                for line in buffer.feed(data):
                    self._on_message(decode(line), now)
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()

    def _on_message(self, msg: Any, now: float) -> None:
        if isinstance(msg, Response) and isinstance(msg.id, int):
            sent = self._sent.pop(msg.id, now)
            answer = Answer(msg.ok and msg.result is not False, msg.result, msg.error, now - sent)
            self.answers[msg.id] = answer
            future = self._waiters.pop(msg.id, None)
            if future is not None and not future.done():
                future.set_result(answer)
            self._unanswered -= 1
            if self._unanswered == 0:
                self._all_answered.set()
        elif isinstance(msg, Notification):
            self._on_notification(msg, now)

    def _on_notification(self, msg: Notification, now: float) -> None:
        if msg.method == "mining.notify":
            self.job = Job.from_params(msg.params)
            self.notify_times.append((now, self.job))
            self.first_job.set()
        elif msg.method == "mining.set_difficulty":
            self.difficulty = messages.parse_set_difficulty(msg.params)


async def connect_many(
    host: str, port: int, users: list[str], *, parallel: int = 200, suggest: float | None = None
) -> list[Miner]:
    """Connect and hand-shake one Miner per user name, `parallel` at a time."""
    gate = asyncio.Semaphore(parallel)

    async def one(user: str) -> Miner:
        async with gate:
            miner = await Miner.connect(host, port, user)
            await miner.handshake(suggest)
            return miner

    return list(await asyncio.gather(*(one(u) for u in users)))


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
