"""Context-free block checks, named by the reject reasons Bitcoin Core gives.

These are the checks a pool can run on a block it built, or an operator on a block a node
rejected, without the UTXO set: PoW, merkle root, coinbase shape (BIP 34, scriptSig size),
the BIP 141 witness commitment and the weight limit. Fees (bad-cb-amount) need the spent
outputs, so only the subsidy is reported, not checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from hashfarm.chain.block import Block
from hashfarm.chain.coinbase import MAX_SCRIPT_SIG, MIN_SCRIPT_SIG
from hashfarm.chain.merkle import merkle_root_mutated
from hashfarm.chain.networks import Network
from hashfarm.chain.pow import check_proof_of_work
from hashfarm.errors import DecodeError

__all__ = ["MAX_BLOCK_WEIGHT", "BlockCheck", "check_block"]

MAX_BLOCK_WEIGHT = 4_000_000  # BIP 141 consensus limit in weight units


@dataclass(frozen=True, slots=True)
class BlockCheck:
    """One check: `reason` is Core's reject string; `passed` is None when not applicable."""

    reason: str  # e.g. "high-hash", "bad-txnmrklroot"
    passed: bool | None  # True ok, False failed, None not applicable
    detail: str  # what was compared, for a human


def _pow(block: Block, network: Network) -> BlockCheck:
    ok = check_proof_of_work(block.hash(), block.header.bits, network)
    detail = f"hash {block.hash_hex()} vs bits {block.header.bits:08x} ({network.name})"
    return BlockCheck("high-hash", ok, detail)


def _merkle(block: Block) -> list[BlockCheck]:
    computed, mutated = merkle_root_mutated([tx.txid() for tx in block.transactions])
    detail = f"header {block.header.merkle_root[::-1].hex()}, computed {computed[::-1].hex()}"
    return [
        BlockCheck("bad-txnmrklroot", computed == block.header.merkle_root, detail),
        BlockCheck("bad-txns-duplicate", not mutated, "no duplicated merkle siblings"),
    ]


def _coinbase_shape(block: Block) -> list[BlockCheck]:
    first, rest = block.transactions[0], block.transactions[1:]
    checks = [
        BlockCheck("bad-cb-missing", first.is_coinbase(), "first transaction is a coinbase"),
        BlockCheck(
            "bad-cb-multiple",
            not any(tx.is_coinbase() for tx in rest),
            "no other transaction is a coinbase",
        ),
    ]
    if first.inputs:
        size = len(first.inputs[0].script_sig)
        ok = MIN_SCRIPT_SIG <= size <= MAX_SCRIPT_SIG
        detail = f"scriptSig {size} bytes (allowed {MIN_SCRIPT_SIG}..{MAX_SCRIPT_SIG})"
        checks.append(BlockCheck("bad-cb-length", ok, detail))
    return checks


def _height(block: Block, expected_height: int | None) -> BlockCheck:
    try:
        height = block.height_from_coinbase()
    except DecodeError as exc:
        return BlockCheck("bad-cb-height", False, str(exc))
    if expected_height is None:
        return BlockCheck("bad-cb-height", True, f"BIP 34 height {height}")
    ok = height == expected_height
    return BlockCheck("bad-cb-height", ok, f"BIP 34 height {height}, expected {expected_height}")


def _witness(block: Block) -> BlockCheck:
    committed = block.witness_commitment_in_coinbase()
    if committed is None:
        if any(tx.has_witness() for tx in block.transactions):
            return BlockCheck("unexpected-witness", False, "witness data but no commitment")
        return BlockCheck("unexpected-witness", None, "no witness commitment, no witness data")
    if block.witness_reserved_value() is None:
        return BlockCheck("bad-witness-nonce-size", False, "coinbase lacks the 32-byte nonce")
    computed = block.compute_witness_commitment()
    detail = f"coinbase {committed.hex()}, computed {computed.hex() if computed else None}"
    return BlockCheck("bad-witness-merkle-match", computed == committed, detail)


def _weight(block: Block) -> BlockCheck:
    weight = block.weight()
    ok = weight <= MAX_BLOCK_WEIGHT
    return BlockCheck("bad-blk-weight", ok, f"weight {weight} (max {MAX_BLOCK_WEIGHT})")


def check_block(
    block: Block, network: Network, expected_height: int | None = None
) -> list[BlockCheck]:
    """Run every context-free check; the block is valid so far when none has passed=False."""
    return [
        _pow(block, network),
        *_merkle(block),
        *_coinbase_shape(block),
        _height(block, expected_height),
        _witness(block),
        _weight(block),
    ]
