"""The double-entry ledger: balanced postings, no negative miner balance, idempotent keys."""

from __future__ import annotations

import pytest
from acct_strategies import PROPERTY
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.accounting import AccountingError, BlockCredit, Ledger, Posting, Transaction
from hashfarm.accounting.entries import (
    block_found,
    block_matured,
    capital,
    pps_settlement,
    reversal,
)
from hashfarm.accounting.ledger import POOL_RESERVE, transaction

CREDIT = BlockCredit("ab" * 32, "prop", 1000, 10, {"alice": 600, "bob": 390}, 0)


def test_unbalanced_postings_are_refused() -> None:
    with pytest.raises(AccountingError, match="do not balance"):
        Transaction("t", "x", (Posting("a", 5), Posting("b", -4)), 0.0)
    with pytest.raises(AccountingError, match="whole satoshis"):
        Transaction("t", "x", (Posting("a", 0.5), Posting("b", -0.5)), 0.0)  # type: ignore[arg-type]


def test_balance_is_per_currency() -> None:
    with pytest.raises(AccountingError, match="do not balance"):
        Transaction("t", "x", (Posting("a", 5, "SAT"), Posting("b", -5, "MSAT")), 0.0)


def test_a_miner_balance_never_goes_negative() -> None:
    ledger = Ledger()
    with pytest.raises(AccountingError, match="would go negative"):
        ledger.post(transaction("t", "x", {"miner:alice": -1, "pool:fees": 1}, 0.0))
    assert ledger.balances == {}  # nothing applied


def test_a_key_is_applied_once_and_cannot_be_reused() -> None:
    ledger = Ledger()
    found = block_found(CREDIT, 1.0)
    assert ledger.post(found)
    assert not ledger.post(found)  # a retry after a crash: no double credit
    assert ledger.balance("miner:alice:immature") == 600
    other = transaction(found.key, "found", {"miner:bob:immature": 1, "pool:fees": -1}, 2.0)
    with pytest.raises(AccountingError, match="already used"):
        ledger.post(other)


def test_a_block_credits_reward_minus_fee_and_matures_once() -> None:
    ledger = Ledger()
    found = block_found(CREDIT, 1.0)
    ledger.post(found)
    assert ledger.balance(f"block:{'ab' * 32}") == -1000
    assert ledger.balance("pool:fees") == 10
    ledger.post(block_matured(found, 2.0))
    assert ledger.accounts("miner:") == {"miner:alice": 600, "miner:bob": 390}
    with pytest.raises(AccountingError, match="already matured"):
        ledger.post(reversal(found, 3.0))  # a credited block is not reversed by a reorg


def test_a_reversed_block_never_matures_and_is_reversed_once() -> None:
    ledger = Ledger()
    found = block_found(CREDIT, 1.0)
    ledger.post(found)
    ledger.post(reversal(found, 2.0))
    assert ledger.accounts("miner:") == {}
    with pytest.raises(AccountingError, match="reversed"):
        ledger.post(block_matured(found, 3.0))
    again = transaction("reverse-again", "reverse", {"pool:fees": 0}, 4.0, reverses=found.key)
    with pytest.raises(AccountingError, match="already reversed"):
        ledger.post(again)


def test_pps_liability_against_the_reserve_warns_below_the_threshold() -> None:
    ledger = Ledger(reserve_warning_sats=500)
    ledger.post(capital("seed", 1000, 0.0))
    assert not ledger.reserve_status().warning
    ledger.post(pps_settlement("1", {"alice": 450, "bob": 150}, 1.0))
    status = ledger.reserve_status()
    assert (status.reserve, status.owed_to_miners, status.warning) == (400, 600, True)
    pps_block = BlockCredit("cd" * 32, "pps", 5000, 0, {}, 5000)
    found = block_found(pps_block, 2.0)
    ledger.post(found)
    assert ledger.reserve_status().immature_reserve == 5000
    assert ledger.reserve_status().warning  # immature rewards do not count yet
    ledger.post(block_matured(found, 3.0))
    assert ledger.reserve_status() == type(status)(5400, 0, 600, False)


events = st.lists(
    st.one_of(
        st.tuples(st.just("capital"), st.integers(-(10**6), 10**7)),
        st.tuples(st.just("pps"), st.dictionaries(st.sampled_from("abc"), st.integers(0, 10**6))),
        st.tuples(st.just("block"), st.integers(0, 10**7)),
    ),
    max_size=30,
)


@PROPERTY
@given(events=events, threshold=st.integers(0, 10**7))
def test_reserve_is_rewards_plus_capital_minus_pps_credits(events, threshold) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(reserve_warning_sats=threshold)
    expect = 0
    for i, (kind, arg) in enumerate(events):
        if kind == "capital":
            ledger.post(capital(str(i), arg, float(i)))
            expect += arg
        elif kind == "pps":
            ledger.post(pps_settlement(str(i), arg, float(i)))
            expect -= sum(arg.values())
        else:
            found = block_found(BlockCredit(f"{i:064x}", "pps", arg, 0, {}, arg), float(i))
            ledger.post(found)
            ledger.post(block_matured(found, float(i)))
            expect += arg
        status = ledger.reserve_status()
        assert status.reserve == ledger.balance(POOL_RESERVE) == expect
        assert status.warning == (expect < threshold)
        assert ledger.trial_balance() in ({}, {"SAT": 0})


@PROPERTY
@given(
    credits=st.lists(
        st.dictionaries(st.sampled_from("abc"), st.integers(1, 10**8), min_size=1), max_size=6
    ),
    replays=st.lists(st.integers(0, 100), max_size=12),
)
def test_a_crash_and_replay_of_any_events_credits_exactly_once(credits, replays) -> None:  # type: ignore[no-untyped-def]
    # the events of a run: each block found, then every other one matured, every third
    # orphaned; a crash replays an arbitrary earlier event (the writer's retry after restart)
    txns = []
    for i, c in enumerate(credits):
        found = block_found(BlockCredit(f"{i:064x}", "prop", sum(c.values()) + 5, 5, c, 0), 0.0)
        txns.append(found)
        if i % 3 == 2:
            txns.append(reversal(found, 1.0))
        elif i % 2 == 0:
            txns.append(block_matured(found, 1.0))
    clean, crashed = Ledger(), Ledger()
    for t in txns:
        clean.post(t)
    for k, t in enumerate(txns):
        crashed.post(t)
        for r in replays[k :: max(1, len(txns))]:  # replays interleaved with the run
            crashed.post(txns[r % (k + 1)])
    assert crashed.balances == clean.balances
    assert crashed.transactions.keys() == clean.transactions.keys()
