"""Units carried in types, so a value's unit is never a guess.

Amounts are integer satoshis (`Sats`); hashrates are hashes per second (`HashesPerSecond`);
difficulty is the pool-style float relative to the difficulty-1 target 0x1d00ffff.
"""

from __future__ import annotations

from typing import NewType

Sats = NewType("Sats", int)
"""An amount in satoshis (1 BTC = 100,000,000 sats)."""

HashesPerSecond = NewType("HashesPerSecond", float)
"""A hashrate in SHA-256d hashes per second."""

Difficulty = NewType("Difficulty", float)
"""Share or network difficulty: DIFF1_TARGET / target (pools' float, may be far below 1)."""

SATS_PER_BTC = 100_000_000
HASHES_PER_DIFF1 = 2**32  # expected hashes per difficulty-1 share


def btc_to_sats(btc: float) -> Sats:
    """Convert a BTC float to integer satoshis, rounding to the nearest satoshi."""
    return Sats(round(btc * SATS_PER_BTC))


def sats_to_btc(sats: int) -> float:
    """Convert satoshis to a BTC float (for display only)."""
    return sats / SATS_PER_BTC


def hashrate_from_shares(difficulty_sum: float, seconds: float) -> HashesPerSecond:
    """Estimate a hashrate from the total difficulty of shares accepted over `seconds`."""
    if seconds <= 0:
        return HashesPerSecond(0.0)
    return HashesPerSecond(difficulty_sum * HASHES_PER_DIFF1 / seconds)


def format_hashrate(hps: float) -> str:
    """Human-readable hashrate with an SI prefix: 1.23 TH/s."""
    for unit in ("H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"):
        if abs(hps) < 1000 or unit == "EH/s":
            return f"{hps:.3g} {unit}" if unit != "H/s" else f"{hps:.0f} H/s"
        hps /= 1000
    raise AssertionError("unreachable")
