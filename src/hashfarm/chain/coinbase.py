"""Coinbase transactions: the BIP 34 height push and the Stratum coinb1/coinb2 split.

The scriptSig is laid out as  height push | aux | extranonce slot | tag.  A Stratum miner
fills the slot with extranonce1 + extranonce2 and hashes coinb1 + extranonce + coinb2
(the non-witness serialization) to get the coinbase txid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hashfarm.chain.hashes import sha256d
from hashfarm.chain.merkle import WITNESS_RESERVED_VALUE, witness_commitment_script
from hashfarm.chain.serialize import encode_compact_size
from hashfarm.chain.tx import COINBASE_PREVOUT, Transaction, TxIn, TxOut
from hashfarm.errors import ChainError, DecodeError

__all__ = [
    "MAX_SCRIPT_SIG",
    "MAX_STANDARD_OUTPUT",
    "MIN_SCRIPT_SIG",
    "CoinbaseParts",
    "bip34_height",
    "bip34_height_push",
    "build_coinbase",
    "coinbase_fixed_size",
    "script_num",
    "split_coinbase",
]

# Consensus (Core CheckTransaction, bad-cb-length): a coinbase scriptSig is 2..100 bytes.
MIN_SCRIPT_SIG = 2
MAX_SCRIPT_SIG = 100
# The largest output a standard address pays: 8 (value) + 1 (script length) + 34 (P2TR or
# P2WSH script). P2PKH outputs are 34 bytes, P2SH 32, P2WPKH 31.
MAX_STANDARD_OUTPUT = 43
_OP_0 = 0x00
_OP_1 = 0x51


def script_num(n: int) -> bytes:
    """Minimal CScriptNum encoding: little-endian magnitude, sign in the top bit."""
    if n == 0:
        return b""
    magnitude = abs(n)
    out = bytearray(magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little"))
    if out[-1] & 0x80:  # top bit taken: add a byte for the sign
        out.append(0x80 if n < 0 else 0x00)
    elif n < 0:
        out[-1] |= 0x80
    return bytes(out)


def bip34_height_push(height: int) -> bytes:
    """The script Core writes for `CScript() << height`: OP_0, OP_1..OP_16, or a minimal push."""
    if height < 0:
        raise ChainError(f"block height cannot be negative: {height}")
    if height == 0:
        return bytes((_OP_0,))
    if height <= 16:
        return bytes((_OP_1 - 1 + height,))
    data = script_num(height)
    return bytes((len(data),)) + data


def bip34_height(script_sig: bytes) -> int:
    """The block height a coinbase scriptSig starts with (BIP 34); DecodeError if none."""
    if not script_sig:
        raise DecodeError("empty coinbase scriptSig has no BIP 34 height")
    op = script_sig[0]
    if op == _OP_0:
        return 0
    if _OP_1 <= op <= _OP_1 + 15:
        return op - _OP_1 + 1
    if not 1 <= op <= 8 or len(script_sig) < 1 + op:
        raise DecodeError(f"coinbase scriptSig does not start with a height push (0x{op:02x})")
    data = script_sig[1 : 1 + op]
    if data[-1] & 0x80:
        raise DecodeError(f"coinbase height push {data.hex()} is negative")
    value = int.from_bytes(data, "little")
    # Core (bad-cb-height) compares with `CScript() << height`: heights 1..16 must be OP_N.
    expected = bip34_height_push(value)
    if script_sig[: 1 + op] != expected:
        raise DecodeError(
            f"coinbase height push {data.hex()} is not minimal (Core writes {expected.hex()})"
        )
    return value


@dataclass(frozen=True, slots=True)
class CoinbaseParts:
    """A coinbase split for Stratum around an extranonce slot of `extranonce_size` bytes."""

    coinb1: bytes  # non-witness serialization up to the extranonce
    coinb2: bytes  # non-witness serialization after the extranonce
    extranonce_size: int  # bytes the miner fills (extranonce1 + extranonce2)
    has_witness_commitment: bool  # the full form carries the witness reserved value

    def serialize(self, extranonce: bytes) -> bytes:
        """The non-witness coinbase with `extranonce` filled in (what a miner hashes)."""
        if len(extranonce) != self.extranonce_size:
            raise ChainError(
                f"extranonce is {len(extranonce)} bytes, the slot is {self.extranonce_size}"
            )
        return self.coinb1 + extranonce + self.coinb2

    def transaction(self, extranonce: bytes) -> Transaction:
        """The full coinbase, with the witness reserved value when a commitment is present."""
        tx = Transaction.parse(self.serialize(extranonce))
        if not self.has_witness_commitment:
            return tx
        txin = tx.inputs[0]
        witness_in = TxIn(txin.prevout, txin.script_sig, txin.sequence, (WITNESS_RESERVED_VALUE,))
        return Transaction(tx.version, (witness_in,), tx.outputs, tx.locktime)

    def txid(self, extranonce: bytes) -> bytes:
        """Coinbase txid (internal order) for this extranonce: one hash, no parsing (hot path)."""
        return sha256d(self.serialize(extranonce))


def _script_sig_head(height: int, aux: bytes, extranonce_size: int, tag: bytes) -> bytes:
    head = bip34_height_push(height)
    if height <= 16:  # Core's blocktools: a dummy push keeps the scriptSig >= 2 bytes
        head += bytes((_OP_0,))
    head += aux
    size = len(head) + extranonce_size + len(tag)
    if not MIN_SCRIPT_SIG <= size <= MAX_SCRIPT_SIG:
        raise ChainError(
            f"coinbase scriptSig would be {size} bytes (height push {len(head) - len(aux)}, "
            f"aux {len(aux)}, extranonce {extranonce_size}, tag {len(tag)}); "
            f"consensus allows {MIN_SCRIPT_SIG}..{MAX_SCRIPT_SIG}"
        )
    return head


def build_coinbase(
    height: int,
    outputs: Sequence[TxOut],
    *,
    extranonce_size: int,
    tag: bytes = b"",
    aux: bytes = b"",
    witness_commitment: bytes | None = None,
    sequence: int = 0xFFFFFFFF,
    locktime: int = 0,
    version: int = 1,
) -> CoinbaseParts:
    """Build a coinbase paying `outputs` (plus the witness commitment output, if given)."""
    if extranonce_size < 0:
        raise ChainError(f"extranonce size cannot be negative: {extranonce_size}")
    head = _script_sig_head(height, aux, extranonce_size, tag)
    all_outputs = list(outputs)
    if witness_commitment is not None:
        all_outputs.append(TxOut(0, witness_commitment_script(witness_commitment)))
    script_len = len(head) + extranonce_size + len(tag)
    coinb1 = b"".join(
        (
            version.to_bytes(4, "little", signed=True),
            b"\x01",
            COINBASE_PREVOUT.serialize(),
            encode_compact_size(script_len),
            head,
        )
    )
    coinb2 = b"".join(
        (
            tag,
            sequence.to_bytes(4, "little"),
            encode_compact_size(len(all_outputs)),
            *(o.serialize() for o in all_outputs),
            locktime.to_bytes(4, "little"),
        )
    )
    return CoinbaseParts(coinb1, coinb2, extranonce_size, witness_commitment is not None)


def coinbase_fixed_size(
    height: int,
    *,
    extranonce_size: int,
    tag: bytes = b"",
    aux: bytes = b"",
    witness_commitment: bytes | None = None,
) -> int:
    """Bytes of the non-witness coinbase besides its payout outputs (the witness commitment
    output included), allowing the output count's CompactSize to grow to 3 bytes."""
    parts = build_coinbase(
        height,
        [],
        extranonce_size=extranonce_size,
        tag=tag,
        aux=aux,
        witness_commitment=witness_commitment,
    )
    return len(parts.coinb1) + extranonce_size + len(parts.coinb2) + 2


def split_coinbase(raw_nonwitness: bytes, offset: int, size: int) -> tuple[bytes, bytes]:
    """Split a serialized coinbase around `size` bytes at `offset`: (coinb1, coinb2)."""
    if offset < 0 or size < 0 or offset + size > len(raw_nonwitness):
        raise ChainError(
            f"extranonce slot {offset}+{size} lies outside the {len(raw_nonwitness)}-byte coinbase"
        )
    return raw_nonwitness[:offset], raw_nonwitness[offset + size :]
