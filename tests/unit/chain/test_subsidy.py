"""Block subsidy against the real mainnet schedule and bcoin's regtest halvings."""

from __future__ import annotations

import csv

import pytest

from hashfarm.chain import Block, block_subsidy
from hashfarm.errors import ChainError
from realdata import DATA_DIR, FIXTURE_BLOCKS


def test_mainnet_schedule_csv() -> None:
    with (DATA_DIR / "block_subsidy_schedule.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 34
    for row in rows:
        subsidy = int(row["subsidy_sats"])
        for height in (int(row["start_height"]), int(row["end_height"])):
            assert block_subsidy(height, "mainnet") == subsidy, row
    assert block_subsidy(6_930_000) == 0
    assert block_subsidy(64 * 210_000) == 0  # Core forces 0 once the shift would reach 64


def test_regtest_halves_every_150() -> None:
    assert block_subsidy(0, "regtest") == 50 * 10**8
    assert block_subsidy(149, "regtest") == 50 * 10**8
    assert block_subsidy(150, "regtest") == 25 * 10**8
    assert block_subsidy(432, "regtest-bcoin") == 50 * 10**8 >> 2
    assert block_subsidy(150 * 64, "regtest") == 0


@pytest.mark.parametrize("path", FIXTURE_BLOCKS, ids=lambda p: p.stem)
def test_real_coinbases_claim_subsidy_plus_fees(path) -> None:  # type: ignore[no-untyped-def]
    block = Block.parse(path.read_bytes())
    subsidy = block_subsidy(block.height_from_coinbase())
    claimed = block.coinbase.total_out()
    assert subsidy <= claimed  # the rest is fees


def test_negative_height() -> None:
    with pytest.raises(ChainError, match="negative"):
        block_subsidy(-1)
