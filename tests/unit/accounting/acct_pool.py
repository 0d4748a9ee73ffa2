"""Helpers for the crediting-service tests: pool-written rows and a scripted chain.

* `PoolHistory` writes shares and blocks through the pool's real `SQLiteLedger` (or any
  started `GroupCommitLedger`), so the service reads exactly what a pool writes.
* `ScriptedChain` is a node's active chain as a list of hashes, answering the service's
  `ChainView` calls like bitcoind (an RPC error above the tip); tests extend it, put the
  pool's blocks on it and reorganize it. The end-to-end test uses the real regtest node.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from hashfarm.errors import RPCError
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.storage.base import GroupCommitLedger

BITS_DIFFICULTY_1 = 0x1D00FFFF  # network difficulty 1.0


@dataclass
class ScriptedChain:
    """An active chain: `hashes[h]` is the block at height h."""

    bits: int = BITS_DIFFICULTY_1
    hashes: list[str] = field(default_factory=list)
    made: int = 0  # blocks made so far (distinct hashes on every branch)

    def __post_init__(self) -> None:
        if not self.hashes:
            self.extend(100)

    @property
    def tip(self) -> int:
        """Height of the tip."""
        return len(self.hashes) - 1

    def extend(self, count: int) -> None:
        """Mine `count` blocks nobody in the pool found."""
        for _ in range(count):
            self.made += 1
            self.hashes.append(hashlib.sha256(f"other-{self.made}".encode()).hexdigest())

    def place(self, hash_hex: str) -> int:
        """The pool's block becomes the next block; its height."""
        self.hashes.append(hash_hex)
        return self.tip

    def reorg(self, height: int, longer_by: int = 1) -> None:
        """Replace every block from `height` with a longer branch of other blocks."""
        removed = len(self.hashes) - height
        del self.hashes[height:]
        self.extend(removed + longer_by)

    async def getblockcount(self) -> int:
        return self.tip

    async def getblockhash(self, height: int) -> str:
        if not 0 <= height <= self.tip:
            raise RPCError(-8, "Block height out of range", "getblockhash")
        return self.hashes[height]

    async def getblockheader(self, block_hash: str, verbose: bool = True) -> Any:
        return {"hash": block_hash, "bits": f"{self.bits:08x}"}


def block_hash(n: int) -> str:
    """A distinct display-hex hash for the pool's n-th block."""
    return hashlib.sha256(f"pool-block-{n}".encode()).hexdigest()


@dataclass
class PoolHistory:
    """Writes what a pool writes: accepted (and some rejected) shares, then found blocks."""

    ledger: GroupCommitLedger
    time: float = 1_700_000_000.0
    blocks: list[BlockRecord] = field(default_factory=list)

    async def share(
        self, account: str, difficulty: float, *, accepted: bool = True, found: str | None = None
    ) -> None:
        """One judged share (a block-finding one when `found` names the block)."""
        self.time += 1.0
        await self.ledger.record_share(
            ShareRecord(
                worker=f"{account}.rig",
                account=account,
                job_id="1",
                height=0,
                difficulty=difficulty,
                share_difficulty=difficulty,
                accepted=accepted,
                reject_reason=None if accepted else "low-difficulty",
                time=self.time,
                extranonce1_hex="00000000",
                block_hash_hex=found,
            )
        )

    async def block(
        self, account: str, difficulty: float, hash_hex: str, height: int, reward: int
    ) -> BlockRecord:
        """A block found by `account`'s share, accepted by the node at `height`."""
        await self.share(account, difficulty, found=hash_hex)
        rec = BlockRecord(
            height, hash_hex, reward, f"{account}.rig", account, self.time + 0.5, True, None
        )
        await self.ledger.record_block(rec)
        self.blocks.append(rec)
        return rec
