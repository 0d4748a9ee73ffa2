"""Blocks: header plus transactions, with merkle and witness-commitment checks."""

from __future__ import annotations

from dataclasses import dataclass

from hashfarm.chain.coinbase import bip34_height
from hashfarm.chain.header import HEADER_SIZE, BlockHeader
from hashfarm.chain.merkle import (
    WITNESS_COMMITMENT_HEADER,
    merkle_root,
    witness_commitment,
    witness_merkle_root,
)
from hashfarm.chain.serialize import ByteReader, encode_compact_size
from hashfarm.chain.tx import Transaction
from hashfarm.errors import DecodeError

__all__ = ["Block"]

_COMMITMENT_SCRIPT_MIN = 38  # 6a24aa21a9ed + 32 bytes; Core allows trailing bytes after it


@dataclass(frozen=True, slots=True)
class Block:
    """A full block. Transaction 0 is the coinbase."""

    header: BlockHeader
    transactions: tuple[Transaction, ...]

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> Block:
        """Parse a serialized block (with or without witness data) that uses all of `data`."""
        raw = bytes(data)
        if len(raw) < HEADER_SIZE:
            raise DecodeError(f"a block needs an 80-byte header, got {len(raw)} bytes")
        header = BlockHeader.parse(raw[:HEADER_SIZE])
        reader = ByteReader(raw, HEADER_SIZE)
        count = reader.read_compact_size()
        if count == 0:
            raise DecodeError("a block has at least one transaction (the coinbase)")
        txs = tuple(Transaction.read(reader) for _ in range(count))
        reader.expect_end("block")
        return cls(header, txs)

    def serialize(self, witness: bool = True) -> bytes:
        """Wire form (full witness form by default, as submitblock wants)."""
        parts = [self.header.serialize(), encode_compact_size(len(self.transactions))]
        parts += [tx.serialize(witness) for tx in self.transactions]
        return b"".join(parts)

    def hash(self) -> bytes:
        """Block hash, internal order."""
        return self.header.hash()

    def hash_hex(self) -> str:
        """Block hash, display order."""
        return self.header.hash_hex()

    @property
    def coinbase(self) -> Transaction:
        """The first transaction."""
        return self.transactions[0]

    def compute_merkle_root(self) -> bytes:
        """Merkle root of the txids (compare with `header.merkle_root`)."""
        return merkle_root([tx.txid() for tx in self.transactions])

    def merkle_valid(self) -> bool:
        """True when the header commits to these transactions."""
        return self.compute_merkle_root() == self.header.merkle_root

    def witness_commitment_in_coinbase(self) -> bytes | None:
        """The 32-byte commitment from the coinbase's last commitment output (Core's rule)."""
        for out in reversed(self.coinbase.outputs):
            spk = out.script_pubkey
            if len(spk) >= _COMMITMENT_SCRIPT_MIN and spk.startswith(WITNESS_COMMITMENT_HEADER):
                return spk[6:38]
        return None

    def witness_reserved_value(self) -> bytes | None:
        """The coinbase witness nonce: its single 32-byte witness item, else None."""
        witness = self.coinbase.inputs[0].witness if self.coinbase.inputs else ()
        if len(witness) == 1 and len(witness[0]) == 32:
            return witness[0]
        return None

    def compute_witness_commitment(self) -> bytes | None:
        """sha256d(witness root || coinbase witness nonce); None without a valid nonce."""
        reserved = self.witness_reserved_value()
        if reserved is None:
            return None
        wtxids = [tx.wtxid() for tx in self.transactions[1:]]
        return witness_commitment(witness_merkle_root(wtxids), reserved)

    def witness_valid(self) -> bool:
        """BIP 141 as Core checks it: a commitment must match; without one, no witness data."""
        committed = self.witness_commitment_in_coinbase()
        if committed is None:
            return not any(tx.has_witness() for tx in self.transactions)
        return self.compute_witness_commitment() == committed

    def height_from_coinbase(self) -> int:
        """Height from the BIP 34 push at the start of the coinbase scriptSig."""
        if not self.coinbase.inputs:
            raise DecodeError("the coinbase has no input")
        return bip34_height(self.coinbase.inputs[0].script_sig)

    def weight(self) -> int:
        """Block weight (BIP 141): 3 x stripped size + total size."""
        return 3 * len(self.serialize(witness=False)) + len(self.serialize())
