"""`hashfarm miner` against a scripted Stratum V1 pool on real sockets (127.0.0.1).

The pool here is written out message by message (not our pool code): it negotiates
version-rolling, sends set_difficulty / notify / clean_jobs / set_extranonce /
client.reconnect, and checks every submitted share by rebuilding the header with
`hashfarm.chain` primitives from the notify fields of a real mainnet block.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pytest

from hashfarm.chain.block import Block
from hashfarm.chain.hashes import sha256d
from hashfarm.chain.header import BlockHeader
from hashfarm.chain.merkle import coinbase_branch, root_from_branch
from hashfarm.chain.pow import difficulty_to_target, hash_to_int
from hashfarm.miner.client import StratumMiner
from hashfarm.miner.display import Reporter
from hashfarm.miner.settings import MinerSettings, PoolURL
from hashfarm.miner.stats import MinerStats
from realdata import load_block_bytes

POOL_MASK = 0x1FFFE000
DIFFICULTY = 2.0**-16  # about 65,536 hashes a share: several shares a second per thread
EN2_SIZE = 4


def _real_job_params(job_id: str, clean: bool, ntime_delta: int = 0) -> list[Any]:
    """mining.notify params written out by hand from mainnet block 482683."""
    block = Block.parse(load_block_bytes("mainnet-482683"))
    coinbase = block.transactions[0].serialize(witness=False)
    cut = 4 + 1 + 36 + 1 + len(block.transactions[0].inputs[0].script_sig) - 8
    h = block.header
    prev = b"".join(h.prev_hash[i : i + 4][::-1] for i in range(0, 32, 4))
    branch = coinbase_branch([tx.txid() for tx in block.transactions[1:]])
    return [
        job_id,
        prev.hex(),
        coinbase[:cut].hex(),
        coinbase[cut + 8 :].hex(),
        [b.hex() for b in branch],
        f"{h.version:08x}",
        f"{h.bits:08x}",
        f"{h.time + ntime_delta:08x}",
        clean,
    ]


@dataclass
class Share:
    """One mining.submit as the pool saw it, with the pool's own verdict."""

    job_id: str
    extranonce1: bytes
    params: list[Any]
    valid: bool
    rolled: bool


@dataclass
class ScriptedPool:
    """A Stratum pool driven by the test: it answers the handshake and judges shares."""

    extranonce1: bytes
    jobs: dict[str, list[Any]] = field(default_factory=dict)
    shares: list[Share] = field(default_factory=list)
    subscribes: list[list[Any]] = field(default_factory=list)
    authorized: int = 0  # mining.authorize requests answered
    reject_next: tuple[int, str] | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        if self._server is not None:
            self._server.close()

    async def send(self, method: str, params: list[Any]) -> None:
        line = orjson.dumps({"id": None, "method": method, "params": params}) + b"\n"
        for writer in self.writers:
            if not writer.is_closing():
                writer.write(line)
                await writer.drain()

    async def notify(self, params: list[Any]) -> None:
        self.jobs[params[0]] = params
        await self.send("mining.notify", params)

    async def wait_for(self, predicate: Any, within: float = 20.0) -> None:
        """Wait until `predicate()` holds: re-checked on every pool event and every 50 ms
        (some predicates read the miner's state, which changes between pool events)."""
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._changed.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self._changed.set()
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                reply = self._answer(orjson.loads(line))
                writer.write(orjson.dumps(reply) + b"\n")
                await writer.drain()
                self._changed.set()

    def _answer(self, msg: dict[str, Any]) -> dict[str, Any]:
        method, params, msg_id = msg["method"], msg["params"], msg["id"]
        result: Any = True
        error = None
        if method == "mining.configure":
            assert params[0] == ["version-rolling"]
            result = {"version-rolling": True, "version-rolling.mask": f"{POOL_MASK:08x}"}
        elif method == "mining.subscribe":
            self.subscribes.append(params)
            result = [[["mining.notify", "sid1"]], self.extranonce1.hex(), EN2_SIZE]
        elif method == "mining.authorize":
            self.authorized += 1
        elif method == "mining.submit":
            result, error = self._judge(params)
        return {"id": msg_id, "result": result, "error": error}

    def _judge(self, params: list[Any]) -> tuple[Any, Any]:
        job = self.jobs.get(params[1])
        valid = job is not None and _share_is_valid(job, self.extranonce1, params)
        self.shares.append(Share(params[1], self.extranonce1, params, valid, len(params) == 6))
        if self.reject_next is not None:
            code, text = self.reject_next
            self.reject_next = None
            return None, [code, text, None]
        return (True, None) if valid else (None, [20, "invalid share", None])


def _share_is_valid(job: list[Any], extranonce1: bytes, params: list[Any]) -> bool:
    """Rebuild the header from the notify fields and the submit, the way a pool does."""
    coinbase = (
        bytes.fromhex(job[2]) + extranonce1 + bytes.fromhex(params[2]) + bytes.fromhex(job[3])
    )
    root = root_from_branch(sha256d(coinbase), [bytes.fromhex(b) for b in job[4]])
    prev = bytes.fromhex(job[1])
    version = int(job[5], 16)
    if len(params) == 6:
        bits = int(params[5], 16)
        assert bits & ~POOL_MASK == 0, "rolled bits outside the negotiated mask"
        version = (version & ~POOL_MASK) | bits
    header = BlockHeader(
        version,
        b"".join(prev[i : i + 4][::-1] for i in range(0, 32, 4)),
        root,
        int(params[3], 16),
        int(job[6], 16),
        int(params[4], 16),
    )
    assert len(params[2]) == 2 * EN2_SIZE
    return hash_to_int(header.hash()) <= difficulty_to_target(DIFFICULTY)


@pytest.fixture
async def pool() -> AsyncIterator[ScriptedPool]:
    server = ScriptedPool(bytes.fromhex("a1b2c3d4"))
    await server.start()
    yield server
    await server.stop()


def _settings(**overrides: Any) -> MinerSettings:
    base = MinerSettings(
        user="acct.rig1",
        backend="hashlib",
        threads=2,
        nonce_space=1 << 15,  # a small header space, so version-rolling happens within seconds
        chunk_seconds=0.05,
        backoff_initial=0.05,
        backoff_max=0.2,
        output="json",
        suggest_difficulty=0.001,
        executor="thread",
    )
    return replace(base, **overrides).validate()


@contextlib.asynccontextmanager
async def _running(settings: MinerSettings, port: int) -> AsyncIterator[StratumMiner]:
    stats = MinerStats(settings.backend, settings.threads, time.monotonic())
    reporter = Reporter(stats, "json", stream=io.StringIO())
    miner = StratumMiner(settings, PoolURL("127.0.0.1", port), stats, reporter)
    task = asyncio.create_task(miner.run())
    try:
        yield miner
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_miner_mines_valid_shares_through_every_pool_message(pool: ScriptedPool) -> None:
    async with _running(_settings(), pool.port) as miner:
        await pool.wait_for(lambda: pool.authorized)
        await pool.send("mining.set_difficulty", [DIFFICULTY])
        await pool.notify(_real_job_params("j1", clean=True))
        await pool.wait_for(
            lambda: sum(s.rolled for s in pool.shares) >= 2 and len(pool.shares) >= 6
        )
        assert all(s.valid for s in pool.shares), [s.params for s in pool.shares if not s.valid]
        assert pool.subscribes[0] == ["hashfarm-miner/0.1"]

        # A pool reject carries its reason through to the miner's stats.
        pool.reject_next = (23, "Low difficulty share")
        await pool.wait_for(lambda: miner.stats.rejected)
        assert miner.stats.rejected == {"[23] Low difficulty share": 1}

        # set_extranonce applies from the next job; clean_jobs drops j1 at once.
        pool.extranonce1 = bytes.fromhex("0badf00d")
        await pool.send("mining.set_extranonce", [pool.extranonce1.hex(), EN2_SIZE])
        await pool.notify(_real_job_params("j2", clean=True, ntime_delta=1))
        before = len(pool.shares)
        await pool.wait_for(lambda: sum(s.job_id == "j2" for s in pool.shares) >= 4)
        first_j2 = next(i for i, s in enumerate(pool.shares) if s.job_id == "j2")
        assert all(s.job_id == "j2" for s in pool.shares[first_j2:]), "share for a dropped job"
        assert all(s.valid for s in pool.shares[before:] if s.job_id == "j2")
        assert miner.stats.accepted >= 8


async def test_client_reconnect_resumes_the_session(pool: ScriptedPool) -> None:
    second = ScriptedPool(pool.extranonce1)
    await second.start()
    try:
        async with _running(_settings(threads=1), pool.port) as miner:
            await pool.wait_for(lambda: pool.authorized)
            await pool.send("mining.set_difficulty", [DIFFICULTY])
            await pool.notify(_real_job_params("j1", clean=True))
            await pool.wait_for(lambda: len(pool.shares) >= 2)
            await pool.send("client.reconnect", ["127.0.0.1", second.port, 0])
            await second.wait_for(lambda: second.authorized)
            assert second.subscribes[0] == ["hashfarm-miner/0.1", "sid1"]  # asks to resume
            await second.send("mining.set_difficulty", [DIFFICULTY])
            await second.notify(_real_job_params("k1", clean=True))
            await second.wait_for(lambda: len(second.shares) >= 2)
            assert all(s.valid and s.job_id == "k1" for s in second.shares)
            assert miner.connections == 2
    finally:
        await second.stop()


async def test_dropped_connection_is_retried_with_backoff(pool: ScriptedPool) -> None:
    async with _running(_settings(threads=1), pool.port) as miner:
        await pool.wait_for(lambda: len(pool.subscribes) == 1)
        for writer in pool.writers:
            writer.close()  # the pool goes away without a word
        await pool.wait_for(lambda: pool.authorized == 2)
        await pool.send("mining.set_difficulty", [DIFFICULTY])
        await pool.notify(_real_job_params("j1", clean=True))
        await pool.wait_for(lambda: len(pool.shares) >= 1)
        assert miner.connections == 2


async def test_refused_worker_ends_the_run_with_the_reason() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            msg = orjson.loads(line)
            error = (
                [24, "Unauthorized worker", None] if msg["method"] == "mining.authorize" else None
            )
            result = [[], "00000000", 4] if msg["method"] == "mining.subscribe" else None
            writer.write(orjson.dumps({"id": msg["id"], "result": result, "error": error}) + b"\n")

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = _settings(threads=1)
    stats = MinerStats("hashlib", 1, time.monotonic())
    miner = StratumMiner(
        settings, PoolURL("127.0.0.1", port), stats, Reporter(stats, "quiet", stream=io.StringIO())
    )
    try:
        with pytest.raises(Exception, match="Unauthorized worker") as info:
            await asyncio.wait_for(miner.run(), 20)
    finally:
        server.close()
    assert "acct.rig1" in str(info.value)


async def test_numba_backend_in_threads_mines_valid_shares(pool: ScriptedPool) -> None:
    settings = _settings(backend="numba", executor="thread", nonce_space=1 << 32)
    async with _running(settings, pool.port) as miner:
        await pool.wait_for(lambda: pool.authorized)
        await pool.send("mining.set_difficulty", [DIFFICULTY])
        await pool.notify(_real_job_params("n1", clean=True))
        await pool.wait_for(lambda: len(pool.shares) >= 20, within=60)
    assert all(s.valid for s in pool.shares)
    threads = {int(s.params[2], 16) % 2 for s in pool.shares}
    assert threads == {0, 1}  # both hashing threads found shares on their own extranonce2
    assert miner.stats.hardware_errors == 0


async def test_silent_pool_is_left_after_the_idle_timeout(pool: ScriptedPool) -> None:
    async with _running(_settings(threads=1, idle_timeout=0.3), pool.port) as miner:
        await pool.wait_for(lambda: pool.authorized >= 2, within=10)  # said nothing: reconnected
        assert miner.connections >= 2


async def test_resumed_session_hashes_on_without_a_new_job(pool: ScriptedPool) -> None:
    async with _running(_settings(threads=1), pool.port):
        await pool.wait_for(lambda: pool.authorized)
        await pool.send("mining.set_difficulty", [DIFFICULTY])
        await pool.notify(_real_job_params("j1", clean=True))
        await pool.wait_for(lambda: len(pool.shares) >= 1)
        for writer in pool.writers:
            writer.close()
        await pool.wait_for(lambda: pool.authorized == 2)
        assert pool.subscribes[1] == ["hashfarm-miner/0.1", "sid1"]
        seen = len(pool.shares)
        await pool.wait_for(lambda: len(pool.shares) >= seen + 3)  # no notify was sent again
    assert all(s.valid and s.job_id == "j1" for s in pool.shares)
