"""TIDES coinbase outputs from a hand-made window; dust, the output bound, the pool output."""

from __future__ import annotations

from fractions import Fraction

from acct_strategies import ACCOUNTS, PROPERTY
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.accounting import Fee, Ledger, Tides, plan_coinbase
from hashfarm.accounting.entries import block_matured, reversal, tides_block_found
from hashfarm.accounting.ledger import PAYOUTS_COINBASE, POOL_FEES
from hashfarm.accounting.tides import top_payees

VALUE = 312_500_000 + 12_345_678  # subsidy 3.125 BTC + template fees
WINDOW = {"alice": 500, "bob": 300, "carol": 150, "dave": 49, "erin": 1}  # of 1000
TIDES = Tides(Fee.bps(200))  # dust 1,048,576 sats, 500 outputs


def test_outputs_from_a_hand_made_window() -> None:
    # fee: 2% of 324,845,678 = 6,496,913.56 -> 6,496,913; miners: 318,348,765.
    # exact parts: alice .5 -> 159,174,382.5; bob .3 -> 95,504,629.5; carol .15 ->
    # 47,752,314.75; dave .049 -> 15,599,089.485; erin .001 -> 318,348.765.
    # floors sum to 318,348,762: 3 sats missing -> largest remainders erin (.765),
    # carol (.75), then alice/bob tie at .5 -> "alice" first.
    plan = plan_coinbase(VALUE, WINDOW, TIDES)
    assert plan.fee == 6_496_913
    assert plan.earnings == {
        "alice": 159_174_383,
        "bob": 95_504_629,
        "carol": 47_752_315,
        "dave": 15_599_089,
        "erin": 318_349,
    }
    # erin's 318,349 < 1,048,576: held, not an output; outputs largest first
    assert plan.outputs == (
        ("alice", 159_174_383),
        ("bob", 95_504_629),
        ("carol", 47_752_315),
        ("dave", 15_599_089),
    )
    # pool output = fee + erin's held earning = 6,496,913 + 318,349
    assert plan.pool_sats == 6_815_262
    assert plan.held_after == {"erin": 318_349}


def test_a_held_balance_is_paid_once_it_reaches_the_threshold() -> None:
    # erin held 800,000 from mature blocks: 800,000 + 318,349 = 1,118,349 >= 1,048,576
    plan = plan_coinbase(VALUE, WINDOW, TIDES, held={"erin": 800_000})
    assert ("erin", 1_118_349) in plan.outputs
    assert plan.held_used == {"erin": 800_000}
    assert plan.pool_sats == 6_496_913 - 800_000  # the pool output pays the held part
    assert plan.held_after == {}


def test_the_output_bound_holds_the_smallest_payees() -> None:
    plan = plan_coinbase(VALUE, WINDOW, Tides(Fee.bps(200), max_outputs=3))
    assert [a for a, _ in plan.outputs] == ["alice", "bob"]  # 3 outputs: the pool's + 2
    assert plan.held_after == {"carol": 47_752_315, "dave": 15_599_089, "erin": 318_349}


def test_held_balances_never_make_the_pool_output_negative() -> None:
    # no fee, bob's held 5,000 exceeds the block: payees dropped from the lowest rank up
    plan = plan_coinbase(1000, {"alice": 1}, Tides(dust_sats=1), held={"bob": 5000})
    assert plan.outputs == ()
    assert plan.pool_sats == 1000
    assert plan.held_after == {"alice": 1000, "bob": 5000}


def test_the_ledger_books_a_tides_block_and_its_reversal() -> None:
    ledger = Ledger()
    first = plan_coinbase(VALUE, WINDOW, TIDES)
    found = tides_block_found("aa" * 32, first, 1.0)
    ledger.post(found)
    assert ledger.balance("miner:erin:immature") == 318_349
    assert ledger.balance(PAYOUTS_COINBASE) == 318_030_416
    assert ledger.balance(POOL_FEES) == 6_496_913
    ledger.post(block_matured(found, 2.0))
    assert ledger.balance("miner:erin") == 318_349
    second = plan_coinbase(VALUE, {"erin": 1}, Tides(Fee.bps(200)), held={"erin": 318_349})
    found2 = tides_block_found("bb" * 32, second, 3.0)
    ledger.post(found2)
    assert ledger.balance("miner:erin") == 0  # paid in the second coinbase
    ledger.post(reversal(found2, 4.0))  # ... which was orphaned: erin is owed it again
    assert ledger.balance("miner:erin") == 318_349
    assert ledger.trial_balance() == {"SAT": 0}


windows = st.dictionaries(st.sampled_from(ACCOUNTS), st.integers(0, 10**6), max_size=5)
helds = st.dictionaries(st.sampled_from(ACCOUNTS), st.integers(0, 3 * 10**6), max_size=5)


@PROPERTY
@given(
    value=st.integers(0, 10**10),
    window=windows,
    held=helds,
    dust=st.integers(1, 2 * 10**6),
    max_outputs=st.integers(1, 6),
    fee_bps=st.integers(0, 10_000),
)
def test_coinbase_invariants(value, window, held, dust, max_outputs, fee_bps) -> None:  # type: ignore[no-untyped-def]
    scheme = Tides(Fee.bps(fee_bps), dust_sats=dust, max_outputs=max_outputs)
    plan = plan_coinbase(value, {k: Fraction(v) for k, v in window.items()}, scheme, held)
    assert sum(v for _, v in plan.outputs) + plan.pool_sats == value
    assert plan.pool_sats >= 0
    assert len(plan.outputs) <= max_outputs - 1
    assert all(v >= dust for _, v in plan.outputs)
    amounts = [v for _, v in plan.outputs]
    assert amounts == sorted(amounts, reverse=True)
    # every satoshi due (earning + held) is either in an output or still held
    paid = dict(plan.outputs)
    for account in plan.earnings.keys() | held.keys():
        due = plan.earnings.get(account, 0) + held.get(account, 0)
        assert paid.get(account, 0) + plan.held_after.get(account, 0) == due
    ledger = Ledger()
    for account, sats in held.items():  # give the miners their held balances first
        ledger.balances[(f"miner:{account}", "SAT")] = sats
        ledger.balances[("pool:held-funding", "SAT")] = -sum(held.values())
    ledger.post(tides_block_found("cc" * 32, plan, 1.0))
    assert all(v >= 0 for a, v in ledger.accounts("miner:").items())


@PROPERTY
@given(
    due=st.lists(st.one_of(st.just(5000), st.integers(0, 10**7)), max_size=300).map(
        lambda xs: {f"m{i:03d}": x for i, x in enumerate(xs)}
    ),
    dust=st.integers(1, 10**6),
    limit=st.integers(0, 120),
)
def test_top_payees_equals_the_plain_sort(due: dict[str, int], dust: int, limit: int) -> None:
    plain = [a for _, a in sorted((-d, a) for a, d in due.items() if d >= dust)][:limit]
    assert top_payees(due, dust, limit) == plain
