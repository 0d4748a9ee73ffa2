"""Share rules on the wire: a real pool on the regtest node, real sockets, a real ledger.

One header is credited once, whichever job of its tip it is sent under (a refresh re-issues
the same coinbase under a new job id); junk never takes a place in the duplicate set; the
ledger records the difficulty a share was judged at, even when that share retargets vardiff.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hashfarm.chain.pow import difficulty_to_target
from hashfarm.pool.settings import NodeSettings, VardiffSettings
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import Request, Response, encode
from hashfarm.stratum.work import Job
from nodes import RegtestNode, bcoin_address
from unit.pool.harness import MINER_SCRIPTS, pool_settings, running_pool, wait_for
from unit.pool.stratum_client import StratumTestMiner

pytestmark = pytest.mark.node


def _username(i: int = 0) -> str:
    return f"{bcoin_address(MINER_SCRIPTS[i])}.rig{i}"


async def pipelined(miner: StratumTestMiner, shares: list[m.Submit]) -> list[Response]:
    """Send every submit in one write (the pool reads them together, before any block it
    finds among them can move the tip), then wait for all the answers."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Response]] = []
    data = b""
    for share in shares:
        msg_id = next(miner._ids)
        fut: asyncio.Future[Response] = loop.create_future()
        miner._pending[msg_id] = fut
        futures.append(fut)
        data += encode(Request(msg_id, m.SUBMIT, m.submit(0, share).params))
    await miner.send_raw(data)
    return [await asyncio.wait_for(fut, 10) for fut in futures]


def grind(miner: StratumTestMiner, job: Job, ntime: int, target: int, *, meet: bool) -> bytes:
    """(extranonce2 fixed at 0) a header for `job` at `ntime` whose hash meets `target`, or,
    with meet=False, one whose hash does not."""
    head = job.header(miner.extranonce1, bytes(miner.extranonce2_size), ntime, 0)[:76]
    for nonce in range(1 << 32):
        header = head + nonce.to_bytes(4, "little")
        digest = hashlib.sha256(hashlib.sha256(header).digest()).digest()
        if (int.from_bytes(digest, "little") <= target) is meet:
            return header
    raise AssertionError("no nonce found")


def share_of(miner: StratumTestMiner, job_id: str, header: bytes) -> m.Submit:
    ntime = int.from_bytes(header[68:72], "little")
    nonce = int.from_bytes(header[76:80], "little")
    return m.Submit(miner.username, job_id, bytes(miner.extranonce2_size), ntime, nonce, None)


async def refreshed_job(miner: StratumTestMiner, first: Job) -> Job:
    """The next job on the same tip (the template refresh), whose coinbase is first's."""
    while True:
        job: Job = await miner.wait_job(10)
        assert job.prev_hash == first.prev_hash, "the tip moved: nothing else mines here"
        if job.job_id != first.job_id:
            return job


async def test_one_header_is_credited_once_across_a_refresh_on_the_same_tip(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    node = NodeSettings(
        rpc_url=regtest_node.rpc_url,
        rpc_password=regtest_node.api_key,
        poll_interval=0.05,
        refresh_interval=0.3,  # a second job on the same template comes quickly
    )
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path, node=node)
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        miner = StratumTestMiner(pool.stratum_port, _username())
        await miner.start()
        try:
            first = miner.job
            assert first is not None
            second = await refreshed_job(miner, first)
            assert not second.clean_jobs
            same = (first.coinb1, first.coinb2, first.merkle_branch, first.version, first.bits)
            assert same == (
                second.coinb1,
                second.coinb2,
                second.merkle_branch,
                second.version,
                second.bits,
            ), "the refresh changed the template: the same header cannot be built twice"
            assert miner.difficulty is not None
            ntime = max(first.time, second.time)  # inside both jobs' ntime range
            header = grind(miner, first, ntime, difficulty_to_target(miner.difficulty), meet=True)
            once, twice = await pipelined(
                miner,
                [share_of(miner, first.job_id, header), share_of(miner, second.job_id, header)],
            )
            assert once.ok, once.error
            assert once.result is True
            assert twice.error is not None, "the same header was credited under a second job"
            assert twice.error.code == 22
            assert "duplicate" in twice.error.message
            await wait_for(lambda: len(recorder.shares) == 2, 10, "both shares observed")
            seen = {(s.accepted, s.reject_reason) for s in recorder.shares}  # rejects come first
            assert seen == {(True, None), (False, "duplicate")}
            # the share was a block (regtest): submitted once, not twice
            await pool.blocks.drain()
            assert len(pool.found_blocks()) == 1
            # and the pool still serves a good miner on the tip that block made
            await wait_for(lambda: miner.job is not None and miner.job.clean_jobs, 10, "new tip")
            good = await miner.mine_share()
            assert good.response.ok, good.response.error
        finally:
            await miner.close()


async def test_junk_shares_never_enter_the_duplicate_set(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        miner = StratumTestMiner(pool.stratum_port, _username(1))
        await miner.start()
        try:
            job = miner.job
            assert job is not None
            assert miner.difficulty is not None
            target = difficulty_to_target(miner.difficulty)
            head = job.header(miner.extranonce1, bytes(miner.extranonce2_size), job.time, 0)[:76]
            junk: list[m.Submit] = []
            for nonce in range(1 << 16):  # the first 40 nonces that miss the share target
                header = head + nonce.to_bytes(4, "little")
                digest = hashlib.sha256(hashlib.sha256(header).digest()).digest()
                if int.from_bytes(digest, "little") > target:
                    junk.append(share_of(miner, job.job_id, header))
                    if len(junk) == 40:
                        break
            answers = await pipelined(miner, junk + junk)  # each sent twice
            codes: list[Any] = [a.error.code if a.error else None for a in answers]
            assert codes == [23] * 80  # low difficulty every time: never "duplicate"
            assert len(pool.jobs.seen(job.job_id)) == 0  # none took a place in the set
            await wait_for(lambda: len(recorder.shares) == 80, 10, "80 rejects observed")
            good = await miner.mine_share()  # the pool still serves the miner
            assert good.response.ok, good.response.error
        finally:
            await miner.close()


async def test_the_ledger_records_the_difficulty_a_share_was_judged_at(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    # one share wanted per millisecond and a retarget at every share: the first share,
    # arriving later than that, lowers the difficulty while it is being recorded
    fast = VardiffSettings(retarget_shares=1, target_interval=0.001)
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path, vardiff=fast)
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        miner = StratumTestMiner(pool.stratum_port, _username(2))
        await miner.start()
        try:
            judged_at = miner.difficulty
            assert judged_at is not None
            await asyncio.sleep(0.2)
            mined = await miner.mine_share()
            assert mined.response.ok, mined.response.error
            await wait_for(lambda: miner.difficulty != judged_at, 5, "the retarget it caused")
            assert miner.difficulty == pytest.approx(judged_at / 8)
            await wait_for(lambda: bool(recorder.shares), 5, "the share observed")
            assert recorder.shares[0].accepted
            assert recorder.shares[0].difficulty == judged_at
        finally:
            await miner.close()
    db = sqlite3.connect(settings.storage.url.removeprefix("sqlite:///"))
    try:
        rows = db.execute("SELECT difficulty FROM shares WHERE accepted").fetchall()
    finally:
        db.close()
    assert rows == [(judged_at,)]
