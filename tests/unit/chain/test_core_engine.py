"""Blocks built only with hashfarm.chain, judged by Bitcoin Core's own consensus engine
(libbitcoinkernel via py-bitcoinkernel, the `make_judge` fixture): what we build is valid,
and what we get wrong is refused for the reason we expect."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hashfarm.chain import (
    REGTEST,
    Block,
    BlockHeader,
    TxOut,
    address_to_script,
    block_subsidy,
    build_coinbase,
    merkle_root,
    witness_commitment,
    witness_merkle_root,
)
from nodes import Judge

GENESIS_HASH_HEX = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
GENESIS_HASH = bytes.fromhex(GENESIS_HASH_HEX)[::-1]  # regtest genesis, internal order
GENESIS_TIME = 1296688602
PAYOUT = address_to_script("bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9", REGTEST)


def make_block(
    prev: bytes,
    height: int,
    *,
    push_height: int | None = None,
    value: int | None = None,
    with_nonce: bool = True,
) -> bytes:
    """A one-transaction regtest block mined at 0x207fffff; knobs break one rule each."""
    out = TxOut(block_subsidy(height, REGTEST) if value is None else value, PAYOUT)
    parts = build_coinbase(
        height if push_height is None else push_height,
        [out],
        extranonce_size=8,
        tag=b"/hashfarm-test/",
        witness_commitment=witness_commitment(witness_merkle_root([])),
    )
    coinbase = parts.transaction(height.to_bytes(8, "little"))
    root = merkle_root([coinbase.txid()])
    for nonce in range(10_000):
        header = BlockHeader(0x20000000, prev, root, GENESIS_TIME + 600 * height, 0x207FFFFF, nonce)
        if header.meets_target():
            return Block(header, (coinbase,)).serialize(witness=with_nonce)
    raise AssertionError("no nonce found")


@pytest.fixture
def judge(make_judge: Callable[[], Judge]) -> Judge:
    return make_judge()


def test_core_accepts_a_chain_we_build(judge: Judge) -> None:
    """Heights 1..20 cover OP_1..OP_16 (with the dummy push) and CScriptNum pushes."""
    prev = GENESIS_HASH
    for height in range(1, 21):
        raw = make_block(prev, height)
        verdict = judge.verdict(raw)
        assert verdict.valid, (height, verdict.reason)
        prev = Block.parse(raw).hash()
    assert judge.height == 20
    assert judge.hash_at(20) == prev[::-1].hex()


@pytest.mark.parametrize(
    ("knobs", "reason"),
    [
        ({"push_height": 2}, "bad-cb-height"),
        ({"value": 50 * 10**8 + 1}, "bad-cb-amount"),
        ({"with_nonce": False}, "bad-witness-nonce-size"),
    ],
)
def test_core_refuses_what_we_break(judge: Judge, knobs: dict[str, int], reason: str) -> None:
    verdict = judge.verdict(make_block(GENESIS_HASH, 1, **knobs))  # type: ignore[arg-type]
    assert not verdict.valid
    assert reason in (verdict.reason or "")
