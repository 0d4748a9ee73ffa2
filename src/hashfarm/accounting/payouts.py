"""Custodial payouts, planned exactly: which spendable balances one batched transaction pays.

Pure: balances, a `PayoutPolicy` and an address resolver in, a `PayoutPlan` and the ledger
transactions it posts out. No wallet, no database, no clock (`payoutstore` writes the plan,
`payoutservice` drives the node's wallet).

**The plan** (`plan_payout`):

1. an account is due when its spendable balance (`miner:<id>`) is at least its threshold:
   its own (`thresholds`, set by the miner or operator) or else the policy's
   `threshold_sats`, and never below the policy's floor (payout fee + smallest output); it
   is then paid its **whole** balance (nothing below the threshold is ever paid, nothing is
   left behind by a payment);
2. an account whose id is not an address of the network (the resolver says None) is not
   paid: it is listed in `unpayable` (in pooled mode the user name is `ADDRESS.worker`, as
   in solo mode and Miningcore);
3. due accounts are ranked by balance, largest first, ties by ascending account id; the
   first `max_outputs` get an output and the rest are `deferred` to the next run (their
   balance is untouched). Two accounts whose ids resolve to the same address (a bech32
   address in upper and lower case) would need two outputs to one address, which wallets
   refuse: the lower-ranked one is deferred;
4. each paid account's output is its balance minus `fee_per_payment_sats` (the pool's
   payout fee, default 0, credited to `pool:fees`); the network fee of the transaction is
   paid by the pool's wallet, on top of the outputs (see `confirmed`).

The policy refuses a threshold below `fee_per_payment_sats + min_output_sats`, so no output
is ever dust (546 sats: Bitcoin Core's dust threshold for P2PKH at its default
`-dustrelayfee` of 3,000 sat/kvB; P2WPKH's is 294, so 546 covers every standard type).

**The ledger** (keys are idempotency keys; `ledger.Ledger.post` / `store.SqlStore.post`):

* planned, key `payout:<key>`: miner:<id> -balance; payouts:pending +output; pool:fees
  +payout fee;
* confirmed, key `payout-confirmed:<key>`: payouts:pending -outputs; payouts +outputs;
  pool:fees -network fee; payouts:network-fee +network fee;
* abandoned, key `reverse:payout:<key>`: the planned transaction negated (balances back).

So the debits of a plan sum to its outputs plus its payout fees exactly, no miner balance
goes negative (each is debited exactly what it holds), and a replay of either transaction
is a no-op.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hashfarm.accounting.ledger import (
    PAYOUTS,
    POOL_FEES,
    Transaction,
    add_to,
    miner_account,
    transaction,
)
from hashfarm.chain.address import address_to_script, script_to_address
from hashfarm.chain.networks import Network, get_network
from hashfarm.errors import HashfarmError

PAYOUTS_PENDING = "payouts:pending"  # planned or broadcast, not yet confirmed
PAYOUTS_NETWORK_FEE = "payouts:network-fee"  # what the pool's wallet paid miners' fees with
DUST_SATS = 546  # Core's dust threshold for P2PKH outputs at the default -dustrelayfee
DEFAULT_THRESHOLD_SATS = 1_000_000  # 0.01 BTC
DEFAULT_MAX_OUTPUTS = 500


@dataclass(frozen=True, slots=True)
class PayoutPolicy:
    """When a balance is paid and what a payment costs the miner."""

    threshold_sats: int = DEFAULT_THRESHOLD_SATS
    max_outputs: int = DEFAULT_MAX_OUTPUTS  # payments per transaction; the rest wait
    fee_per_payment_sats: int = 0  # the pool's payout fee, taken from each payment
    min_output_sats: int = DUST_SATS

    @property
    def floor(self) -> int:
        """The lowest threshold: a smaller payment could be dust after the payout fee."""
        return self.fee_per_payment_sats + self.min_output_sats

    def threshold_for(self, account: str, thresholds: Mapping[str, int]) -> int:
        """The account's own threshold if it has one (raised to the floor), else the
        policy's."""
        own = thresholds.get(account)
        return self.threshold_sats if own is None else max(own, self.floor)

    def __post_init__(self) -> None:
        if self.max_outputs < 1:
            raise ValueError(f"max_outputs must be at least 1, not {self.max_outputs}")
        if self.fee_per_payment_sats < 0 or self.min_output_sats < 1:
            raise ValueError("the payout fee must be >= 0 and the smallest output >= 1 sat")
        if self.threshold_sats < self.floor:
            raise ValueError(
                f"threshold {self.threshold_sats:,} sats is below the payout fee plus the "
                f"smallest output ({self.floor:,} sats): a payment could be dust"
            )


@dataclass(frozen=True, slots=True)
class PayoutItem:
    """One account's payment: its whole balance, the output it gets, the fee kept."""

    account: str
    address: str
    debit_sats: int  # taken from miner:<account>
    amount_sats: int  # the transaction's output to `address`

    @property
    def fee_sats(self) -> int:
        """The pool's payout fee kept from this payment."""
        return self.debit_sats - self.amount_sats


@dataclass(frozen=True, slots=True)
class PayoutPlan:
    """What one payout transaction pays (items by account id) and who waits."""

    items: tuple[PayoutItem, ...]
    deferred: tuple[str, ...]  # due, beyond max_outputs (or a duplicate address)
    unpayable: tuple[str, ...]  # due, but the account id is no address of the network

    @property
    def total_debit(self) -> int:
        """Sum taken from miner balances."""
        return sum(i.debit_sats for i in self.items)

    @property
    def total_amount(self) -> int:
        """Sum of the transaction's outputs to miners."""
        return sum(i.amount_sats for i in self.items)

    @property
    def total_fee(self) -> int:
        """Sum of payout fees kept by the pool."""
        return self.total_debit - self.total_amount

    def outputs(self) -> list[tuple[str, int]]:
        """(address, sats) of each output, by account id."""
        return [(i.address, i.amount_sats) for i in self.items]

    def digest(self) -> str:
        """A short hash of the items (part of the idempotency key)."""
        text = "\n".join(
            f"{i.account} {i.address} {i.debit_sats} {i.amount_sats}" for i in self.items
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_payout(
    balances: Mapping[str, int],
    policy: PayoutPolicy,
    address_of: Callable[[str], str | None],
    thresholds: Mapping[str, int] | None = None,
) -> PayoutPlan:
    """The payout of `balances` (account id -> spendable sats) under `policy`.

    `address_of(account)` is the address to pay (canonical form) or None when the account id
    is not an address; `thresholds` the accounts' own thresholds. ValueError for a negative
    balance (the ledger never holds one).
    """
    own = thresholds or {}
    due: list[tuple[int, str]] = []
    for account, sats in balances.items():
        if sats < 0:
            raise ValueError(f"balance of {account} is negative ({sats})")
        if sats >= policy.threshold_for(account, own):
            due.append((sats, account))
    due.sort(key=lambda d: (-d[0], d[1]))
    items: list[PayoutItem] = []
    deferred: list[str] = []
    unpayable: list[str] = []
    used: set[str] = set()
    for sats, account in due:
        address = address_of(account)
        if address is None:
            unpayable.append(account)
        elif len(items) >= policy.max_outputs or address in used:
            deferred.append(account)
        else:
            used.add(address)
            items.append(PayoutItem(account, address, sats, sats - policy.fee_per_payment_sats))
    items.sort(key=lambda i: i.account)
    return PayoutPlan(tuple(items), tuple(sorted(deferred)), tuple(sorted(unpayable)))


def address_resolver(network: Network | str) -> Callable[[str], str | None]:
    """account id -> the address to pay (the network's canonical spelling: bech32 in lower
    case), or None when the id is not an address of `network`. On regtest, `regtest` writes
    Core's flavour and `regtest-bcoin` bcoin's (the wallet that pays must accept it)."""
    net = get_network(network)

    def address_of(account: str) -> str | None:
        try:
            return script_to_address(address_to_script(account, net), net)
        except HashfarmError:
            return None

    return address_of


def payout_key(plan: PayoutPlan, created_ms: int) -> str:
    """The idempotency key of a planned payout: when it was planned and what it pays."""
    return f"{created_ms}-{plan.digest()}"


def planned(key: str, items: tuple[PayoutItem, ...], time: float) -> Transaction:
    """Balances move from the miners to `payouts:pending` (fees to `pool:fees`)."""
    amounts: dict[str, int] = {}
    for item in items:
        if item.amount_sats <= 0 or item.debit_sats < item.amount_sats:
            raise ValueError(f"payout item of {item.account} is not a positive payment")
        add_to(amounts, miner_account(item.account), -item.debit_sats)
        add_to(amounts, PAYOUTS_PENDING, item.amount_sats)
        add_to(amounts, POOL_FEES, item.fee_sats)
    return transaction(f"payout:{key}", "payout", amounts, time)


def confirmed(key: str, total_amount: int, network_fee: int, time: float) -> Transaction:
    """The payout is confirmed on chain: pending -> `payouts`; the pool pays the network fee."""
    if network_fee < 0:
        raise ValueError(f"network fee {network_fee} is negative")
    amounts = {
        PAYOUTS_PENDING: -total_amount,
        PAYOUTS: total_amount,
        POOL_FEES: -network_fee,
        PAYOUTS_NETWORK_FEE: network_fee,
    }
    return transaction(f"payout-confirmed:{key}", "payout-confirmed", amounts, time)
