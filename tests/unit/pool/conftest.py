"""Fixtures for the pool unit tests: real mainnet blocks."""

from __future__ import annotations

import pytest

from hashfarm.chain.block import Block
from realdata import load_block_bytes


@pytest.fixture(params=["mainnet-277647.raw", "mainnet-482683.raw", "mainnet-481829.raw"])
def real_block(request: pytest.FixtureRequest) -> Block:
    """A real mainnet block (pre-segwit, small segwit, large segwit)."""
    return Block.parse(load_block_bytes(request.param))


@pytest.fixture
def small_block() -> Block:
    """mainnet-482683: 12 transactions, two with witnesses."""
    return Block.parse(load_block_bytes("mainnet-482683.raw"))
