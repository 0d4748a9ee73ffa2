"""The life of a found block: found -> immature -> mature -> credited, or orphaned.

Pure: the chain view and the time are passed in. At every new tip the caller hands
`advance` the tip height and `hash_at(height)`, the hash of the block at that height on the
node's active chain (None above the tip); each block still in play is re-checked at its own
height, which is how an orphan (a reorg that replaced it) is detected.

States and transitions:

* FOUND: submitted and accepted by the node, not yet seen on the active chain.
  -> IMMATURE when `hash_at(height)` is its hash; -> ORPHANED when the chain holds another
  block at its height.
* IMMATURE: on the active chain, confirmations = tip - height + 1 < 100.
  -> MATURE at 100 confirmations; -> ORPHANED if it leaves the active chain (another hash at
  its height, or its height is now above the tip).
* MATURE: 100 confirmations: Bitcoin Core's COINBASE_MATURITY (consensus/consensus.h: a
  coinbase output can be spent only after 100 new blocks; `nSpendHeight - nHeight <
  COINBASE_MATURITY` is `bad-txns-premature-spend-of-coinbase`), so the reward can now be
  spent. Still re-checked: -> ORPHANED if a (very deep) reorg removes it before crediting.
  -> CREDITED once the ledger has moved its immature credits to spendable balances.
* CREDITED and ORPHANED are final. An orphaned block's credits are reversed and it is never
  paid, even if a later reorg brings it back (`Transition.reappeared` reports that, for the
  operator: the pool's wallet then holds coins nobody was credited with).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace

COINBASE_MATURITY = 100  # Bitcoin Core consensus/consensus.h


class BlockState(enum.StrEnum):
    """Where a found block is in its life (stored as these strings)."""

    FOUND = "found"
    IMMATURE = "immature"
    MATURE = "mature"
    CREDITED = "credited"
    ORPHANED = "orphaned"


FINAL = frozenset({BlockState.CREDITED, BlockState.ORPHANED})


@dataclass(frozen=True, slots=True)
class TrackedBlock:
    """A found block and where it stands."""

    hash_hex: str
    height: int
    state: BlockState = BlockState.FOUND
    confirmations: int = 0
    changed_at: float = 0.0  # UNIX seconds of the last state change


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change `advance` made (or a final block seen back on the chain)."""

    hash_hex: str
    old: BlockState
    new: BlockState
    reappeared: bool = False  # an orphaned block is on the active chain again


HashAt = Callable[[int], str | None]


def advance(
    block: TrackedBlock, tip_height: int, hash_at: HashAt, now: float
) -> tuple[TrackedBlock, Transition | None]:
    """The block's state at a new tip, and the transition made (None: unchanged)."""
    on_chain = tip_height >= block.height and hash_at(block.height) == block.hash_hex
    if block.state in FINAL:
        back = block.state is BlockState.ORPHANED and on_chain
        note = Transition(block.hash_hex, block.state, block.state, reappeared=True)
        return block, note if back else None
    if not on_chain:
        if block.state is BlockState.FOUND and tip_height < block.height:
            return block, None  # the node's tip has not reached it yet
        return _move(block, BlockState.ORPHANED, 0, now)
    confirmations = tip_height - block.height + 1
    new = BlockState.MATURE if confirmations >= COINBASE_MATURITY else BlockState.IMMATURE
    if block.state is BlockState.MATURE:
        new = BlockState.MATURE  # maturity is not undone by a shorter tip on the same branch
    if new is block.state:
        return replace(block, confirmations=confirmations), None
    return _move(block, new, confirmations, now)


def mark_credited(block: TrackedBlock, now: float) -> tuple[TrackedBlock, Transition]:
    """MATURE -> CREDITED, once the ledger has made its credits spendable."""
    if block.state is not BlockState.MATURE:
        raise ValueError(f"block {block.hash_hex} is {block.state}, not mature: cannot credit")
    moved, note = _move(block, BlockState.CREDITED, block.confirmations, now)
    assert note is not None
    return moved, note


def _move(
    block: TrackedBlock, new: BlockState, confirmations: int, now: float
) -> tuple[TrackedBlock, Transition | None]:
    moved = replace(block, state=new, confirmations=confirmations, changed_at=now)
    return moved, Transition(block.hash_hex, block.state, new)


def advance_all(
    blocks: list[TrackedBlock], tip_height: int, hash_at: HashAt, now: float
) -> tuple[list[TrackedBlock], list[Transition]]:
    """`advance` every block; the transitions in the blocks' order."""
    out: list[TrackedBlock] = []
    notes: list[Transition] = []
    for block in blocks:
        moved, note = advance(block, tip_height, hash_at, now)
        out.append(moved)
        if note is not None:
            notes.append(note)
    return out, notes
