"""Mine the real blocks again, the Stratum way: coinb1 + extranonce + coinb2, the merkle
branch of mining.notify, and the real nonce must give the real block hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from hashfarm.chain import (
    Block,
    BlockHeader,
    bip34_height_push,
    coinbase_branch,
    encode_compact_size,
    root_from_branch,
    sha256d,
    split_coinbase,
)
from realdata import FIXTURE_BLOCKS

EXTRANONCE_SIZE = 8  # extranonce1 (4) + extranonce2 (4), a common pool setting


def _extranonce_offset(block: Block) -> int:
    """Offset, in the non-witness coinbase, of the bytes right after the BIP 34 height push."""
    script = block.coinbase.inputs[0].script_sig
    before_script = 4 + 1 + 36 + len(encode_compact_size(len(script)))
    return before_script + len(bip34_height_push(block.height_from_coinbase()))


@pytest.mark.parametrize("path", FIXTURE_BLOCKS, ids=lambda p: p.stem)
def test_stratum_miner_reproduces_the_block_hash(path: Path) -> None:
    block = Block.parse(path.read_bytes())
    raw_coinbase = block.coinbase.serialize(witness=False)
    offset = _extranonce_offset(block)
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
