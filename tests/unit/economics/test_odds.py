"""Solo mining odds, and the whitepaper's attacker tables (Nakamoto 2008, section 11)."""

from __future__ import annotations

import math

import pytest

from hashfarm.economics.odds import attacker_success, confirmations_needed, solo_odds
from hashfarm.errors import ConfigError

# The tables printed in the whitepaper, seven decimals.
WHITEPAPER_Q_01 = [1.0, 0.2045873, 0.0509779, 0.0131722, 0.0034552, 0.0009137, 0.0002428,
                   0.0000647, 0.0000173, 0.0000046, 0.0000012]  # fmt: skip
WHITEPAPER_Q_03 = {0: 1.0, 5: 0.1773523, 10: 0.0416605, 15: 0.0101008, 20: 0.0024804,
                   25: 0.0006132, 30: 0.0001522, 35: 0.0000379, 40: 0.0000095,
                   45: 0.0000024, 50: 0.0000006}  # fmt: skip
WHITEPAPER_BELOW_01_PERCENT = {0.10: 5, 0.15: 8, 0.20: 11, 0.25: 15, 0.30: 24, 0.35: 41,
                               0.40: 89, 0.45: 340}  # fmt: skip


@pytest.mark.parametrize(("z", "expected"), list(enumerate(WHITEPAPER_Q_01)))
def test_whitepaper_table_q_01(z: int, expected: float) -> None:
    assert round(attacker_success(0.1, z), 7) == expected


@pytest.mark.parametrize(("z", "expected"), WHITEPAPER_Q_03.items())
def test_whitepaper_table_q_03(z: int, expected: float) -> None:
    assert round(attacker_success(0.3, z), 7) == expected


@pytest.mark.parametrize(("q", "z"), WHITEPAPER_BELOW_01_PERCENT.items())
def test_whitepaper_confirmations_for_below_01_percent(q: float, z: int) -> None:
    assert confirmations_needed(q) == z


def test_majority_attacker_always_wins_and_bad_input_is_refused() -> None:
    assert attacker_success(0.5, 100) == 1.0
    assert attacker_success(0.0, 3) == 0.0
    for q, z in ((-0.1, 1), (1.1, 1), (0.1, -1)):
        with pytest.raises(ConfigError):
            attacker_success(q, z)
    with pytest.raises(ConfigError):
        confirmations_needed(0.5)


def test_solo_odds_of_a_bitaxe() -> None:
    odds = solo_odds(1.2e12, 1e14)
    rate = 1.2e12 / (1e14 * 2**32)  # blocks per second
    assert odds.blocks_per_day == pytest.approx(rate * 86400)
    assert odds.probability["day"] == pytest.approx(rate * 86400, rel=1e-6)  # tiny: ~linear
    assert odds.probability["year"] == pytest.approx(1 - math.exp(-rate * 365 * 86400))
    assert odds.expected_days_to_block == pytest.approx(1 / rate / 86400)
    assert odds.median_days_to_block == pytest.approx(math.log(2) / rate / 86400)


def test_the_whole_network_finds_a_block_every_ten_minutes() -> None:
    d = 1e14
    odds = solo_odds(d * 2**32 / 600, d)
    assert odds.blocks_per_day == pytest.approx(144)
    assert odds.share_of_network == pytest.approx(1.0)
    assert odds.probability["day"] == pytest.approx(1.0)
