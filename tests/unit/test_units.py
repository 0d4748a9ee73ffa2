"""Units: conversions that every layer relies on."""

import pytest

from hashfarm.units import (
    btc_to_sats,
    format_hashrate,
    hashrate_from_shares,
    sats_to_btc,
)


def test_btc_sats_round_trip_is_exact_for_the_subsidies() -> None:
    for sats in (5_000_000_000, 312_500_000, 1, 0):
        assert btc_to_sats(sats_to_btc(sats)) == sats
    assert btc_to_sats(3.125) == 312_500_000


def test_hashrate_from_shares_uses_two_to_the_32_hashes_per_difficulty_one() -> None:
    # 600 difficulty-1 shares in 600 s: one diff-1 share per second = 2**32 H/s.
    assert hashrate_from_shares(600.0, 600.0) == pytest.approx(2**32)
    assert hashrate_from_shares(5.0, 0.0) == 0.0


@pytest.mark.parametrize(
    ("hps", "text"),
    [(512, "512 H/s"), (1.5e6, "1.5 MH/s"), (1.23e12, "1.23 TH/s"), (2e21, "2e+03 EH/s")],
)
def test_format_hashrate_picks_the_si_prefix(hps: float, text: str) -> None:
    assert format_hashrate(hps) == text
