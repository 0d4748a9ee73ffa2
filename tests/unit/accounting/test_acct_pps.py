"""PPS and FPPS through the crediting service, each value checked by hand.

The pool's real pieces write the inputs: `JobBook` builds the jobs, `JobTermsRecorder`
records their terms (its own SQLite connection), `SQLiteLedger` the shares answering them.
The service prices each share at the terms of its own job and credits whole satoshis from
the reserve; the arithmetic is written out in each test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hashfarm.accounting.crediting import PpsWait, job_of_share
from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import Pplns, Pps, Tides
from hashfarm.accounting.service import CreditingService
from hashfarm.accounting.store import AccountingStore, open_store
from hashfarm.accounting.tides import plan_coinbase
from hashfarm.pool.jobterms import JobTermsRecorder
from hashfarm.pool.storage.sqlite import SQLiteLedger
from unit.accounting.acct_jobs import POOL_SCRIPT, PoolWithJobs, make_template
from unit.accounting.acct_pool import ScriptedChain, block_hash

D256 = 0x1C00FFFF  # network difficulty 256.0 exactly (Core's GetDifficulty of these bits)
HEIGHT = 840_000  # mainnet subsidy there: 3.125 BTC = 312,500,000 sats
SUBSIDY = 312_500_000
FEES = 12_345_678


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[PoolWithJobs]:
    path = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(path)
    await ledger.start()
    holder: list[PoolWithJobs] = []
    recorder = JobTermsRecorder(f"sqlite:///{path}", "mainnet", clock=lambda: holder[0].clock())
    await recorder.start()
    p = PoolWithJobs(ledger, recorder)
    holder.append(p)
    try:
        yield p
    finally:
        await p.recorder.close()  # the one in use (a test may restart it)
        await ledger.close()


@pytest.fixture
async def store(pool: PoolWithJobs) -> AsyncIterator[AccountingStore]:
    s = await open_store(pool.recorder.url)
    try:
        yield s
    finally:
        await s.close()


async def test_pps_credits_each_share_at_its_jobs_terms_by_hand(
    pool: PoolWithJobs, store: AccountingStore
) -> None:
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, FEES))
    for _ in range(3):
        await pool.share("alice", 1.0)
    await pool.share("bob", 2.0)
    await pool.share("carol", 64.0, accepted=False)  # rejected: never money
    service = CreditingService(store, ScriptedChain(), Pps(Fee.bps(100)))
    # no job published after these shares yet: their job's terms might still be on the way
    first = await service.step()
    assert first.priced == 0
    assert isinstance(first.unpriced, PpsWait)
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, 0))  # a refresh: fees 0
    report = await service.step()
    # PPS share value = d / D x subsidy x (1 - fee) = d / 256 x 312,500,000 x 0.99
    #   d = 1: 1,220,703.125 x 0.99 = 1,208,496.09375 sats
    # alice, 3 shares of d = 1: 3,625,488.28125 -> 3,625,488 credited, 0.28125 still owed
    # bob, 1 share of d = 2:    2,416,992.1875  -> 2,416,992 credited, 0.1875 still owed
    # (FEES are not paid by PPS)
    assert report.priced == 4
    assert report.pps_credited == 3_625_488 + 2_416_992
    sql = store.sql
    assert sql.balances("miner:") == {"miner:alice": 3_625_488, "miner:bob": 2_416_992}
    assert sql.balance("pool:reserve") == -(3_625_488 + 2_416_992)  # the pool's risk, shown
    assert report.reserve is not None
    assert report.reserve.reserve == -6_042_480
    # alice's 4th share, on the refresh (same height and bits, so the same PPS value):
    # 4 x 1,208,496.09375 = 4,833,984.375 -> credited in all 4,833,984, so 1,208,496 now
    await pool.share("alice", 1.0)
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, 5))
    again = await service.step()
    assert again.priced == 1
    assert again.pps_credited == 1_208_496
    assert sql.balance("miner:alice") == 4_833_984
    keys = [str(k) for (k,) in sql.q("SELECT key FROM acct_transactions ORDER BY key")]
    assert keys == ["pps:1-4", "pps:6-6"]  # share 5 was carol's rejected one
    assert (await service.step()).priced == 0  # priced once, never again


async def test_fpps_adds_the_templates_own_fees_by_hand(
    pool: PoolWithJobs, store: AccountingStore
) -> None:
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, FEES))
    for _ in range(3):
        await pool.share("alice", 1.0)
    await pool.share("bob", 2.0)
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, 0))
    await pool.share("alice", 1.0)  # this one answered the fee-less refresh
    await pool.publish(make_template(HEIGHT + 1, D256, SUBSIDY, 0))
    report = await CreditingService(store, ScriptedChain(), Pps(Fee.bps(100), full=True)).step()
    # FPPS share value = d / D x (subsidy + template fees) x (1 - fee)
    #   first job:  (312,500,000 + 12,345,678) / 256 x 0.99 = 1,256,239.145390625 per d = 1
    #   alice 3 x 1,256,239.145390625 = 3,768,717.436171875
    #   bob   2 x 1,256,239.145390625 = 2,512,478.29078125  -> 2,512,478
    #   refresh (fees 0): 312,500,000 / 256 x 0.99 = 1,208,496.09375
    #   alice 3,768,717.436171875 + 1,208,496.09375 = 4,977,213.529921875 -> 4,977,213
    assert report.priced == 5
    assert store.sql.balances("miner:") == {"miner:alice": 4_977_213, "miner:bob": 2_512_478}
    assert store.sql.balance("pool:reserve") == -(4_977_213 + 2_512_478)


async def test_a_restarted_pools_job_ids_are_told_apart_by_time(
    pool: PoolWithJobs, store: AccountingStore, tmp_path: Path
) -> None:
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, FEES))
    await pool.share("alice", 1.0)
    job_id = pool.job.job_id if pool.job else ""
    # the pool restarts: a new process numbers its jobs from 1 again, same height, no fees
    await pool.recorder.close()
    pool.recorder = JobTermsRecorder(pool.recorder.url, "mainnet", clock=pool.clock)
    await pool.recorder.start()
    pool.book = type(pool.book)(pool.book._outputs_for, tag=b"/t/", extranonce2_size=4,
                                generations_kept=3)  # fmt: skip
    second = await pool.publish(make_template(HEIGHT, D256, SUBSIDY, 0))
    assert second.job_id == job_id  # the same (height, job id) names two jobs
    await pool.share("bob", 1.0)
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, 0))
    first_terms = await store.call(lambda s: job_of_share(s, 1))
    second_terms = await store.call(lambda s: job_of_share(s, 2))
    assert first_terms is not None
    assert first_terms.terms.fees_sats == FEES
    assert second_terms is not None
    assert second_terms.terms.fees_sats == 0
    await CreditingService(store, ScriptedChain(), Pps(Fee.bps(100), full=True)).step()
    # alice: 1,256,239.145390625 -> 1,256,239; bob: 1,208,496.09375 -> 1,208,496
    assert store.sql.balances("miner:") == {"miner:alice": 1_256_239, "miner:bob": 1_208_496}


async def test_pps_blocks_fill_the_reserve_and_a_threshold_warns(
    pool: PoolWithJobs, store: AccountingStore
) -> None:
    chain = ScriptedChain()
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, FEES))
    for _ in range(2):
        await pool.share("alice", 1.0)
    rec = await pool.block("bob", block_hash(1), chain.tip + 1)
    chain.place(rec.hash_hex)
    await pool.publish(make_template(HEIGHT + 1, D256, SUBSIDY, 0))
    service = CreditingService(store, chain, Pps(Fee.bps(100)), reserve_warning_sats=100_000_000)
    report = await service.step()
    # the block's whole value to the reserve (immature), no fee: PPS's fee is in (1 - f)
    assert report.posted == 1
    assert report.priced == 3
    sql = store.sql
    assert sql.balance("pool:reserve:immature") == SUBSIDY + FEES
    # alice 2 x 1,208,496.09375 = 2,416,992.1875 -> 2,416,992
    # bob   1 x 1,208,496.09375                  -> 1,208,496
    assert sql.balances("miner:") == {"miner:alice": 2_416_992, "miner:bob": 1_208_496}
    assert report.reserve is not None
    assert report.reserve.warning
    chain.extend(100)
    matured = await service.step()
    assert matured.credited == 1
    # reserve = blocks' rewards - PPS credits
    assert sql.balance("pool:reserve") == SUBSIDY + FEES - 2_416_992 - 1_208_496
    assert matured.reserve is not None
    assert not matured.reserve.warning
    assert sum(sql.balances().values()) == 0


async def test_a_switch_from_pplns_to_pps_prices_only_the_new_epochs_shares(
    pool: PoolWithJobs, store: AccountingStore, caplog: pytest.LogCaptureFixture
) -> None:
    chain = ScriptedChain(bits=D256)
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, 0))
    await pool.share("alice", 64.0)
    first = await pool.block("alice", block_hash(1), chain.tip + 1)
    chain.place(first.hash_hex)
    await CreditingService(store, chain, Pplns(Fee.bps(0))).step()
    pool.time += 10
    switched = CreditingService(store, chain, Pps(Fee.bps(0)), clock=pool.clock)
    await switched.step()  # the switch is noted now; the next block is its boundary
    assert "scheme switch noted: pplns:fee=0/10000:factor=2/1 -> pps:fee=0/10000" in caplog.text
    await pool.share("bob", 1.0)  # still PPLNS work: before the boundary block's share
    boundary = await pool.block("carol", block_hash(2), chain.tip + 1)
    chain.place(boundary.hash_hex)
    await pool.share("dave", 2.0)  # PPS work
    await pool.publish(make_template(HEIGHT + 1, D256, SUBSIDY, 0))
    report = await switched.step()
    assert report.posted == 1
    assert report.priced == 1
    sql = store.sql
    # the boundary block pays the PPLNS window (2 x 256 = 512: alice 64 + 1 of the first
    # block, bob 1, carol 1: all of it), dave's share only PPS: 2 / 256 x 312,500,000
    assert sql.balance("miner:dave") == 2_441_406  # 2,441,406.25
    window = {
        str(a): int(v)
        for a, v in sql.q(
            "SELECT account, sats FROM acct_block_parts WHERE block_hash = ?", (boundary.hash_hex,)
        )
    }
    assert set(window) == {"alice", "bob", "carol"}
    assert sum(window.values()) == SUBSIDY


async def test_a_tides_block_posts_its_jobs_coinbase_plan(
    pool: PoolWithJobs, store: AccountingStore
) -> None:
    chain = ScriptedChain(bits=D256)
    scheme = Tides(Fee.bps(200), dust_sats=20_000_000, max_outputs=3)
    value = SUBSIDY + FEES
    # the window when the job was built: alice 50, bob 30, carol 10, dave 1 (difficulty)
    plan = plan_coinbase(value, {"alice": 50, "bob": 30, "carol": 10, "dave": 1}, scheme)
    # fee floor(324,845,678 x 2%) = floor(6,496,913.56) = 6,496,913; miners 318,348,765
    # x 50/91 = 174,916,903 r 77; x 30/91 = 104,950,142 r 28; x 10/91 = 34,983,380 r 70;
    # x 1/91 = 3,498,338 r 7: floors sum to 318,348,763, the 2 sats left go to the largest
    # remainders (alice 77, carol 70)
    assert plan.fee == 6_496_913
    assert plan.earnings == {
        "alice": 174_916_904,
        "bob": 104_950_142,
        "carol": 34_983_381,
        "dave": 3_498_338,
    }
    spec = "tides:fee=200/10000:factor=8/1:dust=20000000:max=3"
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, FEES), plan, spec)
    rec = await pool.block("bob", block_hash(7), chain.tip + 1)
    chain.place(rec.hash_hex)
    report = await CreditingService(store, chain, scheme).step()
    assert report.posted == 1
    assert not report.failed
    sql = store.sql
    paid = sum(v for _, v in plan.outputs)
    # max_outputs 3: the pool's + 2 miners (alice, bob); carol is held by the bound, dave
    # (3,498,338 < 20,000,000) as dust
    assert [a for a, _ in plan.outputs] == ["alice", "bob"]
    assert sql.balance("payouts:coinbase") == paid
    assert sql.balance("pool:fees") == plan.fee
    held = {a: plan.earnings[a] for a in ("carol", "dave")}
    assert sql.balances("miner:") == {f"miner:{a}:immature": v for a, v in held.items()}
    assert paid + sum(held.values()) + plan.fee == value  # the block's value, exactly
    chain.extend(100)
    await CreditingService(store, chain, scheme).step()
    assert sql.balances("miner:") == {f"miner:{a}": v for a, v in held.items()}
    assert sum(sql.balances().values()) == 0


async def test_a_tides_coinbase_pays_a_held_balance_once_and_a_reorg_gives_it_back(
    pool: PoolWithJobs, store: AccountingStore
) -> None:
    chain = ScriptedChain(bits=D256)
    scheme = Tides(Fee.bps(0), dust_sats=100_000_000, max_outputs=10)
    spec = "tides:fee=0/1:factor=8/1:dust=100000000:max=10"
    value = SUBSIDY + FEES  # 324,845,678
    # block 1: alice 9, dave 1 -> alice 292,361,111 (r 2) paid, dave 32,484,567 (r 8: the
    # odd satoshi) = 32,484,568 held (below the 100,000,000 dust)
    first = plan_coinbase(value, {"alice": 9, "dave": 1}, scheme)
    assert first.earnings == {"alice": 292_361_110, "dave": 32_484_568}
    assert first.outputs == (("alice", 292_361_110),)
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, FEES), first, spec)
    b1 = await pool.block("alice", block_hash(1), chain.tip + 1)
    chain.place(b1.hash_hex)
    chain.extend(100)
    service = CreditingService(store, chain, scheme)
    await service.step()
    sql = store.sql
    assert sql.balances("miner:") == {"miner:dave": 32_484_568}  # held, mature
    # block 2: the window dave 9, erin 1 again splits 292,361,110 / 32,484,568; dave is due
    # 292,361,110 + his held 32,484,568 = 324,845,678, paid in one output; erin's 32,484,568
    # is dust, held in the pool's output, which is what funds dave's held balance:
    # pool output = 324,845,678 - 324,845,678 = 0
    second = plan_coinbase(value, {"dave": 9, "erin": 1}, scheme, held={"dave": 32_484_568})
    assert second.outputs == (("dave", 324_845_678),)
    assert second.held_used == {"dave": 32_484_568}
    assert second.pool_sats == 0
    await pool.publish(make_template(HEIGHT + 1, D256, SUBSIDY, FEES), second, spec)
    b2 = await pool.block("dave", block_hash(2), chain.tip + 1)
    chain.place(b2.hash_hex)
    await service.step()
    # dave's held balance left in the coinbase output; erin's earning is held (immature)
    assert sql.balances("miner:") == {"miner:erin:immature": 32_484_568}
    assert sql.balance("payouts:coinbase") == 292_361_110 + 324_845_678
    chain.reorg(b2.height)  # block 2 leaves the chain: dave's held balance is owed again
    await service.step()
    assert sql.balances("miner:") == {"miner:dave": 32_484_568}
    assert sql.balance("payouts:coinbase") == 292_361_110
    assert sum(sql.balances().values()) == 0


@pytest.mark.services
async def test_on_postgresql_jobs_are_recorded_and_pps_priced(fresh_pg_url: str) -> None:
    from hashfarm.pool.storage.postgres import PostgresLedger

    ledger = PostgresLedger(fresh_pg_url)
    await ledger.start()
    holder: list[PoolWithJobs] = []
    recorder = JobTermsRecorder(fresh_pg_url, "mainnet", clock=lambda: holder[0].clock())
    await recorder.start()
    pool = PoolWithJobs(ledger, recorder)
    holder.append(pool)
    store = await open_store(fresh_pg_url)
    try:
        chain = ScriptedChain()
        await pool.publish(make_template(HEIGHT, D256, SUBSIDY, FEES))
        for _ in range(3):
            await pool.share("alice", 1.0)
        rec = await pool.block("bob", block_hash(1), chain.tip + 1)
        chain.place(rec.hash_hex)
        await pool.publish(make_template(HEIGHT + 1, D256, SUBSIDY, 0))
        service = CreditingService(store, chain, Pps(Fee.bps(100), full=True))
        assert (await service.step(budget=3)).complete is False  # a crash after 3 events
        report = await service.step()
        assert report.unpriced is None
        # FPPS at 1,256,239.145390625 per d = 1 (see the FPPS test):
        # alice 3 -> 3,768,717.436171875 -> 3,768,717; bob's finding share 1 -> 1,256,239
        assert store.sql.balances("miner:") == {"miner:alice": 3_768_717, "miner:bob": 1_256_239}
        assert store.sql.balance("pool:reserve:immature") == SUBSIDY + FEES
        assert (await service.step()).priced == 0
    finally:
        await store.close()
        await recorder.close()
        await ledger.close()


async def test_shares_from_before_any_recorded_job_are_passed_over_not_waited_for(
    pool: PoolWithJobs, store: AccountingStore
) -> None:
    # a ledger from before [accounting]: the pool published jobs but recorded no terms
    pool.book.set_template(make_template(HEIGHT, D256, SUBSIDY, FEES))
    pool.job = pool.book.job_for(POOL_SCRIPT)
    for _ in range(2):
        await pool.share("alice", 1.0)
    service = CreditingService(store, ScriptedChain(), Pps(Fee.bps(100)))
    waiting = await service.step()
    assert waiting.unpriced is not None  # no terms at all yet: nothing can be priced
    assert "no job recorded" in waiting.unpriced.reason
    # accounting enabled: the pool now records its jobs
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, 0))
    await pool.share("bob", 1.0)
    await pool.publish(make_template(HEIGHT + 1, D256, SUBSIDY, 0))
    report = await service.step()
    assert report.skipped == 2  # alice's two shares can never be matched to their job
    assert report.priced == 1
    assert report.unpriced is None
    # bob: 1 / 256 x 312,500,000 x 0.99 = 1,208,496.09375 -> 1,208,496
    assert store.sql.balances("miner:") == {"miner:bob": 1_208_496}
