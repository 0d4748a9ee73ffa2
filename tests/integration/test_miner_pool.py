"""End to end: `hashfarm miner` mining for the project's own pool on the regtest node.

Our Stratum client (version-rolling, two hashing processes) against `hashfarm.pool`: the
pool must accept its shares, the blocks it finds must pay the miner's address (solo pool
mode), and bcoin and Bitcoin Core's engine must both accept every block. Then the four
moments the two must agree on: a tip moved outside the pool (clean_jobs), a vardiff change,
a pool restart on the same port, and a block from a version-rolled share.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from hashfarm.chain.block import Block
from hashfarm.miner.client import StratumMiner
from hashfarm.miner.display import Reporter
from hashfarm.miner.settings import DEFAULT_VERSION_MASK, MinerSettings, PoolURL
from hashfarm.miner.stats import MinerStats
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.records import REJECT_LOW_DIFFICULTY, REJECT_STALE, ShareRecord
from hashfarm.pool.settings import VardiffSettings
from nodes import Judge, RegtestNode, bcoin_address
from unit.pool.harness import (
    Recorder,
    accepted_blocks,
    coinbase_pays,
    pool_settings,
    running_pool,
    wait_for,
)

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


# -- the four behaviours the miner issue names: clean jobs, vardiff, pool restart, rolling ----

WORKER = "rig1"


@dataclass
class Run:
    """A `StratumMiner` running in the background, with its stats and JSON event log."""

    miner: StratumMiner
    stats: MinerStats
    log: io.StringIO

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The JSON event lines of one kind, in order."""
        lines = (orjson.loads(line) for line in self.log.getvalue().splitlines() if line)
        return [e for e in lines if e.get("event") == kind]

    def assert_no_bad_work(self) -> None:
        """No reject but a stale or duplicate race, and no nonce a backend got wrong."""
        bad = [r for r in self.stats.rejected if "stale" not in r and "duplicate" not in r]
        assert not bad, bad
        assert self.stats.hardware_errors == 0


@contextlib.asynccontextmanager
async def mining(port: int, address: str, **overrides: Any) -> AsyncIterator[Run]:
    """Run our miner (hashlib, 2 processes) against 127.0.0.1:`port`; cancel it after."""
    settings = MinerSettings(
        user=f"{address}.{WORKER}", backend="hashlib", threads=2, output="json", **overrides
    ).validate()
    stats = MinerStats("hashlib", 2, time.monotonic())
    log = io.StringIO()
    miner = StratumMiner(
        settings, PoolURL("127.0.0.1", port), stats, Reporter(stats, "json", stream=log)
    )
    task = asyncio.create_task(miner.run())
    try:
        yield Run(miner, stats, log)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def height_of(rpc: RPCClient, block_hash: str) -> int:
    """The height the node files a block under."""
    return int((await rpc.getblockheader(block_hash))["height"])


def stale_count(recorder: Recorder) -> int:
    """Shares the pool judged stale."""
    return sum(s.reject_reason == REJECT_STALE for s in recorder.shares)


async def test_a_tip_moved_outside_the_pool_switches_the_miner_to_the_new_tip(
    regtest_node: RegtestNode, rpc: RPCClient, judge: Judge, tmp_path: Path
) -> None:
    """clean_jobs: bcoin mines a block of its own; the miner drops its work and builds on it."""
    address = bcoin_address(MINER_SCRIPT)
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with (
        running_pool(settings, regtest_node.rpc()) as (pool, recorder),
        mining(pool.stratum_port, address) as run,
    ):
        await wait_for(lambda: len(accepted_blocks(pool)) >= 1, 30, "a first block")
        generation = run.miner.protocol.generation
        [outside] = await regtest_node.mine(1)  # the tip moves without the pool's doing
        height = await height_of(rpc, outside)
        await wait_for(
            lambda: any(b.height > height + 1 for b in accepted_blocks(pool)),
            30,
            "our blocks on top of the outside block",
        )
        ours = {b.hash_hex for b in accepted_blocks(pool)}
    assert outside not in ours
    assert await rpc.getblockhash(height) == outside  # nobody orphaned it...
    child = await rpc.getblockhash(height + 1)
    assert child in ours  # ...and the next block is our miner's, built on it
    assert Block.parse(await rpc.getrawblock(child)).header.prev_hash[::-1].hex() == outside
    assert run.miner.protocol.generation > generation  # clean jobs dropped the queued work
    assert any(e.get("clean") for e in run.events("job"))
    # Once a share for work on the new tip reached the pool, none for the old tip followed
    # (the connection is ordered): the miner submits only on the tip it was last given.
    heights = [s.height for s in recorder.shares]
    first_new = next((i for i, h in enumerate(heights) if h > height), len(heights))
    assert all(h > height for h in heights[first_new:]), heights
    # Shares racing a switch may be judged stale, never counted; the miner counts no more.
    assert all(not s.accepted for s in recorder.shares if s.reject_reason == REJECT_STALE)
    assert sum(n for r, n in run.stats.rejected.items() if "stale" in r) <= stale_count(recorder)
    run.assert_no_bad_work()
    await judge.check_chain(rpc)


def exactly(difficulty: float) -> Any:
    """Equal but for float rounding (pytest.approx's default 1e-12 slack is huge here)."""
    return pytest.approx(difficulty, rel=1e-9, abs=0.0)


FLOOR = 1e-13  # vardiff floor: far below regtest's ~4.66e-10, every hash is a share


@dataclass
class VardiffRun:
    """What one vardiff run showed: the miner's difficulties, the pool's verdicts."""

    steps: list[float]  # every mining.set_difficulty the miner got, in order
    shares: list[ShareRecord]  # every share the pool judged
    later: list[ShareRecord]  # shares for jobs sent after the last change
    ceiling: float  # the network difficulty


async def vardiff_run(
    node: RegtestNode,
    tmp_path: Path,
    vardiff: VardiffSettings,
    final: str,
    enough: Callable[[ShareRecord], bool] = lambda share: True,
) -> VardiffRun:
    """Mine until the miner holds the `final` ("ceiling" or "floor") difficulty, then until
    4 shares for jobs sent after that change are judged, one of them `enough`."""
    settings = pool_settings(node.rpc_url, node.api_key, tmp_path, vardiff=vardiff)
    async with (
        running_pool(settings, node.rpc()) as (pool, recorder),
        mining(pool.stratum_port, bcoin_address(MINER_SCRIPT)) as run,
    ):
        assert pool.jobs.template is not None
        ceiling = pool.jobs.template.difficulty
        goal = ceiling if final == "ceiling" else FLOOR
        await wait_for(lambda: run.stats.difficulty == exactly(goal), 40, final)
        # Jobs for the next height are sent after the last set_difficulty: held to it.
        settled = pool.jobs.template.height + 1

        def later() -> list[ShareRecord]:
            return [s for s in recorder.shares if s.height >= settled]

        await wait_for(lambda: len(later()) >= 4 and any(map(enough, later())), 30, "shares")
        assert accepted_blocks(pool)
    run.assert_no_bad_work()
    assert all(s.reject_reason != REJECT_LOW_DIFFICULTY for s in recorder.shares)
    for share in recorder.shares:  # the pool's verdicts: every accepted share met its target
        if share.accepted:
            assert share.share_difficulty >= share.difficulty * (1 - 1e-9)
    steps = [e["difficulty"] for e in run.events("difficulty")]
    return VardiffRun(steps, recorder.shares, later(), ceiling)


async def test_vardiff_raises_the_miners_difficulty_and_later_shares_meet_it(
    regtest_node: RegtestNode, rpc: RPCClient, judge: Judge, tmp_path: Path
) -> None:
    """vardiff up: from 1e-13 the pool steps the miner up to the network difficulty (the
    ceiling); later shares are held to it, and none is refused as too easy."""
    vardiff = VardiffSettings(initial=FLOOR, minimum=FLOOR, retarget_shares=4, max_step=8.0)
    got = await vardiff_run(regtest_node, tmp_path, vardiff, "ceiling")
    assert got.steps[0] == exactly(FLOOR)
    assert got.steps[-1] == exactly(got.ceiling)
    assert len(got.steps) >= 5  # 1e-13 -> ~4.66e-10 takes at least 5 steps of at most 8x
    for low, high in itertools.pairwise(got.steps):
        assert low < high <= low * 8.0 * (1 + 1e-9)
    assert min(s.difficulty for s in got.shares) == exactly(FLOOR)
    assert got.later
    assert all(s.difficulty == got.ceiling for s in got.later)
    await judge.check_chain(rpc)


async def test_vardiff_lowers_the_miners_difficulty_and_it_sends_the_easier_shares(
    regtest_node: RegtestNode, rpc: RPCClient, judge: Judge, tmp_path: Path
) -> None:
    """vardiff down: told to expect a share every microsecond, the pool steps the miner from
    the network difficulty down to the 1e-13 floor; the miner then submits shares its old
    target would have dropped, and the pool accepts them at the new difficulty."""
    vardiff = VardiffSettings(minimum=FLOOR, target_interval=1e-6, retarget_shares=4)
    easy = 4.0e-10  # under regtest's network difficulty: a share this hard is no block
    got = await vardiff_run(
        regtest_node,
        tmp_path,
        vardiff,
        "floor",
        lambda s: s.accepted and s.share_difficulty < easy,
    )
    assert got.steps[0] == exactly(got.ceiling)  # initial 1.0, clamped
    assert got.steps[-1] == exactly(FLOOR)
    assert len(got.steps) >= 5
    for high, low in itertools.pairwise(got.steps):
        assert high > low >= high / 8.0 * (1 - 1e-9)
    assert got.later
    assert all(s.difficulty == exactly(FLOOR) for s in got.later)
    assert got.ceiling > easy
    # Below the old difficulty: the miner sent these only because it took the new one.
    assert any(s.accepted and s.share_difficulty < easy for s in got.later)
    await judge.check_chain(rpc)


async def test_the_miner_reconnects_by_itself_when_the_pool_restarts_on_its_port(
    regtest_node: RegtestNode, rpc: RPCClient, judge: Judge, tmp_path: Path
) -> None:
    """A pool restart: stop it, start a new one on the same port (and ledger); the miner
    reconnects with its backoff alone and mines blocks for the new pool."""
    address = bcoin_address(MINER_SCRIPT)
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    first = contextlib.AsyncExitStack()
    pool, _ = await first.enter_async_context(running_pool(settings, regtest_node.rpc()))
    try:
        async with mining(pool.stratum_port, address, backoff_initial=0.1, backoff_max=0.5) as run:
            port = pool.stratum_port
            await wait_for(lambda: len(accepted_blocks(pool)) >= 2, 30, "2 blocks, first pool")
            await first.aclose()  # the pool stops: its listener and every connection close
            await wait_for(lambda: not run.stats.connected, 10, "the miner to notice")
            restarted = replace(settings, stratum=replace(settings.stratum, port=port))
            async with running_pool(restarted, regtest_node.rpc()) as (again, recorder):
                assert again.stratum_port == port
                await wait_for(lambda: len(accepted_blocks(again)) >= 2, 30, "2 more blocks")
                blocks = accepted_blocks(again)
    finally:
        await first.aclose()
    assert run.miner.connections >= 2
    assert len(run.events("connected")) == run.miner.connections
    assert recorder.shares
    assert all(s.worker == f"{address}.{WORKER}" for s in recorder.shares)
    for rec in blocks:
        if await rpc.getblockhash(rec.height) == rec.hash_hex:
            assert await coinbase_pays(rpc, rec.hash_hex, address)
    run.assert_no_bad_work()
    await judge.check_chain(rpc)


async def test_a_version_rolled_share_makes_a_block_both_judges_accept(
    regtest_node: RegtestNode, rpc: RPCClient, judge: Judge, tmp_path: Path
) -> None:
    """BIP 310: with one nonce per header (`nonce_space=1`) the miner rolls version bits at
    once; the pool accepts such shares and its blocks carry the bits in their header."""
    address = bcoin_address(MINER_SCRIPT)
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    rolled: list[tuple[str, int]] = []
    async with (
        running_pool(settings, regtest_node.rpc()) as (pool, _),
        mining(pool.stratum_port, address, nonce_space=1) as run,
    ):
        seen: set[str] = set()
        deadline = time.monotonic() + 40
        while len(rolled) < 2 and time.monotonic() < deadline:
            for rec in accepted_blocks(pool):
                if rec.hash_hex not in seen:
                    seen.add(rec.hash_hex)
                    header = Block.parse(await rpc.getrawblock(rec.hash_hex)).header
                    if header.version & DEFAULT_VERSION_MASK:
                        rolled.append((rec.hash_hex, header.version))
            await asyncio.sleep(0.05)
        mask = run.miner.protocol.version_mask
        assert pool.jobs.template is not None
        base = pool.jobs.template.version
    assert rolled, f"no block with rolled version bits among {len(seen)}"
    assert mask == DEFAULT_VERSION_MASK
    for _, version in rolled:
        assert (version ^ base) & ~mask == 0  # the template's version but for rolled bits
    await judge.check_chain(rpc)  # Core's engine accepts the active chain...
    active = [h for h, _ in rolled if await rpc.getblockhash(await height_of(rpc, h)) == h]
    assert active  # ...with a rolled block in it (a lost race may orphan one, not all)
    assert run.stats.accepted >= 1
    run.assert_no_bad_work()
