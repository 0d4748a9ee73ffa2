"""Scheme switches and the epochs they cut the share ledger into; crediting a whole history.

**Boundary rule.** A switch requested at time t takes effect at the first block the pool finds
after t (block time > t). That block, the *boundary block*, is still credited under the old
scheme, and every share up to and including its finding share belongs to the old scheme;
shares recorded after it belong to the new one. Several switches requested before one block:
the last one wins (the others never took effect). So:

* no share belongs to two schemes: an epoch is a range of share ids (after, until];
* no share is left without a scheme: epochs tile the ledger from share id 0;
* a PPLNS/TIDES window never reaches back across a boundary (the new epoch's first blocks
  pay the work of that epoch only; a window not yet full pays the work present, see
  `window`); PROP's first round starts at the boundary; PPS prices each share of its
  epochs once (`PpsAccrual` refuses a second pricing).

Why a found block and not the switch time itself: at a block the old scheme's books are
closed naturally (a PROP round ends, a PPLNS window's last payment is made), so no work done
under the old terms is paid by the new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hashfarm.accounting.inputs import FoundBlock, JobTerms, ShareLike
from hashfarm.accounting.schemes import (
    BlockCredit,
    Pps,
    PpsAccrual,
    Prop,
    Scheme,
    credit_block,
    share_value,
)


@dataclass(frozen=True, slots=True)
class SchemeSwitch:
    """An operator's request to change scheme (takes effect at the next found block)."""

    requested_at: float  # UNIX seconds
    scheme: Scheme


@dataclass(frozen=True, slots=True)
class Epoch:
    """Shares with after < share_id <= until (until None: still open) use `scheme`."""

    scheme: Scheme
    after: int  # exclusive lower bound on share ids (-1 for the first epoch)
    until: int | None  # inclusive upper bound: the boundary block's finding share
    boundary_block: str | None  # hash of the block that closed this epoch

    def holds(self, share_id: int) -> bool:
        """True when the share belongs to this epoch."""
        return share_id > self.after and (self.until is None or share_id <= self.until)


def plan_epochs(
    initial: Scheme, switches: Sequence[SchemeSwitch], blocks: Sequence[FoundBlock]
) -> list[Epoch]:
    """Cut the ledger into epochs by the boundary rule (blocks in any order)."""
    pending = sorted(switches, key=lambda s: s.requested_at)
    epochs: list[Epoch] = []
    current, after, i = initial, -1, 0
    for block in sorted(blocks, key=lambda b: b.found_share_id):
        target: Scheme | None = None
        while i < len(pending) and pending[i].requested_at < block.time:
            target = pending[i].scheme  # the last request before this block wins
            i += 1
        if target is not None and target != current:
            epochs.append(Epoch(current, after, block.found_share_id, block.hash_hex))
            current, after = target, block.found_share_id
    epochs.append(Epoch(current, after, None, None))
    return epochs


def epoch_of(share_id: int, epochs: Sequence[Epoch]) -> Epoch:
    """The epoch a share belongs to (exactly one)."""
    for epoch in epochs:
        if epoch.holds(share_id):
            return epoch
    raise ValueError(f"share id {share_id} is in no epoch")


@dataclass
class Settlement:
    """Everything a share/block history credits, per block and per PPS share."""

    epochs: list[Epoch]
    blocks: list[BlockCredit] = field(default_factory=list)
    pps_credits: dict[str, int] = field(default_factory=dict)
    pps: PpsAccrual = field(default_factory=PpsAccrual)


def settle_history(
    initial: Scheme,
    switches: Sequence[SchemeSwitch],
    shares: Sequence[ShareLike],
    blocks: Sequence[FoundBlock],
    terms: Callable[[ShareLike], JobTerms],
) -> Settlement:
    """Credit every block and price every PPS share of a history (reference, in memory).

    `shares` are accepted shares in share-id order; `terms(share)` gives the job terms PPS
    prices a share at. TIDES blocks are credited over the window ending at their finding
    share here (the job snapshot is the caller's to pass when it differs).
    """
    epochs = plan_epochs(initial, switches, blocks)
    result = Settlement(epochs)
    ordered = sorted(blocks, key=lambda b: b.found_share_id)
    previous_found: dict[int, int] = {}  # epoch index -> last found share id in it
    for block in ordered:
        idx = next(k for k, e in enumerate(epochs) if e.holds(block.found_share_id))
        epoch = epochs[idx]
        # PROP's round starts after the epoch's previous block; windows may reach the epoch start
        start = epoch.after
        if isinstance(epoch.scheme, Prop):
            start = previous_found.get(idx, epoch.after)
        cut = [s for s in shares if start < s.share_id <= block.found_share_id]
        result.blocks.append(credit_block(epoch.scheme, block, cut))
        previous_found[idx] = block.found_share_id
    for share in shares:
        scheme = epoch_of(share.share_id, epochs).scheme
        if isinstance(scheme, Pps):
            result.pps.add(share, share_value(share.difficulty, terms(share), scheme))
    result.pps_credits = result.pps.settle()
    return result
