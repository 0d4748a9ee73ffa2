"""Network state: difficulty, height, subsidy, fees and hashrate, from a node or from figures.

economics stays pure: it declares the little it needs from a chain (`ChainSource`) and `cli`
hands it an adapter over the node's RPC client. Fees are measured, not asked for: a block's
coinbase claims subsidy + fees, so fees = coinbase outputs - `block_subsidy(height)`.

Two hashrate estimates, because they answer different questions:
- from difficulty: D * 2**32 / 600, the hashrate the current difficulty was set for;
- from chainwork: the work added over the last N blocks divided by the time they took,
  what the network actually did lately (noisy for small N: block times are exponential).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hashfarm.chain.networks import Network
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.chain.subsidy import block_subsidy
from hashfarm.economics.hashprice import network_hashrate_hs
from hashfarm.errors import ConfigError
from hashfarm.units import SATS_PER_BTC

__all__ = [
    "BlockSummary",
    "ChainSource",
    "NetworkState",
    "fetch_network_state",
    "hashrate_from_chainwork",
    "network_state_from_figures",
]


@dataclass(frozen=True, slots=True)
class BlockSummary:
    """What the calculator needs to know about one block."""

    height: int
    time: int  # header timestamp, unix seconds
    bits: int
    chainwork: int  # total expected hashes of the chain up to and including this block
    coinbase_sats: int  # sum of the coinbase transaction's outputs (subsidy + fees claimed)


class ChainSource(Protocol):
    """The narrow view of a node the calculator uses (wired to the RPC client in cli)."""

    async def tip_height(self) -> int:
        """Height of the best block."""
        ...

    async def block_summary(self, height: int) -> BlockSummary:
        """The block at `height` on the best chain."""
        ...


@dataclass(frozen=True, slots=True)
class NetworkState:
    """The network as the calculator sees it now."""

    network: Network
    height: int  # tip height; the next block is height + 1
    bits: int | None  # bits of the tip (None when given as a difficulty figure)
    difficulty: float
    next_subsidy_sats: int  # subsidy of the next block
    fees_btc_per_block: float  # average over `fee_window` blocks
    fee_window: int  # blocks averaged (0 when given as a figure)
    hashrate_from_difficulty_hs: float
    hashrate_from_chainwork_hs: float | None  # None without a node
    hashrate_window: int  # blocks behind the chainwork estimate
    tip_time: int | None


def hashrate_from_chainwork(first: BlockSummary, last: BlockSummary) -> float:
    """Hashes per second between two blocks: chainwork added / time taken."""
    seconds = last.time - first.time
    if seconds <= 0 or last.height <= first.height:
        raise ConfigError("hashrate window: need later blocks with later timestamps")
    return (last.chainwork - first.chainwork) / seconds


def network_state_from_figures(
    network: Network, height: int, difficulty: float, fees_btc: float = 0.0
) -> NetworkState:
    """A state from user-given figures (no node): what `--difficulty` etc. describe."""
    if height < 0 or not difficulty > 0:
        raise ConfigError("height must not be negative and difficulty must be positive")
    if not fees_btc >= 0:
        raise ConfigError(f"fees: must not be negative, got {fees_btc!r}")
    return NetworkState(
        network=network,
        height=height,
        bits=None,
        difficulty=difficulty,
        next_subsidy_sats=block_subsidy(height + 1, network),
        fees_btc_per_block=fees_btc,
        fee_window=0,
        hashrate_from_difficulty_hs=network_hashrate_hs(difficulty),
        hashrate_from_chainwork_hs=None,
        hashrate_window=0,
        tip_time=None,
    )


async def fetch_network_state(
    source: ChainSource, network: Network, fee_window: int = 144, hashrate_window: int = 1008
) -> NetworkState:
    """Read the state from a chain: the tip, fees over `fee_window` blocks, and hashrate."""
    if fee_window < 1 or hashrate_window < 1:
        raise ConfigError("fee and hashrate windows must be at least one block")
    height = await source.tip_height()
    tip = await source.block_summary(height)
    lowest = max(height - fee_window + 1, 1)  # the genesis coinbase claims no fees
    fees = 0
    for h in range(lowest, height + 1):
        block = tip if h == height else await source.block_summary(h)
        fees += block.coinbase_sats - block_subsidy(h, network)
    counted = height - lowest + 1
    past = max(height - hashrate_window, 0)
    chainwork_hs = None
    first = await source.block_summary(past) if past < height else tip
    if first.time < tip.time:  # regtest mines many blocks within one second
        chainwork_hs = hashrate_from_chainwork(first, tip)
    difficulty = bits_to_difficulty(tip.bits)
    return NetworkState(
        network=network,
        height=height,
        bits=tip.bits,
        difficulty=difficulty,
        next_subsidy_sats=block_subsidy(height + 1, network),
        fees_btc_per_block=fees / counted / SATS_PER_BTC if counted > 0 else 0.0,
        fee_window=max(counted, 0),
        hashrate_from_difficulty_hs=network_hashrate_hs(difficulty),
        hashrate_from_chainwork_hs=chainwork_hs,
        hashrate_window=height - past,
        tip_time=tip.time,
    )
