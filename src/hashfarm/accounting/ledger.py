"""The double-entry ledger: every satoshi's movement as balanced postings (Beancount-style).

A `Transaction` is a set of `Posting`s whose amounts sum to zero per currency, checked when it
is built, so money is never created or lost by the books, only moved. The `Ledger` applies
transactions in memory (the SQL tables in `schema` store the same rows) and refuses any that
would break an invariant:

* a miner's balances (`miner:<id>` spendable/held, `miner:<id>:immature`) never go negative;
* a transaction key is applied once: posting it again is a no-op, a different transaction
  under a used key is refused (idempotency: a crash and a retry never double-credit);
* a block's credits are reversed at most once, only while still immature (a reorg), and a
  reversed block never matures.

Accounts (amounts are signed: + is money held in that account):

    block:<hash>            the coinbase: -reward when the block is found
    miner:<id>:immature     credits of blocks not yet 100 deep
    miner:<id>              spendable balance (custodial), or TIDES held dust
    pool:fees               the pool's fee income
    pool:reserve:immature   PPS/FPPS blocks' rewards not yet mature
    pool:reserve            the PPS/FPPS reserve: + rewards of mature blocks, - PPS credits
    pool:equity             operator capital put into (or taken from) the reserve
    payouts:coinbase        paid to miners in TIDES coinbase outputs
    payouts                 paid to miners by custodial payout transactions (later)

The reserve may go negative (the operator owes more PPS than blocks brought in); that is the
pool's risk, reported by `reserve_status` against a warning threshold, never hidden.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hashfarm.errors import HashfarmError

CURRENCY = "SAT"  # amounts are integer satoshis
POOL_FEES = "pool:fees"
POOL_RESERVE = "pool:reserve"
POOL_RESERVE_IMMATURE = "pool:reserve:immature"
POOL_EQUITY = "pool:equity"
PAYOUTS = "payouts"
PAYOUTS_COINBASE = "payouts:coinbase"
_IMMATURE = ":immature"


class AccountingError(HashfarmError):
    """A transaction that would break the ledger's invariants; the message says which."""


def block_account(hash_hex: str) -> str:
    """The account a block's coinbase is drawn from."""
    return f"block:{hash_hex}"


def miner_account(account: str) -> str:
    """A miner's spendable (or TIDES held) balance."""
    return f"miner:{account}"


def immature_account(account: str) -> str:
    """A miner's credits from blocks not yet mature."""
    return f"miner:{account}{_IMMATURE}"


def mature_of(account: str) -> str:
    """`x:immature` -> `x` (other accounts unchanged)."""
    return account.removesuffix(_IMMATURE)


@dataclass(frozen=True, slots=True)
class Posting:
    """One leg of a transaction: `amount` satoshis into `account` (negative: out of it)."""

    account: str
    amount: int
    currency: str = CURRENCY


@dataclass(frozen=True, slots=True)
class Transaction:
    """Balanced postings under a unique key (the idempotency key)."""

    key: str  # e.g. "found:<hash>", "mature:<hash>", "reverse:found:<hash>", "pps:<batch>"
    kind: str  # found | mature | reverse | pps | capital
    postings: tuple[Posting, ...]
    time: float
    block_hash: str | None = None
    reverses: str | None = None  # key of the transaction this one undoes

    def __post_init__(self) -> None:
        sums: dict[str, int] = {}
        for p in self.postings:
            if not isinstance(p.amount, int) or isinstance(p.amount, bool):
                raise AccountingError(f"{self.key}: amount {p.amount!r} is not whole satoshis")
            sums[p.currency] = sums.get(p.currency, 0) + p.amount
        unbalanced = {c: s for c, s in sums.items() if s != 0}
        if unbalanced:
            raise AccountingError(f"{self.key}: postings do not balance: {unbalanced}")


def transaction(
    key: str,
    kind: str,
    amounts: Mapping[str, int],
    time: float,
    *,
    block_hash: str | None = None,
    reverses: str | None = None,
) -> Transaction:
    """A transaction from account -> amount (zero amounts dropped, accounts sorted)."""
    postings = tuple(Posting(a, v) for a, v in sorted(amounts.items()) if v != 0)
    return Transaction(key, kind, postings, time, block_hash, reverses)


def add_to(amounts: dict[str, int], account: str, amount: int) -> None:
    """amounts[account] += amount (a helper for building postings)."""
    amounts[account] = amounts.get(account, 0) + amount


@dataclass(frozen=True, slots=True)
class ReserveStatus:
    """The PPS/FPPS reserve against what the pool owes its miners."""

    reserve: int  # pool:reserve (spendable)
    immature_reserve: int  # pool:reserve:immature
    owed_to_miners: int  # sum of every miner balance, held and immature
    warning: bool  # reserve below the warning threshold


@dataclass
class Ledger:
    """Balances built from applied transactions, with the invariants enforced."""

    reserve_warning_sats: int = 0  # warn when pool:reserve falls below this
    transactions: dict[str, Transaction] = field(default_factory=dict)
    balances: dict[tuple[str, str], int] = field(default_factory=dict)
    _reversed: set[str] = field(default_factory=set)

    def balance(self, account: str, currency: str = CURRENCY) -> int:
        """The account's balance (0 when never used)."""
        return self.balances.get((account, currency), 0)

    def post(self, txn: Transaction) -> bool:
        """Apply `txn`; False when the same transaction was already applied."""
        seen = self.transactions.get(txn.key)
        if seen is not None:
            if seen.postings != txn.postings or seen.reverses != txn.reverses:
                raise AccountingError(f"{txn.key}: key already used by another transaction")
            return False
        self._check_lifecycle(txn)
        after = {(p.account, p.currency): self.balance(p.account, p.currency) for p in txn.postings}
        for p in txn.postings:
            after[(p.account, p.currency)] += p.amount
        for (account, _), value in after.items():
            if account.startswith("miner:") and value < 0:
                raise AccountingError(f"{txn.key}: {account} would go negative ({value})")
        self.balances.update(after)
        self.transactions[txn.key] = txn
        if txn.reverses is not None:
            self._reversed.add(txn.reverses)
        return True

    def _check_lifecycle(self, txn: Transaction) -> None:
        if txn.reverses is not None:
            if txn.reverses not in self.transactions:
                raise AccountingError(f"{txn.key}: reverses unknown {txn.reverses}")
            if txn.reverses in self._reversed:
                raise AccountingError(f"{txn.key}: {txn.reverses} is already reversed")
            if txn.block_hash and f"mature:{txn.block_hash}" in self.transactions:
                raise AccountingError(f"{txn.key}: block {txn.block_hash} already matured")
        if txn.kind == "mature" and f"found:{txn.block_hash}" in self._reversed:
            raise AccountingError(f"{txn.key}: block {txn.block_hash} was reversed (orphan)")

    def accounts(self, prefix: str = "") -> dict[str, int]:
        """Non-zero balances of accounts starting with `prefix`."""
        return {a: v for (a, _), v in sorted(self.balances.items()) if a.startswith(prefix) and v}

    def reserve_status(self) -> ReserveStatus:
        """The reserve, what miners are owed, and whether to warn the operator."""
        reserve = self.balance(POOL_RESERVE)
        owed = sum(self.accounts("miner:").values())
        return ReserveStatus(
            reserve,
            self.balance(POOL_RESERVE_IMMATURE),
            owed,
            warning=reserve < self.reserve_warning_sats,
        )

    def trial_balance(self) -> dict[str, int]:
        """Sum of every balance per currency: always zero (a self-check for tests and ops)."""
        out: dict[str, int] = {}
        for (_, currency), v in self.balances.items():
            out[currency] = out.get(currency, 0) + v
        return out


def post_all(ledger: Ledger, txns: Iterable[Transaction]) -> int:
    """Apply transactions in order; how many were new."""
    return sum(ledger.post(t) for t in txns)
