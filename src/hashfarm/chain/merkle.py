"""Merkle trees of txids and wtxids, the Stratum coinbase branch, and the BIP 141 commitment."""

from __future__ import annotations

from collections.abc import Sequence

from hashfarm.chain.hashes import sha256d
from hashfarm.errors import ChainError

__all__ = [
    "WITNESS_COMMITMENT_HEADER",
    "WITNESS_RESERVED_VALUE",
    "coinbase_branch",
    "merkle_branch",
    "merkle_root",
    "merkle_root_mutated",
    "root_from_branch",
    "witness_commitment",
    "witness_commitment_script",
    "witness_merkle_root",
]

# BIP 141: the coinbase witness holds one 32-byte item; all zero unless a future soft fork says.
WITNESS_RESERVED_VALUE = bytes(32)
# OP_RETURN, push 36 bytes, then the commitment magic 0xaa21a9ed.
WITNESS_COMMITMENT_HEADER = bytes.fromhex("6a24aa21a9ed")


def _next_level(level: list[bytes]) -> list[bytes]:
    if len(level) & 1:  # odd: the last node pairs with itself (as Core, CVE-2012-2459 aside)
        level.append(level[-1])
    return [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Merkle root of hashes in internal order; 32 zero bytes for no leaves (as Core)."""
    if not leaves:
        return bytes(32)
    level = list(leaves)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_root_mutated(leaves: Sequence[bytes]) -> tuple[bytes, bool]:
    """The merkle root and Core's `mutated` flag: two equal siblings anywhere (CVE-2012-2459),
    which lets a different transaction list give the same root (Core: bad-txns-duplicate)."""
    if not leaves:
        return bytes(32), False
    level, mutated = list(leaves), False
    while len(level) > 1:
        mutated = mutated or any(level[i] == level[i + 1] for i in range(0, len(level) - 1, 2))
        level = _next_level(level)
    return level[0], mutated


def merkle_branch(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Sibling hashes from leaf `index` up to the root (bottom first)."""
    if not 0 <= index < len(leaves):
        raise ChainError(f"leaf index {index} out of range for {len(leaves)} leaves")
    branch: list[bytes] = []
    level = list(leaves)
    while len(level) > 1:
        if len(level) & 1:
            level.append(level[-1])
        branch.append(level[index ^ 1])
        level = _next_level(level)
        index >>= 1
    return branch


def coinbase_branch(txids_without_coinbase: Sequence[bytes]) -> list[bytes]:
    """The `merkle_branch` of mining.notify: siblings of the coinbase (leaf 0), bottom first.

    The coinbase's own hash never enters its branch, so a placeholder stands in for it.
    """
    return merkle_branch([bytes(32), *txids_without_coinbase], 0)


def root_from_branch(leaf: bytes, branch: Sequence[bytes], index: int = 0) -> bytes:
    """Fold a leaf up its branch to the root, as a miner does with the coinbase txid."""
    node = leaf
    for sibling in branch:
        node = sha256d(sibling + node) if index & 1 else sha256d(node + sibling)
        index >>= 1
    return node


def witness_merkle_root(wtxids_without_coinbase: Sequence[bytes]) -> bytes:
    """BIP 141 witness root: merkle root of wtxids with the coinbase's taken as zero."""
    return merkle_root([bytes(32), *wtxids_without_coinbase])


def witness_commitment(witness_root: bytes, reserved: bytes = WITNESS_RESERVED_VALUE) -> bytes:
    """BIP 141 commitment: sha256d(witness root || witness reserved value)."""
    return sha256d(witness_root + reserved)


def witness_commitment_script(commitment: bytes) -> bytes:
    """The coinbase output script carrying the commitment: 6a24aa21a9ed + 32 bytes."""
    if len(commitment) != 32:
        raise ChainError(f"a witness commitment is 32 bytes, got {len(commitment)}")
    return WITNESS_COMMITMENT_HEADER + commitment
