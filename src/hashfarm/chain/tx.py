"""Transactions: parse and serialize with and without witness data (BIP 144), txid and wtxid."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hashfarm.chain.hashes import sha256d
from hashfarm.chain.serialize import ByteReader, encode_compact_size
from hashfarm.errors import DecodeError

__all__ = ["COINBASE_PREVOUT", "OutPoint", "Transaction", "TxIn", "TxOut"]

_NULL_HASH = bytes(32)
_I32, _U32, _U64 = struct.Struct("<i"), struct.Struct("<I"), struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class OutPoint:
    """A reference to an output: txid (internal order) and output index."""

    txid: bytes
    index: int

    def serialize(self) -> bytes:
        """36-byte wire form."""
        return self.txid + self.index.to_bytes(4, "little")

    def is_null(self) -> bool:
        """True for the coinbase's null prevout (zero hash, index 0xffffffff)."""
        return self.index == 0xFFFFFFFF and self.txid == _NULL_HASH


COINBASE_PREVOUT = OutPoint(_NULL_HASH, 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class TxIn:
    """A transaction input; `witness` is its BIP 141 witness stack (empty when none)."""

    prevout: OutPoint
    script_sig: bytes
    sequence: int = 0xFFFFFFFF
    witness: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class TxOut:
    """A transaction output: value in satoshis and its locking script."""

    value: int
    script_pubkey: bytes

    def serialize(self) -> bytes:
        """Wire form: u64 value, then the length-prefixed script."""
        spk = self.script_pubkey
        return self.value.to_bytes(8, "little") + encode_compact_size(len(spk)) + spk


_Input = tuple[OutPoint, bytes, int]  # prevout, scriptSig, sequence: the witness comes later


def _read_input(r: ByteReader) -> _Input:
    head = r.read(36)
    prevout = OutPoint(head[:32], int.from_bytes(head[32:], "little"))
    return prevout, r.read_var_bytes(), r.read_u32()


def _read_output(r: ByteReader) -> TxOut:
    value = r.read_u64()
    return TxOut(value, r.read_var_bytes())


def _read_witness(r: ByteReader) -> tuple[bytes, ...]:
    return tuple(r.read_var_bytes() for _ in range(r.read_compact_size()))


def _read_ins_outs(r: ByteReader) -> tuple[list[_Input], tuple[TxOut, ...], int]:
    """Inputs, outputs and the BIP 144 flag byte, read the way Core reads them."""
    inputs = [_read_input(r) for _ in range(r.read_compact_size())]
    if inputs:
        return inputs, tuple(_read_output(r) for _ in range(r.read_compact_size())), 0
    flags = r.read_u8()  # the empty vin was the 0x00 marker (or a truly empty vin)
    if not flags:
        return inputs, (), 0
    inputs = [_read_input(r) for _ in range(r.read_compact_size())]
    return inputs, tuple(_read_output(r) for _ in range(r.read_compact_size())), flags


def _with_witnesses(r: ByteReader, raw_inputs: list[_Input]) -> tuple[TxIn, ...]:
    inputs = tuple(TxIn(*i, _read_witness(r)) for i in raw_inputs)
    if not any(i.witness for i in inputs):
        raise DecodeError("superfluous witness record (all witnesses empty)")
    return inputs


def _put_inputs(parts: list[bytes], inputs: tuple[TxIn, ...]) -> None:
    parts.append(encode_compact_size(len(inputs)))
    for i in inputs:
        parts += (i.prevout.txid, _U32.pack(i.prevout.index))
        parts += (encode_compact_size(len(i.script_sig)), i.script_sig, _U32.pack(i.sequence))


def _put_witnesses(parts: list[bytes], inputs: tuple[TxIn, ...]) -> None:
    for i in inputs:
        parts.append(encode_compact_size(len(i.witness)))
        for item in i.witness:
            parts += (encode_compact_size(len(item)), item)


@dataclass(frozen=True, slots=True)
class Transaction:
    """A Bitcoin transaction. Hashes are computed on demand, never cached."""

    version: int
    inputs: tuple[TxIn, ...]
    outputs: tuple[TxOut, ...]
    locktime: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> Transaction:
        """Parse one transaction that must use all of `data`."""
        reader = ByteReader(data)
        tx = cls.read(reader)
        reader.expect_end("transaction")
        return tx

    @classmethod
    def read(cls, r: ByteReader) -> Transaction:
        """Read one transaction from `r`, following Core's BIP 144 rules for the marker."""
        version = r.read_i32()
        raw_inputs, outputs, flags = _read_ins_outs(r)
        if flags & 1:
            inputs = _with_witnesses(r, raw_inputs)
        else:
            inputs = tuple(TxIn(*i) for i in raw_inputs)
        if flags & ~1:
            raise DecodeError(f"unknown transaction optional data (flags {flags:#x})")
        return cls(version, inputs, outputs, r.read_u32())

    def has_witness(self) -> bool:
        """True when any input carries witness data."""
        return any(i.witness for i in self.inputs)

    def is_coinbase(self) -> bool:
        """True for a coinbase: exactly one input, spending the null prevout."""
        return len(self.inputs) == 1 and self.inputs[0].prevout.is_null()

    def serialize(self, witness: bool = True) -> bytes:
        """Wire form; BIP 144 extended form when `witness` and the tx has witness data."""
        use_witness = witness and self.has_witness()
        parts = [_I32.pack(self.version), b"\x00\x01" if use_witness else b""]
        _put_inputs(parts, self.inputs)
        parts.append(encode_compact_size(len(self.outputs)))
        for out in self.outputs:
            parts += (_U64.pack(out.value), encode_compact_size(len(out.script_pubkey)))
            parts.append(out.script_pubkey)
        if use_witness:
            _put_witnesses(parts, self.inputs)
        parts.append(_U32.pack(self.locktime))
        return b"".join(parts)

    def txid(self) -> bytes:
        """Transaction id: sha256d of the non-witness form, internal order."""
        return sha256d(self.serialize(witness=False))

    def wtxid(self) -> bytes:
        """Witness transaction id (BIP 141): sha256d of the full form, internal order."""
        return sha256d(self.serialize(witness=True))

    def txid_hex(self) -> str:
        """Transaction id in display order."""
        return self.txid()[::-1].hex()

    def wtxid_hex(self) -> str:
        """Witness transaction id in display order."""
        return self.wtxid()[::-1].hex()

    def total_out(self) -> int:
        """Sum of output values in satoshis."""
        return sum(o.value for o in self.outputs)

    def vsize(self) -> int:
        """Virtual size in vbytes (BIP 141): ceil(weight / 4)."""
        return (self.weight() + 3) // 4

    def weight(self) -> int:
        """Weight units: 3 x stripped size + total size."""
        return 3 * len(self.serialize(witness=False)) + len(self.serialize())
