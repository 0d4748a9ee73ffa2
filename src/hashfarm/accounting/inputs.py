"""What accounting reads: shares, found blocks and the terms of the job a share answered.

accounting sits beside the pool (layer 4), so it declares the narrow shapes it needs instead
of importing `hashfarm.pool`. `ShareLike` is satisfied by a row of the pool's `shares` table
(its `id` is the share id, its `difficulty` the share target difficulty of the job) and by the
`Share` dataclass below; cli maps the pool's `ShareRecord`/`BlockRecord` onto these.

Only accepted shares are money: a caller passes accepted shares only. A share's weight is its
target difficulty (`ShareRecord.difficulty`, what the pool asked for), not the luckier
difficulty its hash happened to reach, as every PPLNS/PPS pool counts work. Floats from the
ledger are converted to exact binary fractions (`Fraction(float)` is exact), never rounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol


class ShareLike(Protocol):
    """One accepted share as accounting needs it (a `shares` row or a `Share`)."""

    @property
    def share_id(self) -> int:
        """Ledger order: a larger id was recorded later (the `shares.id` column)."""
        ...

    @property
    def account(self) -> str:
        """Who is paid for it (`shares.account`)."""
        ...

    @property
    def difficulty(self) -> float:
        """The share target difficulty of its job (`shares.difficulty`)."""
        ...

    @property
    def time(self) -> float:
        """UNIX seconds the pool judged it (`shares.time`)."""
        ...

    @property
    def height(self) -> int:
        """Height of the block its job would have made (`shares.height`)."""
        ...


@dataclass(frozen=True, slots=True)
class Share:
    """A concrete `ShareLike` (tests, the benchmark, rows read back from SQL)."""

    share_id: int
    account: str
    difficulty: float
    time: float
    height: int


# The accepted shares of a share-id range, oldest first, from the pool's `shares` table
# (pool/storage/migrations.py, version 1), in the order `Share.from_row` reads them. Written
# with `?`; PostgreSQL callers replace them with `%s`.
ACCEPTED_SHARES_SQL = (
    "SELECT id, account, difficulty, time, height FROM shares "
    "WHERE accepted AND id > ? AND id <= ? ORDER BY id"
)


def share_from_row(row: tuple[object, ...]) -> Share:
    """A `Share` from a row of `ACCEPTED_SHARES_SQL` (values checked, not trusted)."""
    share_id, account, difficulty, time, height = row
    if not isinstance(share_id, int) or not isinstance(height, int):
        raise ValueError(f"share row {row!r}: id and height must be integers")
    if not isinstance(account, str) or not isinstance(difficulty, float | int):
        raise ValueError(f"share row {row!r}: bad account or difficulty")
    if not isinstance(time, float | int):
        raise ValueError(f"share row {row!r}: bad time")
    weight(float(difficulty))
    return Share(share_id, account, float(difficulty), float(time), height)


def weight(difficulty: float) -> Fraction:
    """A share's exact weight: its difficulty as the exact binary fraction it is."""
    if not math.isfinite(difficulty) or difficulty <= 0:
        raise ValueError(f"share difficulty {difficulty!r} is not a positive finite number")
    return Fraction(difficulty)


@dataclass(frozen=True, slots=True)
class JobTerms:
    """What a job was worth, fixed when its template was built (PPS/FPPS price shares by it)."""

    network_difficulty: float  # difficulty of the block the job would have made
    subsidy_sats: int  # block subsidy at that height
    fees_sats: int = 0  # transaction fees of the template the job was cut from

    def __post_init__(self) -> None:
        weight(self.network_difficulty)  # same validity rule as a share difficulty
        if self.subsidy_sats < 0 or self.fees_sats < 0:
            raise ValueError("subsidy and fees must not be negative")


@dataclass(frozen=True, slots=True)
class FoundBlock:
    """A block the pool found, as accounting credits it."""

    hash_hex: str  # display-order block hash (`blocks.hash`)
    height: int
    reward_sats: int  # coinbase value: subsidy + fees (`blocks.reward_sats`)
    finder_account: str  # account whose share made the block
    found_share_id: int  # id of that share: the round/window ends here, inclusive
    time: float  # UNIX seconds the block was found
    network_difficulty: float  # difficulty of this block (sizes PPLNS/TIDES windows)

    def __post_init__(self) -> None:
        if self.reward_sats < 0:
            raise ValueError(f"block {self.hash_hex}: negative reward")
        weight(self.network_difficulty)
