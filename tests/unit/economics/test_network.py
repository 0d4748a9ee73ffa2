"""Network state read through the ChainSource protocol, on real mainnet blocks."""

from __future__ import annotations

import pytest

from hashfarm.chain.block import Block
from hashfarm.chain.networks import MAINNET
from hashfarm.chain.pow import bits_to_difficulty, block_work
from hashfarm.economics.network import (
    BlockSummary,
    fetch_network_state,
    hashrate_from_chainwork,
    network_state_from_figures,
)
from hashfarm.errors import ConfigError
from realdata import load_block_bytes

# two real blocks of one epoch (481824..483839, bits 18013ce9), 854 blocks apart
HEIGHTS = {481829: "mainnet-481829", 482683: "mainnet-482683"}


class FixtureChain:
    """A ChainSource serving real fixture blocks; chainwork grows by each block's work."""

    def __init__(self) -> None:
        self.blocks = {h: Block.parse(load_block_bytes(name)) for h, name in HEIGHTS.items()}

    async def tip_height(self) -> int:
        return max(self.blocks)

    async def block_summary(self, height: int) -> BlockSummary:
        block = self.blocks[height]  # KeyError: the code asked for a block it should not need
        work = block_work(block.header.bits) * (height - min(self.blocks) + 1)
        coinbase = sum(out.value for out in block.transactions[0].outputs)
        return BlockSummary(height, block.header.time, block.header.bits, work, coinbase)


async def test_fees_and_hashrate_from_real_blocks() -> None:
    state = await fetch_network_state(FixtureChain(), MAINNET, fee_window=1, hashrate_window=854)
    assert state.height == 482683
    # coinbase outputs total 1256817877 sat (fixture README) - 12.5 BTC subsidy
    assert state.fees_btc_per_block == pytest.approx((1256817877 - 1_250_000_000) / 1e8)
    assert state.difficulty == bits_to_difficulty(0x18013CE9)
    assert state.next_subsidy_sats == 1_250_000_000
    seconds = 1504119737 - 1503545437  # the two headers' times
    assert state.hashrate_from_chainwork_hs == pytest.approx(854 * block_work(0x18013CE9) / seconds)
    assert state.hashrate_from_difficulty_hs == pytest.approx(state.difficulty * 2**32 / 600)
    assert (state.fee_window, state.hashrate_window, state.tip_time) == (1, 854, 1504119737)


async def test_block_481829_fees() -> None:
    chain = FixtureChain()
    block = await chain.block_summary(481829)
    assert block.coinbase_sats == 1749653928  # fixture README
    assert block.coinbase_sats - 1_250_000_000 == 499_653_928  # 4.997 BTC of fees in 2017


def test_hashrate_needs_time_to_pass() -> None:
    a = BlockSummary(1, 100, 0x1D00FFFF, 10, 0)
    with pytest.raises(ConfigError):
        hashrate_from_chainwork(a, BlockSummary(2, 100, 0x1D00FFFF, 20, 0))
    assert hashrate_from_chainwork(a, BlockSummary(3, 110, 0x1D00FFFF, 30, 0)) == 2.0


def test_state_from_figures() -> None:
    state = network_state_from_figures(MAINNET, 839_999, 8.6e13, 0.1)
    assert state.next_subsidy_sats == 312_500_000  # block 840,000: the 2024 halving
    assert state.hashrate_from_chainwork_hs is None
    with pytest.raises(ConfigError):
        network_state_from_figures(MAINNET, 10, 0.0)
