"""Payouts in SQL: each step of a payout's life as one database transaction (synchronous).

A payout is a row of `acct_payouts` (with its `acct_payout_items`) that moves through

```
planned --(wallet signed it; txid and raw tx recorded)--> signed --(seen in the mempool or
a block)--> sent --(N confirmations)--> confirmed
signed / sent --(gone, an input spent by another transaction)--> conflicted
conflicted --(operator: --abandon)--> abandoned (balances given back)
```

* `plan_and_record`: reads the spendable balances and the accounts' own thresholds, plans
  (`payouts.plan_payout`) and writes the payout, its items and the ledger transaction
  `payout:<key>` (miner:<id> -> payouts:pending) in ONE transaction; refused while another
  payout is planned or signed, so at most one transaction is ever being built;
* `record_signed`: the wallet's signed transaction (txid, raw hex, network fee) is recorded
  BEFORE it is broadcast; compare-and-set on state `planned`, so of two racing runs only
  one transaction is ever recorded, and only a recorded transaction is ever broadcast;
* `record_seen`: the transaction was seen in the mempool or in a block (state `sent`,
  confirmations, block);
* `record_confirmed`: `payout-confirmed:<key>` (pending -> payouts, the network fee from
  pool:fees) with state `confirmed`;
* `record_conflicted` / `record_abandoned`: a transaction that can no longer confirm, and the
  operator's decision to give the balances back (`reverse:payout:<key>`).
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass

from hashfarm.accounting.entries import reversal
from hashfarm.accounting.ledger import AccountingError
from hashfarm.accounting.payouts import (
    PayoutItem,
    PayoutPlan,
    PayoutPolicy,
    confirmed,
    payout_key,
    plan_payout,
    planned,
)
from hashfarm.accounting.store import SqlStore

PLANNED, SIGNED, SENT, CONFIRMED = "planned", "signed", "sent", "confirmed"
CONFLICTED, ABANDONED = "conflicted", "abandoned"
UNRESOLVED = (PLANNED, SIGNED)  # a payout whose transaction may not be on the network yet
OPEN = (PLANNED, SIGNED, SENT, CONFLICTED)  # the states a payout run looks at again
STATES = (PLANNED, SIGNED, SENT, CONFIRMED, CONFLICTED, ABANDONED)
_IMMATURE = ":immature"


@dataclass(frozen=True, slots=True)
class PayoutRecord:
    """A payout as the tables hold it."""

    id: int
    key: str
    state: str
    created_at: float
    total_sats: int  # taken from miner balances
    txid: str | None
    raw_tx: str | None
    fee_sats: int | None  # the network fee (known once signed)
    confirmations: int
    block_hash: str | None
    block_height: int | None
    note: str | None
    items: tuple[PayoutItem, ...]

    @property
    def total_amount(self) -> int:
        """Sum of the outputs to miners."""
        return sum(i.amount_sats for i in self.items)


_COLUMNS = (
    "id, idempotency_key, state, created_at, total_sats, txid, raw_tx, fee_sats, "
    "confirmations, block_hash, block_height, note"
)


def _record(sql: SqlStore, row: tuple[object, ...]) -> PayoutRecord:
    pid, key, state, created, total, txid, raw, fee, conf, bhash, bheight, note = row
    items = tuple(
        PayoutItem(str(a), str(addr), int(str(s)), int(str(v)))
        for a, addr, s, v in sql.q(
            "SELECT account, address, sats, amount_sats FROM acct_payout_items "
            "WHERE payout_id = ? ORDER BY account",
            (pid,),
        )
    )
    return PayoutRecord(
        int(str(pid)),
        str(key),
        str(state),
        float(str(created)),
        int(str(total)),
        None if txid is None else str(txid),
        None if raw is None else str(raw),
        None if fee is None else int(str(fee)),
        int(str(conf)),
        None if bhash is None else str(bhash),
        None if bheight is None else int(str(bheight)),
        None if note is None else str(note),
        items,
    )


def payout(sql: SqlStore, payout_id: int) -> PayoutRecord | None:
    """One payout by id (None: no such payout)."""
    rows = sql.q(f"SELECT {_COLUMNS} FROM acct_payouts WHERE id = ?", (payout_id,))
    return _record(sql, rows[0]) if rows else None


def payouts_in(sql: SqlStore, states: tuple[str, ...]) -> list[PayoutRecord]:
    """Payouts in any of `states`, oldest first."""
    marks = ", ".join("?" for _ in states)
    rows = sql.q(
        f"SELECT {_COLUMNS} FROM acct_payouts WHERE state IN ({marks}) ORDER BY id", states
    )
    return [_record(sql, r) for r in rows]


def recent_payouts(
    sql: SqlStore, account: str | None = None, limit: int = 10
) -> list[PayoutRecord]:
    """The newest `limit` payouts (that pay `account`, when given), newest first."""
    if account is None:
        rows = sql.q(f"SELECT {_COLUMNS} FROM acct_payouts ORDER BY id DESC LIMIT {int(limit)}")
    else:
        rows = sql.q(
            f"SELECT {_COLUMNS} FROM acct_payouts WHERE id IN (SELECT payout_id FROM "
            f"acct_payout_items WHERE account = ?) ORDER BY id DESC LIMIT {int(limit)}",
            (account,),
        )
    return [_record(sql, r) for r in rows]


def spendable_balances(sql: SqlStore) -> dict[str, int]:
    """Account id -> spendable balance (`miner:<id>`, not the immature ones)."""
    out: dict[str, int] = {}
    for name, sats in sql.balances("miner:").items():
        ident = name.removeprefix("miner:")
        if not ident.endswith(_IMMATURE):
            out[ident] = sats
    return out


def thresholds(sql: SqlStore) -> dict[str, int]:
    """Account id -> its own payout threshold (accounts without one use the run's)."""
    rows = sql.q("SELECT account, threshold_sats FROM acct_payout_thresholds")
    return {str(a): int(t) for a, t in rows}


def set_threshold(sql: SqlStore, account: str, sats: int | None, now: float) -> None:
    """Set (or with None, remove) an account's own payout threshold."""
    if sats is not None and sats <= 0:
        raise AccountingError(f"threshold {sats} must be positive")
    with sql.tx():
        sql.q("DELETE FROM acct_payout_thresholds WHERE account = ?", (account,))
        if sats is not None:
            sql.q(
                "INSERT INTO acct_payout_thresholds (account, threshold_sats, changed_at) "
                "VALUES (?, ?, ?)",
                (account, sats, now),
            )


def _tides_in_force(sql: SqlStore) -> bool:
    """Whether TIDES is the scheme in effect (the first noted, then the last switch whose
    boundary block was found) or the last one noted (a switch still to take effect)."""
    rows = sql.q("SELECT scheme, boundary_block FROM acct_scheme_switches ORDER BY id")
    if not rows:
        return False
    effective = str(rows[0][0])
    for scheme, boundary in rows[1:]:
        if boundary is not None:
            effective = str(scheme)
    return "tides" in (effective, str(rows[-1][0]))


def plan_and_record(
    sql: SqlStore,
    policy: PayoutPolicy,
    address_of: Callable[[str], str | None],
    now: float,
) -> tuple[PayoutPlan, PayoutRecord | None]:
    """Plan a payout of the current balances and record it (state planned) with its ledger
    transaction, in one database transaction. The record is None when nobody is due, or
    when a payout is still planned or signed (it must be resolved first).

    Refused (AccountingError) while the pool's scheme is TIDES, or a switch to or from it is
    noted but not yet in effect:
    TIDES pays held balances in the coinbase of the jobs it builds, so a payout of the same
    balances could pay them twice on chain."""
    with sql.tx():
        if _tides_in_force(sql):
            raise AccountingError(
                "the pool's scheme is TIDES: miners are paid in the coinbase, and a payout of "
                "their held balances could pay them twice; no payout is made"
            )
        if sql.q("SELECT 1 FROM acct_payouts WHERE state IN (?, ?) LIMIT 1", UNRESOLVED):
            return PayoutPlan((), (), ()), None
        plan = plan_payout(spendable_balances(sql), policy, address_of, thresholds(sql))
        if not plan.items:
            return plan, None
        key = payout_key(plan, int(now * 1000))
        sql.q(
            "INSERT INTO acct_payouts (idempotency_key, created_at, state, total_sats, "
            "confirmations, changed_at) VALUES (?, ?, ?, ?, 0, ?)",
            (key, now, PLANNED, plan.total_debit, now),
        )
        pid = int(sql.q("SELECT id FROM acct_payouts WHERE idempotency_key = ?", (key,))[0][0])
        sql.many(
            "INSERT INTO acct_payout_items (payout_id, account, address, sats, amount_sats) "
            "VALUES (?, ?, ?, ?, ?)",
            [(pid, i.account, i.address, i.debit_sats, i.amount_sats) for i in plan.items],
        )
        if not sql.post(planned(key, plan.items, now)):
            raise AccountingError(f"payout:{key}: already posted by another payout")
        record = payout(sql, pid)
    return plan, record


def record_signed(
    sql: SqlStore, payout_id: int, txid: str, raw_tx: str, fee_sats: int, now: float
) -> PayoutRecord:
    """Record the signed transaction of a planned payout (before it is broadcast).

    Compare-and-set: if another run recorded one first, that one is kept and returned.
    """
    with sql.tx():
        sql.q(
            "UPDATE acct_payouts SET state = ?, txid = ?, raw_tx = ?, fee_sats = ?, "
            "changed_at = ? WHERE id = ? AND state = ?",
            (SIGNED, txid, raw_tx, fee_sats, now, payout_id, PLANNED),
        )
        record = payout(sql, payout_id)
    if record is None:
        raise AccountingError(f"payout {payout_id} does not exist")
    return record


def record_seen(
    sql: SqlStore,
    payout_id: int,
    confirmations: int,
    block_hash: str | None,
    block_height: int | None,
    now: float,
) -> None:
    """The transaction is on the network: in the mempool (0) or in a block (state sent)."""
    with sql.tx():
        sql.q(
            "UPDATE acct_payouts SET state = ?, confirmations = ?, block_hash = ?, "
            "block_height = ?, note = NULL, changed_at = ? WHERE id = ? AND state IN (?, ?, ?)",
            (SENT, confirmations, block_hash, block_height, now, payout_id, SIGNED, SENT,
             CONFLICTED),
        )  # fmt: skip


def record_confirmed(
    sql: SqlStore, record: PayoutRecord, confirmations: int, block_hash: str, block_height: int,
    now: float,
) -> None:  # fmt: skip
    """Enough confirmations: the ledger moves pending -> payouts (state confirmed)."""
    if record.fee_sats is None:
        raise AccountingError(f"payout {record.id} has no recorded transaction")
    with sql.tx():
        sql.post(confirmed(record.key, record.total_amount, record.fee_sats, now))
        sql.q(
            "UPDATE acct_payouts SET state = ?, confirmations = ?, block_hash = ?, "
            "block_height = ?, changed_at = ? WHERE id = ?",
            (CONFIRMED, confirmations, block_hash, block_height, now, record.id),
        )


def record_conflicted(sql: SqlStore, payout_id: int, note: str, now: float) -> None:
    """The transaction is gone and one of its inputs is spent by another: it cannot confirm
    unless that spend leaves the chain. The balances stay in payouts:pending."""
    with sql.tx():
        sql.q(
            "UPDATE acct_payouts SET state = ?, confirmations = 0, block_hash = NULL, "
            "block_height = NULL, note = ?, changed_at = ? WHERE id = ? AND state IN (?, ?)",
            (CONFLICTED, note, now, payout_id, SIGNED, SENT),
        )


def record_note(sql: SqlStore, payout_id: int, note: str | None, now: float) -> None:
    """Why a payout is waiting (shown by the CLI)."""
    with sql.tx():
        sql.q(
            "UPDATE acct_payouts SET note = ?, changed_at = ? WHERE id = ?",
            (note, now, payout_id),
        )


def record_abandoned(sql: SqlStore, payout_id: int, now: float | None = None) -> PayoutRecord:
    """Give a conflicted (or never signed) payout's balances back to its miners."""
    now = _time.time() if now is None else now
    with sql.tx():
        record = payout(sql, payout_id)
        if record is None:
            raise AccountingError(f"payout {payout_id} does not exist")
        if record.state not in (CONFLICTED, PLANNED):
            raise AccountingError(
                f"payout {payout_id} is {record.state}: only a conflicted payout (or one never "
                "signed) can be abandoned"
            )
        original = sql.transaction(f"payout:{record.key}")
        if original is None:
            raise AccountingError(f"payout {payout_id}: its ledger transaction is missing")
        sql.post(reversal(original, now))
        sql.q(
            "UPDATE acct_payouts SET state = ?, changed_at = ? WHERE id = ?",
            (ABANDONED, now, payout_id),
        )
    return record
