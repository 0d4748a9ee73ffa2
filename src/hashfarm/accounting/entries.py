"""The transactions each accounting event posts (pure builders for `ledger.Ledger`).

* block found, custodial (SOLO/PROP/PPLNS), key `found:<hash>`: block:<hash> -reward,
  pool:fees +fee, miner:<id>:immature +credit for each account;
* block found, PPS/FPPS, key `found:<hash>`: block:<hash> -reward,
  pool:reserve:immature +reward;
* block found, TIDES, key `found:<hash>`: block:<hash> -value, pool:fees +fee,
  payouts:coinbase +sum of outputs, miner:<id> -held balance paid in an output,
  miner:<id>:immature +earning held (dust or beyond the output bound);
* block mature (100 confirmations), key `mature:<hash>`: every `x:immature` leg of the found
  transaction moved to `x`;
* block orphaned (reorg), key `reverse:found:<hash>`: the found transaction negated;
* PPS/FPPS settlement, key `pps:<batch id>`: pool:reserve -sum, miner:<id> +credit;
* operator capital, key `capital:<id>`: pool:equity -x, pool:reserve +x.

Keys are the idempotency keys: the same event posted twice is applied once.
"""

from __future__ import annotations

from collections.abc import Mapping

from hashfarm.accounting.ledger import (
    PAYOUTS_COINBASE,
    POOL_EQUITY,
    POOL_FEES,
    POOL_RESERVE,
    POOL_RESERVE_IMMATURE,
    Transaction,
    add_to,
    block_account,
    immature_account,
    mature_of,
    miner_account,
    transaction,
)
from hashfarm.accounting.schemes import BlockCredit
from hashfarm.accounting.tides import CoinbasePlan


def found_key(block_hash: str) -> str:
    """The key of a block's found transaction."""
    return f"found:{block_hash}"


def block_found(credit: BlockCredit, time: float) -> Transaction:
    """A custodial block (SOLO, PROP, PPLNS, PPS, FPPS): credits held until maturity."""
    amounts: dict[str, int] = {block_account(credit.block_hash): -credit.reward}
    add_to(amounts, POOL_FEES, credit.fee)
    add_to(amounts, POOL_RESERVE_IMMATURE, credit.reserve)
    for account, sats in credit.credits.items():
        add_to(amounts, immature_account(account), sats)
    return transaction(
        found_key(credit.block_hash), "found", amounts, time, block_hash=credit.block_hash
    )


def tides_block_found(block_hash: str, plan: CoinbasePlan, time: float) -> Transaction:
    """A TIDES block: outputs already paid in the coinbase; dust held for the miner."""
    amounts: dict[str, int] = {block_account(block_hash): -plan.value}
    add_to(amounts, POOL_FEES, plan.fee)
    add_to(amounts, PAYOUTS_COINBASE, sum(v for _, v in plan.outputs))
    paid = {a for a, _ in plan.outputs}
    for account, used in plan.held_used.items():
        add_to(amounts, miner_account(account), -used)  # held balance paid in this coinbase
    for account, earned in plan.earnings.items():
        if account not in paid:
            add_to(amounts, immature_account(account), earned)  # held until mature
    return transaction(found_key(block_hash), "found", amounts, time, block_hash=block_hash)


def block_matured(found: Transaction, time: float) -> Transaction:
    """Move every immature leg of a found transaction to its spendable account."""
    if found.kind != "found" or found.block_hash is None:
        raise ValueError(f"{found.key} is not a block's found transaction")
    amounts: dict[str, int] = {}
    for p in found.postings:
        if p.account != mature_of(p.account):
            add_to(amounts, p.account, -p.amount)
            add_to(amounts, mature_of(p.account), p.amount)
    return transaction(
        f"mature:{found.block_hash}", "mature", amounts, time, block_hash=found.block_hash
    )


def reversal(original: Transaction, time: float) -> Transaction:
    """The original negated: a reorg took its block off the chain."""
    amounts: dict[str, int] = {}
    for p in original.postings:
        add_to(amounts, p.account, -p.amount)
    return transaction(
        f"reverse:{original.key}",
        "reverse",
        amounts,
        time,
        block_hash=original.block_hash,
        reverses=original.key,
    )


def pps_settlement(batch_id: str, credits: Mapping[str, int], time: float) -> Transaction:
    """PPS/FPPS credits for a batch of shares, paid from the reserve."""
    amounts: dict[str, int] = {POOL_RESERVE: -sum(credits.values())}
    for account, sats in credits.items():
        if sats < 0:
            raise ValueError(f"negative PPS credit for {account}")
        add_to(amounts, miner_account(account), sats)
    return transaction(f"pps:{batch_id}", "pps", amounts, time)


def capital(capital_id: str, sats: int, time: float) -> Transaction:
    """The operator funds (sats > 0) or withdraws from (sats < 0) the reserve."""
    return transaction(
        f"capital:{capital_id}", "capital", {POOL_EQUITY: -sats, POOL_RESERVE: sats}, time
    )
