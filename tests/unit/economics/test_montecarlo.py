"""The vectorized Monte Carlo, checked against the day-by-day reference."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashfarm.chain.networks import MAINNET
from hashfarm.economics import montecarlo
from hashfarm.economics.machine import Costs, Machine
from hashfarm.economics.montecarlo import Uncertainty, daily_revenue_btc, run_monte_carlo
from hashfarm.economics.payback import daily_btc_per_th, simulate
from hashfarm.economics.scenario import Scenario, Start, schedule

# a halving inside the horizon (day 342), retargets landing mid-day, growth changing per
# epoch, and shutdown days after the halving
START = Start(MAINNET, height=1_000_000, difficulty=1.2e14, fees_btc=0.05, price=90_000)
SCENARIO = Scenario(horizon_days=1500, difficulty_growth=(0.04, -0.02, 0.03, 0.015),
                    price_growth_per_year=0.25)  # fmt: skip
MACHINE = Machine("S21", 200, 3500, price=1000, count=3)
COSTS = Costs(power_price_kwh=0.04, hosting_per_month=12, pool_fee=0.02, uptime=0.97)
STILL = Uncertainty(paths=5, price_vol_per_year=0.0, growth_sd_per_epoch=0.0)


def test_daily_revenue_equals_the_reference_without_variance() -> None:
    rng = np.random.default_rng(0)
    btc = daily_revenue_btc(rng, 5, MACHINE, COSTS, START, SCENARIO, STILL)
    ths = 200 * COSTS.hash_factor * 3
    reference = np.asarray(daily_btc_per_th(schedule(START, SCENARIO), 0.05, 1500)) * ths
    for path in range(5):
        np.testing.assert_allclose(btc[:, path], reference, rtol=1e-11)


def test_zero_variance_is_the_deterministic_case() -> None:
    run = simulate(MACHINE, COSTS, START, SCENARIO)
    assert run.halving_days
    assert run.days_off > 0
    mc = run_monte_carlo(MACHINE, COSTS, START, SCENARIO, STILL)
    assert run.payback_day is not None
    assert list(mc.payback_days) == [run.payback_day] * 5
    np.testing.assert_allclose(mc.cumulative_end, run.cumulative_end, rtol=1e-9)
    assert mc.probability_payback == 1.0
    assert mc.payback_p10 == mc.payback_p50 == mc.payback_p90 == run.payback_day


def test_reproducible_by_seed() -> None:
    unc = Uncertainty(paths=3001, seed=7, chunk=1000)  # odd: one path without a twin
    a = run_monte_carlo(MACHINE, COSTS, START, SCENARIO, unc)
    b = run_monte_carlo(MACHINE, COSTS, START, SCENARIO, unc)
    np.testing.assert_array_equal(a.payback_days, b.payback_days)
    np.testing.assert_array_equal(a.cumulative_end, b.cumulative_end)
    c = run_monte_carlo(MACHINE, COSTS, START, SCENARIO, Uncertainty(paths=3001, seed=8,
                        chunk=1000))  # fmt: skip
    assert not np.array_equal(a.cumulative_end, c.cumulative_end)


def test_spread_brackets_the_deterministic_case() -> None:
    run = simulate(MACHINE, COSTS, START, SCENARIO)
    mc = run_monte_carlo(MACHINE, COSTS, START, SCENARIO, Uncertainty(paths=4000, seed=1))
    assert mc.cumulative_end_p10 < run.cumulative_end < mc.cumulative_end_p90
    assert 0 < mc.probability_payback < 1
    assert mc.payback_p10 is not None
    assert mc.payback_p10 < run.payback_day
    # the switch-off option is convex in the price: spread raises the median outcome...
    assert mc.cumulative_end_p50 > run.cumulative_end
    # ...but a small, median-preserving spread leaves it close to the scenario's
    calm = Uncertainty(paths=2000, seed=1, price_vol_per_year=0.02, growth_sd_per_epoch=0.0)
    mc = run_monte_carlo(MACHINE, COSTS, START, SCENARIO, calm)
    assert mc.cumulative_end_p50 == pytest.approx(run.cumulative_end, rel=0.05)


def test_more_difficulty_spread_only_moves_outcomes_through_difficulty() -> None:
    only_growth = Uncertainty(paths=2000, price_vol_per_year=0.0, growth_sd_per_epoch=0.05)
    mc = run_monte_carlo(MACHINE, COSTS, START, SCENARIO, only_growth)
    assert mc.cumulative_end.std() > 0
    assert np.all(mc.payback_days >= 1)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(min_value=0, max_value=2_000_000),
    growth=st.lists(st.floats(min_value=-0.3, max_value=0.5), min_size=1, max_size=6),
    horizon=st.integers(min_value=1, max_value=500),
    power_price=st.floats(min_value=0.0, max_value=0.2),
    price_growth=st.floats(min_value=-0.5, max_value=2.0),
)
def test_zero_variance_matches_the_reference_on_any_scenario(
    height: int, growth: list[float], horizon: int, power_price: float, price_growth: float
) -> None:
    start = Start(MAINNET, height=height, difficulty=9e13, fees_btc=0.02, price=60_000)
    scenario = Scenario(horizon_days=horizon, difficulty_growth=tuple(growth),
                        price_growth_per_year=price_growth)  # fmt: skip
    costs = Costs(power_price_kwh=power_price, hosting_per_month=5)
    run = simulate(MACHINE, costs, start, scenario)
    mc = run_monte_carlo(MACHINE, costs, start, scenario, STILL)
    expected = np.inf if run.payback_day is None else run.payback_day
    assert list(mc.payback_days) == [expected] * STILL.paths
    np.testing.assert_allclose(mc.cumulative_end, run.cumulative_end, rtol=1e-9, atol=1e-6)


def test_daily_price_shocks_have_the_stated_volatility() -> None:
    scenario = Scenario(horizon_days=300, difficulty_growth=(0.0,), price_growth_per_year=0.0)
    work = montecarlo._Workspace(300, 2000, START, scenario)
    walk = montecarlo._PriceWalk(np.random.default_rng(3), work, 2000, 0.5)
    # the walk reuses one block buffer, so each block is copied out
    blocks = [walk.prices(d, min(d + 50, 300)).copy() for d in range(0, 300, 50)]
    prices = np.concatenate(blocks).astype(np.float64)
    np.testing.assert_allclose(prices[0], START.price, rtol=1e-6)  # today's price is known
    steps = np.diff(np.log(prices), axis=0)
    # a new price every day, not every week (a float32 log-price swallows the tiniest shocks)
    assert np.mean(steps == 0) < 0.01
    assert steps.std() == pytest.approx(0.5 / np.sqrt(365), rel=0.02)
    np.testing.assert_allclose(steps[:, :1000], -steps[:, 1000:], atol=1e-5)  # twins


def test_the_normal_table_is_a_standard_normal() -> None:
    q = montecarlo._normal_quantiles().astype(np.float64)
    assert q.size == 65536
    assert abs(q.mean()) < 1e-6
    assert q.std() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(q, -q[::-1], atol=1e-6)  # symmetric
    assert q[np.searchsorted(q, 1.0)] == pytest.approx(1.0, abs=1e-3)
    assert np.mean(q <= 1.0) == pytest.approx(NormalDist().cdf(1.0), abs=1e-4)


def test_a_price_path_through_zero_prices_zero_on_every_path() -> None:
    scenario = Scenario(horizon_days=400, difficulty_growth=(0.02,),
                        price_points=((0, 90_000), (100, 0), (400, 50_000)))  # fmt: skip
    work = montecarlo._Workspace(400, 6, START, scenario)
    walk = montecarlo._PriceWalk(np.random.default_rng(1), work, 6, 0.6)
    prices = walk.prices(0, 101)
    assert np.all(prices[100] == 0)
    assert np.all(prices[99] > 0)
    mc = run_monte_carlo(MACHINE, COSTS, START, scenario, Uncertainty(paths=50, seed=2))
    assert np.all(np.isfinite(mc.cumulative_end))
