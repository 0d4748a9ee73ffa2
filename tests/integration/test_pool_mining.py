"""End to end on the regtest node: concurrent miners, real sockets, real blocks, two judges."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from hashfarm.chain.block import Block
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.blocks import ORPHANED
from hashfarm.pool.records import ShareRecord
from hashfarm.pool.service import Pool
from hashfarm.pool.settings import VardiffSettings
from hashfarm.pool.storage import GroupCommitLedger
from hashfarm.pool.storage.sqlite import SQLiteLedger
from hashfarm.stratum import messages as m
from nodes import Judge, RegtestNode, bcoin_address
from unit.pool.harness import (
    MINER_SCRIPTS,
    accepted_blocks,
    coinbase_pays,
    pool_settings,
    running_pool,
    wait_for,
    witness_spend,
)
from unit.pool.stratum_client import StratumTestMiner

pytestmark = pytest.mark.node


async def keep_mining(
    miner: StratumTestMiner, stop: asyncio.Event, running: asyncio.Event | None = None
) -> None:
    """Submit shares on the latest job until told to stop (rolling version bits if agreed);
    while `running` is clear, wait."""
    rolls = itertools.count(1)
    while not stop.is_set():
        if running is not None:
            await running.wait()
        bits = (next(rolls) << 13) & miner.version_mask if miner.version_mask else None
        try:
            await miner.mine_share(bits)
        except (ConnectionError, TimeoutError):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0)


async def mined_out_of_mempool(rpc: RPCClient, txids: set[str], seconds: float) -> None:
    """Wait until none of `txids` is left in the node's mempool."""
    deadline = asyncio.get_running_loop().time() + seconds
    while txids & set(await rpc.getrawmempool()):
        assert asyncio.get_running_loop().time() < deadline, "payments stuck in the mempool"
        await asyncio.sleep(0.1)


async def start_miners(pool: Pool, count: int, rolling: int = 0) -> list[StratumTestMiner]:
    """`count` miners with their own addresses; the first `rolling` roll version bits."""
    miners = []
    for i in range(count):
        miner = StratumTestMiner(pool.stratum_port, f"{bcoin_address(MINER_SCRIPTS[i])}.rig{i}")
        await miner.connect()
        if i < rolling:
            await miner.configure(0xFFFFFFFF)
            assert miner.version_mask == 0x1FFFE000
        await miner.start()
        miners.append(miner)
    return miners


async def test_concurrent_solo_miners_find_blocks_both_judges_accept(
    regtest_node: RegtestNode, rpc: RPCClient, judge: Judge, tmp_path: Path
) -> None:
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        miners = await start_miners(pool, 3, rolling=1)
        stop, running = asyncio.Event(), asyncio.Event()
        running.set()
        tasks = [asyncio.ensure_future(keep_mining(mn, stop, running)) for mn in miners]
        try:
            await wait_for(lambda: len(accepted_blocks(pool)) >= 5, 60, "5 blocks")
            # put payments in the mempool: the next templates must carry them. The miners
            # pause meanwhile: at dozens of blocks a second the wallet, which follows the
            # chain asynchronously, could not tell its payment in flight from a mined one.
            running.clear()
            await asyncio.sleep(0.5)  # blocks in flight land; the wallet catches up
            txids = set(await regtest_node.mempool_txs(3))
            segwit_txid = await witness_spend(regtest_node, rpc)
            txids.add(segwit_txid)
            running.set()
            await mined_out_of_mempool(rpc, txids, 60)
            want = max(12, len(accepted_blocks(pool)) + 2)  # and the blocks that took them
            await wait_for(lambda: len(accepted_blocks(pool)) >= want, 90, f"{want} blocks")
        finally:
            stop.set()
            running.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await pool.blocks.drain()  # every submitted block confirmed and recorded
            for mn in miners:
                await mn.close()
        blocks = accepted_blocks(pool)
        assert pool.last_tip_to_notify_ms > 0
    finders = {mn.username: mn.username.split(".")[0] for mn in miners}
    in_chain, with_txs = 0, set()
    for rec in blocks:
        if await rpc.getblockhash(rec.height) != rec.hash_hex:
            continue  # replaced by a competing block at that height (solo race)
        in_chain += 1
        assert await coinbase_pays(rpc, rec.hash_hex, finders[rec.finder_worker])
        block = Block.parse(await rpc.getrawblock(rec.hash_hex))
        with_txs |= {tx.txid_hex() for tx in block.transactions[1:]} & txids
        for tx in block.transactions[1:]:
            if tx.txid_hex() == segwit_txid:  # the commitment covers a real witness
                assert tx.has_witness()
                assert block.witness_valid()
        if rec.finder_worker == miners[0].username:  # its blocks carry rolled version bits
            assert block.header.version & 0x1FFFE000
    assert in_chain >= 10
    assert with_txs == txids, "mempool payments never made it into a block"
    # several miners found blocks (counting siblings of a block the node already took: not
    # sent, recorded as such), each submitted block paying its own finder
    assert len({s.worker for s in recorder.shares if s.block_hash_hex}) >= 2
    found = pool.found_blocks()
    for rec in found[:30]:
        assert await coinbase_pays(rpc, rec.hash_hex, finders[rec.finder_worker])
    rolled = [s for s in recorder.shares if s.worker == miners[0].username and s.accepted]
    assert rolled, "the version-rolling miner had no share accepted"
    assert any(s.accepted for s in recorder.shares)
    await judge.check_chain(rpc)  # Bitcoin Core's consensus engine accepts every block


async def test_new_tip_sends_clean_jobs_to_every_session(
    regtest_node: RegtestNode, rpc: RPCClient, tmp_path: Path
) -> None:
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with running_pool(settings, regtest_node.rpc()) as (pool, _):
        miners = await start_miners(pool, 4)
        try:
            [tip] = await regtest_node.mine(1)
            prev = bytes.fromhex(tip)[::-1]
            for mn in miners:
                await wait_for(
                    lambda mn=mn: mn.job is not None and mn.job.prev_hash == prev, 5, "clean job"
                )
                jobs = [m.parse_notify(n.params) for n in mn.notifications if n.method == m.NOTIFY]
                on_tip = [job for job in jobs if job.prev_hash == prev]
                assert on_tip[0].clean_jobs  # the first job on the new tip cleans
            # the difficulty came before the first notify
            methods = [n.method for n in miners[0].notifications]
            assert methods.index(m.SET_DIFFICULTY) < methods.index(m.NOTIFY)
        finally:
            for mn in miners:
                await mn.close()


async def test_stale_block_share_is_rejected_as_stale(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        [miner] = await start_miners(pool, 1)
        try:
            old_job = miner.job
            assert old_job is not None
            [tip] = await regtest_node.mine(1)
            prev = bytes.fromhex(tip)[::-1]
            await wait_for(lambda: miner.job is not None and miner.job.prev_hash == prev, 5, "tip")
            assert miner.difficulty is not None
            header, en2 = miner.grind(old_job, pool.jobs.template.target)  # type: ignore[union-attr]
            resp = await miner.submit(old_job, header, en2)
            assert resp.error is not None
            assert resp.error.code == 21
            assert "stale" in resp.error.message
            # still tested as a block: submitted, and the node keeps it off its chain
            await wait_for(lambda: len(pool.found_blocks()) == 1, 10, "the stale block")
            assert not pool.found_blocks()[0].accepted_by_node
            # valid on the old tip, so the node keeps it as a side branch: orphaned, not rejected
            assert pool.found_blocks()[0].node_verdict == ORPHANED
            assert recorder.shares[-1].reject_reason == "stale"
        finally:
            with contextlib.suppress(Exception):
                await miner.close()


async def test_a_commits_answers_are_written_in_its_own_pass(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    """The acknowledgements a group commit releases go out right after it, not at the
    loop's next turn (after the next round of reads from every other miner)."""
    few_blocks = VardiffSettings(initial=1e-12, minimum=1e-12, enabled=False)  # few blocks
    settings = pool_settings(
        regtest_node.rpc_url, regtest_node.api_key, tmp_path, vardiff=few_blocks
    )
    async with running_pool(settings, regtest_node.rpc()) as (pool, _):
        ledger = pool.ledger
        assert isinstance(ledger, GroupCommitLedger)
        wired = ledger.on_released
        held: list[int] = []  # answers still held by a connection after each release pass

        def released() -> None:
            if wired is not None:
                wired()
            held.append(sum(p._out is not None for p in pool.server.sessions.values()))

        ledger.on_released = released
        miners = await start_miners(pool, 3)
        try:
            shares = await asyncio.gather(*(mn.mine_share() for mn in miners for _ in range(5)))
        finally:
            for mn in miners:
                await mn.close()
        assert all(s.response.result is True for s in shares)
        assert held
        assert set(held) == {0}


def _share_in_commit(ledger: SQLiteLedger) -> bool:
    """A share is in the batch being written (a block record may go first)."""
    return any(isinstance(r, ShareRecord) for r, _ in ledger._writing or [])


async def test_a_writer_lost_mid_commit_costs_its_shares_an_error_and_nothing_else(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    """The share whose commit the writer process died in is answered with an error that
    names no file (the detail is for the log), is not stored, and the pool mines on."""
    few_blocks = VardiffSettings(initial=1e-12, minimum=1e-12, enabled=False)  # few blocks
    settings = pool_settings(
        regtest_node.rpc_url, regtest_node.api_key, tmp_path, vardiff=few_blocks
    )
    db = tmp_path / "pool.sqlite3"
    async with running_pool(settings, regtest_node.rpc()) as (pool, _):
        ledger = pool.ledger
        assert isinstance(ledger, SQLiteLedger)
        assert ledger.process is not None
        assert ledger.process.proc is not None
        [miner] = await start_miners(pool, 1)
        try:
            assert (await miner.mine_share()).response.result is True
            await pool.blocks.drain()  # a block it found is recorded before the lock
            other = sqlite3.connect(db, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # the writer's next INSERT waits on this lock
            for _ in range(5):  # a share refused at once (stale: the last one found a
                pending = asyncio.ensure_future(miner.mine_share())  # block) is mined again
                await wait_for(lambda: _share_in_commit(ledger) or pending.done(), 10, "it")  # noqa: B023
                if not pending.done():
                    break
            assert not pending.done()
            await asyncio.sleep(0.2)  # the child waits in its INSERT for the lock
            os.kill(ledger.process.proc.pid, signal.SIGKILL)
            lost = (await pending).response
            other.execute("ROLLBACK")
            other.close()
            assert lost.error is not None
            assert lost.error.message == "share not recorded: ledger error"
            assert str(tmp_path) not in repr(lost.error)
            assert (await miner.mine_share()).response.result is True  # a new writer
        finally:
            await miner.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM shares").fetchone() == (2,)
