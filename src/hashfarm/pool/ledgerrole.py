"""The ledger role: the broker's shares and blocks into PostgreSQL, each credited once.

`hashfarm pool --role ledger` runs one `LedgerRole`: it fetches a batch of deliveries from a
durable JetStream consumer (`hashfarm.broker.Consumer`), decodes them (`pool/shareflow.py`),
writes them through the pool's own PostgreSQL ledger in its idempotent mode (one transaction
per batch, a share whose `share_id` is already stored skipped) and acknowledges the batch to
the broker only after that transaction committed. So:

* the ledger killed before the commit: nothing was acked, the broker redelivers the batch;
* killed after the commit, before the ack: the redelivered shares are skipped by their id;
* a front end's spool replayed after a broker outage, or one header sent to two front ends:
  the same id, skipped too.

A message this version cannot read is logged and acknowledged (it would otherwise come back
for ever and hold up the rest); a permanent database error leaves the batch unacknowledged
(the broker redelivers it after its ack wait) and is logged. The accounting service runs
beside it as in the single process with `[accounting] enabled` (pool/accountant.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hashfarm.errors import HashfarmError, LedgerError
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.shareflow import ShareFlowError, decode_block, decode_share, subjects
from hashfarm.pool.storage.base import GroupCommitLedger

log = logging.getLogger(__name__)

LAG_INTERVAL = 2.0  # seconds between two reads of the consumer's lag (health, metrics)
FETCH_TIMEOUT = 1.0  # seconds one fetch waits for messages
ERROR_PAUSE = 1.0  # seconds after a failed fetch or commit before the next try


class DeliveryLike(Protocol):
    """One message as `hashfarm.broker.Consumer` hands it over."""

    subject: str
    msg_id: str
    payload: bytes


class ConsumerLike(Protocol):
    """What the ledger role needs of `hashfarm.broker.Consumer` (its interface)."""

    async def start(self) -> None: ...

    async def fetch(self, batch: int, timeout: float) -> Sequence[Any]: ...  # noqa: ASYNC109

    async def ack(self, deliveries: Any) -> None: ...  # the list fetch returned

    async def lag(self) -> int: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class LedgerRoleStats:
    """Counters for /health and /metrics."""

    batches: int = 0  # batches committed and acked
    shares: int = 0  # share deliveries committed (duplicates included)
    blocks: int = 0  # block deliveries committed
    unreadable: int = 0  # deliveries dropped (acked) because they could not be decoded
    failed_batches: int = 0  # batches left unacked after a database error
    lag: int | None = None  # messages the durable consumer has not acked (None: unknown)
    lag_read_at: float = 0.0  # UNIX time of that reading (it is refreshed every LAG_INTERVAL)
    broker_connected: bool = False  # the last fetch or lag read reached the broker
    last_commit: float = 0.0  # UNIX time of the last committed batch


class LedgerRole:
    """Consume, commit, acknowledge; `await run(stop)` until `stop` is set."""

    def __init__(
        self,
        consumer: ConsumerLike,
        ledger: GroupCommitLedger,
        *,
        subject_prefix: str,
        batch: int = 512,
        fetch_timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self.consumer = consumer
        self.ledger = ledger
        self.shares_subject, self.blocks_subject = subjects(subject_prefix)
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.stats = LedgerRoleStats()

    @property
    def duplicates_skipped(self) -> int:
        """Shares whose id the database already held (redeliveries, replays)."""
        return int(getattr(self.ledger, "duplicates_skipped", 0))

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until `stop` is set; the batch in progress is finished first."""
        lagging = asyncio.ensure_future(self._watch_lag(stop))
        try:
            while not stop.is_set():
                try:
                    await self.step()
                except HashfarmError as exc:  # broker or database away: try again shortly
                    self.stats.broker_connected = False
                    log.warning("ledger: %s; retrying in %.0fs", exc, ERROR_PAUSE)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), ERROR_PAUSE)
        finally:
            lagging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lagging

    async def step(self) -> int:
        """Fetch one batch, commit it, ack it; the number of deliveries (0: none came)."""
        deliveries: list[DeliveryLike] = list(
            await self.consumer.fetch(self.batch, self.fetch_timeout)
        )
        self.stats.broker_connected = True
        if not deliveries:
            return 0
        shares, blocks = self._decode(deliveries)
        try:
            await self.commit(shares, blocks)
        except LedgerError as exc:
            self.stats.failed_batches += 1
            log.error("ledger: batch of %d not committed, left for redelivery: %s",
                      len(deliveries), exc)  # fmt: skip
            raise
        await self.consumer.ack(deliveries)
        self.stats.batches += 1
        self.stats.shares += len(shares)
        self.stats.blocks += len(blocks)
        self.stats.last_commit = time.time()
        return len(deliveries)

    def _decode(
        self, deliveries: list[DeliveryLike]
    ) -> tuple[list[ShareRecord], list[BlockRecord]]:
        shares: list[ShareRecord] = []
        blocks: list[BlockRecord] = []
        for d in deliveries:
            try:
                if d.subject == self.shares_subject:
                    shares.append(decode_share(d.payload))
                elif d.subject == self.blocks_subject:
                    blocks.append(decode_block(d.payload))
                else:
                    raise ShareFlowError(f"unexpected subject {d.subject!r}")
            except ShareFlowError as exc:
                self.stats.unreadable += 1
                log.error("ledger: dropping unreadable message %r: %s", d.msg_id[:80], exc)
        return shares, blocks

    async def commit(self, shares: list[ShareRecord], blocks: list[BlockRecord]) -> None:
        """Write shares and blocks through the group-commit ledger; return once every one is
        committed (LedgerError if any failed for good)."""
        loop = asyncio.get_running_loop()
        all_done: asyncio.Future[None] = loop.create_future()
        left = len(shares)
        failure: list[LedgerError] = []

        def one_done(error: LedgerError | None) -> None:
            nonlocal left
            if error is not None:
                failure.append(error)
            left -= 1
            if left == 0 and not all_done.done():
                all_done.set_result(None)

        for rec in shares:
            self.ledger.enqueue_share(rec, one_done)
        if not shares:
            all_done.set_result(None)
        results = await asyncio.gather(
            all_done, *(self.ledger.record_block(b) for b in blocks), return_exceptions=True
        )
        failure += [r for r in results if isinstance(r, LedgerError)]
        others = [r for r in results if isinstance(r, BaseException) and r not in failure]
        if others:
            raise others[0]
        if failure:
            raise failure[0]

    async def _watch_lag(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.stats.lag = await self.consumer.lag()
                self.stats.lag_read_at = time.time()
            except HashfarmError as exc:
                self.stats.lag = None
                self.stats.broker_connected = False
                log.debug("ledger: cannot read the consumer's lag: %s", exc)
            await asyncio.sleep(LAG_INTERVAL)
