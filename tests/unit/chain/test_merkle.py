"""Merkle roots, branches and the BIP 141 witness commitment, on real blocks and odd sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.chain import (
    Block,
    coinbase_branch,
    merkle_branch,
    merkle_root,
    merkle_root_mutated,
    root_from_branch,
    sha256d,
    witness_commitment,
    witness_commitment_script,
    witness_merkle_root,
)
from hashfarm.errors import ChainError
from realdata import load_block_bytes


def test_small_trees_by_hand() -> None:
    a, b, c = (sha256d(bytes([i])) for i in range(3))
    assert merkle_root([]) == bytes(32)
    assert merkle_root([a]) == a
    assert merkle_root([a, b]) == sha256d(a + b)
    # odd count: the last node is paired with itself
    assert merkle_root([a, b, c]) == sha256d(sha256d(a + b) + sha256d(c + c))
    assert merkle_branch([a, b, c], 2) == [c, sha256d(a + b)]
    assert coinbase_branch([b, c]) == [b, sha256d(c + c)]
    assert coinbase_branch([]) == []


@pytest.mark.parametrize("name", ["mainnet-383616", "mainnet-482683"])
def test_every_leaf_branch_of_a_real_block(name: str) -> None:
    block = Block.parse(load_block_bytes(name))
    txids = [tx.txid() for tx in block.transactions]
    root = block.header.merkle_root
    assert merkle_root(txids) == root
    for index in (0, 1, len(txids) // 2, len(txids) - 2, len(txids) - 1):
        assert root_from_branch(txids[index], merkle_branch(txids, index), index) == root
    assert coinbase_branch(txids[1:]) == merkle_branch(txids, 0)


def test_witness_commitment_of_a_real_block() -> None:
    block = Block.parse(load_block_bytes("mainnet-482683"))
    wtxids = [tx.wtxid() for tx in block.transactions[1:]]
    commitment = witness_commitment(witness_merkle_root(wtxids), bytes(32))
    assert commitment.hex() == "0f8b0182863aa4713e94bb72c47c57dcbae7de8f3df2af23453f60f1965dab77"
    script = witness_commitment_script(commitment)
    assert script.hex().startswith("6a24aa21a9ed")
    assert len(script) == 38
    assert script in [o.script_pubkey for o in block.coinbase.outputs]


def test_cve_2012_2459_mutation_flag() -> None:
    a, b, c = (sha256d(bytes([i])) for i in range(3))
    # [a, b, c] and [a, b, c, c] share a root; Core flags the second as mutated
    assert merkle_root_mutated([a, b, c]) == (merkle_root([a, b, c]), False)
    assert merkle_root_mutated([a, b, c, c]) == (merkle_root([a, b, c]), True)
    block = Block.parse(load_block_bytes("mainnet-383616"))
    assert merkle_root_mutated([tx.txid() for tx in block.transactions])[1] is False


def test_errors() -> None:
    with pytest.raises(ChainError, match="out of range"):
        merkle_branch([bytes(32)], 1)
    with pytest.raises(ChainError, match="32 bytes"):
        witness_commitment_script(bytes(31))


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40), st.data())
def test_branch_folds_to_root(leaves: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    root = merkle_root(leaves)
    assert root_from_branch(leaves[index], merkle_branch(leaves, index), index) == root
    assert root_from_branch(leaves[0], coinbase_branch(leaves[1:])) == root
