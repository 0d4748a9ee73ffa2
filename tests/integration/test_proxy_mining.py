"""End to end: `hashfarm miner` CPU clients -> the farm proxy -> the project's pool on regtest.

The proxy shares one upstream session among the machines (extranonce splitting), relays the
pool's jobs, and forwards each share with the pool's own verdict: every share a machine was
told "accepted" is one the pool recorded as accepted for the proxy's user, and the proxy's
per-machine work adds up to the pool's. Then failover: the primary pool stops, the backup
takes the shares, the primary comes back on its port and the proxy returns to it; machines
never reconnect and no acknowledged share is missing from the pools' records.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from hashfarm.miner.client import StratumMiner
from hashfarm.miner.display import Reporter
from hashfarm.miner.settings import MinerSettings, PoolURL
from hashfarm.miner.stats import MinerStats
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.records import ShareRecord
from hashfarm.proxy.server import Proxy
from hashfarm.proxy.settings import ProxySettings, Upstream
from nodes import Judge, RegtestNode, bcoin_address
from unit.pool.harness import (
    MINER_SCRIPTS,
    accepted_blocks,
    coinbase_pays,
    pool_settings,
    running_pool,
    wait_for,
)

pytestmark = pytest.mark.node

MACHINES = ["alice.m1", "alice.m2", "bob.m1"]


@contextlib.asynccontextmanager
async def machines(port: int, names: list[str]) -> AsyncIterator[list[StratumMiner]]:
    """One `hashfarm miner` (hashlib, one process) per name, against the proxy."""
    miners, tasks = [], []
    for name in names:
        settings = MinerSettings(
            user=name, backend="hashlib", threads=1, output="json",
            backoff_initial=0.1, backoff_max=0.5,
        ).validate()  # fmt: skip
        stats = MinerStats("hashlib", 1, time.monotonic())
        reporter = Reporter(stats, "json", stream=io.StringIO())
        miner = StratumMiner(settings, PoolURL("127.0.0.1", port), stats, reporter)
        miners.append(miner)
        tasks.append(asyncio.create_task(miner.run()))
    try:
        yield miners
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def settled(proxy: Proxy) -> None:
    """Machines stopped: wait until every forwarded share has the upstream's answer."""
    await wait_for(
        lambda: proxy.session is None or proxy.session.pending == 0, 10, "upstream answers"
    )


def accepted_upstream(shares: list[ShareRecord], user: str) -> list[ShareRecord]:
    return [s for s in shares if s.worker == user and s.accepted]


def off_port(proxy: Proxy, port: int) -> bool:
    """The proxy mines for an upstream other than the one on `port`."""
    return proxy.session is not None and proxy.session.target.port != port


def check_no_bad_work(proxy: Proxy, miners: list[StratumMiner]) -> None:
    """Only races with a new tip (stale/duplicate) or an upstream change may be refused."""
    assert proxy.stats.low_difficulty == 0
    for miner in miners:
        assert miner.stats.hardware_errors == 0
        bad = [r for r in miner.stats.rejected if "stale" not in r.lower()
               and "duplicate" not in r.lower() and "job not found" not in r.lower()
               and "upstream" not in r.lower()]  # fmt: skip
        assert not bad, bad


async def test_machines_mine_blocks_through_the_proxy_and_every_ack_is_the_pools(
    regtest_node: RegtestNode, rpc: RPCClient, judge: Judge, tmp_path: Path
) -> None:
    address = bcoin_address(MINER_SCRIPTS[5])
    user = f"{address}.proxy"
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        proxy = Proxy(ProxySettings(Upstream("127.0.0.1", pool.stratum_port), user, port=0))
        await proxy.start()
        try:
            async with machines(proxy.port, MACHINES) as miners:
                await wait_for(lambda: len(accepted_blocks(pool)) >= 2, 20, "2 blocks")
                await wait_for(
                    lambda: all(mi.stats.accepted >= 1 for mi in miners), 15, "a share each"
                )
            await settled(proxy)
        finally:
            await proxy.stop()
        ours = accepted_upstream(recorder.shares, user)
        blocks = accepted_blocks(pool)
    stats = proxy.stats
    # One upstream session, the whole pool-side view is the proxy's user.
    assert {s.worker for s in recorder.shares} == {user}
    assert len({s.extranonce1_hex for s in recorder.shares}) == 1
    # Every share acknowledged downstream was accepted upstream, and no more.
    assert stats.accepted == len(ours)
    assert sum(stats.accepted_by_machine.values()) == len(ours)
    assert sum(stats.work_by_machine.values()) == pytest.approx(sum(s.difficulty for s in ours))
    assert stats.work_by_customer["alice"] == pytest.approx(
        stats.work_by_machine["alice.m1"] + stats.work_by_machine["alice.m2"]
    )
    for miner, name in zip(miners, MACHINES, strict=True):
        assert 1 <= miner.stats.accepted <= stats.accepted_by_machine[name]
    # Machines got distinct extranonce1 prefixes and the upstream's version-rolling mask
    # (the miner asks for 1fffe000, so does the proxy upstream); their blocks pay the proxy's user.
    assert len({mi.protocol.extranonce1 for mi in miners}) == len(MACHINES)
    assert all(mi.protocol.version_mask == 0x1FFFE000 for mi in miners)
    in_chain = 0
    for rec in blocks:
        if await rpc.getblockhash(rec.height) == rec.hash_hex:
            in_chain += 1
            assert await coinbase_pays(rpc, rec.hash_hex, address)
    assert in_chain >= 1
    check_no_bad_work(proxy, miners)
    await judge.check_chain(rpc)


async def test_failover_to_the_backup_and_back_loses_no_acknowledged_share(
    regtest_node: RegtestNode, rpc: RPCClient, tmp_path: Path
) -> None:
    address = bcoin_address(MINER_SCRIPTS[6])
    user = f"{address}.proxy"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    primary_settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path / "a")
    backup_settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path / "b")
    records: list[ShareRecord] = []
    first = contextlib.AsyncExitStack()
    primary, rec_a = await first.enter_async_context(
        running_pool(primary_settings, regtest_node.rpc())
    )
    port = primary.stratum_port
    try:
        async with running_pool(backup_settings, regtest_node.rpc()) as (backup, rec_b):
            proxy = Proxy(
                ProxySettings(
                    Upstream("127.0.0.1", port),
                    user,
                    port=0,
                    backup=Upstream("127.0.0.1", backup.stratum_port),
                    retry_primary=0.5,
                )
            )
            await proxy.start()
            try:
                async with machines(proxy.port, MACHINES[:2]) as miners:
                    await wait_for(lambda: len(accepted_upstream(rec_a.shares, user)) >= 3, 15,
                                   "shares at the primary")  # fmt: skip
                    connections = [mi.connections for mi in miners]
                    await first.aclose()  # the primary stops
                    records += rec_a.shares
                    await wait_for(lambda: len(accepted_upstream(rec_b.shares, user)) >= 3, 15,
                                   "shares at the backup")  # fmt: skip
                    on_backup = str(proxy.session.target) if proxy.session else None
                    restarted = replace(
                        primary_settings, stratum=replace(primary_settings.stratum, port=port)
                    )
                    (tmp_path / "a2").mkdir()
                    restarted = replace(
                        restarted,
                        storage=replace(
                            restarted.storage, url=f"sqlite:///{tmp_path / 'a2' / 'pool.sqlite3'}"
                        ),
                    )
                    async with running_pool(restarted, regtest_node.rpc()) as (_, rec_a2):
                        await wait_for(lambda: len(accepted_upstream(rec_a2.shares, user)) >= 3,
                                       15, "shares at the primary again")  # fmt: skip
                        reconnections = [mi.connections for mi in miners]
                        await asyncio.sleep(0)
                    records += rec_a2.shares
                    # the primary gone again: the backup takes over once more
                    await wait_for(lambda: off_port(proxy, port), 10, "backup again")
                await settled(proxy)
            finally:
                await proxy.stop()
            records += rec_b.shares
    finally:
        await first.aclose()
    assert on_backup == f"stratum+tcp://127.0.0.1:{backup.stratum_port}"
    assert proxy.switches >= 3  # primary, backup, primary (and the backup again)
    assert reconnections == connections == [1, 1]  # machines never reconnected
    ours = accepted_upstream(records, user)
    stats = proxy.stats
    # Every share acknowledged to a machine is accepted in one of the pools' records. A pool
    # that stops may record shares whose answer never leaves it: the proxy refused those to
    # their machines ("upstream lost"), so the pools may hold more, never fewer.
    assert stats.accepted <= len(ours) <= stats.accepted + stats.upstream_lost
    for miner, name in zip(miners, MACHINES[:2], strict=True):
        assert miner.stats.accepted <= stats.accepted_by_machine[name]
    check_no_bad_work(proxy, miners)
