"""The retarget rule on Bitcoin Core's vectors, the projection, and the arms race."""

from __future__ import annotations

import pytest

from hashfarm.chain.networks import MAINNET, REGTEST
from hashfarm.chain.pow import bits_to_difficulty, bits_to_target, next_work_required
from hashfarm.economics.retarget import arms_race, project_retarget
from hashfarm.errors import ConfigError
from hashfarm.units import HASHES_PER_DIFF1

# src/test/pow_tests.cpp: (last retarget time, last block time, last bits, expected bits)
CORE_VECTORS = {
    "get_next_work": (1261130161, 1262152739, 0x1D00FFFF, 0x1D00D86A),
    "get_next_work_pow_limit": (1231006505, 1233061996, 0x1D00FFFF, 0x1D00FFFF),
    "get_next_work_lower_limit_actual": (1279008237, 1279297671, 0x1C05A3F4, 0x1C0168FD),
    "get_next_work_upper_limit_actual": (1263163443, 1269211443, 0x1C387F6F, 0x1D00E1FD),
}


@pytest.mark.parametrize("name", CORE_VECTORS)
def test_core_vectors(name: str) -> None:
    first, last, bits, expected = CORE_VECTORS[name]
    assert next_work_required(bits, first, last, MAINNET) == expected


def test_projection_of_a_finished_epoch_is_the_rule() -> None:
    # Core's get_next_work vector seen from its last block (height 32255): nothing to project
    p = project_retarget(32255, 0x1D00FFFF, 1261130161, 1262152739, MAINNET)
    assert (p.blocks_done, p.blocks_left, p.retarget_height) == (2015, 1, 32256)
    assert p.projected_bits == 0x1D00D86A
    assert p.projected_difficulty == bits_to_difficulty(0x1D00D86A)
    assert p.change == pytest.approx(bits_to_difficulty(0x1D00D86A) - 1)


def test_projection_mid_epoch() -> None:
    # a quarter of the epoch done in 3 days instead of 3.5: difficulty heads up by 3.5/3
    start = 1_700_000_000
    height = 840_672 + 504  # 840,672 = 417 * 2016 starts an epoch
    p = project_retarget(height, 0x17034219, start, start + 3 * 86400, MAINNET)
    assert p.mean_interval_s == pytest.approx(3 * 86400 / 504)
    assert p.change == pytest.approx(1209600 / (p.mean_interval_s * 2015) - 1, abs=1e-4)
    assert p.seconds_to_retarget == pytest.approx((2016 - 504) * p.mean_interval_s)
    implied = bits_to_difficulty(0x17034219) * HASHES_PER_DIFF1 / p.mean_interval_s
    assert p.implied_hashrate_hs == pytest.approx(implied)


def test_projection_needs_progress() -> None:
    with pytest.raises(ConfigError):
        project_retarget(840_672, 0x17034219, 1, 2, MAINNET)
    with pytest.raises(ConfigError):
        project_retarget(840_682, 0x17034219, 5, 5, MAINNET)


def test_arms_race_steady_hashrate_keeps_difficulty() -> None:
    bits = 0x17034219
    steady = bits_to_difficulty(bits) * HASHES_PER_DIFF1 / 600
    epochs = arms_race([steady] * 71, 840_000, bits, MAINNET)
    assert len(epochs) == 6  # five full epochs of ~14 days and a partial one
    for e in epochs[:-1]:
        assert e.duration_days == pytest.approx(14, rel=1e-3)
        assert e.mean_interval_s == pytest.approx(600, rel=1e-3)
        # 2015 of 2016 intervals measured: each retarget eases difficulty by ~1/2016
        assert bits_to_target(e.bits) == pytest.approx(bits_to_target(bits), rel=3e-3)


def test_arms_race_doubling_hashrate_doubles_difficulty_next_epoch() -> None:
    bits = 0x17034219
    steady = bits_to_difficulty(bits) * HASHES_PER_DIFF1 / 600
    epochs = arms_race([2 * steady] * 30, 840_672, bits, MAINNET)  # past the halving
    assert epochs[0].duration_days == pytest.approx(7, rel=1e-3)
    assert epochs[0].mean_interval_s == pytest.approx(300, rel=1e-3)
    assert epochs[1].difficulty / epochs[0].difficulty == pytest.approx(2 * 2016 / 2015, rel=1e-4)
    assert epochs[1].btc_per_th_day == pytest.approx(epochs[0].btc_per_th_day / 2, rel=1e-3)


def test_arms_race_clamps_at_four_times() -> None:
    bits = 0x17034219
    steady = bits_to_difficulty(bits) * HASHES_PER_DIFF1 / 600
    epochs = arms_race([10 * steady] * 5, 840_000, bits, MAINNET)
    assert epochs[1].difficulty / epochs[0].difficulty == pytest.approx(4, rel=1e-4)


def test_arms_race_refuses_regtest_and_empty_paths() -> None:
    with pytest.raises(ConfigError, match="never retargets"):
        arms_race([1e9] * 3, 0, REGTEST.pow_limit_bits, REGTEST)
    with pytest.raises(ConfigError):
        arms_race([], 0, 0x1D00FFFF, MAINNET)
