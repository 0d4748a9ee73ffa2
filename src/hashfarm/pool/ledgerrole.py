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

Job terms (PPS/FPPS). With accounting enabled the ledger also writes the front ends' job
terms (`PREFIX.jobterms`) through the accountant's `JobTermsRecorder`, before the shares of
the same batch. A share may still arrive before its job's terms (a front end's spool
replays a terms message after shares it published directly meanwhile): under PPS/FPPS
(`hold_for_terms`) such a share is **held**: not written, not acknowledged, and written as
soon as a later batch brought its terms. So the database keeps the single process's order,
a share's job terms committed before the share, and the crediting service prices it exactly
as there. A share is held at most `terms_wait` seconds (and at most `hold_max` shares at
once, the oldest released first); then it is written without its terms, logged as an error:
the crediting service then stops pricing before it and waits (`unpriced`), never pricing it
at other terms (its job id names its front end's run, `shareflow.cluster_job_id`). A held
share the broker redelivers (its ack wait passed) replaces its earlier delivery; a ledger
killed meanwhile loses nothing (nothing held was acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hashfarm.errors import HashfarmError, LedgerError
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.shareflow import (
    ShareFlowError,
    decode_block,
    decode_share_run,
    decode_terms,
    subjects,
)
from hashfarm.pool.storage.base import GroupCommitLedger

if TYPE_CHECKING:  # accounting is loaded where terms are decoded (shareflow.decode_terms)
    from hashfarm.pool.jobterms import JobTermsRow

log = logging.getLogger(__name__)

LAG_INTERVAL = 2.0  # seconds between two reads of the consumer's lag (health, metrics)
FETCH_TIMEOUT = 1.0  # seconds one fetch waits for messages
ERROR_PAUSE = 1.0  # seconds after a failed fetch or commit before the next try
TERMS_WAIT = 300.0  # seconds a share is held for its job's terms before it is written without
HOLD_MAX = 50_000  # shares held for their terms at once (the oldest released first beyond)


class DeliveryLike(Protocol):
    """One message as `hashfarm.broker.Consumer` hands it over."""

    subject: str
    msg_id: str
    payload: bytes


class TermsStoreLike(Protocol):
    """What the ledger role needs of `pool.jobterms.JobTermsRecorder`."""

    async def write_now(self, rows: list[JobTermsRow]) -> None: ...

    async def recorded(self, keys: list[tuple[int, str]]) -> set[tuple[int, str]]: ...


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
    terms: int = 0  # job terms deliveries committed (duplicates included)
    terms_ignored: int = 0  # job terms acknowledged unwritten (accounting not enabled here)
    shares_held: int = 0  # shares waiting now for their job's terms (unacknowledged)
    held_total: int = 0  # shares that ever waited for their terms (each counted once)
    released_without_terms: int = 0  # written without their terms after `terms_wait`


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
        terms: TermsStoreLike | None = None,
        hold_for_terms: bool = False,
        terms_wait: float = TERMS_WAIT,
        hold_max: int = HOLD_MAX,
    ) -> None:
        self.consumer = consumer
        self.ledger = ledger
        self.shares_subject, self.blocks_subject, self.terms_subject = subjects(subject_prefix)
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.terms = terms  # None: job terms are acknowledged and dropped (no accounting)
        self.hold_for_terms = hold_for_terms and terms is not None  # PPS/FPPS
        self.terms_wait = terms_wait
        self.hold_max = hold_max
        self.stats = LedgerRoleStats()
        # msg_id -> (delivery, share, (height, job id), monotonic time first held)
        self._held: OrderedDict[str, tuple[Any, ShareRecord, tuple[int, str], float]] = (
            OrderedDict()
        )
        self._known: OrderedDict[tuple[int, str], None] = OrderedDict()  # terms committed

    def use_terms(self, terms: TermsStoreLike, *, hold: bool) -> None:
        """Write the front ends' job terms through `terms`; `hold`: hold a share until its
        job's terms are committed (PPS/FPPS)."""
        self.terms = terms
        self.hold_for_terms = hold

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
        if not deliveries and not self._held:
            return 0
        shares, blocks, rows, gated = self._decode(deliveries)
        try:
            if rows:
                assert self.terms is not None
                await self.terms.write_now(rows)  # before the shares that answered them
                self._remember((r.height, r.job_id) for r in rows)
                for msg_id in [m for m, g in gated.items() if g[2] in self._known]:
                    shares.append(gated.pop(msg_id)[1])  # its terms came in the same batch
            acked: list[Any] = [d for d in deliveries if d.msg_id not in gated]
            if self.hold_for_terms:
                released = await self._release(gated)
            else:
                released = [(d, rec) for d, rec, _ in gated.values()]
            acked += [d for d, _ in released]
            await self.commit(shares + [rec for _, rec in released], blocks)
        except LedgerError as exc:
            self.stats.failed_batches += 1
            log.error("ledger: batch of %d not committed, left for redelivery: %s",
                      len(deliveries), exc)  # fmt: skip
            raise
        if not acked:
            return len(deliveries)  # every delivery held for its terms
        await self.consumer.ack(acked)
        self.stats.batches += 1
        self.stats.shares += len(shares) + len(released)
        self.stats.blocks += len(blocks)
        self.stats.terms += len(rows)
        self.stats.last_commit = time.time()
        return len(deliveries)

    def _decode(
        self, deliveries: list[DeliveryLike]
    ) -> tuple[
        list[ShareRecord],
        list[BlockRecord],
        list[JobTermsRow],
        dict[str, tuple[Any, ShareRecord, tuple[int, str]]],
    ]:
        """(shares to write, blocks, terms rows, shares that name a job whose terms may not
        be committed yet: msg_id -> (delivery, share, (height, job id)))."""
        shares: list[ShareRecord] = []
        blocks: list[BlockRecord] = []
        rows: list[JobTermsRow] = []
        gated: dict[str, tuple[Any, ShareRecord, tuple[int, str]]] = {}
        for d in deliveries:
            try:
                if d.subject == self.shares_subject:
                    rec, run = decode_share_run(d.payload)
                    key = (rec.height, rec.job_id)
                    if run is None or not self.hold_for_terms or key in self._known:
                        shares.append(rec)
                    else:
                        gated[d.msg_id] = (d, rec, key)
                elif d.subject == self.blocks_subject:
                    blocks.append(decode_block(d.payload))
                elif d.subject == self.terms_subject:
                    row = decode_terms(d.payload)
                    if self.terms is None:
                        self.stats.terms_ignored += 1
                    else:
                        rows.append(row)
                else:
                    raise ShareFlowError(f"unexpected subject {d.subject!r}")
            except ShareFlowError as exc:
                self.stats.unreadable += 1
                log.error("ledger: dropping unreadable message %r: %s", d.msg_id[:80], exc)
        return shares, blocks, rows, gated

    def _remember(self, keys: Any) -> None:
        for key in keys:
            self._known[key] = None
            self._known.move_to_end(key)
        while len(self._known) > 4 * self.hold_max:  # bounded: old jobs are asked again
            self._known.popitem(last=False)

    async def _release(
        self, gated: dict[str, tuple[Any, ShareRecord, tuple[int, str]]]
    ) -> list[tuple[Any, ShareRecord]]:
        """The shares to write now (their terms committed, or held too long); the others of
        `gated` join the held ones (a redelivery replacing its earlier delivery)."""
        now = time.monotonic()
        for msg_id, (d, rec, key) in gated.items():
            earlier = self._held.pop(msg_id, None)
            if earlier is None:
                self.stats.held_total += 1
            self._held[msg_id] = (d, rec, key, now if earlier is None else earlier[3])
        if not self._held:
            return []
        unknown = sorted({key for _, _, key, _ in self._held.values()} - self._known.keys())
        if unknown:
            assert self.terms is not None
            self._remember(await self.terms.recorded(unknown))
        out: list[tuple[Any, ShareRecord]] = []
        late: list[ShareRecord] = []
        for msg_id in list(self._held):
            d, rec, key, since = self._held[msg_id]
            overflow = len(self._held) > self.hold_max
            if key in self._known or overflow or now - since >= self.terms_wait:
                del self._held[msg_id]
                out.append((d, rec))
                if key not in self._known:
                    late.append(rec)
        if late:
            self.stats.released_without_terms += len(late)
            log.error("ledger: %d shares written without their job's terms after waiting "
                      "(e.g. job %s at height %d): they wait unpriced", len(late),
                      late[0].job_id, late[0].height)  # fmt: skip
        self.stats.shares_held = len(self._held)
        return out

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
