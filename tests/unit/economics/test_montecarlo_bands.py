"""Cash bands (`montecarlo.cash_bands`, `run_monte_carlo(band_days=...)`): each path's
cumulative cash kept on chosen days by the Monte Carlo's own pass, checked against the
day-by-day reference and against the odds of the same run."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashfarm.chain.networks import MAINNET
from hashfarm.economics.machine import Costs, Machine
from hashfarm.economics.montecarlo import Uncertainty, cash_bands, run_monte_carlo
from hashfarm.economics.payback import simulate
from hashfarm.economics.scenario import Scenario, Start
from hashfarm.errors import ConfigError

# a halving inside the horizon (day 342), retargets landing mid-day, growth changing per
# epoch, and shutdown days after the halving (as tests/unit/economics/test_montecarlo.py)
START = Start(MAINNET, height=1_000_000, difficulty=1.2e14, fees_btc=0.05, price=90_000)
SCENARIO = Scenario(horizon_days=1500, difficulty_growth=(0.04, -0.02, 0.03, 0.015),
                    price_growth_per_year=0.25)  # fmt: skip
MACHINE = Machine("S21", 200, 3500, price=1000, count=3)
COSTS = Costs(power_price_kwh=0.04, hosting_per_month=12, pool_fee=0.02, uptime=0.97)
# 7 paths in chunks of 3: an odd path without a twin, and a last chunk of one
STILL = Uncertainty(paths=7, price_vol_per_year=0.0, growth_sd_per_epoch=0.0, chunk=3)
SPREAD = Uncertainty(paths=3001, seed=5, chunk=1000)  # blocks of 172 days at 1000 paths
# days on both sides of the block edges at 1000 paths (172, 344) and of the halving (342)
EDGES = [0, 1, 171, 172, 173, 341, 342, 343, 344, 1000, 1499]


def _reference() -> np.ndarray:
    return np.asarray([r.cumulative for r in simulate(MACHINE, COSTS, START, SCENARIO).rows])


def test_zero_spread_bands_are_the_day_by_day_simulation() -> None:
    run = simulate(MACHINE, COSTS, START, SCENARIO)
    assert run.halving_days
    assert 0 < run.days_off < SCENARIO.horizon_days
    bands = cash_bands(MACHINE, COSTS, START, SCENARIO, STILL)
    assert bands.days == tuple(range(SCENARIO.horizon_days))
    expected = _reference()
    for row in (bands.p10, bands.p50, bands.p90):
        np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(min_value=0, max_value=2_000_000),
    growth=st.lists(st.floats(min_value=-0.3, max_value=0.5), min_size=1, max_size=6),
    horizon=st.integers(min_value=1, max_value=400),
    power_price=st.floats(min_value=0.0, max_value=0.2),
    price_growth=st.floats(min_value=-0.5, max_value=2.0),
    data=st.data(),
)
def test_zero_spread_matches_the_reference_on_any_scenario_and_days(
    height: int,
    growth: list[float],
    horizon: int,
    power_price: float,
    price_growth: float,
    data: st.DataObject,
) -> None:
    start = Start(MAINNET, height=height, difficulty=9e13, fees_btc=0.02, price=60_000)
    scenario = Scenario(horizon_days=horizon, difficulty_growth=tuple(growth),
                        price_growth_per_year=price_growth)  # fmt: skip
    costs = Costs(power_price_kwh=power_price, hosting_per_month=5)
    days = sorted(data.draw(st.sets(st.integers(0, horizon - 1), min_size=1, max_size=20)))
    run = simulate(MACHINE, costs, start, scenario)
    bands = cash_bands(MACHINE, costs, start, scenario, STILL, days)
    assert bands.days == tuple(days)
    expected = [run.rows[d].cumulative for d in days]
    for row in (bands.p10, bands.p50, bands.p90):
        np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-6)


def test_percentiles_are_ordered_and_spread() -> None:
    bands = cash_bands(MACHINE, COSTS, START, SCENARIO, SPREAD)
    assert np.all(bands.p10 <= bands.p50)
    assert np.all(bands.p50 <= bands.p90)
    # day 1's price is known and the difficulty only moves at the first retarget: no spread
    assert bands.p90[0] - bands.p10[0] == pytest.approx(0.0, abs=1e-6)
    # and the spread widens with time
    width = bands.p90 - bands.p10
    assert width[-1] > width[700] > width[100] > 0
    # the scenario's own path runs inside the bands (median-preserving price; the switch-off
    # option lifts the median above it, as run_monte_carlo's end figures show)
    ref, cent = _reference(), 0.01  # random prices are float32 (docs/calculator.md)
    assert np.all(bands.p10 <= ref + cent)
    assert np.all(ref <= bands.p90 + cent)
    assert bands.p50[-1] > ref[-1]


def test_last_day_bands_are_the_odds_of_the_same_run() -> None:
    mc = run_monte_carlo(MACHINE, COSTS, START, SCENARIO, SPREAD, band_days=EDGES)
    assert mc.bands is not None
    assert mc.bands.days == tuple(EDGES)
    last = (mc.bands.p10[-1], mc.bands.p50[-1], mc.bands.p90[-1])
    assert last == (mc.cumulative_end_p10, mc.cumulative_end_p50, mc.cumulative_end_p90)


def test_keeping_bands_leaves_the_odds_alone() -> None:
    plain = run_monte_carlo(MACHINE, COSTS, START, SCENARIO, SPREAD)
    banded = run_monte_carlo(MACHINE, COSTS, START, SCENARIO, SPREAD, band_days=EDGES)
    assert plain.bands is None
    np.testing.assert_array_equal(plain.payback_days, banded.payback_days)
    np.testing.assert_array_equal(plain.cumulative_end, banded.cumulative_end)


def test_chosen_days_are_the_same_days_of_every_day() -> None:
    every = cash_bands(MACHINE, COSTS, START, SCENARIO, SPREAD)
    chosen = cash_bands(MACHINE, COSTS, START, SCENARIO, SPREAD, EDGES)
    for full, some in ((every.p10, chosen.p10), (every.p50, chosen.p50), (every.p90, chosen.p90)):
        np.testing.assert_array_equal(full[EDGES], some)


def test_reproducible_by_seed() -> None:
    a = cash_bands(MACHINE, COSTS, START, SCENARIO, SPREAD, EDGES)
    b = cash_bands(MACHINE, COSTS, START, SCENARIO, SPREAD, EDGES)
    for x, y in ((a.p10, b.p10), (a.p50, b.p50), (a.p90, b.p90)):
        np.testing.assert_array_equal(x, y)
    other = Uncertainty(paths=SPREAD.paths, seed=SPREAD.seed + 1, chunk=SPREAD.chunk)
    c = cash_bands(MACHINE, COSTS, START, SCENARIO, other, EDGES)
    assert not np.array_equal(a.p50, c.p50)


@pytest.mark.parametrize("days", [[5, 3], [1, 1], [-1, 4], [0, 1500], [2.5]])
def test_bad_days_are_refused(days: list[float]) -> None:
    with pytest.raises(ConfigError, match="band days"):
        run_monte_carlo(MACHINE, COSTS, START, SCENARIO, STILL, band_days=days)  # type: ignore[arg-type]


def test_no_days_no_bands_but_an_empty_set() -> None:
    mc = run_monte_carlo(MACHINE, COSTS, START, SCENARIO, STILL, band_days=[])
    assert mc.bands is not None
    assert mc.bands.days == ()
    assert mc.bands.p50.shape == (0,)
