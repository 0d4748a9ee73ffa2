"""Transactions: BIP 144 parsing rules, txid/wtxid, and round-trips of real and random ones."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.chain import Block, OutPoint, Transaction, TxIn, TxOut, sha256d
from hashfarm.errors import DecodeError
from realdata import load_block_bytes


@pytest.fixture(scope="module")
def segwit_block() -> Block:
    return Block.parse(load_block_bytes("mainnet-482683"))


def test_real_transactions_roundtrip(segwit_block: Block) -> None:
    witness_txs = [tx for tx in segwit_block.transactions if tx.has_witness()]
    assert len(witness_txs) == 2  # README: 2 witness txs (the coinbase is one of them)
    assert witness_txs[0].is_coinbase()
    for tx in segwit_block.transactions:
        full = tx.serialize()
        assert Transaction.parse(full) == tx
        stripped = Transaction.parse(tx.serialize(witness=False))
        assert stripped.txid() == tx.txid()
        assert not stripped.has_witness()
        assert (tx.wtxid() == tx.txid()) == (not tx.has_witness())
        assert tx.txid() == sha256d(tx.serialize(witness=False))
        assert tx.txid_hex() == tx.txid()[::-1].hex()
        assert tx.weight() == 3 * len(tx.serialize(witness=False)) + len(full)


def test_coinbase_facts(segwit_block: Block) -> None:
    cb = segwit_block.coinbase
    assert cb.is_coinbase()
    assert not any(tx.is_coinbase() for tx in segwit_block.transactions[1:])
    assert cb.inputs[0].witness == (bytes(32),)
    assert cb.total_out() == 1256817877  # README: coinbase outputs total


def _tx_with_witness_flag(flag: int, witness: bytes) -> bytes:
    return (
        bytes.fromhex("02000000") + bytes((0, flag)) + b"\x01" + bytes(32) + b"\x00\x00\x00\x00"
        b"\x00" + b"\xff\xff\xff\xff" + b"\x01" + bytes(8) + b"\x00" + witness + bytes(4)
    )


def test_bip144_rules() -> None:
    ok = Transaction.parse(_tx_with_witness_flag(1, b"\x01\x01\xaa"))
    assert ok.inputs[0].witness == (b"\xaa",)
    with pytest.raises(DecodeError, match="superfluous witness"):
        Transaction.parse(_tx_with_witness_flag(1, b"\x00"))
    with pytest.raises(DecodeError, match="unknown transaction optional data"):
        Transaction.parse(_tx_with_witness_flag(3, b"\x01\x01\xaa"))


def test_empty_vin_as_core_reads_it() -> None:
    # version, vin=0, then the flag byte 0: Core stops there with no vout.
    tx = Transaction.parse(bytes.fromhex("01000000000000000000"))
    assert tx.inputs == ()
    assert tx.outputs == ()


def test_truncated_and_trailing_data() -> None:
    raw = Transaction.parse(_tx_with_witness_flag(1, b"\x01\x01\xaa")).serialize()
    for cut in (1, 5, len(raw) - 1):
        with pytest.raises(DecodeError, match="truncated"):
            Transaction.parse(raw[:cut])
    with pytest.raises(DecodeError, match="1 trailing bytes after the transaction"):
        Transaction.parse(raw + b"\x00")


_bytes = st.binary(max_size=80)
_txin = st.builds(
    TxIn,
    prevout=st.builds(OutPoint, st.binary(min_size=32, max_size=32), st.integers(0, 2**32 - 1)),
    script_sig=_bytes,
    sequence=st.integers(0, 2**32 - 1),
    witness=st.lists(_bytes, max_size=4).map(tuple),
)
_txout = st.builds(TxOut, st.integers(0, 2**64 - 1), _bytes)
_tx = st.builds(
    Transaction,
    version=st.integers(-(2**31), 2**31 - 1),
    inputs=st.lists(_txin, min_size=1, max_size=4).map(tuple),
    outputs=st.lists(_txout, max_size=4).map(tuple),
    locktime=st.integers(0, 2**32 - 1),
)


@given(_tx)
def test_transaction_roundtrip(tx: Transaction) -> None:
    assert Transaction.parse(tx.serialize()) == tx
    stripped = Transaction.parse(tx.serialize(witness=False))
    assert stripped.txid() == tx.txid()
    assert all(i.witness == () for i in stripped.inputs)
    assert stripped.outputs == tx.outputs


@given(st.binary(max_size=300))
def test_garbage_raises_only_decode_error(data: bytes) -> None:
    try:
        tx = Transaction.parse(data)
    except DecodeError:
        return
    assert tx.serialize() == data  # whatever parses, re-serializes byte for byte


_SMALL_BLOCK = load_block_bytes("mainnet-482683")


@given(st.integers(0, len(_SMALL_BLOCK) - 1), st.integers(0, 255))
def test_corrupted_real_block_never_crashes(offset: int, byte: int) -> None:
    corrupted = _SMALL_BLOCK[:offset] + bytes((byte,)) + _SMALL_BLOCK[offset + 1 :]
    for data in (corrupted, _SMALL_BLOCK[:offset]):
        try:
            block = Block.parse(data)
        except DecodeError:
            continue
        assert Block.parse(block.serialize()) == block
