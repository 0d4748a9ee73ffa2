"""TIDES end to end: a many-output coinbase through our miner, the pool and the regtest node.

The pool's real SQLite ledger already holds shares of 60 miners (written through the pool's
own ledger, as a pool that ran before would have); `hashfarm miner` (hashlib backend) then
mines through a pooled-mode Pool with `[accounting] scheme = "tides"`. The first block's
coinbase (read back from the node) must pay each of the 60 and the pool: 62 outputs with the
witness commitment, summing to the block's value. Later blocks are built on the empty-block
plans the pool precomputes for each next height and on the full templates' plans; they pay
our miner once its shares were in the window when the plan was made, and, as its work fills
the window of 8 x D, the oldest of the 60 leave it (and the coinbase). Bitcoin Core's
consensus engine (libbitcoinkernel) then replays the node's chain and must accept every one,
and the crediting service, reading the plans the pool recorded with each job's terms, posts
each block with exactly the outputs its coinbase paid.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import signal
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest

from hashfarm.accounting.ledger import PAYOUTS_COINBASE, POOL_FEES
from hashfarm.accounting.money import Fee
from hashfarm.accounting.service import CreditingService
from hashfarm.accounting.store import SqlStore, open_store
from hashfarm.chain.address import address_to_script
from hashfarm.chain.block import Block
from hashfarm.chain.merkle import WITNESS_COMMITMENT_HEADER
from hashfarm.miner.client import StratumMiner
from hashfarm.miner.display import Reporter
from hashfarm.miner.settings import MinerSettings, PoolURL
from hashfarm.miner.stats import MinerStats
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.jobterms import JobTermsRecorder
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.service import Pool
from hashfarm.pool.settings import AccountingSettings, PoolSettings, VardiffSettings
from hashfarm.pool.storage import make_ledger
from nodes import Judge, RegtestNode, bcoin_address
from unit.pool.harness import MINER_SCRIPTS, accepted_blocks, pool_settings, wait_for

pytestmark = pytest.mark.node

OTHERS = 60  # miners with work in the window before ours starts
FEE = Fee.bps(100)


# This module's own node (conftest's module_node): its figures depend on the block reward,
# which halves every 150 blocks on regtest, and the session node is as tall as the tests
# before this one made it.
@pytest.fixture(scope="module")
def regtest_node(module_node: RegtestNode) -> RegtestNode:
    return module_node


@pytest.fixture(scope="module")
def rpc(module_rpc: RPCClient) -> RPCClient:
    return module_rpc


@pytest.fixture(scope="module")
def judge(module_judge: Judge) -> Judge:
    return module_judge


async def paid_in_chain(rpc: RPCClient, blocks: list[BlockRecord], address: str) -> bool:
    """Whether a block of the active chain among `blocks` pays `address` in its coinbase."""
    script = address_to_script(address, "regtest")
    for rec in blocks:
        if await rpc.getblockhash(rec.height) == rec.hash_hex:
            coinbase = Block.parse(await rpc.getrawblock(rec.hash_hex)).transactions[0]
            if any(o.script_pubkey == script for o in coinbase.outputs):
                return True
    return False


@contextlib.asynccontextmanager
async def tides_pool(
    settings: PoolSettings, rpc: RPCClient, terms: JobTermsRecorder
) -> AsyncIterator[Pool]:
    """`running_pool` with the job-terms recorder `hashfarm pool` hands a TIDES pool."""
    ledger = make_ledger(settings.storage)
    await ledger.start()
    pool = Pool(settings, rpc, ledger, job_terms=terms)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()
        await ledger.close()
        await rpc.close()


def other(i: int) -> str:
    """A distinct address for each of the other miners."""
    key_hash = hashlib.sha256(b"tides-%d" % i).digest()[:20]
    return str(bcoin_address(bytes.fromhex("0014") + key_hash))


async def test_a_tides_block_pays_every_miner_of_the_window_in_its_coinbase(
    regtest_node: RegtestNode, rpc: RPCClient, judge: Judge, tmp_path: Path
) -> None:
    ours = bcoin_address(bytes.fromhex("0014") + bytes(range(70, 90)))
    settings = pool_settings(
        regtest_node.rpc_url,
        regtest_node.api_key,
        tmp_path,
        mode="pooled",
        payout_address=bcoin_address(MINER_SCRIPTS[7]),
        # shares ~1/47 of the network's difficulty: the window of 8 x D holds ~370 of them
        vardiff=VardiffSettings(initial=1e-11, minimum=1e-12, enabled=False),
        # room for 90 outputs (the default 1,900 bytes holds 41: a node with its default
        # -blockreservedweight; regtest templates here carry no transactions)
        accounting=AccountingSettings(
            enabled=True, scheme="tides", fee_bps=100, dust_sats=1, coinbase_max_bytes=4000
        ),
    )
    ledger = make_ledger(settings.storage)  # the work of 60 miners, recorded before
    await ledger.start()
    for i in range(OTHERS):
        await ledger.record_share(
            ShareRecord(
                f"{other(i)}.rig",
                other(i),
                "1",
                0,
                1e-11 * (1 + i % 5),
                1e-11,
                True,
                None,
                time.time(),
                "00000000",
                None,
            )
        )
    await ledger.close()

    miner_settings = MinerSettings(
        user=f"{ours}.rig1", backend="hashlib", threads=1, output="json"
    ).validate()
    stats = MinerStats("hashlib", 1, time.monotonic())
    terms = JobTermsRecorder(settings.storage.url, settings.network)  # what `hashfarm pool`
    await terms.start()  # runs with [accounting]: each job's terms and TIDES plan recorded
    async with tides_pool(settings, regtest_node.rpc(), terms) as pool:
        first_job = pool.current_job()
        assert first_job is not None
        assert len(first_job.coinbase.transaction(bytes(12)).outputs) >= OTHERS + 1
        miner = StratumMiner(
            miner_settings,
            PoolURL("127.0.0.1", pool.stratum_port),
            stats,
            Reporter(stats, "json", stream=io.StringIO()),
        )
        task = asyncio.create_task(miner.run())
        try:
            await wait_for(lambda: len(accepted_blocks(pool)) >= 3, 120, "3 TIDES blocks")
            # plans made after our miner's first shares pay it too: mine until one is found
            deadline = time.monotonic() + 120
            while not await paid_in_chain(rpc, accepted_blocks(pool), ours):
                assert time.monotonic() < deadline, "no block paid our miner"
                await asyncio.sleep(0.2)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        found = accepted_blocks(pool)
        empty_first = pool.tides_empty_first
    await terms.close()

    others = {address_to_script(other(i), "regtest") for i in range(OTHERS)}
    mine = address_to_script(ours, "regtest")
    pool_script = address_to_script(bcoin_address(MINER_SCRIPTS[7]), "regtest")
    checked, ours_paid, no_commitment = 0, 0, 0
    first_height = min(rec.height for rec in found)
    for rec in found:
        if await rpc.getblockhash(rec.height) != rec.hash_hex:
            continue  # lost a race to another block at its height
        block = Block.parse(await rpc.getrawblock(rec.hash_hex))
        coinbase = block.transactions[0]
        outputs = coinbase.outputs
        paid = {o.script_pubkey: o.value for o in outputs if o.value}
        if rec.height == first_height:  # its plan was made before our miner's first share:
            missing = sorted(  # the window held exactly the 60 others' work
                i for i in range(OTHERS) if address_to_script(other(i), "regtest") not in paid
            )
            assert not missing, f"block {rec.height}: miners {missing} of the window not paid"
            assert len(outputs) == OTHERS + 2  # + the pool's output and the commitment
        # later plans: our miner's work pushes the oldest shares out of the window of 8 x D
        assert set(paid) <= others | {mine, pool_script}
        ours_paid += mine in paid  # not in plans made before our miner's first share
        no_commitment += not any(
            o.script_pubkey.startswith(WITNESS_COMMITMENT_HEADER) for o in outputs
        )
        assert all(v > 0 for v in paid.values())
        assert sum(o.value for o in outputs) == rec.reward_sats  # the template's value
        if len(block.transactions) > 1:  # a full template: the witness commitment is there
            assert any(o.script_pubkey.startswith(WITNESS_COMMITMENT_HEADER) for o in outputs)
        checked += 1
    assert checked >= 3
    assert ours_paid >= 1  # once its shares were in the window, our miner is paid too
    # every new tip after the first was served first by the precomputed empty block (blocks
    # found on one carry no witness commitment: how many depends on the race with the full
    # template's job, a few ms later)
    assert empty_first >= 2
    assert 0 <= no_commitment <= checked
    await judge.check_chain(rpc)  # Bitcoin Core's consensus engine accepts every block

    # the books: the crediting service posts each block from the plan its coinbase paid
    scheme = settings.accounting.to_scheme()
    store = await open_store(settings.storage.url)
    node = regtest_node.rpc()
    try:
        report = await CreditingService(store, node, scheme).step()
        rows = await store.call(
            partial(
                SqlStore.q,
                sql="SELECT hash, height, reward_sats FROM blocks WHERE accepted_by_node",
            )
        )  # every block the pool recorded, also those found after `found` was read
        in_chain = [(str(h), int(r)) for h, ht, r in rows if await rpc.getblockhash(int(ht)) == h]
        assert report.posted == len(in_chain) >= checked, report
        assert not report.failed, report
        for hash_hex, reward in in_chain:
            coinbase = Block.parse(await rpc.getrawblock(hash_hex)).transactions[0]
            to_miners = sum(o.value for o in coinbase.outputs if o.script_pubkey != pool_script)
            txn = await store.call(partial(SqlStore.transaction, key=f"found:{hash_hex}"))
            assert txn is not None
            legs = {p.account: p.amount for p in txn.postings}
            assert legs[PAYOUTS_COINBASE] == to_miners  # the outputs the node holds, exactly
            assert legs[f"block:{hash_hex}"] == -reward
            assert legs.get(POOL_FEES, 0) == FEE.of(reward)  # zero legs are not posted
    finally:
        await node.close()
        await store.close()


async def test_the_pool_survives_its_plan_worker_being_killed(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    """SIGKILL of the plan worker: the next tip is still served (the precomputed empty block),
    the failed full plan starts a new worker, and the tip after that gets a full TIDES job."""
    settings = pool_settings(
        regtest_node.rpc_url,
        regtest_node.api_key,
        tmp_path,
        mode="pooled",
        payout_address=bcoin_address(MINER_SCRIPTS[7]),
        accounting=AccountingSettings(enabled=True, scheme="tides", dust_sats=1),
    )
    ledger = make_ledger(settings.storage)
    await ledger.start()
    for i in range(5):
        await ledger.record_share(
            ShareRecord(
                f"{other(i)}.rig",
                other(i),
                "1",
                0,
                1e-11,
                1e-11,
                True,
                None,
                time.time(),
                "00000000",
                None,
            )
        )
    await ledger.close()
    terms = JobTermsRecorder(settings.storage.url, settings.network)
    await terms.start()
    async with tides_pool(settings, regtest_node.rpc(), terms) as pool:
        assert pool.tides is not None
        await wait_for(lambda: pool._next is not None, 30, "the next height's plan")
        os.kill(await pool.tides.pid(), signal.SIGKILL)
        start = pool.jobs.template
        assert start is not None
        await regtest_node.mine(1)
        await wait_for(
            lambda: (
                pool.jobs.template is not None and pool.jobs.template.height == start.height + 1
            ),
            30,
            "the next tip served",
        )
        await regtest_node.mine(1)
        await wait_for(
            lambda: (
                pool.jobs.template is not None
                and pool.jobs.template.height == start.height + 2
                and bool(pool.jobs.template.witness_commitment)
            ),  # the full template's job
            60,
            "a full TIDES job after the worker was replaced",
        )
        job = pool.current_job()
        assert job is not None
        paid = {o.script_pubkey for o in job.coinbase.transaction(bytes(12)).outputs}
        assert {address_to_script(other(i), "regtest") for i in range(5)} <= paid
    await terms.close()
