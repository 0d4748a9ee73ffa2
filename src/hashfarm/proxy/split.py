"""Extranonce splitting and submit-id mapping: the proxy's arithmetic, without I/O.

One upstream session gives the proxy `extranonce1` (E1) and an `extranonce2` space of
`upstream_size` bytes. The proxy hands each downstream machine a unique `k`-byte prefix P
taken from that space; the machine rolls the rest. The coinbase the upstream pool rebuilds
from a forwarded share is

    coinb1 + E1 + P + pad + en2 + coinb2

where `pad` is zero bytes when a later upstream (failover) offers more extranonce2 space than
the downstream size fixed at the first session. The machine is told extranonce1 = P and is
sent coinb1' = coinb1 + E1 (`downstream_coinb1`): the coinbase is byte for byte the one the
upstream rebuilds, and on a failover (a new E1) only the notifies change, so machines keep
mining without reconnecting and without `mining.set_extranonce`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hashfarm.errors import StratumError


class PrefixAllocator:
    """Unique `k`-byte prefixes of the upstream extranonce2 space, one per live machine."""

    def __init__(self, k: int) -> None:
        if not 1 <= k <= 4:
            raise ValueError(f"prefix size must be 1..4 bytes, got {k}")
        self.k = k
        self._next = 0
        self.in_use: set[int] = set()

    @property
    def capacity(self) -> int:
        """How many machines can hold a prefix at once."""
        return 1 << (8 * self.k)

    def claim(self) -> bytes:
        """A prefix no live machine holds; StratumError when all are taken."""
        if len(self.in_use) >= self.capacity:
            raise StratumError(f"all {self.capacity} extranonce prefixes in use")
        while self._next in self.in_use:
            self._next = (self._next + 1) % self.capacity
        value = self._next
        self.in_use.add(value)
        self._next = (value + 1) % self.capacity
        return value.to_bytes(self.k, "big")

    def release(self, prefix: bytes) -> None:
        """The machine left: its prefix may be handed out again."""
        self.in_use.discard(int.from_bytes(prefix, "big"))


@dataclass(frozen=True, slots=True)
class Split:
    """The split of one upstream session's extranonce space for machines of one size."""

    upstream_extranonce1: bytes
    upstream_size: int  # extranonce2 bytes the upstream lets us roll
    k: int  # prefix bytes per machine
    downstream_size: int  # extranonce2 bytes each machine rolls

    @classmethod
    def first(cls, extranonce1: bytes, upstream_size: int, k: int) -> Split:
        """The first session fixes the machines' size: upstream size less the prefix."""
        if upstream_size - k < 1:
            raise StratumError(
                f"upstream extranonce2 of {upstream_size} bytes leaves nothing after a "
                f"{k}-byte prefix"
            )
        return cls(extranonce1, upstream_size, k, upstream_size - k)

    def next_session(self, extranonce1: bytes, upstream_size: int) -> Split:
        """A later upstream session (failover): machines keep their size; more room is padded."""
        if upstream_size < self.k + self.downstream_size:
            raise StratumError(
                f"upstream extranonce2 of {upstream_size} bytes is smaller than the "
                f"{self.k + self.downstream_size} the machines were given"
            )
        return Split(extranonce1, upstream_size, self.k, self.downstream_size)

    @property
    def pad(self) -> bytes:
        """Zero bytes between a machine's prefix and its extranonce2."""
        return bytes(self.upstream_size - self.k - self.downstream_size)

    def full_extranonce2(self, prefix: bytes, extranonce2: bytes) -> bytes:
        """The upstream extranonce2 of a machine's share: prefix + pad + its extranonce2."""
        if len(prefix) != self.k:
            raise StratumError(f"prefix must be {self.k} bytes, got {len(prefix)}")
        if len(extranonce2) != self.downstream_size:
            raise StratumError(
                f"extranonce2 must be {self.downstream_size} bytes, got {len(extranonce2)}"
            )
        return prefix + self.pad + extranonce2


def downstream_coinb1(coinb1: bytes, split: Split) -> bytes:
    """The coinb1 machines are sent: the upstream's coinb1 followed by the upstream E1."""
    return coinb1 + split.upstream_extranonce1


class IdMap:
    """Upstream request ids -> (the machine's connection, its request id, what it was).

    Ids are the proxy's own counter, unique per upstream session; an entry leaves the map
    when the upstream answers (`pop`) or when the session is lost (`drain`).
    """

    def __init__(self, start: int = 1) -> None:
        self._next = start
        self._pending: dict[int, tuple[object, object, object]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, conn: object, downstream_id: object, info: object) -> int:
        """Remember a forwarded submit; return the id to send upstream."""
        upstream_id = self._next
        self._next += 1
        self._pending[upstream_id] = (conn, downstream_id, info)
        return upstream_id

    def pop(self, upstream_id: object) -> tuple[object, object, object] | None:
        """The submit an upstream answer is for, or None (not ours, or answered already)."""
        if type(upstream_id) is not int:
            return None
        return self._pending.pop(upstream_id, None)

    def drain(self) -> list[tuple[object, object, object]]:
        """Every submit still waiting (the session is gone): the caller must answer them."""
        pending = list(self._pending.values())
        self._pending.clear()
        return pending
