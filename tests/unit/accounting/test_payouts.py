"""The payout plan's invariants (Hypothesis) and its ledger transactions."""

from __future__ import annotations

import pytest
from acct_strategies import PROPERTY
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.accounting.entries import reversal
from hashfarm.accounting.ledger import PAYOUTS, POOL_FEES, AccountingError, Ledger, transaction
from hashfarm.accounting.payouts import (
    DUST_SATS,
    PAYOUTS_NETWORK_FEE,
    PAYOUTS_PENDING,
    PayoutPolicy,
    address_resolver,
    confirmed,
    payout_key,
    plan_payout,
    planned,
)
from hashfarm.chain.address import script_to_address

# Real regtest addresses of both flavours (P2WPKH): Core's bcrt1..., bcoin's rb1...


def p2wpkh_address(i: int, network: str = "regtest") -> str:
    """A real P2WPKH address (key hash i repeated)."""
    address = script_to_address(bytes.fromhex("0014") + bytes([i]) * 20, network)
    assert address is not None
    return address


ADDRESSES = [p2wpkh_address(i) for i in range(1, 9)]
NOT_ADDRESSES = ["alice", "bob"]
resolve = address_resolver("regtest")


def ledger_with(balances: dict[str, int]) -> Ledger:
    """A ledger whose miners hold `balances` (credited from one block's coinbase)."""
    ledger = Ledger()
    amounts = {f"miner:{a}": v for a, v in balances.items()}
    amounts["block:00"] = -sum(balances.values())
    ledger.post(transaction("found:00", "found", amounts, 0.0))
    return ledger


policies = st.builds(
    lambda fee, extra, outputs: PayoutPolicy(fee + DUST_SATS + extra, outputs, fee),
    st.integers(0, 5_000),
    st.integers(0, 2_000_000),
    st.integers(1, 6),
)
balance_maps = st.dictionaries(
    st.sampled_from(ADDRESSES + NOT_ADDRESSES),
    st.one_of(st.integers(0, 3_000_000), st.sampled_from([0, 546, 1_000_000, 1_000_001])),
    max_size=10,
)


own_thresholds = st.dictionaries(
    st.sampled_from(ADDRESSES + NOT_ADDRESSES), st.integers(1, 3_000_000), max_size=4
)


@PROPERTY
@given(balance_maps, policies, own_thresholds)
def test_a_plan_pays_whole_balances_at_or_above_the_threshold_and_nothing_else(
    balances: dict[str, int], policy: PayoutPolicy, own: dict[str, int]
) -> None:
    plan = plan_payout(balances, policy, resolve, own)
    paid = {i.account: i for i in plan.items}
    for account, sats in balances.items():
        limit = own.get(account, policy.threshold_sats)
        limit = max(limit, policy.floor)  # an own threshold never pays dust either
        if sats < limit:  # nothing below the account's threshold is paid or deferred
            assert account not in paid
            assert account not in plan.deferred
            assert account not in plan.unpayable
        elif resolve(account) is None:
            assert account in plan.unpayable
        else:  # due: paid or deferred, exactly one of them
            assert (account in paid) != (account in plan.deferred)
    for item in plan.items:
        assert item.debit_sats == balances[item.account]  # the whole balance
        assert item.amount_sats == item.debit_sats - policy.fee_per_payment_sats
        assert item.amount_sats >= DUST_SATS  # never a dust output
    assert len(plan.items) <= policy.max_outputs
    assert len({i.address for i in plan.items}) == len(plan.items)  # one output per address
    # the largest balances are paid first: nothing deferred is larger than something paid
    if plan.deferred and plan.items:
        assert max(balances[a] for a in plan.deferred) <= min(i.debit_sats for i in plan.items)
    assert plan.total_debit == plan.total_amount + plan.total_fee
    # the result depends on the balances only, not on their order
    again = plan_payout(dict(reversed(list(balances.items()))), policy, resolve, own)
    assert again == plan


@PROPERTY
@given(balance_maps, policies)
def test_the_planned_transaction_balances_debits_exactly_and_leaves_no_negative_balance(
    balances: dict[str, int], policy: PayoutPolicy
) -> None:
    plan = plan_payout(balances, policy, resolve)
    if not plan.items:
        return
    ledger = ledger_with(balances)
    key = payout_key(plan, 1_000)
    txn = planned(key, plan.items, 1.0)
    debits = -sum(p.amount for p in txn.postings if p.account.startswith("miner:"))
    assert debits == plan.total_debit  # sum of the items = the debit
    assert ledger.post(txn) is True
    assert ledger.balance(PAYOUTS_PENDING) == plan.total_amount
    assert ledger.balance(POOL_FEES) == plan.total_fee
    for account, sats in balances.items():
        left = ledger.balance(f"miner:{account}")
        assert left >= 0
        assert left == (0 if account in {i.account for i in plan.items} else sats)
    # idempotent replay: the same transaction again is a no-op...
    assert ledger.post(planned(key, plan.items, 99.0)) is False
    assert ledger.balance(PAYOUTS_PENDING) == plan.total_amount
    # ...and a plan of what is left pays nobody a second time
    remaining = {a: ledger.balance(f"miner:{a}") for a in balances}
    second = plan_payout(remaining, policy, resolve)
    assert not {i.account for i in second.items} & {i.account for i in plan.items}
    # confirmed: pending -> payouts, the network fee from the pool's fees; books balance
    assert ledger.post(confirmed(key, plan.total_amount, 1_234, 2.0))
    assert ledger.balance(PAYOUTS_PENDING) == 0
    assert ledger.balance(PAYOUTS) == plan.total_amount
    assert ledger.balance(PAYOUTS_NETWORK_FEE) == 1_234
    assert ledger.trial_balance() == {"SAT": 0}


@PROPERTY
@given(balance_maps, policies)
def test_an_abandoned_payout_gives_every_balance_back(
    balances: dict[str, int], policy: PayoutPolicy
) -> None:
    plan = plan_payout(balances, policy, resolve)
    if not plan.items:
        return
    ledger = ledger_with(balances)
    txn = planned(payout_key(plan, 5), plan.items, 1.0)
    ledger.post(txn)
    assert ledger.post(reversal(txn, 2.0))
    assert {a: ledger.balance(f"miner:{a}") for a in balances} == balances
    assert ledger.balance(PAYOUTS_PENDING) == 0
    assert ledger.post(reversal(txn, 3.0)) is False  # abandoning twice gives back once
    assert {a: ledger.balance(f"miner:{a}") for a in balances} == balances


def test_a_plan_paying_more_than_the_balance_is_refused_by_the_ledger() -> None:
    ledger = ledger_with({ADDRESSES[0]: 2_000_000})
    plan = plan_payout({ADDRESSES[0]: 3_000_000}, PayoutPolicy(1_000_000), resolve)
    with pytest.raises(AccountingError, match="negative"):
        ledger.post(planned(payout_key(plan, 1), plan.items, 1.0))


def test_ranking_ties_and_duplicate_addresses() -> None:
    upper = ADDRESSES[0].upper()  # the same bech32 address in upper case: one script
    balances = {ADDRESSES[1]: 2_000_000, ADDRESSES[0]: 2_000_000, upper: 2_000_000}
    plan = plan_payout(balances, PayoutPolicy(1_000_000, max_outputs=2), resolve)
    # ties by ascending id: "BCRT1..." < "bcrt1...", so the upper-case spelling is paid and
    # the lower-case one (same address) waits; the other address is paid too
    assert [i.account for i in plan.items] == sorted([upper, ADDRESSES[1]])
    assert plan.deferred == (ADDRESSES[0],)
    assert {i.address for i in plan.items} == {ADDRESSES[0], ADDRESSES[1]}  # canonical


def test_an_own_threshold_lowers_or_raises_the_runs() -> None:
    policy = PayoutPolicy(1_000_000, fee_per_payment_sats=100)
    balances = {ADDRESSES[0]: 600, ADDRESSES[1]: 50_000, ADDRESSES[2]: 1_500_000}
    own = {ADDRESSES[0]: 1, ADDRESSES[1]: 10_000, ADDRESSES[2]: 2_000_000}
    plan = plan_payout(balances, policy, resolve, own)
    # 600 >= floor 646? no: raised to the floor, not paid; 50,000 >= its own 10,000: paid;
    # 1,500,000 < its own 2,000,000: waits although above the run's threshold
    assert [(i.account, i.amount_sats) for i in plan.items] == [(ADDRESSES[1], 49_900)]
    assert policy.threshold_for(ADDRESSES[0], own) == 646


def test_policy_refuses_a_threshold_that_could_pay_dust() -> None:
    with pytest.raises(ValueError, match="dust"):
        PayoutPolicy(threshold_sats=1_000, fee_per_payment_sats=500)
    with pytest.raises(ValueError, match="max_outputs"):
        PayoutPolicy(max_outputs=0)
    with pytest.raises(ValueError, match="negative"):
        plan_payout({ADDRESSES[0]: -1}, PayoutPolicy(), resolve)


def test_addresses_resolve_per_network_flavour() -> None:
    bcoin = address_resolver("regtest-bcoin")
    core_spelling = ADDRESSES[0]
    assert bcoin(core_spelling) == p2wpkh_address(1, "regtest-bcoin")  # bcoin's flavour
    assert str(bcoin(core_spelling)).startswith("rb1")
    assert resolve("alice") is None
    assert address_resolver("mainnet")(core_spelling) is None  # a regtest address
