"""Per-customer upstream sessions end to end: `hashfarm miner` clients of two customers ->
the proxy (`per_customer`) -> the project's pool on regtest. The pool records each customer's
upstream user separately, with exactly the accepted shares the proxy stored for that
customer; the stored work, exported as `farm report --work` reads it, equals the counters;
GET /stats shows both sessions; a customer beyond the cap is refused clearly."""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path

import aiohttp
import pytest

from hashfarm.hosting.promise import parse_work_csv
from hashfarm.proxy.http import start_stats
from hashfarm.proxy.server import Proxy
from hashfarm.proxy.settings import ProxySettings, Upstream
from hashfarm.proxy.store import WorkStore, work_csv
from integration.test_proxy_mining import machines
from nodes import RegtestNode, bcoin_address
from unit.pool.harness import MINER_SCRIPTS, pool_settings, running_pool, wait_for
from unit.pool.stratum_client import StratumTestMiner

pytestmark = pytest.mark.node

MACHINES = ["alice.m1", "alice.m2", "bob.m1"]


async def test_each_customer_mines_as_its_own_upstream_user_and_the_stored_work_is_the_pools(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    address = bcoin_address(MINER_SCRIPTS[7])
    users = {c: f"{address}.{c}" for c in ("alice", "bob")}
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    store = WorkStore(tmp_path / "proxy.sqlite3")
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        proxy = Proxy(
            ProxySettings(
                Upstream("127.0.0.1", pool.stratum_port), "", port=0, per_customer=True,
                user_template=f"{address}.{{customer}}", max_upstreams=2, store_every=0.2,
            ),
            store,
        )  # fmt: skip
        await proxy.start()
        runner, http_port = await start_stats(proxy, "127.0.0.1", 0)
        try:
            async with machines(proxy.port, MACHINES) as miners:
                await wait_for(
                    lambda: all(mi.stats.accepted >= 2 for mi in miners), 15, "shares each"
                )
                # A third customer: over the cap of 2 sessions, refused at authorize.
                carol = StratumTestMiner(proxy.port, "carol.m1")
                await carol.connect()
                assert (await carol.subscribe()).ok
                refused = await carol.authorize()
                await carol.close()
            await wait_for(
                lambda: all(ch.session is None or ch.session.pending == 0
                            for ch in proxy.channels.values()),
                10, "upstream answers",
            )  # fmt: skip
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{http_port}/stats") as resp,
            ):
                assert resp.status == 200
                served = await resp.json()
        finally:
            await runner.cleanup()
            await proxy.stop()  # the store's last batch is written here
        shares = list(recorder.shares)
    stats = proxy.stats
    assert refused.error is not None
    assert "over 2 upstream sessions" in refused.error.message
    assert set(proxy.channels) == {"alice", "bob"}
    # The pool saw two users, one upstream session (extranonce1) each.
    assert {s.worker for s in shares} == set(users.values())
    for user in users.values():
        e1 = {s.extranonce1_hex for s in shares if s.worker == user}
        assert len(e1) == 1
    assert len({s.extranonce1_hex for s in shares}) == 2
    rows = store.rows()
    store.close()
    for customer, user in users.items():
        pool_ok = [s for s in shares if s.worker == user and s.accepted]
        stored = [r for r in rows if r[1] == customer]
        assert sum(r[4] for r in stored) == len(pool_ok) == stats.accepted_by_customer[customer]
        assert sum(r[3] for r in stored) == pytest.approx(sum(s.difficulty for s in pool_ok))
        assert sum(r[5] for r in stored) == stats.rejected_by_customer.get(customer, 0)
        assert served["channels"][customer]["upstream_user"] == user
        assert served["accepted_by_customer"][customer] <= len(pool_ok)
    # Exported as `farm report --work` reads it: per machine, the counters' work.
    work = parse_work_csv(work_csv(rows))
    by_machine: dict[str, Fraction] = {}
    for (machine, _day), w in work.items():
        by_machine[machine] = by_machine.get(machine, Fraction(0)) + w
    assert set(by_machine) == set(MACHINES)
    for name in MACHINES:
        assert float(by_machine[name]) == pytest.approx(stats.work_by_machine[name])
        assert stats.accepted_by_machine[name] >= 2


async def test_each_customers_session_fails_over_to_the_backup_on_its_own(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    address = bcoin_address(MINER_SCRIPTS[7])
    users = {f"{address}.alice", f"{address}.bob"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path / "a")
    b = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path / "b")
    first = contextlib.AsyncExitStack()
    primary, rec_a = await first.enter_async_context(running_pool(a, regtest_node.rpc()))
    try:
        async with running_pool(b, regtest_node.rpc()) as (backup, rec_b):
            proxy = Proxy(
                ProxySettings(
                    Upstream("127.0.0.1", primary.stratum_port), "", port=0, per_customer=True,
                    user_template=f"{address}.{{customer}}",
                    backup=Upstream("127.0.0.1", backup.stratum_port), retry_primary=0.5,
                )
            )  # fmt: skip
            await proxy.start()
            try:
                async with machines(proxy.port, ["alice.m1", "bob.m1"]) as miners:
                    await wait_for(lambda: {s.worker for s in rec_a.shares if s.accepted}
                                   == users, 15, "both users at the primary")  # fmt: skip
                    await first.aclose()  # the primary stops
                    await wait_for(lambda: {s.worker for s in rec_b.shares if s.accepted}
                                   == users, 15, "both users at the backup")  # fmt: skip
            finally:
                await proxy.stop()
    finally:
        await first.aclose()
    assert set(proxy.channels) == {"alice", "bob"}
    for channel in proxy.channels.values():
        assert channel.switches >= 2  # primary, then backup: each session on its own
    assert [mi.connections for mi in miners] == [1, 1]  # machines never reconnected
