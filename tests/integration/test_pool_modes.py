"""Pooled mode, the coinbase proof, refreshes and bad input, on the regtest node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from hashfarm.chain.pow import difficulty_to_target
from hashfarm.chain.tx import TxOut
from hashfarm.errors import NodeError
from hashfarm.node.rpc import RPCClient
from hashfarm.node.template import Template, parse_template
from hashfarm.pool.blocks import prove_coinbase
from hashfarm.pool.jobs import build_job
from hashfarm.pool.settings import NodeSettings
from hashfarm.pool.tipwatch import TipWatcher
from nodes import PAYOUT_SCRIPT, RegtestNode, bcoin_address
from unit.pool.harness import (
    MINER_SCRIPTS,
    accepted_blocks,
    coinbase_pays,
    pool_settings,
    running_pool,
    wait_for,
)
from unit.pool.stratum_client import StratumTestMiner

pytestmark = pytest.mark.node

CORE_REGTEST_ADDRESS = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


async def test_pooled_mode_pays_the_pool_and_records_every_accepted_share(
    regtest_node: RegtestNode, rpc: RPCClient, tmp_path: Path
) -> None:
    pool_address = bcoin_address(MINER_SCRIPTS[7])
    settings = pool_settings(
        regtest_node.rpc_url,
        regtest_node.api_key,
        tmp_path,
        mode="pooled",
        payout_address=pool_address,
    )
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        alice = StratumTestMiner(pool.stratum_port, "alice.rig1")
        await alice.start()
        while not accepted_blocks(pool):
            await alice.mine_share()
        await alice.close()
        await wait_for(lambda: bool(recorder.blocks), 5, "the block record")
        accepted = [s for s in recorder.shares if s.accepted]
        assert await pool.ledger.share_count() == len(accepted)  # type: ignore[attr-defined]
    block = accepted_blocks(pool)[0]
    assert block.finder_worker == "alice.rig1"
    assert block.finder_account == "alice"
    assert await coinbase_pays(rpc, block.hash_hex, pool_address)
    for share in accepted:
        assert share.worker == "alice.rig1"
        assert share.account == "alice"
        assert share.height > 0
        assert share.difficulty > 0
        assert share.share_difficulty >= share.difficulty
        assert share.job_id
        assert share.time > 0
        assert share.extranonce1_hex == alice.extranonce1.hex()


async def test_coinbase_proof_catches_a_bad_coinbase(rpc: RPCClient) -> None:
    template = parse_template(await rpc.getblocktemplate())

    def greedy(value: int, script: bytes) -> list[TxOut]:
        return [TxOut(value + 1, script)]  # one satoshi more than the block may pay

    job = build_job(
        1, 1, template, PAYOUT_SCRIPT, greedy, tag=b"/t/", extranonce2_size=8, clean=True
    )
    with pytest.raises(NodeError, match="bad-cb-amount"):
        await prove_coinbase(rpc, job, 8)


async def test_addresses_of_both_regtest_flavours_and_refusals(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with running_pool(settings, regtest_node.rpc()) as (pool, _):
        miner = StratumTestMiner(pool.stratum_port, f"{CORE_REGTEST_ADDRESS}.core")
        await miner.connect()
        await miner.subscribe()
        assert (await miner.authorize()).ok  # Core's bcrt1 form
        await miner.wait_job()
        await miner.close()
        p2pkh = bytes.fromhex("76a914") + bytes(range(20)) + bytes.fromhex("88ac")
        p2sh = bytes.fromhex("a914") + bytes(range(20)) + bytes.fromhex("87")
        for script, first in ((p2pkh, "R"), (p2sh, "G")):  # bcoin's base58 flavours
            address = bcoin_address(script)
            assert address.startswith(first)
            other = StratumTestMiner(pool.stratum_port, f"{address}.w")
            await other.connect()
            await other.subscribe()
            assert (await other.authorize()).ok
            await other.wait_job()
            await other.close()
        miner = StratumTestMiner(pool.stratum_port, f"{CORE_REGTEST_ADDRESS}.core")
        await miner.connect()
        await miner.subscribe()
        mainnet = await miner.authorize("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4.x")
        assert mainnet.error is not None
        assert mainnet.error.code == 24
        assert "regtest" in mainnet.error.message
        nonsense = await miner.authorize("alice.rig")
        assert nonsense.error is not None
        assert nonsense.error.code == 24
        await miner.close()


async def test_bad_input_gets_an_error_and_the_session_lives_on(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with running_pool(settings, regtest_node.rpc()) as (pool, _):
        miner = StratumTestMiner(pool.stratum_port, f"{bcoin_address(MINER_SCRIPTS[0])}.x")
        await miner.start()
        await miner.send_raw(b"{this is not json\n")
        unknown = await miner.request("mining.teleport", 1)
        assert unknown.error is not None
        assert unknown.error.code == 20
        share = await miner.mine_share()  # still mining on the same connection
        assert share.response.ok
        assert len(pool.sessions()) == 1
        await miner.send_raw(b"x" * (settings.stratum.max_line + 10))  # no newline, too long
        await wait_for(lambda: not pool.sessions(), 5, "the flooding connection to close")
        await miner.close()


async def test_refresh_sends_new_work_without_clean_jobs(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    base = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    node = replace(base.node, refresh_interval=0.3, longpoll=False)
    settings = replace(base, node=node)
    assert isinstance(settings.node, NodeSettings)
    async with running_pool(settings, regtest_node.rpc()) as (pool, _):
        miner = StratumTestMiner(pool.stratum_port, f"{bcoin_address(MINER_SCRIPTS[1])}.x")
        await miner.start()
        first = miner.job
        assert first is not None
        second = await miner.wait_job(wait_s=5)
        assert second.job_id != first.job_id
        assert second.prev_hash == first.prev_hash
        assert not second.clean_jobs
        # a share on the first job still counts: same tip, the job is kept
        assert miner.difficulty is not None
        header, en2 = miner.grind(first, difficulty_to_target(miner.difficulty))
        late = await miner.submit(first, header, en2)
        assert late.ok, late.error
        await miner.close()


async def test_under_uvloop(regtest_node: RegtestNode, tmp_path: Path) -> None:
    """`hashfarm pool` runs on uvloop, whose transports are not asyncio.Transport subclasses."""
    uvloop = pytest.importorskip("uvloop")
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)

    async def scenario() -> int:
        async with running_pool(settings, regtest_node.rpc()) as (pool, _):
            miner = StratumTestMiner(pool.stratum_port, f"{bcoin_address(MINER_SCRIPTS[2])}.uv")
            await miner.start()
            while not accepted_blocks(pool):
                await miner.mine_share()
            await miner.close()
            return len(accepted_blocks(pool))

    assert await asyncio.to_thread(uvloop.run, scenario()) >= 1


async def test_client_reconnect_reaches_every_session(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with running_pool(settings, regtest_node.rpc()) as (pool, _):
        miners = [
            StratumTestMiner(pool.stratum_port, f"{bcoin_address(MINER_SCRIPTS[i])}.r")
            for i in range(2)
        ]
        for miner in miners:
            await miner.start()
        assert pool.reconnect_all("127.0.0.1", 4444, 5) == 2
        for miner in miners:
            await wait_for(
                lambda miner=miner: any(
                    n.method == "client.reconnect" for n in miner.notifications
                ),
                5,
                "client.reconnect",
            )
            [note] = [n for n in miner.notifications if n.method == "client.reconnect"]
            assert list(note.params) == ["127.0.0.1", 4444, 5]
            await miner.close()


async def test_hashblock_stream_drives_new_tips(regtest_node: RegtestNode, rpc: RPCClient) -> None:
    """ZMQ hashblock (a stream of display-hex hashes from node/) triggers the fetch at once."""
    hashes: asyncio.Queue[str] = asyncio.Queue()

    async def stream() -> AsyncIterator[str]:
        while True:
            yield await hashes.get()

    seen: list[tuple[str, str]] = []

    async def on_template(template: Template, reason: str) -> None:
        seen.append((template.prev_hash[::-1].hex(), reason))

    settings = NodeSettings(poll_interval=1.0, longpoll=False, refresh_interval=55.0)
    watcher = TipWatcher(regtest_node.rpc(), settings, on_template, stream)
    await watcher.fetch("start")
    watcher.start()  # the first poll is a second away: only the stream can be quicker
    try:
        [tip] = await regtest_node.mine(1)
        await hashes.put(tip)
        await wait_for(lambda: len(seen) == 2, 0.9, "the template for the new tip")
        assert seen[1] == (tip, "new tip (zmq)")
        await hashes.put(tip)  # the same hash again: nothing to do
        await asyncio.sleep(0.05)
        assert len(seen) == 2
    finally:
        await watcher.stop()
        await watcher.rpc.close()  # type: ignore[attr-defined]


async def test_unauthorized_connections_are_closed_after_auth_timeout(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    base = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    settings = replace(base, stratum=replace(base.stratum, auth_timeout=0.5))
    async with running_pool(settings, regtest_node.rpc()) as (pool, _):
        lurker = StratumTestMiner(pool.stratum_port, "nobody")
        await lurker.connect()
        await lurker.subscribe()  # subscribed, never authorized
        miner = StratumTestMiner(pool.stratum_port, f"{bcoin_address(MINER_SCRIPTS[3])}.ok")
        await miner.start()
        await wait_for(lambda: len(pool.sessions()) == 1, 5, "the lurker to be closed")
        assert pool.sessions()[0].account == miner.username.split(".")[0]
        await lurker.close()
        await miner.close()


async def test_coinbase_proof_on_a_tip_that_moved_is_retryable(
    regtest_node: RegtestNode, rpc: RPCClient
) -> None:
    """A block arriving before the start-up proof makes it inconclusive, not a refusal: the
    pool fetches the new tip and proves again. bcoin answers this case with
    'inconclusive-not-best-prevblk'; a block landing while bcoin verifies the proposal gives
    'bad-prevblk' instead (a restarted pool beside a mining one died of it, about once in
    20 runs of test_proxy_mining.py), which is now retried the same way (bounded: 3 tries)."""
    template = parse_template(await rpc.getblocktemplate())

    def plain(value: int, script: bytes) -> list[TxOut]:
        return [TxOut(value, script)]

    job = build_job(
        1, 1, template, PAYOUT_SCRIPT, plain, tag=b"/t/", extranonce2_size=8, clean=True
    )
    await regtest_node.mine(1)  # the job's parent is no longer the tip
    with pytest.raises(NodeError, match="inconclusive"):
        await prove_coinbase(rpc, job, 8)
