"""Hashprice: what one unit of hashrate earns per day, in BTC and in a fiat currency.

    BTC per TH/s per day = 86400 * 1e12 * (subsidy + fees) / (difficulty * 2**32)

because a hash meets a difficulty-D target with probability 1 / (D * 2**32) and one TH/s
makes 86400 * 1e12 hashes a day. The block interval does not appear: faster blocks at the
same difficulty pay every miner more often in proportion to the hashrate that makes them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from hashfarm.errors import ConfigError
from hashfarm.units import HASHES_PER_DIFF1

__all__ = [
    "SECONDS_PER_DAY",
    "TH",
    "Currency",
    "Hashprice",
    "btc_per_th_day",
    "hashprice",
    "network_hashrate_hs",
]

SECONDS_PER_DAY = 86_400
TH = 1e12  # hashes per second in one TH/s
USD = "USD"


@dataclass(frozen=True, slots=True)
class Currency:
    """A fiat currency given by its ISO 4217 code and how many units one US dollar buys."""

    code: str = USD  # ISO 4217 code, e.g. USD, CNY, RUB, INR
    per_usd: float = 1.0  # units of `code` per USD (1.0 for USD itself)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z]{3}", self.code):
            raise ConfigError(f"fx: {self.code!r} is not an ISO 4217 code (three letters)")
        if not (math.isfinite(self.per_usd) and self.per_usd > 0):
            raise ConfigError(f"fx: rate for {self.code} must be a positive number")

    @classmethod
    def parse(cls, text: str) -> Currency:
        """Parse `CODE=RATE` (units per USD) or a bare `USD`."""
        code, sep, rate = text.strip().partition("=")
        if not sep:
            if code.upper() != USD:
                raise ConfigError(f"fx: give a rate for {code!r} as CODE=RATE (units per USD)")
            return cls()
        try:
            return cls(code.strip().upper(), float(rate))
        except ValueError as exc:
            raise ConfigError(f"fx: rate {rate!r} is not a number") from exc

    def from_usd(self, usd: float) -> float:
        """Convert a USD amount into this currency."""
        return usd * self.per_usd


@dataclass(frozen=True, slots=True)
class Hashprice:
    """Revenue per unit of hashrate per day, before any fee or cost."""

    difficulty: float
    reward_btc: float  # subsidy + average fees per block
    price_fiat: float  # fiat per BTC
    currency: str
    btc_per_th_day: float
    btc_per_ph_day: float
    fiat_per_th_day: float
    fiat_per_ph_day: float
    sats_per_th_day: float
    network_hashrate_hs: float  # implied by the difficulty at 600 s per block


def btc_per_th_day(difficulty: float, reward_btc: float) -> float:
    """Expected BTC per TH/s per day at `difficulty` for a block reward of `reward_btc`."""
    if not (difficulty > 0 and math.isfinite(difficulty)):
        raise ConfigError(f"difficulty: must be a positive number, got {difficulty!r}")
    if reward_btc < 0:
        raise ConfigError(f"reward: must not be negative, got {reward_btc!r}")
    return SECONDS_PER_DAY * TH * reward_btc / (difficulty * HASHES_PER_DIFF1)


def network_hashrate_hs(difficulty: float, block_interval_s: float = 600.0) -> float:
    """The network hashrate (H/s) that finds a block every `block_interval_s` at `difficulty`."""
    return difficulty * HASHES_PER_DIFF1 / block_interval_s


def hashprice(
    difficulty: float,
    subsidy_btc: float,
    fees_btc: float,
    price_fiat: float,
    currency: str = USD,
) -> Hashprice:
    """Hashprice at one network state: BTC and fiat per TH/s and PH/s per day."""
    if price_fiat < 0:
        raise ConfigError(f"price: must not be negative, got {price_fiat!r}")
    reward = subsidy_btc + fees_btc
    per_th = btc_per_th_day(difficulty, reward)
    return Hashprice(
        difficulty=difficulty,
        reward_btc=reward,
        price_fiat=price_fiat,
        currency=currency,
        btc_per_th_day=per_th,
        btc_per_ph_day=per_th * 1000,
        fiat_per_th_day=per_th * price_fiat,
        fiat_per_ph_day=per_th * 1000 * price_fiat,
        sats_per_th_day=per_th * 1e8,
        network_hashrate_hs=network_hashrate_hs(difficulty),
    )
