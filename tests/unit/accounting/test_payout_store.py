"""Payouts in SQL (SQLite and PostgreSQL): one transaction per step, the ledger's invariants."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from acct_strategies import PROPERTY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashfarm.accounting.entries import reversal
from hashfarm.accounting.ledger import PAYOUTS, POOL_FEES, AccountingError, Ledger, transaction
from hashfarm.accounting.payouts import (
    PAYOUTS_NETWORK_FEE,
    PAYOUTS_PENDING,
    PayoutPolicy,
    address_resolver,
    plan_payout,
    planned,
)
from hashfarm.accounting.payoutstore import (
    ABANDONED,
    CONFIRMED,
    CONFLICTED,
    PLANNED,
    SENT,
    SIGNED,
    payout,
    payouts_in,
    plan_and_record,
    recent_payouts,
    record_abandoned,
    record_confirmed,
    record_conflicted,
    record_seen,
    record_signed,
    set_threshold,
    spendable_balances,
    thresholds,
)
from hashfarm.accounting.store import SqlStore, connect
from hashfarm.chain.address import script_to_address


def p2wpkh_address(i: int) -> str:
    """A real regtest P2WPKH address (key hash i repeated)."""
    address = script_to_address(bytes.fromhex("0014") + bytes([i]) * 20, "regtest")
    assert address is not None
    return address


A, B, C = (p2wpkh_address(i) for i in (1, 2, 3))
resolve = address_resolver("regtest")
POLICY = PayoutPolicy(threshold_sats=1_000_000, fee_per_payment_sats=1_000)


@pytest.fixture(params=["sqlite", "postgresql"])
def sql(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'pool.sqlite3'}"
    else:
        url = request.getfixturevalue("fresh_pg_url")
    store = connect(url, create=True)
    yield store
    store.close()


def credit(sql: SqlStore, key: str, balances: dict[str, int]) -> None:
    """Spendable balances as a matured block would leave them."""
    amounts = {f"miner:{a}": v for a, v in balances.items()}
    amounts[f"block:{key}"] = -sum(balances.values())
    with sql.tx():
        sql.post(transaction(f"found:{key}", "found", amounts, 0.0))


def test_a_payout_is_planned_signed_sent_and_confirmed_one_transaction_each(
    sql: SqlStore,
) -> None:
    credit(sql, "01", {A: 3_000_000, B: 999_999, C: 1_000_000, "alice": 5_000_000})
    plan, record = plan_and_record(sql, POLICY, resolve, 10.0)
    assert record is not None
    assert record.state == PLANNED
    assert [(i.account, i.debit_sats, i.amount_sats) for i in record.items] == sorted(
        [(A, 3_000_000, 2_999_000), (C, 1_000_000, 999_000)]
    )
    assert plan.unpayable == ("alice",)
    assert spendable_balances(sql) == {B: 999_999, "alice": 5_000_000}  # A and C: zero now
    assert sql.balance(PAYOUTS_PENDING) == 3_998_000
    assert sql.balance(POOL_FEES) == 2_000
    assert sql.has_transaction(f"payout:{record.key}")
    # no second payout while this one is not on the network
    credit(sql, "02", {B: 1})
    assert plan_and_record(sql, POLICY, resolve, 11.0) == (plan_payout({}, POLICY, resolve), None)

    signed = record_signed(sql, record.id, "aa" * 32, "00", 700, 12.0)
    assert (signed.state, signed.txid, signed.fee_sats) == (SIGNED, "aa" * 32, 700)
    # compare-and-set: a racing run's other transaction is not recorded
    again = record_signed(sql, record.id, "bb" * 32, "01", 800, 13.0)
    assert (again.txid, again.raw_tx) == ("aa" * 32, "00")

    record_seen(sql, record.id, 0, None, None, 14.0)
    record_seen(sql, record.id, 2, "cc" * 32, 500, 15.0)
    sent = payout(sql, record.id)
    assert sent is not None
    assert (sent.state, sent.confirmations, sent.block_hash, sent.block_height) == (
        SENT,
        2,
        "cc" * 32,
        500,
    )
    assert [p.id for p in payouts_in(sql, (SENT,))] == [record.id]

    record_confirmed(sql, sent, 6, "cc" * 32, 500, 16.0)
    done = payout(sql, record.id)
    assert done is not None
    assert (done.state, done.confirmations) == (CONFIRMED, 6)
    assert sql.balance(PAYOUTS_PENDING) == 0
    assert sql.balance(PAYOUTS) == 3_998_000
    assert sql.balance(PAYOUTS_NETWORK_FEE) == 700
    assert sql.balance(POOL_FEES) == 2_000 - 700
    record_confirmed(sql, sent, 7, "cc" * 32, 500, 17.0)  # a replay posts nothing new
    assert sql.balance(PAYOUTS) == 3_998_000
    assert [p.id for p in recent_payouts(sql, A)] == [record.id]
    assert recent_payouts(sql, B) == []
    # the next run may plan again: B reached the threshold meanwhile
    credit(sql, "03", {B: 1_000_000})
    _, second = plan_and_record(sql, POLICY, resolve, 20.0)
    assert second is not None
    assert [(i.account, i.debit_sats) for i in second.items] == [(B, 2_000_000)]


def test_own_thresholds_are_kept_and_used_by_the_plan(sql: SqlStore) -> None:
    credit(sql, "01", {A: 500_000, B: 2_000_000})
    set_threshold(sql, A, 400_000, 1.0)
    set_threshold(sql, B, 3_000_000, 1.0)
    set_threshold(sql, B, 5_000_000, 2.0)  # changed
    assert thresholds(sql) == {A: 400_000, B: 5_000_000}
    _, record = plan_and_record(sql, POLICY, resolve, 3.0)
    assert record is not None
    assert [(i.account, i.debit_sats) for i in record.items] == [(A, 500_000)]
    set_threshold(sql, B, None, 4.0)  # cleared: the run's 1,000,000 applies
    assert thresholds(sql) == {A: 400_000}
    with pytest.raises(AccountingError, match="positive"):
        set_threshold(sql, B, 0, 5.0)


def test_no_payout_while_the_pool_pays_by_tides(sql: SqlStore) -> None:
    credit(sql, "01", {A: 2_000_000})
    with sql.tx():
        sql.q(
            "INSERT INTO acct_scheme_switches (requested_at, scheme, params) VALUES (?, ?, ?)",
            (0.0, "tides", "tides:fee=0/10000:factor=8/1"),
        )
    with pytest.raises(AccountingError, match="TIDES"):
        plan_and_record(sql, POLICY, resolve, 1.0)
    assert payouts_in(sql, (PLANNED,)) == []
    with sql.tx():  # a switch away is noted: TIDES jobs still pay until the next block
        sql.q(
            "INSERT INTO acct_scheme_switches (requested_at, scheme, params) VALUES (?, ?, ?)",
            (2.0, "pplns", "pplns:fee=0/10000:factor=2/1"),
        )
    with pytest.raises(AccountingError, match="TIDES"):
        plan_and_record(sql, POLICY, resolve, 3.0)
    with sql.tx():  # the boundary block was found: the held balances are custodial again
        sql.q(
            "INSERT INTO acct_blocks (hash, height, reward_sats, scheme, state, "
            "found_share_id, found_time, changed_at) VALUES (?, 1, 0, ?, 'found', 1, 4.0, 4.0)",
            ("bb" * 32, "tides:fee=0/10000:factor=8/1"),
        )
        sql.q("UPDATE acct_scheme_switches SET boundary_block = ? WHERE scheme = 'pplns'",
              ("bb" * 32,))  # fmt: skip
    assert plan_and_record(sql, POLICY, resolve, 5.0)[1] is not None


def test_a_conflicted_payout_is_abandoned_once_and_the_balances_come_back(
    sql: SqlStore,
) -> None:
    credit(sql, "01", {A: 2_000_000, B: 4_000_000})
    _, record = plan_and_record(sql, POLICY, resolve, 1.0)
    assert record is not None
    record_signed(sql, record.id, "aa" * 32, "00", 500, 2.0)
    record_seen(sql, record.id, 0, None, None, 3.0)
    with pytest.raises(AccountingError, match="only a conflicted"):
        record_abandoned(sql, record.id, 4.0)  # on the network: never given back
    record_conflicted(sql, record.id, "input x:0 is spent by another transaction", 5.0)
    conflicted = payout(sql, record.id)
    assert conflicted is not None
    assert conflicted.state == CONFLICTED
    assert conflicted.note == "input x:0 is spent by another transaction"
    record_abandoned(sql, record.id, 6.0)
    assert spendable_balances(sql) == {A: 2_000_000, B: 4_000_000}
    assert sql.balance(PAYOUTS_PENDING) == 0
    assert sql.balance(POOL_FEES) == 0
    with pytest.raises(AccountingError, match="abandoned"):
        record_abandoned(sql, record.id, 7.0)
    gone = payout(sql, record.id)
    assert gone is not None
    assert gone.state == ABANDONED


@settings(
    PROPERTY,
    max_examples=25,
    suppress_health_check=[*PROPERTY.suppress_health_check, HealthCheck.function_scoped_fixture],
)  # the test empties the tables itself at every example
@given(
    st.lists(
        st.dictionaries(st.sampled_from([A, B, C, "bob"]), st.integers(0, 3_000_000), max_size=4),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 3),
)
def test_payout_runs_in_sql_match_the_pure_plan_and_ledger(
    sql: SqlStore, credits: list[dict[str, int]], cut: int
) -> None:
    """Credits and payout runs interleaved; each run may stop after planning, signing or
    sending (a crash): SQL and the in-memory ledger agree and no balance is paid twice."""
    with sql.tx():  # a fresh ledger for each example on the same database
        for table in ("acct_payout_items", "acct_payouts", "acct_postings", "acct_balances"):
            sql.q(f"DELETE FROM {table}")
        sql.q("DELETE FROM acct_transactions")
    ledger = Ledger()
    paid: dict[str, int] = {}
    for n, balances in enumerate(credits):
        credit(sql, f"{n:02x}", balances)
        amounts = {f"miner:{a}": v for a, v in balances.items()}
        amounts[f"block:{n:02x}"] = -sum(balances.values())
        ledger.post(transaction(f"found:{n:02x}", "found", amounts, 0.0))
        before = {a[6:]: v for a, v in ledger.accounts("miner:").items()}
        plan, record = plan_and_record(sql, POLICY, resolve, float(n))
        if record is None:
            continue
        assert plan == plan_payout(before, POLICY, resolve)
        ledger.post(planned(record.key, record.items, float(n)))
        for item in record.items:
            paid[item.account] = paid.get(item.account, 0) + item.debit_sats
        if cut == 0:
            record_abandoned(sql, record.id, float(n))  # never signed: given back
            for item in record.items:
                paid[item.account] -= item.debit_sats
            original = ledger.transactions[f"payout:{record.key}"]
            ledger.post(reversal(original, float(n)))
            continue
        record_signed(sql, record.id, f"{n:064x}", "00", 100, float(n))
        if cut >= 2:
            record_seen(sql, record.id, 0, None, None, float(n))
        if cut >= 3:
            sent = payout(sql, record.id)
            assert sent is not None
            record_confirmed(sql, sent, 6, "cc" * 32, 1, float(n))
        if cut < 3:
            break  # a signed or sent payout blocks new ones: the rest waits
    assert spendable_balances(sql) == {a[6:]: v for a, v in ledger.accounts("miner:").items()}
    total_credited: dict[str, int] = {}
    for balances in credits:
        for a, v in balances.items():
            total_credited[a] = total_credited.get(a, 0) + v
    for account, sats in paid.items():
        assert 0 <= sats <= total_credited[account]  # never more than credited
    assert all(v >= 0 for v in spendable_balances(sql).values())


def test_two_payout_runs_at_once_on_postgresql_pay_once(fresh_pg_url: str) -> None:
    """A second run planning while the first's transaction is still open reads the same
    balances; its debit waits for the first's row lock and then fails the no-negative CHECK,
    so its whole transaction (payout row, items, ledger) rolls back."""
    first, second = connect(fresh_pg_url, create=True), connect(fresh_pg_url)
    try:
        credit(first, "01", {A: 2_000_000, B: 3_000_000})
        errors: list[BaseException] = []
        with first.tx():  # the first run's transaction stays open around its plan
            _, mine = plan_and_record(first, POLICY, resolve, 1.0)
            assert mine is not None

            def rival() -> None:
                try:
                    plan_and_record(second, POLICY, resolve, 2.0)
                except BaseException as exc:  # the test inspects it
                    errors.append(exc)

            thread = threading.Thread(target=rival)
            thread.start()
            thread.join(0.5)
            assert thread.is_alive()  # waiting on the first run's row lock
        thread.join(10)
        [refused] = errors  # the table's CHECK: a miner balance never negative
        assert type(refused).__name__ == "CheckViolation", refused
        assert "acct_balances" in str(refused)
        assert [p.id for p in payouts_in(first, (PLANNED,))] == [mine.id]
        assert spendable_balances(first) == {}
        assert first.balance(PAYOUTS_PENDING) == 5_000_000 - 2 * POLICY.fee_per_payment_sats
    finally:
        first.close()
        second.close()
