"""Vardiff: pure, driven by a simulated clock and a simulated miner of known hashrate."""

from __future__ import annotations

import random

import pytest

from hashfarm.errors import ConfigError
from hashfarm.pool.settings import PoolSettings, VardiffSettings
from hashfarm.pool.vardiff import Vardiff, retarget
from hashfarm.units import HASHES_PER_DIFF1

REGTEST_DIFFICULTY = 4.656542373906925e-10


def simulate(vd: Vardiff, hashrate: float, seconds: float, seed: int = 1) -> list[float]:
    """Drive `vd` with Poisson share arrivals of a miner of `hashrate` H/s; return intervals."""
    rng = random.Random(seed)
    now, intervals = 0.0, []
    while now < seconds:
        rate = hashrate / (vd.difficulty * HASHES_PER_DIFF1)  # shares per second
        wait = rng.expovariate(rate)
        tick_at = now + 1.0
        if wait > 1.0:  # nothing within a second: the pool's timer ticks
            now = tick_at
            vd.tick(now)
            continue
        now += wait
        intervals.append(wait)
        vd.on_share(now)
    return intervals


def ideal(hashrate: float, interval: float) -> float:
    return hashrate * interval / HASHES_PER_DIFF1


@pytest.mark.parametrize("start", [1e9, 1e-9])
def test_converges_from_far_above_and_far_below(start: float) -> None:
    settings = VardiffSettings(initial=start, target_interval=5.0, retarget_time=30.0)
    vd = Vardiff(settings, now=0.0, network_difficulty=1e15)
    hashrate = 500e9  # a 500 GH/s Bitaxe: ideal difficulty ~582
    simulate(vd, hashrate, seconds=3 * 3600)
    assert ideal(hashrate, 5.0) / 2 < vd.difficulty < ideal(hashrate, 5.0) * 2


def test_steps_are_bounded_by_max_step() -> None:
    settings = VardiffSettings(initial=1.0, max_step=4.0, retarget_shares=10)
    vd = Vardiff(settings, now=0.0, network_difficulty=1e15)
    for i in range(10):  # ten shares in a millisecond: far too fast
        changed = vd.on_share(i * 1e-4)
    assert changed == 4.0


def test_no_share_in_a_window_lowers_difficulty() -> None:
    settings = VardiffSettings(initial=64.0, max_step=8.0, retarget_time=60.0)
    vd = Vardiff(settings, now=0.0, network_difficulty=1e15)
    assert vd.tick(59.0) is None
    assert vd.tick(60.0) == 8.0


def test_within_tolerance_keeps_difficulty() -> None:
    s = VardiffSettings(target_interval=10.0, tolerance=0.3)
    assert retarget(100.0, 20, 200.0 * 1.2, s) is None
    assert retarget(100.0, 20, 400.0, s) == pytest.approx(50.0)


def test_clamped_to_network_difficulty_far_below_one() -> None:
    settings = VardiffSettings(initial=1.0, minimum=1e-12)
    vd = Vardiff(settings, now=0.0, network_difficulty=REGTEST_DIFFICULTY)
    assert vd.difficulty == REGTEST_DIFFICULTY
    for i in range(100):  # way too fast, but the network caps it
        vd.on_share(i * 1e-6)
    assert vd.difficulty == REGTEST_DIFFICULTY


def test_suggest_difficulty_becomes_the_floor() -> None:
    settings = VardiffSettings(initial=1.0, retarget_time=10.0)
    vd = Vardiff(settings, now=0.0, network_difficulty=1e15)
    assert vd.suggest(512.0, now=0.0) == 512.0
    assert vd.tick(100.0) is None  # no shares, but it may not go below the suggestion
    assert vd.difficulty == 512.0


def test_minimum_difficulty_floor_without_moving_up_until_needed() -> None:
    settings = VardiffSettings(initial=1000.0)
    vd = Vardiff(settings, now=0.0, network_difficulty=1e15)
    assert vd.set_floor(10.0, now=0.0) is None  # already above the floor
    assert vd.set_floor(5000.0, now=1.0) == 5000.0  # now below it: raised


def test_disabled_keeps_difficulty() -> None:
    settings = VardiffSettings(initial=2.0, enabled=False, retarget_time=1.0)
    vd = Vardiff(settings, now=0.0, network_difficulty=1e15)
    assert vd.tick(1000.0) is None
    assert vd.difficulty == 2.0


def test_new_network_difficulty_reclamps() -> None:
    vd = Vardiff(VardiffSettings(initial=100.0), now=0.0, network_difficulty=1e15)
    assert vd.set_network_difficulty(10.0, now=1.0) == 10.0
    assert vd.set_network_difficulty(1e15, now=2.0) is None


def test_network_ceiling_beats_a_miners_floor() -> None:
    vd = Vardiff(VardiffSettings(), now=0.0, network_difficulty=REGTEST_DIFFICULTY)
    vd.suggest(0.001, now=0.0)  # a miner asking for more than regtest's whole network
    assert vd.difficulty == REGTEST_DIFFICULTY


@pytest.mark.parametrize(
    ("network", "floor"),
    [("mainnet", 1.0), ("testnet", 0.001), ("testnet4", 0.001), ("signet", 0.001)],
)
def test_a_suggestion_moves_difficulty_only_within_the_networks_floor(
    network: str, floor: float
) -> None:
    vd = Vardiff(VardiffSettings(initial=64.0), now=0.0, network_difficulty=1e15, network=network)
    assert vd.suggest(1e-12, now=0.0) == floor  # asked for every hash: held to the floor
    for i in range(200):  # no share for hours: vardiff lowers it, never below the floor
        vd.tick(60.0 * (i + 1))
    assert vd.difficulty == floor
    vd.set_floor(1e-9, now=1.0)  # BIP 310 minimum-difficulty below the floor changes nothing
    assert vd.difficulty == floor
    assert vd.suggest(1e30, now=2.0) == VardiffSettings().maximum  # and never above maximum


def test_an_explicit_minimum_replaces_the_networks_floor() -> None:
    settings = VardiffSettings(minimum=0.5)
    assert settings.floor("mainnet") == 0.5
    assert VardiffSettings().floor("regtest") == 1e-12
    assert VardiffSettings().floor("main") == 1.0  # aliases name the same network
    assert VardiffSettings().floor("nonsense") == 1.0  # unknown: the strictest
    vd = Vardiff(settings, now=0.0, network_difficulty=1e15, network="mainnet")
    assert vd.suggest(0.01, now=0.0) == 0.5


def test_settings_refuse_a_maximum_below_the_networks_floor() -> None:
    low_max = VardiffSettings(maximum=0.01)
    assert PoolSettings(network="regtest", vardiff=low_max).validate()
    with pytest.raises(ConfigError, match=r"vardiff\.maximum"):
        PoolSettings(network="mainnet", vardiff=low_max).validate()
    with pytest.raises(ConfigError, match=r"vardiff\.minimum"):
        PoolSettings(vardiff=VardiffSettings(minimum=0.0)).validate()
