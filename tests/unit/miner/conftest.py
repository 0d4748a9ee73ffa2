"""A real job for miner unit tests: the notify fields of mainnet block 482683."""

from __future__ import annotations

import pytest

from hashfarm.chain.block import Block
from hashfarm.stratum.work import Job, make_job
from realdata import load_block_bytes


@pytest.fixture(scope="session")
def real_job() -> Job:
    """Job fields a pool would send to mine on top of block 482683's parent."""
    block = Block.parse(load_block_bytes("mainnet-482683"))
    coinbase = block.transactions[0].serialize(witness=False)
    cut = 4 + 1 + 36 + 1 + len(block.transactions[0].inputs[0].script_sig) - 8
    h = block.header
    return make_job(
        "j1",
        h.prev_hash,
        coinbase[:cut],
        coinbase[cut + 8 :],
        [tx.txid() for tx in block.transactions[1:]],
        h.version,
        h.bits,
        h.time,
        True,
    )
