"""Proof on real mainnet blocks: every fixture parses, re-serializes byte-identically, and its
merkle root, witness commitment, PoW and BIP 34 height check out against the README's facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from hashfarm.chain import MAINNET, Block, check_proof_of_work
from realdata import FIXTURE_BLOCKS, load_block_bytes

# From shared/fixtures/blocks/README.md: height, display hash, tx count, witness commitment.
EXPECTED = {
    "mainnet-277647.raw": (
        277647,
        "0000000000000000054a714e580b16c583701712ab91060e92dbde6eb1e052a8",
        213,
        None,
    ),
    "mainnet-300025.raw": (
        300025,
        "0000000000000000821c4e0acc40f88bedbce3b73ba2358b5ade58a9022cc78c",
        461,
        None,
    ),
    "mainnet-383616.raw": (
        383616,
        "00000000000000000aab6a2b34e979b09ca185584bd1aecf204f24d150ff55e9",
        1731,
        None,
    ),
    "mainnet-481829.raw": (
        481829,
        "000000000000000000917cba69f69b758fe396c8e30ae97bbcf08c4eb975e726",
        2020,
        "c3c1145d8070a57e433238e42e4c022c1e51ca2a958094af243ae1ee252ca106",
    ),
    "mainnet-482683.raw": (
        482683,
        "000000000000000000c238240ef6dcb26c37e75e16514e6ffc0aef7eee73e747",
        12,
        "0f8b0182863aa4713e94bb72c47c57dcbae7de8f3df2af23453f60f1965dab77",
    ),
}


def test_every_fixture_is_known() -> None:
    assert sorted(p.name for p in FIXTURE_BLOCKS) == sorted(EXPECTED)


@pytest.fixture(params=FIXTURE_BLOCKS, ids=lambda p: p.stem)
def fixture_block(request: pytest.FixtureRequest) -> tuple[str, bytes, Block]:
    path: Path = request.param
    raw = load_block_bytes(path.name)
    return path.name, raw, Block.parse(raw)


def test_roundtrip_and_facts(fixture_block: tuple[str, bytes, Block]) -> None:
    name, raw, block = fixture_block
    height, hash_hex, count, commitment = EXPECTED[name]
    assert block.serialize() == raw
    assert block.hash_hex() == hash_hex
    assert len(block.transactions) == count
    assert block.height_from_coinbase() == height
    assert block.compute_merkle_root() == block.header.merkle_root
    assert block.header.meets_target()
    assert check_proof_of_work(block.hash(), block.header.bits, MAINNET)
    found = block.witness_commitment_in_coinbase()
    assert (found.hex() if found else None) == commitment
    assert block.compute_witness_commitment() == found
    assert block.witness_valid()
