"""Solo mining on the regtest node: blocks built by `hashfarm miner --solo` must be accepted
by bcoin (it becomes the tip) and by Bitcoin Core's consensus engine (the `judge`)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from hashfarm.chain.block import Block
from hashfarm.chain.coinbase import bip34_height
from hashfarm.miner.display import Reporter
from hashfarm.miner.settings import MinerSettings
from hashfarm.miner.solo import COINBASE_TAG, SoloMiner
from hashfarm.miner.stats import MinerStats
from hashfarm.node.rpc import RPCClient
from nodes import Judge, RegtestNode, bcoin_address, start_regtest_node

pytestmark = pytest.mark.node

SOLO_SCRIPT = bytes.fromhex("0014") + bytes(range(100, 120))  # P2WPKH to a test key hash


async def _check_ours(rpc: RPCClient, block_hash: str, height: int) -> Block:
    """The node's copy of a block we mined pays us, carries BIP 34 height and our tag."""
    block = Block.parse(await rpc.getrawblock(block_hash))
    coinbase = block.transactions[0]
    assert block.hash()[::-1].hex() == block_hash
    assert bip34_height(coinbase.inputs[0].script_sig) == height
    assert COINBASE_TAG in coinbase.inputs[0].script_sig
    assert coinbase.outputs[0].script_pubkey == SOLO_SCRIPT
    assert block.compute_merkle_root() == block.header.merkle_root
    return block


async def test_solo_mines_blocks_bcoin_and_core_accept(
    regtest_node: RegtestNode, rpc: RPCClient, judge: Judge
) -> None:
    # Real segwit spends, so the witness commitment matters. bcoin may serve a cached
    # template without them for the first block; the next tip's template carries them.
    txids = set(await regtest_node.mempool_txs(3))
    start = await rpc.getblockcount()
    settings = MinerSettings(backend="hashlib", threads=2, output="json").validate()
    stats = MinerStats("hashlib", 2, time.monotonic())
    log = io.StringIO()
    solo = SoloMiner(
        settings,
        rpc,
        bcoin_address(SOLO_SCRIPT),
        stats,
        Reporter(stats, "json", stream=log),
        max_blocks=3,
        poll_interval=0.1,
    )
    await asyncio.wait_for(solo.run(), 120)

    assert await rpc.getblockcount() == start + 3
    assert len(solo.found) == 3
    assert stats.blocks == 3
    mined: set[str] = set()
    for offset, block_hash in enumerate(solo.found, start=1):
        assert await rpc.getblockhash(start + offset) == block_hash
        block = await _check_ours(rpc, block_hash, start + offset)
        assert block.witness_commitment_in_coinbase() == block.compute_witness_commitment()
        mined |= {tx.txid_hex() for tx in block.transactions[1:]}
    assert txids <= mined, "the mempool spends were left out"
    events = [orjson.loads(line) for line in log.getvalue().splitlines()]
    assert [e["height"] for e in events if e["event"] == "block"] == [
        start + 1,
        start + 2,
        start + 3,
    ]
    await judge.check_chain(rpc)


async def test_cli_solo_mines_one_block(
    regtest_node: RegtestNode, rpc: RPCClient, judge: Judge
) -> None:
    start = await rpc.getblockcount()
    url = regtest_node.rpc_url.replace("://", f"://x:{regtest_node.api_key}@", 1)
    command = [
        str(Path(sys.executable).parent / "hashfarm"), "miner", "--solo", "--rpc", url,
        "--address", bcoin_address(SOLO_SCRIPT), "--blocks", "1", "--json",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    events = [orjson.loads(line) for line in out.splitlines()]
    [block] = [e for e in events if e["event"] == "block"]
    assert block["height"] == start + 1
    assert await rpc.getbestblockhash() == block["hash"]
    assert events[-1]["event"] == "stats"
    assert events[-1]["blocks"] == 1
    await _check_ours(rpc, block["hash"], start + 1)
    await judge.check_chain(rpc)


async def test_solo_waits_out_a_node_restart(
    tmp_path: Path, make_judge: Callable[[], Judge]
) -> None:
    node = await start_regtest_node(tmp_path / "node", wallet=False)
    try:
        settings = MinerSettings(backend="hashlib", backoff_max=0.5, output="json").validate()
        stats = MinerStats("hashlib", 1, time.monotonic())
        log = io.StringIO()
        async with node.rpc(timeout=2, retries=0) as rpc:
            solo = SoloMiner(settings, rpc, bcoin_address(SOLO_SCRIPT), stats,
                             Reporter(stats, "json", stream=log), poll_interval=0.1)  # fmt: skip
            mining = asyncio.create_task(solo.run())
            try:
                await _until(lambda: len(solo.found) >= 1, 30)
                await node.stop()
                await _until(lambda: '"event":"node"' in log.getvalue(), 30)
                assert not mining.done()  # still running, waiting for the node
                await node.start()
                count = len(solo.found)
                await _until(lambda: len(solo.found) >= count + 2, 60)
            finally:
                mining.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await mining
            # Only our miner mines on this node, so the tip pays us. Submissions in flight at
            # cancel may still land, and one scan can hold two winners at one height (the
            # node keeps the first), so judge each block by its own height, not by order.
            tip = await rpc.getbestblockhash()
            await _check_ours(rpc, tip, (await rpc.getblockheader(tip))["height"])
            after_restart = []
            for found in solo.found[count:]:
                height = (await rpc.getblockheader(found))["height"]
                if await rpc.getblockhash(height) == found:
                    after_restart.append(found)
            assert after_restart, "no block mined after the restart is in the chain"
            await make_judge().check_chain(rpc)
    finally:
        await node.stop()


async def _until(predicate: Callable[[], bool], seconds: float) -> None:
    """Poll the miner's state (it offers no event to wait on) until `predicate` holds."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - polling is the point here
            await asyncio.sleep(0.05)
