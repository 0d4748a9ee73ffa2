"""PPS and FPPS in a scaled-out pool: two `hashfarm pool --role stratum` front ends and one
`--role ledger` with `[accounting] scheme = "pps"` (and `"fpps"`, with wallet payments in the
mempool so that templates carry fees), on the local NATS JetStream, a fresh PostgreSQL
database and this module's own regtest node.

Each front end publishes the terms of every job it publishes (`PREFIX.jobterms`); the ledger
writes them and holds a share until its own job's terms are committed. The test makes the
terms of a whole tip arrive after its shares: the stream's job-terms subject is taken away
(as a stream made by an earlier version lacks it), so both front ends spool those terms and
replay them every second in vain, while their shares reach the ledger directly; the shares
are acknowledged to the miners but not stored; the subject comes back, the spools replay, and
the held shares are stored and priced at their own jobs' terms. Then:

* every accepted share is priced once, at the terms of the job it answered (its own front
  end's run, published before it), and those terms are regtest's (D of the bits, the subsidy
  at the height): each account's credit is `floor(sum d / D x subsidy x (1 - 1%))`, as
  test_accounting_pps_regtest.py checks the single process (FPPS: `subsidy + the job's
  template fees`, some of them non-zero);
* the books balance; the pool's blocks fill the reserve and mature into it;
* the single process's crediting (the same shares and blocks written by the pool's own
  SQLite ledger, the same terms rows, `CreditingService` on that file) ends with the same
  balances, account by account.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from test_accounting_pps_regtest import REGTEST_BITS, subsidy
from test_scaleout import Cluster, Proc, delete_stream, nats_problem

from hashfarm.accounting.crediting import parse_spec
from hashfarm.accounting.service import CreditingService
from hashfarm.accounting.store import SqlStore, connect, open_store
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.jobterms import JobTermsRow, write_rows
from hashfarm.pool.records import BlockRecord, new_share_record
from hashfarm.pool.settings import StorageSettings
from hashfarm.pool.storage import open_ledger
from nodes import RegtestNode, service_missing
from unit.pool.stratum_client import StratumTestMiner

pytestmark = [pytest.mark.node, pytest.mark.services]


@pytest.fixture(scope="module")
def regtest_node(module_node: RegtestNode) -> RegtestNode:
    return module_node  # reward-dependent figures: this module's own node


@pytest.fixture(scope="module")
def rpc(module_rpc: RPCClient) -> RPCClient:
    return module_rpc


@pytest.fixture
async def cluster(
    regtest_node: RegtestNode, fresh_pg_url: str, tmp_path: Path
) -> AsyncIterator[Cluster]:
    if problem := nats_problem():
        service_missing(problem)
    c = Cluster(regtest_node, "nats://127.0.0.1:4222", fresh_pg_url, tmp_path)
    try:
        yield c
    finally:
        c.close()
        await delete_stream(c.nats_url, c.tag)


async def set_terms_subject(c: Cluster, present: bool) -> None:
    """Take the job-terms subject off the cluster's stream, or give it back."""
    import nats

    nc = await nats.connect(c.nats_url)
    try:
        js = nc.jetstream()
        config = (await js.stream_info(c.tag)).config
        config.subjects = [f"{c.tag}.shares", f"{c.tag}.blocks"] + (
            [f"{c.tag}.jobterms"] if present else []
        )
        await js.update_stream(config)
    finally:
        await nc.close()


async def ack_pending(c: Cluster) -> int:
    """Deliveries the ledger has taken from the broker and not acknowledged (held)."""
    import nats

    nc = await nats.connect(c.nats_url)
    try:
        info = await nc.jetstream().consumer_info(c.tag, c.tag + "-ledger")
        return int(info.num_ack_pending or 0)
    finally:
        await nc.close()


async def mine(miners: list[StratumTestMiner], shares: int) -> int:
    """`shares` submissions from each miner in turn (each may be a block: regtest); the
    number the front ends acknowledged."""
    acked = 0
    for _ in range(shares):
        for miner in miners:
            acked += (await miner.mine_share()).response.ok
    return acked


async def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll `predicate` (SQL on the ledger's database) every 0.2 s until it holds."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        await asyncio.sleep(0.2)


async def wait_for_async(
    read: Callable[[], Awaitable[int]], value: int, seconds: float, what: str
) -> None:
    deadline = time.monotonic() + seconds
    while await read() != value:
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        await asyncio.sleep(0.2)


def q(sql: SqlStore, text: str, *args: object) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in sql.q(text, tuple(args))]


def count(sql: SqlStore, text: str, *args: object) -> int:
    return int(sql.q(text, tuple(args))[0][0] or 0)


def settled(sql: SqlStore, state: str) -> bool:
    """Every accepted share priced and every block the node took in `state`."""
    with_terms = count(sql, "SELECT count(*) FROM acct_job_terms") > 0
    accepted = count(sql, "SELECT count(*) FROM shares WHERE accepted")
    priced = count(sql, "SELECT coalesce(sum(shares), 0) FROM acct_pps_batches")
    blocks = count(sql, "SELECT count(*) FROM blocks WHERE accepted_by_node")
    done = count(sql, "SELECT count(*) FROM acct_blocks WHERE state = ?", state)
    return with_terms and priced == accepted and done == blocks >= 2


async def single_process_books(
    rows_from: SqlStore, rpc: RPCClient, tmp: Path, spec: str
) -> dict[str, int]:
    """The balances the single process's crediting gives the same shares, blocks and job
    terms: written by the pool's own SQLite ledger (its job ids, as one process would have
    recorded them), then `CreditingService` passes on that file until nothing is left."""
    url = f"sqlite:///{tmp / 'single.sqlite3'}"
    ledger = await open_ledger(StorageSettings(url=url))
    shares = q(
        rows_from,
        "SELECT worker, account, job_id, height, difficulty, share_difficulty, accepted, "
        "time, extranonce1, block_hash FROM shares ORDER BY id",
    )
    for w, a, job, h, d, sd, ok, t, en1, bh in shares:
        plain = str(job).split("@")[0]  # the front end's own job id (its run aside)
        rec = new_share_record(w, a, plain, h, d, sd, ok, None, t, en1, bh)
        await ledger.record_share(rec)
    blocks = q(
        rows_from,
        "SELECT height, hash, reward_sats, finder_worker, finder_account, time, "
        "accepted_by_node, node_verdict FROM blocks ORDER BY time, hash",
    )
    for h, bh, reward, w, a, t, ok, verdict in blocks:
        await ledger.record_block(BlockRecord(h, bh, reward, w, a, t, ok, verdict))
    await ledger.close()
    terms = [
        JobTermsRow(run, str(job).split("@")[0], g, p, h, b, nd, sub, fees, value, at)
        for run, job, g, p, h, b, nd, sub, fees, value, at in q(
            rows_from,
            "SELECT pool_run, job_id, generation, prev_hash, height, bits, network_difficulty, "
            "subsidy_sats, fees_sats, coinbase_value, published_at FROM acct_job_terms "
            "ORDER BY id",
        )
    ]
    store = await open_store(url, create=True)
    try:
        await store.call(lambda sql: write_rows(sql, terms))
        service = CreditingService(store, rpc, parse_spec(spec))
        for _ in range(10):
            report = await service.step()
            if not (report.tracked or report.posted or report.credited or report.priced):
                break
        return await store.call(lambda sql: sql.balances())
    finally:
        await store.close()


@pytest.mark.parametrize("scheme", ["pps", "fpps"])
async def test_pps_prices_every_cluster_share_at_its_own_jobs_terms(
    cluster: Cluster, regtest_node: RegtestNode, rpc: RPCClient, tmp_path: Path, scheme: str
) -> None:
    user = await regtest_node.payout_address()
    cluster.extra_env = {
        "HASHFARM_MODE": "pooled",
        "HASHFARM_PAYOUT_ADDRESS": user,
        "HASHFARM_ACCOUNTING_ENABLED": "true",
        "HASHFARM_ACCOUNTING_SCHEME": scheme,
        "HASHFARM_ACCOUNTING_FEE_BPS": "100",
    }
    ledger: Proc = cluster.add_ledger()
    ledger.start()
    await cluster.wait_ready(ledger)
    for fid in (0, 1):
        cluster.add_front_end(fid).start()
    for fe in cluster.front_ends:
        await cluster.wait_ready(fe)
    fe0, fe1 = (fe.stratum_port for fe in cluster.front_ends)
    miners = [
        StratumTestMiner(fe0, "alice.rig"),
        StratumTestMiner(fe1, "bob.rig"),
        StratumTestMiner(fe0, "carol.a"),
        StratumTestMiner(fe1, "carol.b"),  # one account through both front ends
    ]
    for miner in miners:
        await miner.start()
    sql = connect(cluster.pg_url)
    try:
        if scheme == "fpps":  # templates with fees: each job's own (FPPS pays them)
            await regtest_node.mempool_txs(3)
        assert await mine(miners, 6) >= 12  # regtest: about half of these are blocks too
        if scheme == "fpps":
            await regtest_node.mempool_txs(2)

        # the terms of a whole tip arrive after its shares
        await set_terms_subject(cluster, present=False)
        await regtest_node.mine(1)
        # the new tip's height, read once every miner works on it: a block the pool found in
        # the shares above may reach the node after this test's own block (one CI run read
        # the tip before it landed, and looked for the late shares' terms a height too low)
        while True:
            for miner in miners:
                while miner.job is None or miner.job.prev_hash[::-1].hex() != (
                    await rpc.getbestblockhash()
                ):
                    await miner.wait_job()
            best = await rpc.getbestblockhash()
            if all(m.job is not None and m.job.prev_hash[::-1].hex() == best for m in miners):
                break
        tip = int((await rpc.getblock(best))["height"]) - 1  # the late jobs are at tip + 2
        late = 0
        for miner in miners:  # a share each on the new tip's jobs (one may be a block, which
            share = await miner.mine_share()  # makes the next miners' shares stale)
            late += share.response.ok
        assert late >= 1
        await asyncio.sleep(3.0)  # the ledger has had them (fetched every second), and holds
        # acknowledged to the miners, not stored: their jobs' terms are not in the database
        assert count(sql, "SELECT count(*) FROM shares WHERE height > ?", tip + 1) == 0
        assert count(sql, "SELECT count(*) FROM acct_job_terms WHERE height > ?", tip + 1) == 0
        assert await ack_pending(cluster) == late  # the ledger has them and holds them
        assert cluster.ledger is not None
        _, ldoc = await cluster.ledger.health()  # and says so, on /health and /metrics
        assert ldoc["shares_held"] == late
        assert f"hashfarm_ledger_shares_held {late}" in await cluster.ledger.metrics()
        await set_terms_subject(cluster, present=True)  # the spools' replays now succeed
        await wait_for(
            lambda: count(sql, "SELECT count(*) FROM shares WHERE height > ?", tip + 1) == late,
            30,
            "the held shares stored once their terms came",
        )
        assert count(sql, "SELECT count(*) FROM acct_job_terms WHERE height = ?", tip + 2) >= 2
        await wait_for_async(lambda: ack_pending(cluster), 0, 10, "the held shares acknowledged")

        await mine(miners, 4)
        await regtest_node.mine(1)  # a new tip: a job published after every share
        await wait_for(lambda: settled(sql, "immature"), 60, "every share priced, blocks posted")

        # each share at its own job's terms: its front end's run, published before it
        rows = q(sql, "SELECT s.account, s.difficulty, s.height, s.job_id, t.pool_run, "
                 "t.published_at, s.time, t.network_difficulty, t.subsidy_sats, t.fees_sats "
                 "FROM shares s JOIN acct_job_terms t ON t.height = s.height "
                 "AND t.job_id = s.job_id WHERE s.accepted")  # fmt: skip
        assert len(rows) == count(sql, "SELECT count(*) FROM shares WHERE accepted")
        network = Fraction(bits_to_difficulty(REGTEST_BITS))
        owed: dict[str, Fraction] = {}
        with_fees = 0
        for account, d, height, job, run, published, at, nd, sub, fees in rows:
            assert str(job).endswith(f"@{run}")
            assert str(job)[:2] == str(run)[:2]  # the front end's id leads both
            assert float(published) <= float(at)
            assert (Fraction(float(nd)), int(sub)) == (network, subsidy(int(height)))
            base = subsidy(int(height)) + (int(fees) if scheme == "fpps" else 0)
            with_fees += int(fees) > 0
            value = Fraction(float(d)) / network * base * Fraction(99, 100)
            owed[str(account)] = owed.get(str(account), Fraction(0)) + value
        if scheme == "fpps":
            assert with_fees > 0  # some shares answered templates that carried fees
        credits = {a: math.floor(v) for a, v in owed.items()}
        assert set(credits) == {"alice", "bob", "carol"}
        assert sql.balances("miner:") == {f"miner:{a}": v for a, v in credits.items()}
        rewards = count(sql, "SELECT sum(reward_sats) FROM blocks WHERE accepted_by_node")
        assert sql.balance("pool:reserve:immature") == rewards
        assert sql.balance("pool:reserve") == -sum(credits.values())
        assert sum(sql.balances().values()) == 0
        assert "without their job's terms" not in ledger.log.read_text(errors="replace")

        await regtest_node.mine(100)  # the pool's blocks mature: rewards into the reserve
        await wait_for(lambda: settled(sql, "credited"), 60, "the blocks credited")
        assert sql.balance("pool:reserve") == rewards - sum(credits.values())
        assert sql.balance("pool:reserve:immature") == 0
        assert sum(sql.balances().values()) == 0

        # the single process's crediting of the same shares, blocks and terms agrees
        cluster_books = {k: v for k, v in sql.balances().items() if v}
        single = {
            k: v
            for k, v in (
                await single_process_books(sql, rpc, tmp_path, f"{scheme}:fee=100/10000")
            ).items()
            if v
        }
        assert single == cluster_books
    finally:
        sql.close()
        for miner in miners:
            await miner.close()
