"""The node is stopped and restarted mid-run: miners stay connected and mining resumes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hashfarm.stratum import messages as m
from nodes import Judge, bcoin_address, start_regtest_node
from unit.pool.harness import MINER_SCRIPTS, accepted_blocks, pool_settings, running_pool, wait_for
from unit.pool.stratum_client import StratumTestMiner

pytestmark = pytest.mark.node


async def mine_until(miners: list[StratumTestMiner], done: asyncio.Event) -> None:
    """Every miner submits shares until `done`; connection errors end the test loudly."""

    async def one(miner: StratumTestMiner) -> None:
        while not done.is_set():
            await miner.mine_share()
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one(mn) for mn in miners))


async def test_node_restart_mid_run(tmp_path: Path, make_judge: type[Judge]) -> None:
    node = await start_regtest_node(tmp_path / "node")
    try:
        settings = pool_settings(node.rpc_url, node.api_key, tmp_path)
        async with running_pool(settings, node.rpc(timeout=2, retries=1)) as (pool, _):
            miners = []
            for i in range(2):
                miner = StratumTestMiner(pool.stratum_port, f"{bcoin_address(MINER_SCRIPTS[i])}.r")
                await miner.start()
                miners.append(miner)

            done = asyncio.Event()
            mining = asyncio.ensure_future(mine_until(miners, done))
            await wait_for(lambda: len(accepted_blocks(pool)) >= 2, 30, "2 blocks before")
            done.set()
            await mining
            before = max(b.height for b in accepted_blocks(pool))

            restart = asyncio.ensure_future(node.restart())
            await wait_for(lambda: not pool.watcher.node_up, 20, "the pool to notice")
            for miner in miners:  # still connected, still answered while the node is away
                resp = await miner.request(m.SUGGEST_DIFFICULTY, 0.001)
                assert resp.ok
            # a block found while the node is away waits for it and is submitted on return
            share = await miners[0].mine_share()
            assert share.response.ok
            hash_hex = share.hash[::-1].hex()
            await restart
            await wait_for(
                lambda: any(b.hash_hex == hash_hex for b in accepted_blocks(pool)),
                30,
                "the block found during the outage to be accepted",
            )
            await wait_for(lambda: pool.watcher.node_up, 30, "the pool to see the node back")

            done = asyncio.Event()
            mining = asyncio.ensure_future(mine_until(miners, done))
            await wait_for(
                lambda: max(b.height for b in accepted_blocks(pool)) >= before + 2,
                30,
                "2 blocks after the restart",
            )
            done.set()
            await mining
            for miner in miners:
                await miner.close()
        async with node.rpc() as rpc:
            assert await rpc.getblockcount() >= before + 2
            await make_judge().check_chain(rpc)  # type: ignore[operator]
    finally:
        await node.stop()
