"""Block subsidy by height (Core's `GetBlockSubsidy`)."""

from __future__ import annotations

from hashfarm.chain.networks import Network, get_network
from hashfarm.errors import ChainError

__all__ = ["INITIAL_SUBSIDY", "block_subsidy"]

INITIAL_SUBSIDY = 50 * 100_000_000  # sats per block before the first halving


def block_subsidy(height: int, network: Network | str = "mainnet") -> int:
    """New coins a block at `height` may claim, in sats (halving every interval)."""
    if height < 0:
        raise ChainError(f"height cannot be negative: {height}")
    halvings = height // get_network(network).halving_interval
    # Core: a right shift by 64 or more is undefined in C++, so the subsidy is forced to 0.
    return 0 if halvings >= 64 else INITIAL_SUBSIDY >> halvings
