"""Blocks built only with hashfarm.chain, judged by Bitcoin Core's own consensus engine
(libbitcoinkernel via py-bitcoinkernel, the `make_judge` fixture): what we build is valid,
and what we get wrong is refused for the reason we expect."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hashfarm.chain import REGTEST, Block, address_to_script
from nodes import Judge, coinbase_only_block

GENESIS_HASH_HEX = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
GENESIS_HASH = bytes.fromhex(GENESIS_HASH_HEX)[::-1]  # regtest genesis, internal order
GENESIS_TIME = 1296688602
PAYOUT = address_to_script("bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9", REGTEST)


def make_block(prev: bytes, height: int, *, with_nonce: bool = True, **knobs: int) -> bytes:
    """A one-transaction regtest block; each knob (`push_height`, `value`, `with_nonce`)
    breaks one rule."""
    block = coinbase_only_block(prev, height, PAYOUT, time=GENESIS_TIME + 600 * height, **knobs)
    return block.serialize(witness=with_nonce)


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
