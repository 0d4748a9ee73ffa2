"""Coinbase building: BIP 34 pushes, the scriptSig layout and limits, the witness form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.chain import (
    WITNESS_RESERVED_VALUE,
    Block,
    Transaction,
    TxOut,
    address_to_script,
    bip34_height,
    bip34_height_push,
    build_coinbase,
    split_coinbase,
    witness_commitment_script,
)
from hashfarm.errors import ChainError, DecodeError
from realdata import FIXTURE_BLOCKS

# height -> script Core writes for `CScript() << height` (minimal CScriptNum push or OP_N)
BIP34_PUSHES = [
    (0, "00"),
    (1, "51"),
    (16, "60"),
    (17, "0111"),
    (127, "017f"),
    (128, "028000"),
    (255, "02ff00"),
    (256, "020001"),
    (32767, "02ff7f"),
    (32768, "03008000"),
    (481829, "03255a07"),
    (8388607, "03ffff7f"),
    (8388608, "0400008000"),
]


@pytest.mark.parametrize(("height", "hex_"), BIP34_PUSHES)
def test_bip34_pushes(height: int, hex_: str) -> None:
    assert bip34_height_push(height).hex() == hex_
    assert bip34_height(bytes.fromhex(hex_) + b"tail") == height


@pytest.mark.parametrize(
    ("script_hex", "message"),
    [("", "empty"), ("4c01", "does not start"), ("0380", "does not start"),
     ("0200ff", "negative"), ("020100", "not minimal"), ("0100", "not minimal"),
     ("0105", r"not minimal \(Core writes 55\)"), ("0110", "Core writes 60")],
)  # fmt: skip
def test_bad_height_pushes(script_hex: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        bip34_height(bytes.fromhex(script_hex))


PAYOUT = TxOut(50 * 10**8, address_to_script("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"))


def test_low_heights_get_a_dummy_push() -> None:
    """Core's blocktools: heights <= 16 are OP_N, plus a push so the scriptSig is >= 2 bytes."""
    parts = build_coinbase(5, [PAYOUT], extranonce_size=0)
    tx = parts.transaction(b"")
    assert tx.inputs[0].script_sig == bytes.fromhex("5500")
    assert bip34_height(tx.inputs[0].script_sig) == 5


def test_layout_and_split() -> None:
    parts = build_coinbase(
        800000, [PAYOUT], extranonce_size=8, tag=b"/hashfarm/", aux=b"\x04\x01\x02\x03\x04"
    )
    extranonce = bytes(range(8))
    tx = parts.transaction(extranonce)
    script = tx.inputs[0].script_sig
    assert (
        script == bip34_height_push(800000) + b"\x04\x01\x02\x03\x04" + extranonce + b"/hashfarm/"
    )
    assert tx.is_coinbase()
    assert tx.outputs == (PAYOUT,)
    assert not tx.has_witness()
    raw = tx.serialize(witness=False)
    assert parts.coinb1 + extranonce + parts.coinb2 == raw
    offset = len(parts.coinb1)
    assert split_coinbase(raw, offset, 8) == (parts.coinb1, parts.coinb2)
    assert parts.txid(extranonce) == tx.txid()
    assert parts.txid(bytes(8)) != tx.txid()


def test_witness_commitment_output_and_reserved_value() -> None:
    commitment = bytes(range(32))
    parts = build_coinbase(1000, [PAYOUT], extranonce_size=4, witness_commitment=commitment)
    tx = parts.transaction(b"\x00\x00\x00\x01")
    assert tx.outputs[-1] == TxOut(0, witness_commitment_script(commitment))
    assert tx.inputs[0].witness == (WITNESS_RESERVED_VALUE,)
    # coinb1/coinb2 stay the non-witness form: that is what the txid commits to
    assert Transaction.parse(tx.serialize(witness=False)).txid() == tx.txid()
    assert tx.serialize(witness=False) == parts.coinb1 + b"\x00\x00\x00\x01" + parts.coinb2


def test_script_sig_limits() -> None:
    with pytest.raises(ChainError, match=r"101 bytes.*2\.\.100"):
        build_coinbase(800000, [PAYOUT], extranonce_size=8, tag=bytes(89))
    build_coinbase(800000, [PAYOUT], extranonce_size=8, tag=bytes(88))
    with pytest.raises(ChainError, match="slot is 8"):
        build_coinbase(800000, [PAYOUT], extranonce_size=8).transaction(bytes(7))
    with pytest.raises(ChainError, match="outside"):
        split_coinbase(bytes(10), 8, 4)


@pytest.mark.parametrize("path", FIXTURE_BLOCKS, ids=lambda p: p.stem)
def test_rebuild_real_coinbase_byte_for_byte(path) -> None:  # type: ignore[no-untyped-def]
    """build_coinbase reproduces each real coinbase from its parts (8-byte extranonce slot)."""
    block = Block.parse(path.read_bytes())
    cb = block.coinbase
    script = cb.inputs[0].script_sig
    push = bip34_height_push(block.height_from_coinbase())
    start = len(push) + 4  # pretend the 4 bytes after the height push are pool aux data
    commitment = block.witness_commitment_in_coinbase()
    outputs = cb.outputs[:-1] if commitment else cb.outputs
    parts = build_coinbase(
        block.height_from_coinbase(), list(outputs), extranonce_size=8,
        aux=script[len(push) : start], tag=script[start + 8 :], witness_commitment=commitment,
        sequence=cb.inputs[0].sequence, locktime=cb.locktime, version=cb.version,
    )  # fmt: skip
    assert parts.transaction(script[start : start + 8]) == cb


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_bip34_roundtrip(height: int) -> None:
    assert bip34_height(bip34_height_push(height)) == height
