"""Statements explain PPS/FPPS credits and payouts: lines checked by hand against the ledger.

The ledger is built by the project's own pieces, as `test_acct_pps.py` builds it: `JobBook`
jobs with their terms recorded by `JobTermsRecorder`, shares written by `SQLiteLedger`, the
crediting service pricing them (`pps:<first>-<last>`), and a payout posted with the payout
module's own transaction (`payouts.planned`). Every line's sats equal the ledger's posting;
the per-day sums add up to the account's balances.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from hashfarm.accounting import statements as st
from hashfarm.accounting.ledger import immature_account, miner_account
from hashfarm.accounting.money import Fee
from hashfarm.accounting.payouts import PayoutPolicy
from hashfarm.accounting.payoutstore import plan_and_record, record_signed
from hashfarm.accounting.schemes import Pps, Tides
from hashfarm.accounting.service import CreditingService
from hashfarm.accounting.store import AccountingStore, SqlStore, open_store
from hashfarm.accounting.tides import plan_coinbase
from hashfarm.cli.main import cli
from hashfarm.pool.jobterms import JobTermsRecorder
from hashfarm.pool.storage.sqlite import SQLiteLedger
from unit.accounting.acct_jobs import PoolWithJobs, make_template
from unit.accounting.acct_pool import ScriptedChain, block_hash

D256 = 0x1C00FFFF  # network difficulty 256.0 exactly
HEIGHT, SUBSIDY, FEES = 840_000, 312_500_000, 12_345_678
ALICE_ADDRESS = "bcrt1qalice"  # where alice is paid (bob has no address: never paid)
TXID = "ab" * 31 + "cdef"
ALICE = 4_977_213 + 4_833_984  # what the two FPPS batches credited her
DAY1, DAY2 = 1_700_000_000.0, 1_700_100_000.0  # 2023-11-14 and 2023-11-16 (UTC)


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
        await p.recorder.close()
        await ledger.close()


@pytest.fixture
async def store(pool: PoolWithJobs) -> AsyncIterator[AccountingStore]:
    s = await open_store(pool.recorder.url)
    try:
        yield s
    finally:
        await s.close()


def _posted(sql: SqlStore, key: str, account: str) -> int:
    rows = sql.q(
        "SELECT amount FROM acct_postings WHERE txn_key = ? AND account = ?",
        (key, miner_account(account)),
    )
    return int(rows[0][0]) if rows else 0


async def _fpps_books(pool: PoolWithJobs, store: AccountingStore) -> None:
    """Two FPPS batches (the first spanning two jobs' terms for alice), then alice paid."""
    now = [DAY1]
    service = CreditingService(
        store, ScriptedChain(), Pps(Fee.bps(100), full=True), clock=lambda: now[0]
    )
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, FEES))
    for _ in range(3):
        await pool.share("alice", 1.0)
    await pool.share("bob", 2.0)
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, 0))
    await pool.share("alice", 1.0)  # answered the fee-less refresh
    await pool.publish(make_template(HEIGHT + 1, D256, SUBSIDY, 0))
    assert (await service.step()).priced == 5
    await pool.share("alice", 4.0)  # on the last job: fees 0
    await pool.publish(make_template(HEIGHT + 1, D256, SUBSIDY, 7))
    now[0] = DAY1 + 60
    assert (await service.step()).priced == 1

    def pay(sql: SqlStore) -> None:
        # the payout store's own run: alice's whole balance, less a 1,000 sats payout fee
        policy = PayoutPolicy(threshold_sats=5_000_000, fee_per_payment_sats=1_000)
        _, record = plan_and_record(sql, policy, {"alice": ALICE_ADDRESS}.get, DAY2)
        assert record is not None
        record_signed(sql, record.id, TXID, "00", 300, DAY2 + 1)

    await store.call(pay)


async def test_fpps_batches_are_explained_by_hand(
    pool: PoolWithJobs, store: AccountingStore
) -> None:
    await _fpps_books(pool, store)
    sql = store.sql
    keys = [str(k) for (k,) in sql.q("SELECT key FROM acct_transactions WHERE kind = 'pps'")]
    assert sorted(keys) == ["pps:1-5", "pps:6-6"]
    # FPPS per d = 1, first job:  (312,500,000 + 12,345,678) / 256 x 0.99 = 1,256,239.145390625
    #                  refresh:    312,500,000 / 256 x 0.99              = 1,208,496.09375
    first = Fraction(SUBSIDY + FEES, 256) * Fraction(99, 100)
    plain = Fraction(SUBSIDY, 256) * Fraction(99, 100)
    assert first == Fraction("1256239.145390625")
    assert plain == Fraction("1208496.09375")
    alice = st.statement_lines(sql, "alice")
    bob = st.statement_lines(sql, "bob")
    assert all(isinstance(ln, st.PpsLine) for ln in alice + bob)
    newest, older = alice  # newest first
    assert isinstance(newest, st.PpsLine)
    assert isinstance(older, st.PpsLine)
    # batch 1-5: alice 3 x d1 on the first job, 1 x d1 on the refresh: 4,977,213.53 -> 4,977,213
    assert (older.batch, older.shares, older.difficulty) == ("1-5", 4, 4.0)
    assert older.value == 3 * first + plain
    assert older.sats == 4_977_213 == _posted(sql, "pps:1-5", "alice")
    assert older.terms == ((256.0, SUBSIDY, 0), (256.0, SUBSIDY, FEES))
    assert older.explanation == (
        "FPPS: 4 shares (difficulty 4 in all) at 2 jobs' terms, less the 1% pool fee: "
        "4,977,213 sats (worth 4,977,213.53; whole satoshis are credited, the fraction "
        "carries to the next batch)"
    )
    # batch 6-6: one d4 share at 312,500,000 / 256 = 4,833,984.375 -> with the 0.529921875
    # carried: 4,833,984.375 + 0.529921875 = 4,833,984.904921875 -> 4,833,984 credited
    assert (newest.batch, newest.shares, newest.difficulty) == ("6-6", 1, 4.0)
    assert newest.value == 4 * plain
    assert newest.sats == 4_833_984 == _posted(sql, "pps:6-6", "alice")
    assert newest.explanation == (
        "FPPS: 1 share (difficulty 4 in all) at network difficulty 256, subsidy 312,500,000, "
        "fees 0, less the 1% pool fee: 4,833,984 sats (worth 4,833,984.38; whole satoshis are "
        "credited, the fraction carries to the next batch)"
    )
    (only,) = bob
    assert isinstance(only, st.PpsLine)
    assert only.sats == 2_512_478 == _posted(sql, "pps:1-5", "bob")
    assert only.explanation.startswith(
        "FPPS: 1 share (difficulty 2 in all) at network difficulty 256, subsidy 312,500,000, "
        "fees 12,345,678, less the 1% pool fee: 2,512,478 sats"
    )
    # every credit of each account is one line: the lines add up to what the ledger credited
    for account, lines in (("alice", alice), ("bob", bob)):
        credited = sql.q(
            "SELECT sum(amount) FROM acct_postings p JOIN acct_transactions t ON t.key = "
            "p.txn_key WHERE t.kind = 'pps' AND p.account = ?",
            (miner_account(account),),
        )[0][0]
        assert sum(ln.sats for ln in lines) == int(credited)
    # pages of the one list are slices of it
    assert st.statement_line_count(sql, "alice") == 2
    assert st.statement_lines(sql, "alice", 1, 1) == [older]
    assert st.statement_lines(sql, "alice", 5, 0) == alice


async def test_days_sum_pps_credits_and_payouts_to_the_balances(
    pool: PoolWithJobs, store: AccountingStore
) -> None:
    await _fpps_books(pool, store)
    sql = store.sql
    days = st.day_lines(sql, "alice")
    assert [(d.day, d.pps, d.paid, d.earned, d.change) for d in days] == [
        ("2023-11-14", 4_977_213 + 4_833_984, 0, 0, 4_977_213 + 4_833_984),
        ("2023-11-16", 0, ALICE, 0, -ALICE),
    ]
    for account in ("alice", "bob"):
        balance = sql.balance(miner_account(account)) + sql.balance(immature_account(account))
        assert sum(d.change for d in st.day_lines(sql, account)) == balance
    # the CLI writes the same lines the API serves (the same functions), and says them
    run = CliRunner().invoke
    url = pool.recorder.url
    as_json = run(cli, ["accounts", "statement", "alice", "--day", "--storage-url", url, "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert orjson.loads(as_json.output) == [st.day_json(d) for d in days]
    by_block = run(cli, ["accounts", "statement", "alice", "--block", "--storage-url", url])
    assert by_block.exit_code == 0, by_block.output
    assert "FPPS: 4 shares (difficulty 4 in all) at 2 jobs' terms" in by_block.output
    assert "[shares 6-6]" in by_block.output
    (payout,) = st.payout_lines(sql, "alice")
    key = str(sql.q("SELECT idempotency_key FROM acct_payouts")[0][0])
    assert payout.sats == ALICE == -_posted(sql, f"payout:{key}", "alice")
    assert payout.explanation == (
        f"payout #{payout.payout_id} tx abababab…ababcdef signed (0 conf.): 9,811,197 sats from "
        "the balance, 9,810,197 to bcrt1qalice (1,000 payout fee)"
    )
    assert st.payout_lines(sql, "bob") == []
    paid = run(cli, ["accounts", "statement", "alice", "--payouts", "--storage-url", url, "--json"])
    assert orjson.loads(paid.output) == [st.payout_json(payout)]
    text = run(cli, ["accounts", "statement", "bob", "--payouts", "--storage-url", url])
    assert "(no payout to bob)" in text.output
    lines = run(cli, ["accounts", "statement", "alice", "--storage-url", url, "--json"])
    doc = orjson.loads(lines.output)
    assert [(ln["kind"], ln["batch"], ln["sats"]) for ln in doc] == [
        ("pps", "6-6", 4_833_984),
        ("pps", "1-5", 4_977_213),
    ]


async def test_days_show_tides_coinbase_payments_and_their_reversal(
    pool: PoolWithJobs, store: AccountingStore
) -> None:
    """`test_acct_pps`'s TIDES history: dave's held balance paid in block 2's coinbase, block 2
    orphaned the next day (the held balance owed again)."""
    now = [DAY1]
    chain = ScriptedChain(bits=D256)
    scheme = Tides(Fee.bps(0), dust_sats=100_000_000, max_outputs=10)
    spec = "tides:fee=0/1:factor=8/1:dust=100000000:max=10"
    value = SUBSIDY + FEES
    first = plan_coinbase(value, {"alice": 9, "dave": 1}, scheme)
    await pool.publish(make_template(HEIGHT, D256, SUBSIDY, FEES), first, spec)
    b1 = await pool.block("alice", block_hash(1), chain.tip + 1)
    chain.place(b1.hash_hex)
    chain.extend(100)
    service = CreditingService(store, chain, scheme, clock=lambda: now[0])
    await service.step()
    second = plan_coinbase(value, {"dave": 9, "erin": 1}, scheme, held={"dave": 32_484_568})
    assert second.outputs == (("dave", 324_845_678),)  # 292,361,110 earned + 32,484,568 held
    await pool.publish(make_template(HEIGHT + 1, D256, SUBSIDY, FEES), second, spec)
    b2 = await pool.block("dave", block_hash(2), chain.tip + 1)
    chain.place(b2.hash_hex)
    await service.step()
    now[0] = DAY2
    chain.reorg(b2.height)
    await service.step()
    sql = store.sql
    days = {d.day: d for d in st.day_lines(sql, "dave")}
    one, two = days["2023-11-14"], days["2023-11-16"]
    # block 1: 32,484,568 earned (dust, held) and matured; block 2: the held 32,484,568 paid
    # in its coinbase output with this block's 292,361,110
    assert (one.earned, one.matured, one.paid, one.coinbase) == (
        32_484_568,
        32_484_568,
        32_484_568,
        292_361_110,
    )
    assert one.change == 0
    # block 2 left the chain: its output with it, the held balance owed again
    assert (two.earned, two.reversed, two.paid, two.coinbase) == (0, 0, -32_484_568, -292_361_110)
    assert two.change == 32_484_568 == sql.balance("miner:dave")
    (alice,) = st.day_lines(sql, "alice")
    assert (alice.coinbase, alice.change) == (292_361_110, 0)  # paid straight in block 1
    for account in ("alice", "dave", "erin"):
        balance = sql.balance(miner_account(account)) + sql.balance(immature_account(account))
        assert sum(d.change for d in st.day_lines(sql, account)) == balance
    lines = st.statement_lines(sql, "dave")
    assert [(ln.height, ln.state, ln.sats) for ln in lines if isinstance(ln, st.BlockLine)] == [
        (b2.height, "orphaned", 292_361_110),
        (b1.height, "credited", 32_484_568),
    ]


@pytest.mark.services
async def test_on_postgresql_the_same_lines(fresh_pg_url: str) -> None:
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
        await _fpps_books(pool, store)
        sql = store.sql
        alice = st.statement_lines(sql, "alice")
        assert [(ln.sats, ln.explanation.split(":")[1]) for ln in alice] == [
            (
                4_833_984,
                " 1 share (difficulty 4 in all) at network difficulty 256, subsidy 312,500,000, "
                "fees 0, less the 1% pool fee",
            ),
            (4_977_213, " 4 shares (difficulty 4 in all) at 2 jobs' terms, less the 1% pool fee"),
        ]
        assert st.statement_lines(sql, "alice", 1, 1) == alice[1:]
        days = st.day_lines(sql, "alice")
        assert [(d.day, d.pps, d.paid) for d in days] == [
            ("2023-11-14", 4_977_213 + 4_833_984, 0),
            ("2023-11-16", 0, ALICE),
        ]
        assert sum(d.change for d in days) == sql.balance(miner_account("alice"))
    finally:
        await store.close()
        await recorder.close()
        await ledger.close()


async def test_the_api_serves_the_cli_lines(pool: PoolWithJobs, store: AccountingStore) -> None:
    from unit.api.test_api_accounts import _serve

    await _fpps_books(pool, store)
    url = pool.recorder.url
    run = CliRunner().invoke
    async for api in _serve(pool.ledger, url):
        for account in ("alice", "bob"):
            for flag, by in (("--block", "block"), ("--day", "day"), ("--payouts", "payout")):
                done = run(
                    cli, ["accounts", "statement", account, flag, "--storage-url", url, "--json"]
                )
                assert done.exit_code == 0, done.output
                doc = await api.ok(f"/api/accounts/{account}/statement?by={by}")
                assert doc["lines"] == orjson.loads(done.output)
                assert doc["total"] == len(doc["lines"])
        page = await api.ok("/api/accounts/alice/statement?by=block&limit=1&offset=1")
        assert [ln["batch"] for ln in page["lines"]] == ["1-5"]
        assert page["total"] == 2
