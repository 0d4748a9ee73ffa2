"""What each scheme credits: SOLO/PROP/PPLNS by hand, PPS and FPPS values worked by hand."""

from __future__ import annotations

from fractions import Fraction

import pytest
from acct_strategies import PROPERTY, histories
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.accounting import (
    Fee,
    FoundBlock,
    JobTerms,
    Pplns,
    Pps,
    PpsAccrual,
    Prop,
    Share,
    Solo,
    Tides,
    credit_block,
    share_value,
)

# Mainnet-like terms, chosen so the arithmetic below is short: D = 1.25e14 (an integer, exact
# as a float), subsidy 3.125 BTC, template fees 0.25 BTC.
TERMS = JobTerms(
    network_difficulty=125_000_000_000_000.0, subsidy_sats=312_500_000, fees_sats=25_000_000
)


def test_pps_value_by_hand() -> None:
    # d / D = 4e6 / 1.25e14 = 3.2e-8; x 312,500,000 sats = 10 sats; less 2%: 9.8 sats
    assert share_value(4_000_000.0, TERMS, Pps(Fee.bps(200))) == Fraction(98, 10)
    assert share_value(4_000_000.0, TERMS, Pps()) == 10


def test_fpps_value_by_hand() -> None:
    # 3.2e-8 x (312,500,000 + 25,000,000) = 3.2e-8 x 337,500,000 = 10.8 sats; less 2%:
    # 10.8 x 0.98 = 10.584 sats
    assert share_value(4_000_000.0, TERMS, Pps(Fee.bps(200), full=True)) == Fraction(10584, 1000)


def test_pps_value_at_a_regtest_difficulty_is_exact() -> None:
    # regtest: D = 4.6565423739069247e-10 (0x207fffff), subsidy 50 BTC; a share of the
    # same difficulty is worth exactly one block's subsidy, 5,000,000,000 sats.
    regtest = JobTerms(4.6565423739069247e-10, 5_000_000_000)
    assert share_value(4.6565423739069247e-10, regtest, Pps()) == 5_000_000_000


def test_pps_accrual_credits_whole_satoshis_without_drift() -> None:
    acc = PpsAccrual()
    value = share_value(4_000_000.0, TERMS, Pps(Fee.bps(200)))  # 9.8
    for i in range(3):
        acc.add(Share(i, "alice", 4_000_000.0, 0.0, 1), value)
    assert acc.settle() == {"alice": 29}  # 29.4 owed: 29 now, 0.4 waits
    acc.add(Share(3, "alice", 4_000_000.0, 0.0, 1), value)
    assert acc.settle() == {"alice": 10}  # 39.2 owed, 29 credited: 10 more
    assert acc.settle() == {}
    assert acc.owed("alice") == Fraction(392, 10)


def test_a_share_is_priced_once() -> None:
    acc = PpsAccrual()
    share = Share(7, "bob", 1.0, 0.0, 1)
    acc.add(share, Fraction(1))
    with pytest.raises(ValueError, match="already priced"):
        acc.add(share, Fraction(1))


BLOCK = FoundBlock("ab" * 32, 900_000, 1_000_000_000, "carol", 3, 10.0, 5.0)
SHARES = [
    Share(0, "alice", 4.0, 1.0, 1),
    Share(1, "bob", 4.0, 2.0, 1),
    Share(2, "alice", 2.0, 3.0, 1),
    Share(3, "carol", 4.0, 4.0, 1),
]


def test_solo_pays_the_finder_less_the_fee() -> None:
    c = credit_block(Solo(Fee.bps(100)), BLOCK, SHARES)
    assert (c.fee, c.credits) == (10_000_000, {"carol": 990_000_000})


def test_prop_by_hand() -> None:
    # round: alice 6, bob 4, carol 4 of 14; 1% fee -> 990,000,000 to split
    # alice 990e6 x 6/14 = 424,285,714.28; bob and carol 282,857,142.85 each;
    # floors sum to 989,999,998: the 2 missing sats go to the largest remainders
    # (alice .28 x 14 = 4, bob/carol .857 x 14 = 12 each) -> bob and carol.
    c = credit_block(Prop(Fee.bps(100)), BLOCK, SHARES)
    assert c.credits == {"alice": 424_285_714, "bob": 282_857_143, "carol": 282_857_143}
    assert sum(c.credits.values()) == 990_000_000


def test_pplns_by_hand() -> None:
    # window = 2 x 5.0 = 10 from the finding share back: carol 4, alice 2, bob 4 -> full;
    # alice's first share is outside. 0% fee: 1e9 x 4/10, 2/10, 4/10.
    c = credit_block(Pplns(), BLOCK, SHARES)
    assert c.credits == {"carol": 400_000_000, "alice": 200_000_000, "bob": 400_000_000}
    assert c.window.oldest_share_id == 1


def test_pps_blocks_go_to_the_reserve() -> None:
    c = credit_block(Pps(Fee.bps(300)), BLOCK, SHARES)
    assert (c.reserve, c.credits, c.fee) == (1_000_000_000, {}, 0)


SCHEMES = st.sampled_from(
    [
        Solo(Fee.bps(150)),
        Prop(Fee(1, 3)),
        Pplns(Fee.bps(200), Fraction(1, 2)),
        Pplns(),
        Tides(Fee.bps(200)),
        Pps(Fee.bps(400), full=True),
    ]
)


@PROPERTY
@given(history=histories(), scheme=SCHEMES)
def test_a_block_credits_exactly_its_reward_less_the_fee(history, scheme) -> None:  # type: ignore[no-untyped-def]
    shares, blocks = history
    for block in blocks:
        cut = [s for s in shares if s.share_id <= block.found_share_id]
        c = credit_block(scheme, block, cut)
        assert c.fee == scheme.fee.of(block.reward_sats) or c.reserve == block.reward_sats
        assert c.fee + sum(c.credits.values()) + c.reserve == block.reward_sats
        assert all(v >= 0 for v in c.credits.values())
        assert set(c.credits) <= {s.account for s in cut}
