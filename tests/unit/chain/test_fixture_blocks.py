"""Proof on real mainnet blocks: every fixture parses, re-serializes byte-identically, and its
hashes, merkle root, witness commitment, PoW, weight and BIP 34 height match the facts in
shared/fixtures/blocks/README.md (which were checked there independently of this code)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from hashfarm.chain import MAINNET, Block, check_proof_of_work
from realdata import FIXTURE_BLOCKS, load_block_bytes


class Facts(NamedTuple):
    height: int
    hash_hex: str
    prev_hex: str
    txs: int
    weight: int
    stripped_size: int
    nonce: int
    coinbase_total: int
    commitment_hex: str | None


# Copied from shared/fixtures/blocks/README.md.
EXPECTED = {
    "mainnet-277647": Facts(
        277647, "0000000000000000054a714e580b16c583701712ab91060e92dbde6eb1e052a8",
        "0000000000000000c86826ab2fbe4639ec413004955a36e77c2267988579e653",
        213, 596656, 149164, 2528772957, 2504737355, None,
    ),
    "mainnet-300025": Facts(
        300025, "0000000000000000821c4e0acc40f88bedbce3b73ba2358b5ade58a9022cc78c",
        "00000000000000005cbe0d56fc3714fdea1b542b848c9d9da8fdbd11441d83d1",
        461, 1136924, 284231, 1186968784, 2507773345, None,
    ),
    "mainnet-383616": Facts(
        383616, "00000000000000000aab6a2b34e979b09ca185584bd1aecf204f24d150ff55e9",
        "00000000000000000e0e36ad25d19b09573a53ed18ebba7d9a1ac164cca81fd9",
        1731, 2996896, 749224, 2822917072, 2523322593, None,
    ),
    "mainnet-481829": Facts(
        481829, "000000000000000000917cba69f69b758fe396c8e30ae97bbcf08c4eb975e726",
        "000000000000000000bc331eb461d522cb3673b3881217dc30c6a5cf91710f23",
        2020, 3993164, 998282, 2623746819, 1749653928,
        "c3c1145d8070a57e433238e42e4c022c1e51ca2a958094af243ae1ee252ca106",
    ),
    "mainnet-482683": Facts(
        482683, "000000000000000000c238240ef6dcb26c37e75e16514e6ffc0aef7eee73e747",
        "0000000000000000004f8568aa0bc28c7ca94785da07a49272f7124516aaac87",
        12, 35715, 8809, 1460289622, 1256817877,
        "0f8b0182863aa4713e94bb72c47c57dcbae7de8f3df2af23453f60f1965dab77",
    ),
}  # fmt: skip


def test_every_fixture_is_known() -> None:
    assert sorted(p.stem for p in FIXTURE_BLOCKS) == sorted(EXPECTED)


@pytest.fixture(params=FIXTURE_BLOCKS, ids=lambda p: p.stem)
def fixture_block(request: pytest.FixtureRequest) -> tuple[Facts, bytes, Block]:
    path: Path = request.param
    raw = load_block_bytes(path.name)
    return EXPECTED[path.stem], raw, Block.parse(raw)


def test_roundtrip_and_header_facts(fixture_block: tuple[Facts, bytes, Block]) -> None:
    facts, raw, block = fixture_block
    assert block.serialize() == raw
    assert len(block.serialize(witness=False)) == facts.stripped_size
    assert block.weight() == facts.weight
    assert block.hash_hex() == facts.hash_hex
    assert block.header.prev_hash[::-1].hex() == facts.prev_hex
    assert block.header.nonce == facts.nonce
    assert len(block.transactions) == facts.txs


def test_consensus_facts(fixture_block: tuple[Facts, bytes, Block]) -> None:
    facts, _, block = fixture_block
    assert block.height_from_coinbase() == facts.height
    assert block.compute_merkle_root() == block.header.merkle_root
    assert block.header.meets_target()
    assert check_proof_of_work(block.hash(), block.header.bits, MAINNET)
    assert block.coinbase.total_out() == facts.coinbase_total
    found = block.witness_commitment_in_coinbase()
    assert (found.hex() if found else None) == facts.commitment_hex
    assert block.compute_witness_commitment() == found
    assert block.witness_valid()
