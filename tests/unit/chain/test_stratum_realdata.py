"""Mine the real blocks again, the Stratum way: coinb1 + extranonce + coinb2, the merkle
branch of mining.notify, and the real nonce must give the real block hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from hashfarm.chain import (
    Block,
    BlockHeader,
    coinbase_branch,
    root_from_branch,
    sha256d,
    split_coinbase,
)
from realdata import FIXTURE_BLOCKS, extranonce_offset

EXTRANONCE_SIZE = 8  # extranonce1 (4) + extranonce2 (4), a common pool setting


@pytest.mark.parametrize("path", FIXTURE_BLOCKS, ids=lambda p: p.stem)
def test_stratum_miner_reproduces_the_block_hash(path: Path) -> None:
    block = Block.parse(path.read_bytes())
    raw_coinbase = block.coinbase.serialize(witness=False)
    offset = extranonce_offset(block)
    coinb1, coinb2 = split_coinbase(raw_coinbase, offset, EXTRANONCE_SIZE)
    extranonce = raw_coinbase[offset : offset + EXTRANONCE_SIZE]
    branch = coinbase_branch([tx.txid() for tx in block.transactions[1:]])

    # What a miner does with mining.notify and its extranonce:
    coinbase_txid = sha256d(coinb1 + extranonce + coinb2)
    root = root_from_branch(coinbase_txid, branch)
    h = block.header
    header = BlockHeader(h.version, h.prev_hash, root, h.time, h.bits, h.nonce)

    assert header.hash() == block.hash()
    assert header.meets_target()
    other = root_from_branch(sha256d(coinb1 + bytes(EXTRANONCE_SIZE) + coinb2), branch)
    assert other != root  # the extranonce really is inside the committed bytes
