"""Block lifecycle on a simulated chain with reorgs, booked in the ledger (pure, no node)."""

from __future__ import annotations

import pytest
from acct_strategies import PROPERTY
from hypothesis import event, given
from hypothesis import strategies as st

from hashfarm.accounting import (
    COINBASE_MATURITY,
    BlockState,
    Fee,
    FoundBlock,
    Ledger,
    Prop,
    Share,
    TrackedBlock,
    advance,
    credit_block,
)
from hashfarm.accounting.entries import block_found, block_matured, found_key, reversal
from hashfarm.accounting.lifecycle import advance_all, mark_credited

OURS = "ab" * 32


def chain_of(hashes: dict[int, str]):  # type: ignore[no-untyped-def]
    return hashes.get


def test_found_waits_for_the_tip_then_matures_at_100_confirmations() -> None:
    b = TrackedBlock(OURS, 500)
    b, note = advance(b, 499, chain_of({}), 1.0)
    assert b.state is BlockState.FOUND
    assert note is None
    b, note = advance(b, 500, chain_of({500: OURS}), 2.0)
    assert (b.state, b.confirmations) == (BlockState.IMMATURE, 1)
    assert note is not None
    assert (note.old, note.new) == (BlockState.FOUND, BlockState.IMMATURE)
    b, _ = advance(b, 598, chain_of({500: OURS}), 3.0)  # 99 confirmations
    assert (b.state, b.confirmations) == (BlockState.IMMATURE, 99)
    # Core: a coinbase at height h is spendable in block h + 100, i.e. once the tip is
    # h + 99 = 100 confirmations (COINBASE_MATURITY)
    b, _ = advance(b, 599, chain_of({500: OURS}), 4.0)
    assert (b.state, b.confirmations) == (BlockState.MATURE, COINBASE_MATURITY)
    b, note = mark_credited(b, 5.0)
    assert b.state is BlockState.CREDITED
    assert b.changed_at == 5.0


@pytest.mark.parametrize("state", [BlockState.FOUND, BlockState.IMMATURE, BlockState.MATURE])
def test_another_block_at_its_height_orphans_it(state: BlockState) -> None:
    b, note = advance(TrackedBlock(OURS, 500, state), 650, chain_of({500: "cd" * 32}), 1.0)
    assert b.state is BlockState.ORPHANED
    assert note is not None
    assert note.old is state


def test_a_seen_block_above_a_shorter_tip_has_left_the_chain() -> None:
    b, _ = advance(TrackedBlock(OURS, 500, BlockState.IMMATURE), 499, chain_of({}), 1.0)
    assert b.state is BlockState.ORPHANED


def test_an_orphan_is_final_even_if_it_comes_back() -> None:
    b, note = advance(TrackedBlock(OURS, 500, BlockState.ORPHANED), 510, chain_of({500: OURS}), 1)
    assert b.state is BlockState.ORPHANED
    assert note is not None
    assert note.reappeared


def test_only_a_mature_block_is_credited() -> None:
    with pytest.raises(ValueError, match="not mature"):
        mark_credited(TrackedBlock(OURS, 500, BlockState.IMMATURE), 1.0)


# --- a chain with reorgs, driven by Hypothesis -------------------------------------------

ops = st.lists(
    st.one_of(
        # n blocks, the last one ours? (short runs make reorgs hit ours, long ones mature them)
        st.tuples(
            st.just("mine"), st.one_of(st.integers(1, 3), st.integers(60, 110)), st.booleans()
        ),
        st.tuples(st.just("reorg"), st.integers(1, 8), st.integers(1, 10)),  # depth, new length
    ),
    min_size=1,
    max_size=12,
)


@PROPERTY
@given(ops=ops, rewards=st.lists(st.integers(0, 5 * 10**9), min_size=1, max_size=4))
def test_reorgs_reverse_credits_and_orphans_are_never_paid(ops, rewards) -> None:  # type: ignore[no-untyped-def]
    chain: list[str] = [f"g{i}" for i in range(10)]  # hash by height
    tracked: list[TrackedBlock] = []
    found: dict[str, int] = {}  # our block -> miners' credit total
    ledger = Ledger()
    serial = 0
    scheme = Prop(Fee.bps(100))
    shares = [Share(0, "alice", 2.0, 0.0, 1), Share(1, "bob", 1.0, 0.0, 1)]
    for op in ops:
        if op[0] == "mine":
            for k in range(op[1]):
                serial += 1
                h = f"n{serial}"
                chain.append(h)
                if op[2] and k == op[1] - 1:  # the pool found this one
                    reward = rewards[serial % len(rewards)]
                    blk = FoundBlock(h, len(chain) - 1, reward, "alice", 1, 0.0, 1.0)
                    credit = credit_block(scheme, blk, shares)
                    ledger.post(block_found(credit, float(serial)))
                    found[h] = sum(credit.credits.values())
                    tracked.append(TrackedBlock(h, len(chain) - 1))
        else:
            depth = min(op[1], len(chain) - 1)
            del chain[len(chain) - depth :]
            for _ in range(op[2]):
                serial += 1
                chain.append(f"r{serial}")
        heights = dict(enumerate(chain))
        tracked, notes = advance_all(tracked, len(chain) - 1, heights.get, float(serial))
        for note in notes:
            if note.new is BlockState.ORPHANED and not note.reappeared:
                ledger.post(reversal(ledger.transactions[found_key(note.hash_hex)], 0.0))
        for i, b in enumerate(tracked):
            if b.state is BlockState.MATURE:
                ledger.post(block_matured(ledger.transactions[found_key(b.hash_hex)], 0.0))
                tracked[i], _ = mark_credited(b, 0.0)
        assert ledger.trial_balance() in ({}, {"SAT": 0})
    on_chain = set(chain)
    credited = [b for b in tracked if b.state is BlockState.CREDITED]
    orphaned = [b for b in tracked if b.state is BlockState.ORPHANED]
    pending = [b for b in tracked if b.state in (BlockState.FOUND, BlockState.IMMATURE)]
    event(f"credited={bool(credited)} orphaned={bool(orphaned)}")  # both paths get exercised
    assert all(b.hash_hex in on_chain for b in credited + pending)  # reorgs here are < 100 deep
    assert all(b.hash_hex not in on_chain for b in orphaned)
    assert all(f"mature:{b.hash_hex}" not in ledger.transactions for b in orphaned)
    spendable = ledger.balance("miner:alice") + ledger.balance("miner:bob")
    immature = ledger.balance("miner:alice:immature") + ledger.balance("miner:bob:immature")
    assert spendable == sum(found[b.hash_hex] for b in credited)
    assert immature == sum(found[b.hash_hex] for b in pending)
