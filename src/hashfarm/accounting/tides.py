"""TIDES coinbase outputs: the miners are paid in the block itself (non-custodial).

When a job is built, the coinbase value (subsidy + template fees) less the pool fee is split
exactly over the TIDES window at that moment (8 x network difficulty, `window`), and each
miner's part becomes an output of the coinbase. Two limits apply, each with a stated rule:

* **Dust.** A payment below `dust_sats` is not put in the coinbase (OCEAN pays in the
  generation transaction only from 1,048,576 sats). The amount is *held*: it stays in the
  pool's own output and is recorded as the miner's held balance (`miner:<account>` in the
  ledger), and it is added to the miner's next coinbase payment, which is made once held
  balance + that block's earning reach `dust_sats`. Only a held balance from blocks already
  mature is paid this way (see `plan_coinbase`'s `held`), so an orphaned earlier block never
  funds a later output. The miner's shares are untouched: a share leaves a TIDES window only
  when newer work pushes it out, never because it was paid.
* **Output count.** At most `max_outputs` outputs in all, one of them the pool's. Payable
  miners are ranked by amount due (largest first, ties by ascending account id); the first
  `max_outputs - 1` get an output and the rest are held exactly like dust.

The pool's output is what is left: the fee, plus this block's held earnings, less the held
balances paid out. If that would be negative (held balances paid exceed what this block
holds back), the lowest-ranked payees are moved back to held, one at a time, until it is not.
So: sum(outputs) + pool output == coinbase value, always, in whole satoshis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hashfarm.accounting.money import split_exact
from hashfarm.accounting.schemes import Tides


@dataclass(frozen=True, slots=True)
class CoinbasePlan:
    """The outputs of one TIDES job's coinbase and what the ledger records if it is found."""

    value: int  # coinbase value: subsidy + template fees
    fee: int  # pool fee (rounded down)
    earnings: dict[str, int]  # this block's part per account: sums to value - fee
    outputs: tuple[tuple[str, int], ...]  # (account, sats), largest first, ties by account
    pool_sats: int  # the pool's own output
    held_used: dict[str, int]  # held balance paid out in this coinbase, per account
    held_before: dict[str, int]  # held balances the plan started from

    def __post_init__(self) -> None:
        if sum(v for _, v in self.outputs) + self.pool_sats != self.value or self.pool_sats < 0:
            raise AssertionError("coinbase outputs do not add up to its value")

    @property
    def held_after(self) -> dict[str, int]:
        """Held balance per account once this block is found (earning + held, unless paid)."""
        paid = {a for a, _ in self.outputs}
        out: dict[str, int] = {}
        for source in (self.earnings, self.held_before):
            for account, sats in source.items():
                if account not in paid and sats:
                    out[account] = out.get(account, 0) + sats
        return out


def plan_coinbase(
    value: int,
    weights: Mapping[str, Fraction | int],
    scheme: Tides,
    held: Mapping[str, int] | None = None,
) -> CoinbasePlan:
    """Outputs for a coinbase worth `value` over the window `weights` (see module rules).

    `held` is each account's held balance from mature blocks (ledger `miner:<account>`).
    An empty window pays nothing out: the whole value is the pool's output and its fee.
    """
    held = dict(held or {})
    if any(v < 0 for v in held.values()):
        raise ValueError("a held balance is negative")
    if any(weights.values()):
        fee = scheme.fee.of(value)
        earnings = split_exact(value - fee, weights)
    else:  # no work in the window (an empty ledger): nobody earned, the pool keeps it all
        fee, earnings = value, {}
    due = dict(earnings) if held else earnings  # read only from here on
    for account, sats in held.items():
        due[account] = due.get(account, 0) + sats
    payees = top_payees(due, scheme.dust_sats, scheme.max_outputs - 1)
    pool = value - sum(due[a] for a in payees)
    while pool < 0:  # held balances paid out exceed what this block holds back
        pool += due[payees.pop()]
    return CoinbasePlan(
        value=value,
        fee=fee,
        earnings=earnings,
        outputs=tuple((a, due[a]) for a in payees),
        pool_sats=pool,
        held_used={a: held[a] for a in payees if held.get(a, 0) > 0},
        held_before=held,
    )


def top_payees(due: Mapping[str, int], dust: int, limit: int) -> list[str]:
    """Up to `limit` accounts due at least `dust`: largest first, ties by ascending account.

    Same answer as sorting every (-amount, account) pair; for thousands of accounts numpy
    partitions on the amounts (satoshis fit in int64) and only the ties at the cut and the
    chosen few are sorted in Python.
    """
    names = list(due)
    amounts = np.fromiter(due.values(), dtype=np.int64, count=len(names))
    idx = np.flatnonzero(amounts >= dust)
    if limit <= 0 or idx.size == 0:
        return []
    if idx.size > limit:
        sub = amounts[idx]
        cut = int(np.partition(sub, idx.size - limit)[idx.size - limit])
        above = idx[sub > cut].tolist()
        at_cut = sorted(names[i] for i in idx[sub == cut].tolist())[: limit - len(above)]
        chosen = [(-int(amounts[i]), names[i]) for i in above] + [(-cut, a) for a in at_cut]
    else:
        chosen = [(-int(amounts[i]), names[i]) for i in idx.tolist()]
    return [a for _, a in sorted(chosen)]
