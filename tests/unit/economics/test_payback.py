"""The day-by-day payback simulation: halvings at their heights, shutdown days, dates."""

from __future__ import annotations

import math

import pytest

from hashfarm.chain.networks import MAINNET
from hashfarm.economics.machine import Costs, Machine
from hashfarm.economics.payback import daily_btc_per_th, simulate, static_payback_days
from hashfarm.economics.scenario import Scenario, Start, daily_prices, schedule
from hashfarm.errors import ConfigError

H = 86400 * 1e12 * 3.125 / (1e14 * 2**32)  # BTC per TH/s per day at 1e14 with 3.125 BTC
# 1000 blocks before the 2028 halving (height 1,050,000) at 600 s: it lands on day 6.944
START = Start(MAINNET, height=1_049_000, difficulty=1e14, fees_btc=0.0, price=100_000)
HALVING_DAY = 1000 * 600 / 86400
MACHINE = Machine("m", hashrate_ths=100, power_w=3000, price=5.0)
COSTS = Costs(power_price_kwh=0.06)  # 4.32 a day: paid before the halving, not after


def test_the_halving_day_is_split_exactly() -> None:
    per_th = daily_btc_per_th(schedule(START, Scenario(horizon_days=10)), 0.0, 10)
    assert per_th[5] == pytest.approx(H)
    split = HALVING_DAY - 6
    assert per_th[6] == pytest.approx(split * H + (1 - split) * H / 2)
    assert per_th[7] == pytest.approx(H / 2)


def test_payback_with_a_halving_and_shutdown_days() -> None:
    run = simulate(MACHINE, COSTS, START, Scenario(horizon_days=30))
    assert run.halving_days == (pytest.approx(HALVING_DAY),)
    profit = 100 * H * 100_000 - 4.32
    assert run.rows[0].profit == pytest.approx(profit)
    assert run.payback_day == math.ceil(5.0 / profit) == 3
    assert run.static_payback_days == pytest.approx(5.0 / profit)
    # after the halving revenue (3.14) no longer covers power (4.32): switched off
    assert [r.running for r in run.rows] == [True] * 7 + [False] * 23
    assert run.days_off == 23
    assert all(r.btc_mined == 0 and r.profit == 0 for r in run.rows[7:])
    day6 = 100 * 100_000 * run.rows[6].btc_mined / 100 - 4.32
    assert run.cumulative_end == pytest.approx(6 * profit + day6 - 5.0)
    assert run.btc_mined == pytest.approx(100 * (6 * H + daily_btc_per_th(
        list(run.segments), 0.0, 7)[6]))  # fmt: skip
    assert run.roi == pytest.approx(run.cumulative_end / 5.0)


def test_a_machine_is_switched_back_on_when_the_price_recovers() -> None:
    # the price dips below the shutdown point on days 3-5 and recovers on day 6
    points = ((0, 100_000), (2, 100_000), (3, 50_000), (5, 50_000), (6, 100_000))
    run = simulate(MACHINE, COSTS, START, Scenario(horizon_days=7, price_points=points))
    assert [r.price for r in run.rows] == [1e5, 1e5, 1e5, 5e4, 5e4, 5e4, 1e5]
    assert [r.running for r in run.rows] == [True, True, True, False, False, False, True]


def test_difficulty_growth_shortens_epochs() -> None:
    start = Start(MAINNET, height=2016 * 500, difficulty=1e14, fees_btc=0.0, price=1.0)
    segs = schedule(start, Scenario(horizon_days=60, difficulty_growth=(0.10, 0.0)))
    assert segs[0].block_interval_s == pytest.approx(600 / 1.1)
    assert segs[1].start_day == pytest.approx(14 / 1.1)
    assert segs[1].difficulty == pytest.approx(1.1e14)
    assert segs[2].difficulty == pytest.approx(1.1e14)  # the path's last value (0) repeats
    assert segs[2].start_day - segs[1].start_day == pytest.approx(14)


def test_growth_makes_the_naive_payback_too_optimistic() -> None:
    machine = Machine("m", 100, 3000, price=300.0)
    run = simulate(machine, COSTS, START, Scenario(horizon_days=60,
                   difficulty_growth=(0.05,)))  # fmt: skip
    assert run.static_payback_days is not None
    assert run.payback_day is None or run.payback_day > run.static_payback_days


def test_prices() -> None:
    doubling = Scenario(horizon_days=366, price_growth_per_year=1.0)
    assert daily_prices(START, doubling)[365] == pytest.approx(200_000)
    path = Scenario(horizon_days=30, price_points=((0, 100.0), (10, 200.0)))
    prices = daily_prices(START, path)
    assert (prices[5], prices[20]) == (150.0, 200.0)


def test_static_payback() -> None:
    assert static_payback_days(100, 10) == 10
    assert static_payback_days(100, -1) is None
    assert static_payback_days(0, -1) == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"horizon_days": 0}, {"difficulty_growth": (3.5,)}, {"difficulty_growth": (-0.8,)},
     {"difficulty_growth": ()}, {"price_growth_per_year": -1.0},
     {"price_points": ((5, 1.0), (2, 1.0))}],
)  # fmt: skip
def test_impossible_scenarios_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Scenario(**kwargs)  # type: ignore[arg-type]
