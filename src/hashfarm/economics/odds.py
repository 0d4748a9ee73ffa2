"""Odds: a solo miner's chance of a block, and the whitepaper's double-spend attacker.

Blocks arrive as a Poisson process: a miner with hashrate h against difficulty D finds
blocks at rate lambda = h / (D * 2**32) per second, so P(at least one in t) = 1 - exp(-lambda t)
and the expected wait is 1 / lambda - the question every Bitaxe owner asks.

`attacker_success` is section 11 of the Bitcoin whitepaper: the probability that an attacker
with a share q of the hashrate ever catches up from z blocks behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hashfarm.economics.hashprice import SECONDS_PER_DAY, network_hashrate_hs
from hashfarm.errors import ConfigError
from hashfarm.units import HASHES_PER_DIFF1

__all__ = ["SoloOdds", "attacker_success", "confirmations_needed", "solo_odds"]

_DAY = float(SECONDS_PER_DAY)
PERIODS_S = {"day": _DAY, "week": 7 * _DAY, "month": 365 / 12 * _DAY, "year": 365 * _DAY}


@dataclass(frozen=True, slots=True)
class SoloOdds:
    """A solo miner's chances against the network."""

    hashrate_hs: float
    difficulty: float
    blocks_per_day: float  # expected
    probability: dict[str, float]  # P(at least one block) per period name
    expected_days_to_block: float  # mean wait
    median_days_to_block: float  # half of all miners wait less than this
    share_of_network: float  # hashrate / network hashrate implied by difficulty


def solo_odds(hashrate_hs: float, difficulty: float) -> SoloOdds:
    """Odds of finding a block solo with `hashrate_hs` at network `difficulty`."""
    if not (hashrate_hs > 0 and difficulty > 0):
        raise ConfigError("hashrate and difficulty must be positive")
    rate = hashrate_hs / (difficulty * HASHES_PER_DIFF1)  # blocks per second
    return SoloOdds(
        hashrate_hs=hashrate_hs,
        difficulty=difficulty,
        blocks_per_day=rate * PERIODS_S["day"],
        # -expm1(-x) keeps full precision when x is tiny (a Bitaxe's day is ~1e-7)
        probability={name: -math.expm1(-rate * s) for name, s in PERIODS_S.items()},
        expected_days_to_block=1 / rate / PERIODS_S["day"],
        median_days_to_block=math.log(2) / rate / PERIODS_S["day"],
        share_of_network=hashrate_hs / network_hashrate_hs(difficulty),
    )


def attacker_success(q: float, z: int) -> float:
    """Whitepaper section 11: P(attacker with hashrate share q catches up from z behind)."""
    if not 0 <= q <= 1:
        raise ConfigError(f"q: the attacker's share must be in [0, 1], got {q!r}")
    if z < 0:
        raise ConfigError(f"z: confirmations must not be negative, got {z!r}")
    p = 1 - q
    if q >= p:
        return 1.0  # a majority attacker always catches up eventually
    lam = z * q / p
    total = 1.0
    poisson = math.exp(-lam)  # P(attacker made k blocks while the honest chain made z)
    for k in range(z + 1):
        if k:
            poisson *= lam / k
        total -= poisson * (1 - (q / p) ** (z - k))
    return max(total, 0.0)


def confirmations_needed(q: float, max_probability: float = 0.001) -> int:
    """The smallest z with attacker_success(q, z) < max_probability (the whitepaper's table)."""
    if not 0 <= q < 0.5:
        raise ConfigError("q: a majority attacker cannot be outrun by waiting")
    z = 0
    while attacker_success(q, z) >= max_probability:
        z += 1
    return z
