"""The payout run: plan, sign, record, broadcast, follow; nobody paid twice, whatever crashes.

`PayoutService.step()` does one run over the ledger (`payoutstore`) and the node:

1. every payout left open by an earlier run is driven forward first (oldest first):
   `planned` -> the wallet builds and signs its transaction; `signed` -> broadcast; `sent`
   -> confirmations followed;
2. a new payout is planned only when none is planned or signed, and driven the same way.

**Why nobody is paid twice.** The order is *sign, record, broadcast*: the wallet funds and
signs the transaction without broadcasting it (`PayoutWallet.create_payment`), its txid and
raw bytes are recorded (`record_signed`, compare-and-set on `planned`), and only then is that
recorded transaction broadcast. So at every instant a payout has at most one transaction that
may be on the network, and the database knows it before the network does:

* a crash before the transaction is recorded leaves a `planned` payout whose transaction was
  never broadcast (nothing else broadcasts it): the next run signs a new one;
* a crash after it is recorded (before or after the broadcast, before `sent` is written)
  leaves a `signed` payout: the next run broadcasts the same bytes again, which the node
  takes or already has (same txid), and finds it in the mempool or a block;
* two runs at once: the loser of the compare-and-set drops its unbroadcast transaction.

No search of the wallet for "a transaction that looks like ours" is needed, and none is done.

**Following.** Each run reads where each `sent` transaction is: in a block on the active
chain (the wallet's `gettransaction` names the block; its height is checked against the
node's chain), in the node's mempool, or nowhere. At `confirmations` deep the payout is
`confirmed` and the ledger moves `payouts:pending` to `payouts`. A transaction that left the
chain (a reorg) goes back to `sent` with 0 confirmations; one found nowhere is broadcast
again from its recorded bytes. One found nowhere whose inputs are spent by another transaction
can no longer confirm (unless that spend leaves the chain): it is `conflicted`, logged, and the
balances stay in `payouts:pending` until the operator abandons it (`abandon`: the wallet is
told to forget it and the balances go back to the miners). Each run looks at a conflicted
payout again: seen on the network, or its inputs all unspent again (the conflicting spend
left the chain) and its recorded bytes taken by the node, it is `sent` again.

accounting does not import `node`: the node and the wallet are anything with the methods of
`PayoutNode` and `PayoutWallet` (`cli` wires `hashfarm.node`'s clients).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hashfarm.accounting.payouts import PayoutPlan, PayoutPolicy, address_resolver, plan_payout
from hashfarm.accounting.payoutstore import (
    CONFIRMED,
    CONFLICTED,
    OPEN,
    PLANNED,
    SENT,
    SIGNED,
    PayoutRecord,
    payout,
    payouts_in,
    plan_and_record,
    record_abandoned,
    record_confirmed,
    record_conflicted,
    record_note,
    record_seen,
    record_signed,
    spendable_balances,
    thresholds,
)
from hashfarm.accounting.service import ChainView
from hashfarm.accounting.store import AccountingStore, SqlStore
from hashfarm.chain.address import address_to_script
from hashfarm.chain.networks import Network, get_network
from hashfarm.chain.tx import Transaction
from hashfarm.errors import HashfarmError, NodeError, NodeUnavailable, RPCError

log = logging.getLogger("hashfarm.accounting.payouts")

DEFAULT_CONFIRMATIONS = 6  # a payout is final (the ledger's `payouts`) this deep
BROADCAST_WAIT = 10.0  # seconds a broadcast transaction has to show up in the mempool


class SignedPayment(Protocol):
    """A transaction the wallet funded and signed but did not broadcast."""

    @property
    def txid(self) -> str:
        """Display hex."""
        ...

    @property
    def hex(self) -> str:
        """The whole transaction, serialized (with witnesses)."""
        ...

    @property
    def fee_sats(self) -> int:
        """The network fee it pays."""
        ...


class PayoutWallet(Protocol):
    """The wallet that holds the pool's coins."""

    async def create_payment(
        self, outputs: Sequence[tuple[str, int]], fee_rate: int | None = None
    ) -> SignedPayment:
        """Fund (with change back to the wallet) and sign a transaction paying exactly
        `outputs` (address, sats); do NOT broadcast it. `fee_rate` in sat/vB (None: the
        wallet's estimate)."""
        ...

    async def wallet_transaction(self, txid: str) -> dict[str, Any] | None:
        """The wallet's `gettransaction` (`blockhash` once mined); None when it does not
        know the transaction."""
        ...

    async def abandontransaction(self, txid: str) -> None:
        """Let the wallet forget an unconfirmed transaction (its inputs become spendable)."""
        ...


class PayoutNode(ChainView, Protocol):
    """What the run asks the node (bitcoind's JSON-RPC names; RPCClient has them)."""

    async def getrawmempool(self) -> list[str]:
        """Txids in the mempool."""
        ...

    async def sendrawtransaction(self, tx_hex: str) -> str:
        """Broadcast a signed transaction."""
        ...

    async def gettxout(self, txid: str, vout: int, include_mempool: bool = True) -> Any:
        """The unspent output, or None when it is spent (or never existed)."""
        ...


@dataclass(frozen=True, slots=True)
class Location:
    """Where a transaction is: in a block on the active chain, in the mempool, or neither."""

    confirmations: int = 0  # 0: not in a block
    block_hash: str | None = None
    block_height: int | None = None
    in_mempool: bool = False

    @property
    def seen(self) -> bool:
        """In a block or the mempool."""
        return self.in_mempool or self.block_hash is not None


@dataclass
class PayoutReport:
    """What one run did."""

    plan: PayoutPlan | None = None  # the plan of this run's new payout (or of the dry run)
    planned: int | None = None  # id of the payout planned by this run
    signed: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)  # seen on the network this run
    confirmed: list[int] = field(default_factory=list)
    conflicted: list[int] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # "id: why" for payouts still open
    blocked: bool = False  # no new payout: an earlier one is still planned or signed


Pause = Callable[[str], Awaitable[None]]


async def _no_pause(_point: str) -> None:
    return None


class PayoutService:
    """Pays spendable balances through the node's wallet (see the module docstring)."""

    def __init__(
        self,
        store: AccountingStore,
        node: PayoutNode,
        wallet: PayoutWallet,
        policy: PayoutPolicy,
        network: Network | str,
        *,
        confirmations: int = DEFAULT_CONFIRMATIONS,
        fee_rate: int | None = None,
        broadcast_wait: float = BROADCAST_WAIT,
        clock: Callable[[], float] = time.time,
        pause: Pause = _no_pause,
    ) -> None:
        if confirmations < 1:
            raise ValueError("a payout needs at least 1 confirmation to be final")
        self.store = store
        self.node = node
        self.wallet = wallet
        self.policy = policy
        self.network = get_network(network)
        self.address_of = address_resolver(self.network)
        self.confirmations = confirmations
        self.fee_rate = fee_rate
        self.broadcast_wait = broadcast_wait
        self.clock = clock
        self.pause = pause  # a test hook: awaited at "planned", "signed", "broadcast"

    async def dry_run(self) -> PayoutPlan:
        """What a run would pay now (nothing written, nothing sent)."""
        balances = await self.store.call(spendable_balances)
        own = await self.store.call(thresholds)
        return plan_payout(balances, self.policy, self.address_of, own)

    async def step(self, *, plan_new: bool = True) -> PayoutReport:
        """One run: open payouts forward, then a new payout when none is unresolved."""
        report = PayoutReport()
        for old in await self.store.call(lambda s: payouts_in(s, OPEN)):
            await self._drive(old, report)
        if not plan_new:
            return report
        now = self.clock()
        plan, record = await self.store.call(self._plan_at(now))
        if record is None:
            unresolved = await self.store.call(lambda s: payouts_in(s, (PLANNED, SIGNED)))
            report.blocked = bool(unresolved)
            report.plan = None if unresolved else plan
            return report
        report.plan, report.planned = plan, record.id
        log.info(
            "payout %d planned: %d accounts, %d sats (key %s)",
            record.id, len(record.items), record.total_amount, record.key,
        )  # fmt: skip
        await self.pause("planned")
        await self._drive(record, report)
        return report

    def _plan_at(self, now: float) -> Callable[[SqlStore], tuple[PayoutPlan, PayoutRecord | None]]:
        return lambda s: plan_and_record(s, self.policy, self.address_of, now)

    async def _drive(self, record: PayoutRecord, report: PayoutReport) -> None:
        if record.state == CONFLICTED:
            record = await self._recheck(record, report)
        if record.state == PLANNED:
            record = await self._sign(record, report)
        if record.state == SIGNED:
            record = await self._broadcast(record, report)
        if record.state == SENT:
            await self._follow(record, report)

    async def _recheck(self, record: PayoutRecord, report: PayoutReport) -> PayoutRecord:
        """A conflicted payout's transaction may still confirm once the spend that conflicted
        with it left the chain: if its inputs are all unspent again, its recorded bytes are
        broadcast again; seen on the network, it is `sent` and followed as before."""
        assert record.txid is not None
        assert record.raw_tx is not None
        where = await self.locate(record.txid)
        if not where.seen and await self._spent_inputs(record.raw_tx) is None:
            try:
                await self.node.sendrawtransaction(record.raw_tx)
            except RPCError as exc:
                log.info("payout %d: sendrawtransaction: %s", record.id, exc)
            where = await self._await_seen(record.txid)
        if not where.seen:
            report.waiting.append(f"{record.id}: conflicted (see --abandon {record.id})")
            return record
        now = self.clock()
        await self.store.call(
            lambda s: record_seen(
                s, record.id, where.confirmations, where.block_hash, where.block_height, now
            )
        )
        log.warning("payout %d: %s is on the network again; no longer conflicted",
                    record.id, record.txid)  # fmt: skip
        fresh = await self.store.call(lambda s: payout(s, record.id))
        assert fresh is not None
        return fresh

    async def _sign(self, record: PayoutRecord, report: PayoutReport) -> PayoutRecord:
        outputs = [(i.address, i.amount_sats) for i in record.items]
        signed = await self.wallet.create_payment(outputs, self.fee_rate)
        check_payment(signed.hex, signed.txid, outputs, self.network)
        now = self.clock()
        kept = await self.store.call(
            lambda s: record_signed(s, record.id, signed.txid, signed.hex, signed.fee_sats, now)
        )
        if kept.txid != signed.txid:  # another run recorded its own first: ours is dropped
            log.warning("payout %d: another run signed it first (%s)", record.id, kept.txid)
            return kept
        report.signed.append(record.id)
        log.info("payout %d signed: txid %s, network fee %d sats", record.id, kept.txid,
                 signed.fee_sats)  # fmt: skip
        await self.pause("signed")
        return kept

    async def _broadcast(self, record: PayoutRecord, report: PayoutReport) -> PayoutRecord:
        assert record.txid is not None
        assert record.raw_tx is not None
        where = await self.locate(record.txid)
        if not where.seen:
            try:
                await self.node.sendrawtransaction(record.raw_tx)
            except RPCError as exc:  # already known, or refused: where it is decides
                log.info("payout %d: sendrawtransaction: %s", record.id, exc)
            await self.pause("broadcast")
            where = await self._await_seen(record.txid)
        now = self.clock()
        if where.seen:
            await self.store.call(
                lambda s: record_seen(
                    s, record.id, where.confirmations, where.block_hash, where.block_height, now
                )
            )
            report.sent.append(record.id)
            log.info("payout %d sent: %s", record.id, record.txid)
            fresh = await self.store.call(lambda s: payout(s, record.id))
            assert fresh is not None
            return fresh
        await self._not_seen(record, report)
        return record

    async def _follow(self, record: PayoutRecord, report: PayoutReport) -> None:
        assert record.txid is not None
        assert record.raw_tx is not None
        where = await self.locate(record.txid)
        if not where.seen:  # left the chain and the mempool (a reorg, a node restart)
            log.warning("payout %d: %s is neither in a block nor in the mempool; "
                        "broadcasting it again", record.id, record.txid)  # fmt: skip
            try:
                await self.node.sendrawtransaction(record.raw_tx)
            except RPCError as exc:
                log.info("payout %d: sendrawtransaction: %s", record.id, exc)
            where = await self._await_seen(record.txid)
            if not where.seen:
                await self._not_seen(record, report)
                return
        now = self.clock()
        if where.block_hash is not None and where.confirmations >= self.confirmations:
            assert where.block_height is not None
            bh, height = where.block_hash, where.block_height
            await self.store.call(
                lambda s: record_confirmed(s, record, where.confirmations, bh, height, now)
            )
            report.confirmed.append(record.id)
            log.info("payout %d confirmed (%d deep)", record.id, where.confirmations)
            return
        if (where.confirmations, where.block_hash) != (record.confirmations, record.block_hash):
            await self.store.call(
                lambda s: record_seen(
                    s, record.id, where.confirmations, where.block_hash, where.block_height, now
                )
            )
        report.waiting.append(f"{record.id}: {where.confirmations} of {self.confirmations} "
                              "confirmations")  # fmt: skip

    async def _not_seen(self, record: PayoutRecord, report: PayoutReport) -> None:
        """The transaction is nowhere after a broadcast: conflicted, or wait for the next run."""
        assert record.raw_tx is not None
        spent = await self._spent_inputs(record.raw_tx)
        now = self.clock()
        if spent:
            note = f"input {spent} is spent by another transaction; the payout cannot confirm"
            await self.store.call(lambda s: record_conflicted(s, record.id, note, now))
            report.conflicted.append(record.id)
            log.error("payout %d conflicted: %s (abandon it to give the balances back)",
                      record.id, note)  # fmt: skip
            return
        note = "broadcast, not yet seen in the mempool; broadcast again at the next run"
        await self.store.call(lambda s: record_note(s, record.id, note, now))
        report.waiting.append(f"{record.id}: {note}")
        log.warning("payout %d: %s", record.id, note)

    async def _await_seen(self, txid: str) -> Location:
        deadline = time.monotonic() + self.broadcast_wait
        while True:
            where = await self.locate(txid)
            if where.seen or time.monotonic() >= deadline:
                return where
            await asyncio.sleep(0.05)

    async def _spent_inputs(self, raw_tx: str) -> str | None:
        """The first input of `raw_tx` that is spent (by another transaction), or None."""
        tx = Transaction.parse(bytes.fromhex(raw_tx))
        for txin in tx.inputs:
            txid, vout = txin.prevout.txid[::-1].hex(), txin.prevout.index
            if await self.node.gettxout(txid, vout, True) is None:
                return f"{txid}:{vout}"
        return None

    async def locate(self, txid: str) -> Location:
        """Where `txid` is now: a block of the active chain (with its depth), the mempool, or
        nowhere."""
        doc = await self.wallet.wallet_transaction(txid)
        block_hash = doc.get("blockhash") if isinstance(doc, dict) else None
        if isinstance(block_hash, str) and block_hash:
            tip = await self.node.getblockcount()
            try:
                header = await self.node.getblockheader(block_hash)
                height = int(header["height"])
                on_chain = height <= tip and await self.node.getblockhash(height) == block_hash
            except RPCError:  # the block is unknown to the node or above the tip
                on_chain = False
            if on_chain:
                return Location(tip - height + 1, block_hash, height)
        return Location(in_mempool=txid in await self.node.getrawmempool())

    async def abandon(self, payout_id: int) -> PayoutRecord:
        """Give a conflicted payout's balances back (the operator's decision): refused while
        its transaction is in the mempool or a block. The wallet forgets the transaction."""
        record = await self.store.call(lambda s: payout(s, payout_id))
        if record is None:
            raise HashfarmError(f"no payout {payout_id}")
        if record.state != CONFLICTED and record.state != PLANNED:
            raise HashfarmError(
                f"payout {payout_id} is {record.state}: only a conflicted payout is abandoned"
            )
        if record.txid is not None:
            where = await self.locate(record.txid)
            if where.seen:
                raise HashfarmError(
                    f"payout {payout_id}: {record.txid} is in "
                    f"{'a block' if where.block_hash else 'the mempool'}; not abandoned"
                )
            try:
                await self.wallet.abandontransaction(record.txid)
            except NodeUnavailable:
                raise
            except NodeError as exc:  # not in the wallet (never broadcast, or dropped)
                log.info("payout %d: abandontransaction: %s", payout_id, exc)
        now = self.clock()
        return await self.store.call(lambda s: record_abandoned(s, payout_id, now))


def check_payment(
    raw_hex: str,
    txid: str,
    outputs: Sequence[tuple[str, int]],
    network: Network,
) -> None:
    """Refuse a signed transaction that does not pay exactly `outputs` (each address its
    amount, once) or whose txid is not the one the wallet named."""
    try:
        tx = Transaction.parse(bytes.fromhex(raw_hex))
    except (ValueError, HashfarmError) as exc:
        raise HashfarmError(f"the wallet's transaction does not parse: {exc}") from exc
    if tx.txid_hex() != txid:
        raise HashfarmError(f"the wallet named txid {txid}, the transaction is {tx.txid_hex()}")
    have: dict[bytes, list[int]] = {}
    for out in tx.outputs:
        have.setdefault(out.script_pubkey, []).append(out.value)
    for address, sats in outputs:
        script = address_to_script(address, network)
        if have.get(script, []).count(sats) != 1:
            raise HashfarmError(
                f"the wallet's transaction does not pay {address} exactly {sats} sats once"
            )


__all__ = [
    "BROADCAST_WAIT",
    "CONFIRMED",
    "DEFAULT_CONFIRMATIONS",
    "Location",
    "PayoutNode",
    "PayoutReport",
    "PayoutService",
    "PayoutWallet",
    "SignedPayment",
    "check_payment",
]
