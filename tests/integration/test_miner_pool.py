"""End to end: `hashfarm miner` mining for the project's own pool on the regtest node.

Our Stratum client (version-rolling, two hashing processes) against `hashfarm.pool`: the
pool must accept its shares, the blocks it finds must pay the miner's address (solo pool
mode), and bcoin and Bitcoin Core's engine must both accept every block.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from pathlib import Path

import pytest

from hashfarm.chain.block import Block
from hashfarm.miner.client import StratumMiner
from hashfarm.miner.display import Reporter
from hashfarm.miner.settings import MinerSettings, PoolURL
from hashfarm.miner.stats import MinerStats
from hashfarm.node.rpc import RPCClient
from nodes import Judge, RegtestNode, bcoin_address
from unit.pool.harness import accepted_blocks, coinbase_pays, pool_settings, running_pool, wait_for

pytestmark = pytest.mark.node

MINER_SCRIPT = bytes.fromhex("0014") + bytes(range(40, 60))  # P2WPKH to a test key hash


async def test_miner_finds_blocks_through_the_pool(
    regtest_node: RegtestNode, rpc: RPCClient, judge: Judge, tmp_path: Path
) -> None:
    address = bcoin_address(MINER_SCRIPT)
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    miner_settings = MinerSettings(
        user=f"{address}.rig1", backend="hashlib", threads=2, output="json"
    ).validate()
    stats = MinerStats("hashlib", 2, time.monotonic())
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        url = PoolURL("127.0.0.1", pool.stratum_port)
        miner = StratumMiner(
            miner_settings, url, stats, Reporter(stats, "json", stream=io.StringIO())
        )
        task = asyncio.create_task(miner.run())
        try:
            await wait_for(lambda: len(accepted_blocks(pool)) >= 3, 90, "3 blocks from our miner")
            await wait_for(lambda: stats.accepted >= 3, 30, "3 accepted shares")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ours = [s for s in recorder.shares if s.worker == f"{address}.rig1"]
    assert ours
    assert all(s.worker == f"{address}.rig1" for s in recorder.shares)
    assert stats.accepted >= 3
    assert miner.protocol.version_mask == 0x1FFFE000  # negotiated with the pool
    assert stats.hardware_errors == 0
    # Rejects can only be the pool's stale/duplicate verdicts racing a new tip, never bad work.
    assert all("Low difficulty" not in r and "invalid" not in r.lower() for r in stats.rejected)
    in_chain = 0
    for rec in accepted_blocks(pool):
        if await rpc.getblockhash(rec.height) != rec.hash_hex:
            continue
        in_chain += 1
        assert await coinbase_pays(rpc, rec.hash_hex, address)
        Block.parse(await rpc.getrawblock(rec.hash_hex))
    assert in_chain >= 3
    await judge.check_chain(rpc)  # Bitcoin Core's consensus engine accepts every block
