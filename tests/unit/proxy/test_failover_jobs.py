"""A share for the left upstream's job is never judged as the new upstream's job of the same
id: pools number their jobs from 1, so after failover the backup's job "j1" is not the
primary's "j1". Scripted primary and backup on real sockets; a machine's share ground on the
primary's job reaches the proxy after it moved to the backup (the in-flight race of
test_proxy_mining's failover): it is refused as job not found, not judged low difficulty
against another job's header, and never forwarded."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace

from hashfarm.chain.pow import difficulty_to_target
from hashfarm.proxy.server import Proxy
from hashfarm.proxy.settings import ProxySettings, Upstream
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import ErrorCode, LineBuffer, Request, decode, encode
from hashfarm.stratum.work import Job
from unit.pool.stratum_client import StratumTestMiner
from unit.proxy.scripted_upstream import answer_handshake

DIFFICULTY = 2.0**-16  # about 65,536 hashes a share
JOB_A = Job("j1", bytes(32), b"\x01" * 40, b"\x02" * 30, (), 0x20000000, 0x207FFFFF, 1_700_000_000,
            True)  # fmt: skip
JOB_B = replace(JOB_A, coinb2=b"\x03" * 30)  # the backup's job: same id, another coinbase


class ScriptedPool:
    """Answers the handshake (the same extranonce1 on both pools), sends one job, counts
    submits and accepts them."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.submits: list[tuple[object, ...]] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        buffer = LineBuffer(65536)
        while data := await reader.read(65536):
            for line in buffer.feed(data):
                req = decode(line)
                assert isinstance(req, Request)
                if answer_handshake(req, writer, DIFFICULTY, self.job):
                    continue
                if req.method == m.SUBMIT:
                    self.submits.append(req.params)
                    writer.write(encode(m.result(req.id, True)))


def hash_value(header: bytes) -> int:
    return int.from_bytes(hashlib.sha256(hashlib.sha256(header).digest()).digest(), "little")


async def test_a_late_share_for_the_left_upstreams_job_is_job_not_found() -> None:
    primary, backup = ScriptedPool(JOB_A), ScriptedPool(JOB_B)
    server_a = await asyncio.start_server(primary.handle, "127.0.0.1", 0)
    server_b = await asyncio.start_server(backup.handle, "127.0.0.1", 0)
    port_a = server_a.sockets[0].getsockname()[1]
    port_b = server_b.sockets[0].getsockname()[1]
    settings = ProxySettings(
        Upstream("127.0.0.1", port_a), "farm", port=0,
        backup=Upstream("127.0.0.1", port_b), retry_primary=60.0,
    )  # fmt: skip
    proxy = Proxy(settings)
    await proxy.start()
    miner = StratumTestMiner(proxy.port, "alice.m1")
    target = difficulty_to_target(DIFFICULTY)
    try:
        await miner.start()
        job_a = miner.job
        assert job_a is not None
        shares = [miner.grind(job_a, target) for _ in range(2)]  # in flight at the failover
        server_a.close()
        for w in primary.writers:
            w.close()  # the primary goes away
        job_b = await miner.wait_job()
        assert proxy.session is not None
        assert proxy.session.target.port == port_b
        # A share that would not meet the target under the backup's job (the header the
        # proxy would build if it took the old id for the backup's job): one of the two.
        late = []
        for header, en2 in shares:
            other = job_b.header(miner.extranonce1, en2, job_a.time, 0, job_a.version)[:76]
            if hash_value(other + header[76:]) > target:
                late.append((header, en2))
        assert late
        header, en2 = late[0]
        resp = await miner.submit(job_a, header, en2)
        assert not resp.ok
        assert resp.error is not None
        assert resp.error.code == ErrorCode.JOB_NOT_FOUND
        assert proxy.stats.low_difficulty == 0
        assert backup.submits == []
        assert primary.submits == []
        assert job_b.job_id != job_a.job_id  # the machine sees two jobs, as they are
        # The backup's own job works, sent upstream under the backup's id.
        resp = await miner.submit(job_b, *miner.grind(job_b, target))
        assert resp.ok, resp.error
        assert [s[1] for s in backup.submits] == [JOB_B.job_id]
    finally:
        await miner.close()
        await proxy.stop()
        server_a.close()
        server_b.close()
