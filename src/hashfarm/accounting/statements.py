"""Statements: what each account holds and why, read from the ledger tables (synchronous).

Every function takes a `store.SqlStore` and only reads. Amounts are integer satoshis.

* `account_list`: every miner account with its spendable and immature balances;
* `block_lines`: per block, what the account was credited and why ("41.25% of the window of
  block 912,345"), with the block's state (immature, credited, orphaned: reversed);
* `day_lines`: per UTC day, what was earned (credits posted), reversed (orphans) and made
  spendable (matured).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction

from hashfarm.accounting.ledger import immature_account, miner_account
from hashfarm.accounting.store import SqlStore

_IMMATURE = ":immature"


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """A miner account's balances."""

    account: str
    spendable: int  # miner:<id>: credited from mature blocks (or TIDES held dust)
    immature: int  # miner:<id>:immature: credits of blocks not yet 100 deep


@dataclass(frozen=True, slots=True)
class BlockLine:
    """One block's credit to one account, explained."""

    height: int
    block_hash: str
    scheme: str  # the block's scheme spec ("pplns:fee=100/10000:factor=2/1")
    state: str  # found | immature | credited | orphaned
    sats: int  # credited by the block (reversed when the block is orphaned)
    part: Fraction  # the account's part of the window/round (1 for SOLO's finder)
    explanation: str


@dataclass(frozen=True, slots=True)
class DayLine:
    """One UTC day of an account's ledger."""

    day: str  # YYYY-MM-DD (UTC)
    earned: int  # credits posted for found blocks (immature)
    reversed: int  # credits taken back from orphaned blocks
    matured: int  # credits made spendable


def account_list(sql: SqlStore) -> list[AccountSummary]:
    """Every miner account with a non-zero balance, by account id."""
    spendable: dict[str, int] = {}
    immature: dict[str, int] = {}
    for name, value in sql.balances("miner:").items():
        ident = name.removeprefix("miner:")
        if ident.endswith(_IMMATURE):
            immature[ident.removesuffix(_IMMATURE)] = value
        else:
            spendable[ident] = value
    return [
        AccountSummary(a, spendable.get(a, 0), immature.get(a, 0))
        for a in sorted(spendable.keys() | immature.keys())
    ]


def summary(sql: SqlStore, account: str) -> AccountSummary:
    """One account's balances (zeros when unknown)."""
    return AccountSummary(
        account, sql.balance(miner_account(account)), sql.balance(immature_account(account))
    )


def explain(scheme: str, height: int, part: Fraction, total: Fraction) -> str:
    """ "41.25% of the window of block 912,345" (the round for PROP; SOLO: the finder)."""
    name = scheme.split(":", 1)[0]
    if name == "solo":
        return f"finder of block {height:,} (solo)"
    if total == 0:
        return f"finder of block {height:,} (no recorded work in its {name} window)"
    what = "round" if name == "prop" else "window"
    return f"{float(part * 100):.4g}% of the {what} of block {height:,} ({name})"


def block_lines(sql: SqlStore, account: str) -> list[BlockLine]:
    """Every block that credited `account`, newest first."""
    rows = sql.q(
        "SELECT a.height, a.hash, a.scheme, a.state, p.sats, p.weight, w.window_total "
        "FROM acct_block_parts p JOIN acct_block_windows w ON w.block_hash = p.block_hash "
        "JOIN acct_blocks a ON a.hash = p.block_hash WHERE p.account = ? "
        "ORDER BY a.height DESC, a.hash",
        (account,),
    )
    out: list[BlockLine] = []
    for height, hash_hex, scheme, state, sats, weight, total_text in rows:
        total = Fraction(str(total_text))
        part = Fraction(str(weight)) / total if total else Fraction(1)
        out.append(
            BlockLine(
                int(height),
                str(hash_hex),
                str(scheme),
                str(state),
                int(sats),
                part,
                explain(str(scheme), int(height), part, total),
            )
        )
    return out


def day_lines(sql: SqlStore, account: str) -> list[DayLine]:
    """The account's ledger per UTC day, oldest first."""
    rows = sql.q(
        "SELECT t.time, t.kind, p.account, p.amount FROM acct_postings p "
        "JOIN acct_transactions t ON t.key = p.txn_key WHERE p.account IN (?, ?) "
        "ORDER BY t.time",
        (miner_account(account), immature_account(account)),
    )
    days: dict[str, list[int]] = {}
    for when, kind, name, amount in rows:
        day = dt.datetime.fromtimestamp(float(when), dt.UTC).date().isoformat()
        line = days.setdefault(day, [0, 0, 0])
        value = int(amount)
        if kind == "found":
            line[0] += value
        elif kind == "reverse":
            line[1] -= value
        elif kind == "mature" and not str(name).endswith(_IMMATURE):
            line[2] += value
    return [DayLine(d, e, r, m) for d, (e, r, m) in sorted(days.items())]
