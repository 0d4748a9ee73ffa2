"""Which block candidates go to the node, and when: the submission policy, sans I/O.

On regtest, and on testnet4 whenever its 20-minute rule allows difficulty-1 blocks, nearly
every share is a block. Sending each one would queue thousands of `submitblock` calls at a
node that handles them one at a time, so the real next block waits behind stale siblings.
The policy, per previous-block hash (a "slot", one per height of the chain we build on):

* the first candidate for a previous block is sent at once; while it is with the node, later
  ones wait in a bounded queue (`per_slot`, and `total` across slots);
* once the node takes one (or says it has it), the waiting siblings are dropped; if it
  rejects one, the next waiting one goes;
* when the tip moves on, waiting candidates for older previous blocks are dropped, and a
  candidate arriving for an older previous block is sent only if none was ever sent for it,
  one such at a time (it can only be orphaned, so it never takes more of the node);
* when the node is away, nothing is sent but one probe at a time (the newest tip's first):
  the caller's single retry loop drives `probe()`; a candidate waits at most `patience`.

Every decision returns the candidates it dropped with the reason, so the caller records each
one honestly (its share was credited as a share anyway). Time is passed in (`now`,
monotonic seconds); nothing here awaits or logs.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

C = TypeVar("C")

SIBLING_ACCEPTED = "not submitted: a sibling at this height was accepted"
TIP_MOVED = "not submitted: the tip moved on past its previous block"
QUEUE_FULL = "not submitted: the block-candidate queue was full"
NODE_AWAY = "not submitted: the node stayed unreachable past blocks.submit_patience"
STOPPED = "not submitted: the pool stopped first"
UNANSWERED = "unknown: the pool stopped before the node answered submitblock"

SLOTS_KEPT = 64  # previous blocks remembered (sent/accepted): far more than jobs_kept reaches


class Verdict(Enum):
    """The node's answer to one `submitblock`, sorted for the policy."""

    TAKEN = "taken"  # null, duplicate or inconclusive: the node holds the block
    REJECTED = "rejected"  # the node refused this block; a sibling may still be good
    AWAY = "away"  # no answer: the node is unreachable


@dataclass(frozen=True, slots=True)
class Dropped(Generic[C]):
    """A candidate that will not be sent, and why (one of the reasons above)."""

    item: C
    reason: str


@dataclass(slots=True)
class Pending(Generic[C]):
    """One candidate in the policy: the caller's item, its previous block, when it came."""

    item: C
    prev: bytes  # previous-block hash, internal order
    arrived: float  # monotonic seconds


@dataclass(slots=True)
class _Slot(Generic[C]):
    in_flight: Pending[C] | None = None
    waiting: deque[Pending[C]] = field(default_factory=deque)
    sent: int = 0  # submitblock calls started for this previous block
    settled: bool = False  # the node took a block on it: siblings are pointless


class CandidateQueue(Generic[C]):
    """The per-previous-block submission policy (see the module docstring)."""

    def __init__(self, per_slot: int, total: int, patience: float) -> None:
        self.per_slot = per_slot
        self.total = total
        self.patience = patience
        self.tip: bytes | None = None
        self.away_since: float | None = None  # monotonic: the node stopped answering
        self._slots: OrderedDict[bytes, _Slot[C]] = OrderedDict()

    # -- views ---------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Candidates queued (not with the node)."""
        return sum(len(s.waiting) for s in self._slots.values())

    @property
    def in_flight(self) -> int:
        """Candidates with the node now."""
        return sum(s.in_flight is not None for s in self._slots.values())

    def sent(self, prev: bytes) -> int:
        """`submitblock` calls started for candidates on `prev`."""
        slot = self._slots.get(prev)
        return 0 if slot is None else slot.sent

    # -- events --------------------------------------------------------------------------

    def set_tip(self, tip: bytes | None) -> list[Dropped[C]]:
        """The pool now builds on `tip`: waiting candidates on older blocks are dropped."""
        if tip is None or tip == self.tip:
            return []
        self.tip = tip
        dropped: list[Dropped[C]] = []
        for prev, slot in self._slots.items():
            if prev != tip:
                reason = SIBLING_ACCEPTED if slot.settled else TIP_MOVED
                dropped += [Dropped(p.item, reason) for p in slot.waiting]
                slot.waiting.clear()
        return dropped

    def offer(self, item: C, prev: bytes, now: float) -> Pending[C] | Dropped[C] | None:
        """A new candidate on `prev`: its `Pending` to send now, `Dropped` with the reason,
        or None when it waits in the queue (a later `done`, `ready` or `probe` hands it out)."""
        slot = self._slot(prev)
        if slot.settled:
            return Dropped(item, SIBLING_ACCEPTED)
        pending = Pending(item, prev, now)
        if prev != self.tip and self.tip is not None:
            stale_busy = any(s.in_flight and p != self.tip for p, s in self._slots.items())
            if slot.sent or slot.waiting or stale_busy or self.away_since is not None:
                return Dropped(item, TIP_MOVED)
            return self._start(slot, pending)
        if slot.in_flight is None and self.away_since is None:
            return self._start(slot, pending)
        if len(slot.waiting) >= self.per_slot or self.waiting >= self.total:
            return Dropped(item, QUEUE_FULL)
        slot.waiting.append(pending)
        return None

    def done(
        self, pending: Pending[C], verdict: Verdict, now: float
    ) -> tuple[list[Pending[C]], list[Dropped[C]]]:
        """The node answered `pending`: (candidates to send now, candidates dropped)."""
        slot = self._slot(pending.prev)
        if slot.in_flight is pending:
            slot.in_flight = None
        if verdict is Verdict.AWAY:
            slot.waiting.appendleft(pending)  # first in line again when the node is back
            if self.away_since is None:
                self.away_since = now
            return [], self.expire(now)
        self.away_since = None
        dropped: list[Dropped[C]] = []
        if verdict is Verdict.TAKEN:
            slot.settled = True
            dropped = [Dropped(p.item, SIBLING_ACCEPTED) for p in slot.waiting]
            slot.waiting.clear()
        return self.ready(), dropped

    def ready(self) -> list[Pending[C]]:
        """Candidates that may go now (at most one per previous block, the tip's first)."""
        if self.away_since is not None:
            return []
        out: list[Pending[C]] = []
        for prev in self._by_priority():
            slot = self._slots[prev]
            if slot.in_flight is None and slot.waiting:
                out.append(self._take(slot))
        return out

    def probe(self, now: float) -> tuple[Pending[C] | None, list[Dropped[C]]]:
        """While the node is away: the one candidate to try next (newest tip first)."""
        dropped = self.expire(now)
        if any(s.in_flight for s in self._slots.values()):
            return None, dropped  # one at a time: the one already out answers for the node
        for prev in self._by_priority():
            slot = self._slots[prev]
            if slot.waiting:
                return self._take(slot), dropped
        self.away_since = None  # nothing left to deliver: the next candidate just tries
        return None, dropped

    def expire(self, now: float) -> list[Dropped[C]]:
        """Drop waiting candidates older than `patience` (the node stayed away too long)."""
        dropped: list[Dropped[C]] = []
        for slot in self._slots.values():
            while slot.waiting and now - slot.waiting[0].arrived > self.patience:
                dropped.append(Dropped(slot.waiting.popleft().item, NODE_AWAY))
        return dropped

    def drain(self) -> list[Dropped[C]]:
        """Everything still waiting (STOPPED) or with the node (UNANSWERED), at stop."""
        dropped: list[Dropped[C]] = []
        for slot in self._slots.values():
            if slot.in_flight is not None:
                dropped.append(Dropped(slot.in_flight.item, UNANSWERED))
                slot.in_flight = None
            dropped += [Dropped(p.item, STOPPED) for p in slot.waiting]
            slot.waiting.clear()
        return dropped

    # -- internals -----------------------------------------------------------------------

    def _slot(self, prev: bytes) -> _Slot[C]:
        slot = self._slots.get(prev)
        if slot is None:
            slot = self._slots[prev] = _Slot()
            self._forget_old()
        return slot

    def _forget_old(self) -> None:
        """Keep at most SLOTS_KEPT previous blocks; only idle ones are forgotten."""
        excess = len(self._slots) - SLOTS_KEPT
        for prev in list(self._slots):
            if excess <= 0:
                break
            slot = self._slots[prev]
            if slot.in_flight is None and not slot.waiting and prev != self.tip:
                del self._slots[prev]
                excess -= 1

    def _by_priority(self) -> list[bytes]:
        """The tip first, then newest slot first (a later slot was made by a later job)."""
        order = list(reversed(self._slots))
        if self.tip in self._slots:
            order.remove(self.tip)  # type: ignore[arg-type]
            order.insert(0, self.tip)  # type: ignore[arg-type]
        return order

    def _start(self, slot: _Slot[C], pending: Pending[C]) -> Pending[C]:
        slot.in_flight = pending
        slot.sent += 1
        return pending

    def _take(self, slot: _Slot[C]) -> Pending[C]:
        pending = slot.waiting.popleft()
        self._start(slot, pending)
        return pending
