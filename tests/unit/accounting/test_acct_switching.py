"""Scheme switches: the boundary rule by hand, and no work re-paid or dropped (property)."""

from __future__ import annotations

import itertools
from fractions import Fraction

from acct_strategies import PROPERTY, histories
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.accounting import (
    Fee,
    FoundBlock,
    JobTerms,
    Pplns,
    Pps,
    Prop,
    Scheme,
    SchemeSwitch,
    Share,
    ShareLike,
    Solo,
    Tides,
    plan_epochs,
    settle_history,
    share_value,
)
from hashfarm.accounting.switching import epoch_of

TERMS = JobTerms(network_difficulty=50.0, subsidy_sats=5_000_000_000, fees_sats=1_234_567)


def terms(_: ShareLike) -> JobTerms:
    return TERMS


def _blocks(*found_at: int) -> list[FoundBlock]:
    return [
        FoundBlock(f"{k:064x}", 100 + k, 1_000_000, "alice", sid, 1000.0 + sid, 2.0)
        for k, sid in enumerate(found_at)
    ]


def test_a_switch_takes_effect_at_the_next_found_block() -> None:
    blocks = _blocks(2, 5, 8)  # found at times 1002, 1005, 1008
    # requested at 1003: the next block found after it is the one at share 5; that block is
    # still PPLNS and shares 0..5 are PPLNS; shares from 6 on are PROP.
    epochs = plan_epochs(Pplns(), [SchemeSwitch(1003.0, Prop())], blocks)
    assert [(e.scheme.name, e.after, e.until) for e in epochs] == [
        ("pplns", -1, 5),
        ("prop", 5, None),
    ]
    assert epochs[0].boundary_block == blocks[1].hash_hex
    assert epoch_of(5, epochs).scheme.name == "pplns"
    assert epoch_of(6, epochs).scheme.name == "prop"


def test_the_last_request_before_a_block_wins() -> None:
    epochs = plan_epochs(
        Pplns(), [SchemeSwitch(1000.5, Prop()), SchemeSwitch(1001.0, Pps())], _blocks(2)
    )
    assert [e.scheme.name for e in epochs] == ["pplns", "pps"]


def test_switching_back_before_any_block_changes_nothing() -> None:
    epochs = plan_epochs(
        Pplns(), [SchemeSwitch(1000.5, Prop()), SchemeSwitch(1001.0, Pplns())], _blocks(2)
    )
    assert [e.scheme.name for e in epochs] == ["pplns"]


def test_a_prop_round_after_the_boundary_starts_at_the_boundary() -> None:
    shares = [Share(i, "alice" if i < 6 else "bob", 1.0, 1000.0 + i, 1) for i in range(10)]
    blocks = _blocks(2, 5, 8)
    s = settle_history(Pplns(), [SchemeSwitch(1003.0, Prop())], shares, blocks, terms)
    # the block at share 8 is PROP over shares 6..8 only (bob's): alice's PPLNS work before
    # the boundary is not paid again by the new scheme
    assert s.blocks[2].scheme == "prop"
    assert s.blocks[2].credits == {"bob": 1_000_000}
    assert s.blocks[2].window.oldest_share_id == 6


def test_pps_epoch_prices_only_its_own_shares() -> None:
    shares = [Share(i, "carol", 5.0, 1000.0 + i, 1) for i in range(10)]
    s = settle_history(Pplns(), [SchemeSwitch(1003.0, Pps())], shares, _blocks(2, 5, 8), terms)
    assert s.pps.share_ids == frozenset(range(6, 10))
    # 4 shares x 5/50 x 5e9 = 2e9 sats, no fee
    assert s.pps_credits == {"carol": 2_000_000_000}


SCHEMES: list[Scheme] = [
    Solo(Fee.bps(100)),
    Prop(Fee.bps(200)),
    Pplns(Fee.bps(100), Fraction(3, 2)),
    Tides(Fee.bps(200)),
    Pps(Fee.bps(300)),
    Pps(Fee.bps(300), full=True),
]
switch_lists = st.lists(
    st.tuples(st.floats(999.0, 1045.0), st.sampled_from(SCHEMES)), max_size=4
).map(lambda xs: [SchemeSwitch(t, s) for t, s in xs])


@PROPERTY
@given(history=histories(), initial=st.sampled_from(SCHEMES), switches=switch_lists)
def test_no_work_is_paid_twice_or_dropped_across_switches(history, initial, switches) -> None:  # type: ignore[no-untyped-def]
    shares, blocks = history
    s = settle_history(initial, switches, shares, blocks, terms)
    epochs = s.epochs
    # epochs tile the share ids: each share belongs to exactly one scheme
    assert epochs[0].after == -1
    assert epochs[-1].until is None
    assert all(a.until == b.after for a, b in itertools.pairwise(epochs))
    for share in shares:
        assert sum(e.holds(share.share_id) for e in epochs) == 1
    # each block is credited once, under the scheme of its finding share, from its epoch only
    assert [c.block_hash for c in s.blocks] == [b.hash_hex for b in blocks]
    prop_paid: list[int] = []
    for block, credit in zip(blocks, s.blocks, strict=True):
        epoch = epoch_of(block.found_share_id, epochs)
        assert credit.scheme == epoch.scheme.name
        assert credit.fee + sum(credit.credits.values()) + credit.reserve == block.reward_sats
        w = credit.window
        if w.oldest_share_id is not None:
            assert epoch.holds(w.oldest_share_id)
            assert epoch.holds(w.newest_share_id or 0)
        if credit.scheme == "prop" and w.oldest_share_id is not None:
            assert w.newest_share_id == block.found_share_id
            prop_paid.extend(range(w.oldest_share_id, block.found_share_id + 1))
    # PROP: every share of a PROP epoch up to its last block is in exactly one round
    assert len(prop_paid) == len(set(prop_paid))
    for e in epochs:
        if isinstance(e.scheme, Prop):
            last = max(
                (b.found_share_id for b in blocks if e.holds(b.found_share_id)), default=None
            )
            if last is not None:
                expect = {sh.share_id for sh in shares if e.after < sh.share_id <= last}
                assert expect <= set(prop_paid)
    # PPS/FPPS: exactly the shares of PPS epochs are priced, once, credited to the floor
    pps_ids = {
        sh.share_id for sh in shares if isinstance(epoch_of(sh.share_id, epochs).scheme, Pps)
    }
    assert s.pps.share_ids == pps_ids
    for account, credited in s.pps_credits.items():
        exact = sum(
            (
                share_value(sh.difficulty, TERMS, epoch_of(sh.share_id, epochs).scheme)  # type: ignore[arg-type]
                for sh in shares
                if sh.account == account and sh.share_id in pps_ids
            ),
            Fraction(0),
        )
        assert credited == exact.__floor__()


@PROPERTY
@given(history=histories(), initial=st.sampled_from(SCHEMES), new=st.sampled_from(SCHEMES))
def test_a_switch_never_changes_what_blocks_up_to_the_boundary_credit(
    history, initial, new
) -> None:  # type: ignore[no-untyped-def]
    shares, blocks = history
    if not blocks:
        return
    switch = [SchemeSwitch(blocks[0].time - 0.5, new)]  # boundary: the first block
    before = settle_history(initial, [], shares, blocks, terms)
    after = settle_history(initial, switch, shares, blocks, terms)
    assert after.blocks[0] == before.blocks[0]
    # and the old scheme's PPS pricing of shares up to the boundary is unchanged
    boundary = blocks[0].found_share_id
    assert {i for i in before.pps.share_ids if i <= boundary} == {
        i for i in after.pps.share_ids if i <= boundary
    }
