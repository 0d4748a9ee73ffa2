"""Hashprice and one machine's economics, against figures worked out by hand."""

from __future__ import annotations

import math

import pytest

from hashfarm.economics.catalog import find_model
from hashfarm.economics.hashprice import Currency, btc_per_th_day, hashprice
from hashfarm.economics.machine import Costs, Machine, machine_economics
from hashfarm.errors import ConfigError

# 86400 s * 1e12 H/s * 3.125 BTC / (1e14 * 2**32 H per block) = 6.28642737865448e-7 BTC
HAND_BTC_PER_TH_DAY = 86400 * 1e12 * 3.125 / (1e14 * 4294967296)


def test_hashprice_matches_the_hand_checked_figure() -> None:
    hp = hashprice(1e14, 3.125, 0.0, 100_000)
    assert hp.fiat_per_ph_day == pytest.approx(62.8643, abs=5e-5)
    assert hp.btc_per_th_day == pytest.approx(6.28642737865448e-7, rel=1e-14)
    assert hp.sats_per_th_day == pytest.approx(62.8642737865448, rel=1e-14)
    assert hp.network_hashrate_hs == pytest.approx(1e14 * 2**32 / 600)


def test_fees_add_to_the_subsidy() -> None:
    assert btc_per_th_day(1e14, 3.125 + 0.25) == pytest.approx(HAND_BTC_PER_TH_DAY * 3.375 / 3.125)


@pytest.mark.parametrize(("difficulty", "reward"), [(0.0, 3.125), (-1.0, 3.125), (1e14, -1.0)])
def test_bad_network_figures_are_refused(difficulty: float, reward: float) -> None:
    with pytest.raises(ConfigError):
        btc_per_th_day(difficulty, reward)


def test_currency_converts_and_validates() -> None:
    cny = Currency.parse("cny=7.1")
    assert (cny.code, cny.from_usd(100)) == ("CNY", pytest.approx(710))
    assert Currency.parse("USD").per_usd == 1.0
    for bad in ("CNY", "CN=7", "RUB=-3", "INR=abc"):
        with pytest.raises(ConfigError):
            Currency.parse(bad)


def test_s9_economics_by_hand() -> None:
    s9 = Machine.from_model(find_model("s9"), price=100.0)
    assert (s9.hashrate_ths, s9.power_w) == (13.5, 1323)
    econ = machine_economics(s9, Costs(power_price_kwh=0.05), 1e14, 3.125, 100_000)
    btc = 13.5 * HAND_BTC_PER_TH_DAY
    kwh = 1.323 * 24
    assert econ.btc_per_day == pytest.approx(btc)
    assert econ.revenue_per_day == pytest.approx(btc * 100_000)
    assert econ.power_cost_per_day == pytest.approx(kwh * 0.05)
    assert econ.profit_per_day == pytest.approx(btc * 100_000 - kwh * 0.05)
    assert econ.profit_per_day < 0  # an S9 at 5 cents loses money at difficulty 1e14
    assert econ.break_even_power_price_kwh == pytest.approx(btc * 100_000 / kwh)
    assert econ.shutdown_btc_price == pytest.approx(kwh * 0.05 / btc)
    # revenue is proportional to 1/difficulty: the shutdown difficulty makes revenue = power
    assert econ.shutdown_difficulty == pytest.approx(1e14 * btc * 100_000 / (kwh * 0.05))
    assert econ.cost_per_btc == pytest.approx((kwh * 0.05 + 100 / 1095) / btc)


def test_fees_and_uptime_are_hashrate_haircuts() -> None:
    machine = Machine("custom", 100.0, 3000.0, count=2)
    costs = Costs(power_price_kwh=0.1, hosting_per_month=36.5, pool_fee=0.02, dev_fee=0.025,
                  uptime=0.9)  # fmt: skip
    econ = machine_economics(machine, costs, 1e14, 3.125, 50_000)
    gross = 2 * 100 * 0.9 * HAND_BTC_PER_TH_DAY
    assert econ.effective_ths == pytest.approx(200 * 0.98 * 0.975 * 0.9)
    assert econ.btc_per_day == pytest.approx(gross * 0.98 * 0.975)
    assert econ.pool_fee_per_day == pytest.approx(gross * 0.02 * 50_000)
    assert econ.dev_fee_per_day == pytest.approx(gross * 0.98 * 0.025 * 50_000)
    assert econ.power_cost_per_day == pytest.approx(2 * 3 * 24 * 0.9 * 0.1)
    assert econ.hosting_per_day == pytest.approx(2 * 36.5 * 12 / 365)
    # the break-even BTC price covers hosting too; the shutdown price only power
    assert econ.break_even_btc_price > econ.shutdown_btc_price


def test_a_machine_that_earns_nothing_has_infinite_break_even() -> None:
    econ = machine_economics(Machine("m", 1.0, 10.0), Costs(power_price_kwh=0.1), 1e14, 0.0, 1.0)
    assert math.isinf(econ.break_even_btc_price)


@pytest.mark.parametrize(
    "kwargs", [{"hashrate_ths": 0}, {"power_w": -1}, {"price": -5}, {"count": 0}]
)
def test_bad_machines_are_refused(kwargs: dict[str, float]) -> None:
    base = {"name": "m", "hashrate_ths": 1.0, "power_w": 1.0}
    with pytest.raises(ConfigError):
        Machine(**{**base, **kwargs})  # type: ignore[arg-type]


def test_bad_costs_are_refused() -> None:
    for kwargs in ({"pool_fee": 1.0}, {"dev_fee": -0.1}, {"uptime": 0.0}, {"uptime": 1.5}):
        with pytest.raises(ConfigError):
            Costs(**kwargs)  # type: ignore[arg-type]
