"""A share is held to the lower of its job's difficulty and the current one (as the pool's
`difficulty_for`): a scripted upstream on a real socket lowers its difficulty without a new
job; a machine's share meeting only the new, lower difficulty is forwarded and counted at it."""

from __future__ import annotations

import asyncio
import hashlib

from hashfarm.chain.pow import difficulty_to_target
from hashfarm.proxy.server import Proxy
from hashfarm.proxy.settings import ProxySettings, Upstream
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import LineBuffer, Request, decode, encode
from hashfarm.stratum.work import Job
from unit.pool.stratum_client import StratumTestMiner
from unit.proxy.scripted_upstream import answer_handshake

HIGH, LOW = 2.0**-20, 2.0**-26  # about 4,096 and 64 hashes a share
JOB = Job("j1", bytes(32), b"\x01" * 40, b"\x02" * 30, (), 0x20000000, 0x207FFFFF, 1_700_000_000,
          True)  # fmt: skip


class ScriptedPool:
    """Answers the handshake, sends HIGH and one job, accepts every submit."""

    def __init__(self) -> None:
        self.submits: list[tuple[object, ...]] = []
        self.writer: asyncio.StreamWriter | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        buffer = LineBuffer(65536)
        while data := await reader.read(65536):
            for line in buffer.feed(data):
                req = decode(line)
                assert isinstance(req, Request)
                if answer_handshake(req, writer, HIGH, JOB):
                    continue
                if req.method == m.SUBMIT:
                    self.submits.append(req.params)
                    writer.write(encode(m.result(req.id, True)))


def hash_value(header: bytes) -> int:
    return int.from_bytes(hashlib.sha256(hashlib.sha256(header).digest()).digest(), "little")


async def test_a_lowered_difficulty_applies_to_the_job_at_hand() -> None:
    pool = ScriptedPool()
    server = await asyncio.start_server(pool.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = Proxy(ProxySettings(Upstream("127.0.0.1", port), "farm", port=0))
    await proxy.start()
    miner = StratumTestMiner(proxy.port, "alice.m1")
    try:
        await miner.start()
        assert miner.difficulty == HIGH
        assert pool.writer is not None
        pool.writer.write(encode(m.set_difficulty(LOW)))  # no new job
        for _ in range(200):
            await asyncio.sleep(0.01)
            if miner.difficulty == LOW:
                break
        assert miner.job is not None
        while True:  # a share meeting LOW and not HIGH
            header, en2 = miner.grind(miner.job, difficulty_to_target(LOW))
            if hash_value(header) > difficulty_to_target(HIGH):
                break
        resp = await miner.submit(miner.job, header, en2)
        assert resp.ok, resp.error
        assert len(pool.submits) == 1
        assert proxy.stats.low_difficulty == 0
        assert proxy.stats.work_by_machine["alice.m1"] == LOW
    finally:
        await miner.close()
        await proxy.stop()
        server.close()
