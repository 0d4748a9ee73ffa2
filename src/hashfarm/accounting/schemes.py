"""The payout schemes, and what each one credits when the pool finds a block.

Every scheme takes a pool fee (`money.Fee`, rounded down). What a block credits:

* **SOLO**: the finder's account gets `reward - fee`.
* **PROP**: `reward - fee` split over the round (shares after the previous found block up to
  the finding share), each share weighted by its difficulty.
* **PPLNS**: `reward - fee` split over the window of `factor x network difficulty` difficulty
  units ending at the finding share (spanning blocks; edge rule in `window`).
* **TIDES**: as PPLNS with `factor = 8` (OCEAN's window), the window ending at the newest share
  when the job's coinbase was built; the money goes out in the coinbase (`tides`).
* **PPS / FPPS**: the block's whole reward goes to the pool's reserve; miners were already
  paid per share (`share_value`), whether or not the pool finds blocks.

Splits use `money.split_exact`, so a block's credits sum to `reward - fee` exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from hashfarm.accounting.inputs import FoundBlock, JobTerms, ShareLike, weight
from hashfarm.accounting.money import NO_FEE, Fee, split_exact
from hashfarm.accounting.window import EMPTY, Window, pplns_window, prop_round, window_size

SchemeName = Literal["solo", "prop", "pplns", "tides", "pps", "fpps"]

TIDES_FACTOR = 8  # OCEAN's TIDES window: 8 x network difficulty
PPLNS_DEFAULT_FACTOR = 2  # Miningcore's PPLNS default `factor` (window in network difficulties)


@dataclass(frozen=True, slots=True)
class Solo:
    """The finder takes the block, less the fee."""

    fee: Fee = NO_FEE
    name: SchemeName = field(default="solo", init=False)


@dataclass(frozen=True, slots=True)
class Prop:
    """Proportional to the round's shares."""

    fee: Fee = NO_FEE
    name: SchemeName = field(default="prop", init=False)


@dataclass(frozen=True, slots=True)
class Pplns:
    """Pay per last N difficulty units, N = factor x network difficulty of the block."""

    fee: Fee = NO_FEE
    factor: Fraction = Fraction(PPLNS_DEFAULT_FACTOR)
    name: SchemeName = field(default="pplns", init=False)


@dataclass(frozen=True, slots=True)
class Tides:
    """Non-custodial PPLNS paid in the coinbase (OCEAN's TIDES); see `tides` for outputs."""

    fee: Fee = NO_FEE
    factor: Fraction = Fraction(TIDES_FACTOR)
    dust_sats: int = 1_048_576  # OCEAN's threshold for a coinbase payout (2**20 sats)
    max_outputs: int = 500  # coinbase outputs in all, the pool's own output included
    name: SchemeName = field(default="tides", init=False)

    def __post_init__(self) -> None:
        if self.max_outputs < 1 or self.dust_sats < 1:
            raise ValueError("TIDES needs max_outputs >= 1 and dust_sats >= 1")


@dataclass(frozen=True, slots=True)
class Pps:
    """Pay per share at the job's subsidy (`full=False`) or subsidy + fees (FPPS)."""

    fee: Fee = NO_FEE
    full: bool = False

    @property
    def name(self) -> SchemeName:
        """'fpps' when template fees are paid too."""
        return "fpps" if self.full else "pps"


Scheme = Solo | Prop | Pplns | Tides | Pps


@dataclass(frozen=True, slots=True)
class BlockCredit:
    """What one found block credits: fee + sum(credits) + reserve == reward, exactly."""

    block_hash: str
    scheme: SchemeName
    reward: int
    fee: int
    credits: dict[str, int]  # account -> sats
    reserve: int  # sats to the pool's PPS/FPPS reserve
    window: Window = EMPTY  # the work paid for (explains each account's part)

    def __post_init__(self) -> None:
        if self.fee + sum(self.credits.values()) + self.reserve != self.reward:
            raise AssertionError(f"block {self.block_hash}: credits do not add up to the reward")
        if any(v < 0 for v in self.credits.values()):
            raise AssertionError(f"block {self.block_hash}: a negative credit")


def credit_weights(
    block: FoundBlock, scheme: SchemeName, fee: Fee, weights: Mapping[str, Fraction | int]
) -> BlockCredit:
    """Split the block's reward less the fee over `weights`; no work: all to the finder."""
    taken = fee.of(block.reward_sats)
    miners = block.reward_sats - taken
    if not any(weights.values()):
        # a block with no recorded work in its window (possible only right after a switch
        # or on an empty ledger) is the finder's: the work that found it is the only work
        weights = {block.finder_account: 1}
    return BlockCredit(
        block.hash_hex, scheme, block.reward_sats, taken, split_exact(miners, weights), 0
    )


def credit_block(scheme: Scheme, block: FoundBlock, shares: Sequence[ShareLike]) -> BlockCredit:
    """What `block` credits under `scheme`, given the shares that may count (oldest first).

    `shares` are the block's candidates, already cut by the caller: the scheme epoch's shares
    up to the finding share (PPLNS), up to the job's coinbase snapshot (TIDES), or the round
    since the previous found block (PROP). SOLO and PPS/FPPS ignore them.
    """
    if isinstance(scheme, Solo):
        return credit_weights(block, "solo", scheme.fee, {block.finder_account: 1})
    if isinstance(scheme, Pps):
        return BlockCredit(block.hash_hex, scheme.name, block.reward_sats, 0, {}, block.reward_sats)
    if isinstance(scheme, Prop):
        window = prop_round(shares)
    else:
        window = pplns_window(shares, window_size(scheme.factor, block.network_difficulty))
    credit = credit_weights(block, scheme.name, scheme.fee, window.weights)
    return BlockCredit(
        credit.block_hash, credit.scheme, credit.reward, credit.fee, credit.credits, 0, window
    )


def share_value(difficulty: float, terms: JobTerms, scheme: Pps) -> Fraction:
    """A share's PPS/FPPS value in exact satoshis, net of the fee.

    PPS: `d / D x subsidy x (1 - fee)`; FPPS: `d / D x (subsidy + fees) x (1 - fee)`, where d
    is the share difficulty and D, subsidy and fees are those of the job it answered (its
    template's fees for FPPS: what that block would actually have paid).
    """
    base = terms.subsidy_sats + (terms.fees_sats if scheme.full else 0)
    return weight(difficulty) / weight(terms.network_difficulty) * base * (1 - scheme.fee.rate)


class PpsAccrual:
    """Exact PPS/FPPS amounts owed per account, credited in whole satoshis without drift.

    Rule: after each settlement an account has been credited exactly
    `floor(sum of its share values so far)`; the fraction of a satoshi still owed waits for
    the next settlement. So nothing is lost to rounding, nothing is paid twice, and the pool
    never credits more than the exact value.
    """

    def __init__(self) -> None:
        self._owed: dict[str, Fraction] = {}
        self._credited: dict[str, int] = {}
        self._paid_ids: set[int] = set()

    def add(self, share: ShareLike, value: Fraction) -> None:
        """Count one share's value; a share id seen before is refused (paid once)."""
        if share.share_id in self._paid_ids:
            raise ValueError(f"share {share.share_id} was already priced")
        self._paid_ids.add(share.share_id)
        self._owed[share.account] = self._owed.get(share.account, Fraction(0)) + value

    def settle(self) -> dict[str, int]:
        """The whole satoshis to credit now per account (only non-zero entries)."""
        out: dict[str, int] = {}
        for account, owed in sorted(self._owed.items()):
            due = owed.__floor__() - self._credited.get(account, 0)
            if due > 0:
                out[account] = due
                self._credited[account] = self._credited.get(account, 0) + due
        return out

    def owed(self, account: str) -> Fraction:
        """The exact value of the account's priced shares so far."""
        return self._owed.get(account, Fraction(0))

    @property
    def share_ids(self) -> frozenset[int]:
        """Every share priced so far."""
        return frozenset(self._paid_ids)
