"""Share windows: which work a block pays for, and with what weight (reference version).

PPLNS and TIDES pay the newest shares whose difficulties add up to a window of `size`
difficulty units, counted back from the share that found the block (PPLNS) or from the newest
share when the job is built (TIDES). The window spans blocks: a share stays in it until newer
work pushes it out, whatever blocks were found meanwhile.

**Edge rule.** Walking from the newest share back, the share that crosses the window's edge
(the one after which the running total would exceed `size`) is counted only for the part
inside the window, `size - (total of the newer shares)`; older shares count nothing. This is
Miningcore's PPLNS rule (its running score is capped at the window factor, the crossing share
scored for the remainder). When the shares run out before the window is full, the window is
what there is: the whole reward is split over the work present (Miningcore instead leaves the
unfilled part with the operator; hashfarm pays every satoshi of the miners' part).

PROP pays the round: every share after the previous found block up to the finding share.

This module is the plain, obviously-exact reference (one `Fraction` per share); `fastwindow`
computes the same result for a million shares with numpy and is checked against this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from hashfarm.accounting.inputs import ShareLike, weight


@dataclass(frozen=True, slots=True)
class Window:
    """The work one block pays for: exact weight per account, and which shares it covers."""

    weights: dict[str, Fraction]  # account -> counted difficulty (exact)
    size: Fraction  # the window asked for (difficulty units); the round total for PROP
    total: Fraction  # counted difficulty: == size unless the shares ran out
    oldest_share_id: int | None  # oldest share counted, wholly or partly (None: empty)
    newest_share_id: int | None  # newest share counted
    edge_fraction: Fraction  # part of the oldest share counted (1 when it counts whole)

    @property
    def full(self) -> bool:
        """True when the work present filled the window."""
        return self.total == self.size

    def explain(self, account: str) -> Fraction:
        """The account's part of the window (0..1): "your 0.8% of the window"."""
        if self.total == 0:
            return Fraction(0)
        return self.weights.get(account, Fraction(0)) / self.total


EMPTY = Window({}, Fraction(0), Fraction(0), None, None, Fraction(1))


def window_size(factor: Fraction | int, network_difficulty: float) -> Fraction:
    """A window of `factor` times the network difficulty, exactly (TIDES: factor 8)."""
    f = Fraction(factor)
    if f <= 0:
        raise ValueError(f"window factor {factor} must be positive")
    return f * weight(network_difficulty)


def pplns_window(shares: Sequence[ShareLike], size: Fraction) -> Window:
    """The newest shares (oldest first in `shares`) that fill `size`; see the edge rule."""
    if size <= 0:
        raise ValueError(f"window size {size} must be positive")
    weights: dict[str, Fraction] = {}
    remaining = size
    newest = shares[-1].share_id if shares else None
    oldest: int | None = None
    edge = Fraction(1)
    for share in reversed(shares):
        w = weight(share.difficulty)
        oldest = share.share_id
        if w >= remaining:
            edge = remaining / w
            weights[share.account] = weights.get(share.account, Fraction(0)) + remaining
            remaining = Fraction(0)
            break
        weights[share.account] = weights.get(share.account, Fraction(0)) + w
        remaining -= w
    return Window(weights, size, size - remaining, oldest, newest, edge)


def prop_round(shares: Iterable[ShareLike]) -> Window:
    """Every share of the round, each counted whole (PROP)."""
    weights: dict[str, Fraction] = {}
    ids: list[int] = []
    for share in shares:
        weights[share.account] = weights.get(share.account, Fraction(0)) + weight(share.difficulty)
        ids.append(share.share_id)
    total = sum(weights.values(), Fraction(0))
    if not ids:
        return EMPTY
    return Window(weights, total, total, min(ids), max(ids), Fraction(1))
