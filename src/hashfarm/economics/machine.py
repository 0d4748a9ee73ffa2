"""One machine's (or one batch of identical machines') economics at today's network state.

Pool fee and firmware dev fee are a haircut on hashrate (the pool credits, and the firmware
mines for its author, that share of the hashes); uptime scales both hashes and power. The
hosting fee is a fixed contract charge per machine, paid whether the machine runs or not; so
a rational operator switches off when revenue falls below the power bill alone (the shutdown
point), not below power plus hosting (the break-even).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hashfarm.economics.catalog import MachineModel
from hashfarm.economics.hashprice import SECONDS_PER_DAY, TH, btc_per_th_day
from hashfarm.errors import ConfigError
from hashfarm.units import HASHES_PER_DIFF1

__all__ = ["Costs", "Machine", "MachineEconomics", "machine_economics"]

DAYS_PER_MONTH = 365 / 12


@dataclass(frozen=True, slots=True)
class Machine:
    """A batch of identical machines: what they hash, draw and cost."""

    name: str
    hashrate_ths: float  # per machine, TH/s
    power_w: float  # per machine at the wall, W
    price: float = 0.0  # per machine, in the display currency
    count: int = 1  # identical machines in the batch

    def __post_init__(self) -> None:
        for field, value in (("hashrate", self.hashrate_ths), ("power", self.power_w)):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{field}: must be a positive number, got {value!r}")
        if not (math.isfinite(self.price) and self.price >= 0):
            raise ConfigError(f"price: must not be negative, got {self.price!r}")
        if self.count < 1:
            raise ConfigError(f"count: must be at least 1, got {self.count!r}")

    @classmethod
    def from_model(cls, model: MachineModel, price: float = 0.0, count: int = 1) -> Machine:
        """A batch of a catalog model; refuses models whose sources state no TH/s or watts."""
        if model.hashrate_ths is None or model.power_w is None:
            raise ConfigError(
                f"model: {model.model} has no stated hashrate and power; "
                "give --hashrate-ths and --power-w"
            )
        return cls(model.model, model.hashrate_ths, model.power_w, price, count)

    @property
    def capex(self) -> float:
        """What the whole batch costs up front."""
        return self.price * self.count

    @property
    def efficiency_j_per_th(self) -> float:
        """Joules per terahash (W per TH/s)."""
        return self.power_w / self.hashrate_ths


@dataclass(frozen=True, slots=True)
class Costs:
    """Running costs and haircuts, all money in the display currency."""

    power_price_kwh: float = 0.0  # electricity, per kWh
    hosting_per_month: float = 0.0  # fixed hosting fee per machine per month (365/12 days)
    pool_fee: float = 0.0  # fraction of hashrate kept by the pool (0.02 = 2 %)
    dev_fee: float = 0.0  # fraction of hashrate mined for the firmware author
    uptime: float = 1.0  # fraction of the day the machine hashes (and draws power)

    def __post_init__(self) -> None:
        for name in ("pool_fee", "dev_fee"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be a fraction in [0, 1)")
        if not 0 < self.uptime <= 1:
            raise ConfigError("uptime: must be a fraction in (0, 1]")
        if self.power_price_kwh < 0 or self.hosting_per_month < 0:
            raise ConfigError("power price and hosting fee must not be negative")

    @property
    def hash_factor(self) -> float:
        """Share of the nominal hashrate that earns for the owner."""
        return (1 - self.pool_fee) * (1 - self.dev_fee) * self.uptime


@dataclass(frozen=True, slots=True)
class MachineEconomics:
    """A batch's figures per day at one network state and price."""

    machine: str
    count: int
    effective_ths: float  # hashrate credited to the owner after fees and uptime
    btc_per_day: float
    revenue_per_day: float
    power_cost_per_day: float
    hosting_per_day: float
    pool_fee_per_day: float  # revenue given up to the pool fee
    dev_fee_per_day: float  # revenue given up to the firmware dev fee
    profit_per_day: float  # revenue - power - hosting (machine running)
    break_even_power_price_kwh: float  # power price at which profit is zero
    break_even_btc_price: float  # BTC price at which profit is zero (power + hosting)
    shutdown_btc_price: float  # below this BTC price revenue does not cover power
    shutdown_difficulty: float  # above this difficulty revenue does not cover power
    cost_per_btc: float  # all-in: power + hosting + capex spread over `amortization_days`
    efficiency_j_per_th: float


def machine_economics(
    machine: Machine,
    costs: Costs,
    difficulty: float,
    reward_btc: float,
    price: float,
    amortization_days: float = 3 * 365,
) -> MachineEconomics:
    """Today's per-day economics of `machine` at `difficulty` and `price` (display currency)."""
    n = machine.count
    per_th = btc_per_th_day(difficulty, reward_btc)
    gross_btc = per_th * machine.hashrate_ths * costs.uptime * n
    btc = gross_btc * (1 - costs.pool_fee) * (1 - costs.dev_fee)
    kwh = machine.power_w / 1000 * 24 * costs.uptime * n
    power = kwh * costs.power_price_kwh
    hosting = costs.hosting_per_month / DAYS_PER_MONTH * n
    revenue = btc * price
    opex = power + hosting
    capex_per_day = machine.capex / amortization_days if amortization_days > 0 else 0.0
    # revenue at difficulty D is proportional to 1/D: solve revenue(D) = power for D
    reward_per_hash = reward_btc * price / HASHES_PER_DIFF1
    hashes_per_day = machine.hashrate_ths * TH * SECONDS_PER_DAY * costs.hash_factor * n
    return MachineEconomics(
        machine=machine.name,
        count=n,
        effective_ths=machine.hashrate_ths * costs.hash_factor * n,
        btc_per_day=btc,
        revenue_per_day=revenue,
        power_cost_per_day=power,
        hosting_per_day=hosting,
        pool_fee_per_day=gross_btc * costs.pool_fee * price,
        dev_fee_per_day=gross_btc * (1 - costs.pool_fee) * costs.dev_fee * price,
        profit_per_day=revenue - opex,
        break_even_power_price_kwh=(revenue - hosting) / kwh,
        break_even_btc_price=_ratio(opex, btc),
        shutdown_btc_price=_ratio(power, btc),
        shutdown_difficulty=_ratio(hashes_per_day * reward_per_hash, power),
        cost_per_btc=_ratio(opex + capex_per_day, btc),
        efficiency_j_per_th=machine.efficiency_j_per_th,
    )


def _ratio(num: float, den: float) -> float:
    """num / den, or infinity when nothing is earned (den == 0)."""
    return num / den if den > 0 else math.inf
