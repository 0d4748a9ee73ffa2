"""Group commit: shares queue in memory and are committed in batches, one batch at a time.

`record_share` puts the record on the queue and waits; at the end of the loop turn that
queued it (or `batch_wait` seconds later, or at once when `batch_max` are queued) up to
`batch_max` queued records are written in ONE transaction, and only when that transaction has
committed is every waiter of the batch released. The engine runs on callbacks, not a task:
when a batch's outcome arrives, its waiters are released and the next batch (what queued
meanwhile) is started in the same pass, without waiting for a task to be resumed a loop turn
later (bench/bench_pool_tail.py). So a share the pool acknowledges is always in a committed
transaction; what "committed" survives (process crash, power loss) is the backend's
synchronous policy, documented in docs/persistence.md.

A transient database failure (locked, connection lost) is retried with capped backoff while
the waiters keep waiting, so nothing is acknowledged and nothing is dropped; a permanent one
(a constraint or SQL error) fails the batch's waiters with `LedgerError`.

The backlog is bounded: while `queue_max` shares are queued or being written (a database
outage), a further share is refused at once with `LedgerBacklogFull` (the pool answers it with
an error and does not acknowledge it); blocks are always queued. `enqueue_share` is the pool's
hot path: no task or future per share, each share's callback runs in one pass after the
commit.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hashfarm.errors import LedgerError, TransientLedgerError
from hashfarm.pool.records import BlockRecord, ShareRecord

log = logging.getLogger("hashfarm.pool.storage")

Record = ShareRecord | BlockRecord
Done = Callable[[LedgerError | None], None]
"""Called once the share's transaction committed (None) or failed for good (the error)."""
Waiter = asyncio.Future[None] | Done


class LedgerBacklogFull(LedgerError):
    """The ledger already holds `queue_max` uncommitted shares: this one is not recorded."""


@dataclass(frozen=True, slots=True)
class Batch:
    """The records one transaction writes, split by table."""

    shares: list[ShareRecord]
    blocks: list[BlockRecord]

    def __len__(self) -> int:
        return len(self.shares) + len(self.blocks)


class GroupCommitLedger(abc.ABC):
    """A `ShareLedger` whose writes are batched into few transactions, one at a time."""

    retry_first = 0.05  # seconds before the first retry of a failed commit
    retry_cap = 5.0  # seconds: the backoff between retries never grows beyond this

    def __init__(self, *, batch_max: int, batch_wait: float, queue_max: int = 50_000) -> None:
        self._batch_max = batch_max
        self._batch_wait = batch_wait
        self._queue_max = queue_max
        self._queue: list[tuple[Record, Waiter]] = []
        self.shares_pending = 0  # shares queued or in the transaction being written
        self._refusing = False  # the backlog is full: logged once, until it drains
        self._writing: list[tuple[Record, Waiter]] | None = None  # the batch being written
        self._due: asyncio.Handle | None = None  # the next batch's scheduled start
        self._task: asyncio.Task[None] | None = None  # a write run as a task (`_begin_write`)
        self._failures = 0  # failed attempts at the batch being written
        self._delay = self.retry_first  # before its next attempt
        self._idle = asyncio.Event()  # nothing queued and nothing being written
        self._running = False
        self._closing = False
        # Run once after each batch's callbacks, in the same pass: the pool writes the answers
        # they queued at once, not after the loop's next round of reads (bench_pool_tail).
        self.on_released: Callable[[], None] | None = None
        self.batches_committed = 0  # for benchmarks and the metrics page
        self.records_committed = 0

    async def start(self) -> None:
        """Open the database, bring the schema up to date and start taking records."""
        await self._open()
        self._running = True
        self._idle.set()

    async def record_share(self, rec: ShareRecord) -> None:
        """Queue one share; return once the transaction holding it has committed.

        Raises LedgerBacklogFull at once while the backlog is full."""
        self._admit_share()
        await self._submit(rec)

    def enqueue_share(self, rec: ShareRecord, done: Done) -> None:
        """Queue one share; `done(None)` runs once its transaction has committed, or
        `done(error)` if it failed for good. Raises LedgerBacklogFull (or LedgerError when
        closed) at once instead of queueing; `done` is then never called."""
        self._admit_share()
        self._check_running()
        self._enqueue(rec, done)

    async def record_block(self, rec: BlockRecord) -> None:
        """Queue one block (insert, or update the verdict of a known hash); wait for commit."""
        await self._submit(rec)

    async def close(self) -> None:
        """Commit everything queued (without lingering), then close the database."""
        if not self._running:
            return
        self._closing = True
        if self._queue:
            self._schedule(now=True)
        await self._idle.wait()
        self._running = False
        await self._close()

    def _admit_share(self) -> None:
        if self.shares_pending < self._queue_max:
            return
        if not self._refusing:
            self._refusing = True
            log.error(
                "ledger backlog full (%d shares not yet committed): refusing shares until "
                "the database accepts writes again",
                self.shares_pending,
            )
        raise LedgerBacklogFull("ledger backlog full")

    def _check_running(self) -> None:
        if self._closing or not self._running:
            raise LedgerError("the share ledger is not running (closed or never started)")

    def _enqueue(self, rec: Record, waiter: Waiter) -> None:
        self._queue.append((rec, waiter))
        if isinstance(rec, ShareRecord):
            self.shares_pending += 1
        self._idle.clear()
        self._schedule(now=len(self._queue) >= self._batch_max)

    async def _submit(self, rec: Record) -> None:
        self._check_running()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(rec, future)
        # A waiter cancelled here (its miner hung up) leaves its record queued: it is still
        # written, only nobody is told.
        await future

    def _schedule(self, *, now: bool = False) -> None:
        """Start the next batch at the end of this loop turn (the records this turn's reads
        queue join it), `batch_wait` seconds later, or, `now`, at the next callback. A
        batch being written starts the next one itself when it ends."""
        if self._writing is not None or (self._due is not None and not now):
            return
        if self._due is not None:
            self._due.cancel()
        loop = asyncio.get_running_loop()
        if now or self._closing or self._batch_wait <= 0:
            self._due = loop.call_soon(self._next_batch)
        else:
            self._due = loop.call_later(self._batch_wait, self._next_batch)

    def _next_batch(self) -> None:
        """Take up to `batch_max` queued records and start writing them (if none is being
        written and anything is queued)."""
        if self._due is not None:
            self._due.cancel()
            self._due = None
        if self._writing is not None:
            return
        if not self._queue:
            self._idle.set()
            return
        taken = self._queue[: self._batch_max]
        del self._queue[: self._batch_max]
        self._writing = taken
        self._failures, self._delay = 0, self.retry_first
        batch = Batch(
            [r for r, _ in taken if isinstance(r, ShareRecord)],
            [r for r, _ in taken if isinstance(r, BlockRecord)],
        )
        self._attempt(batch)

    def _attempt(self, batch: Batch) -> None:
        self._begin_write(batch, lambda error: self._written(batch, error))

    def _begin_write(self, batch: Batch, done: Callable[[BaseException | None], None]) -> None:
        """Write the batch in one transaction, then call `done(None)`, or `done(error)`
        ((Transient)LedgerError). Here: `_write` as a task; a backend that learns the outcome
        in a callback of its own overrides this to call `done` from there."""
        task = asyncio.get_running_loop().create_task(self._write(batch), name="ledger-commit")
        self._task = task

        def finished(task: asyncio.Task[None]) -> None:
            self._task = None
            if task.cancelled():
                done(LedgerError("the share ledger's commit was cancelled"))
            else:
                done(task.exception())

        task.add_done_callback(finished)

    def _written(self, batch: Batch, outcome: BaseException | None) -> None:
        """A batch's outcome: retry it (transient), or release its waiters and start the
        next batch in this same pass."""
        if isinstance(outcome, TransientLedgerError) and self._retry(batch, outcome):
            return
        error = self._settle(batch, outcome)
        taken, self._writing = self._writing or [], None
        self.shares_pending -= len(batch.shares)
        if error is None:
            self.batches_committed += 1
            self.records_committed += len(taken)
        if self._refusing and self.shares_pending <= self._queue_max // 2:
            # (not as soon as one share fits: a pool draining a backlog under load would log
            # a full/caught-up pair per commit)
            self._refusing = False
            log.info("ledger caught up (%d shares waiting): accepting shares again",
                     self.shares_pending)  # fmt: skip
        self._release(taken, error)
        if isinstance(error, TransientLedgerError) and self._closing:
            # Shutting down and the database is still away: the queued batches would each
            # retry as long (a SIGTERM could wait an hour); fail them now, unacknowledged.
            self._fail_all(error)
        if self._queue and (self._batch_wait <= 0 or self._closing):
            self._next_batch()  # what queued during the commit: no loop turn in between
        elif self._queue:
            self._schedule(now=len(self._queue) >= self._batch_max)
        else:
            self._idle.set()

    def _retry(self, batch: Batch, outcome: TransientLedgerError) -> bool:
        """Try the batch again after a capped backoff (its waiters keep waiting); False
        once closing and at the cap: then it fails."""
        self._failures += 1
        if self._closing and self._delay >= self.retry_cap:
            return False
        if self._failures & (self._failures - 1) == 0:  # 1st, 2nd, 4th, 8th...: an outage
            log.warning(  # logs a few lines, not one per retry
                "ledger commit failed %d time(s) (%s); retrying in %.2fs (backoff capped at "
                "%gs)", self._failures, outcome, self._delay, self.retry_cap,
            )  # fmt: skip
        asyncio.get_running_loop().call_later(self._delay, self._attempt, batch)
        self._delay = min(self._delay * 2, self.retry_cap)
        return True

    def _settle(self, batch: Batch, outcome: BaseException | None) -> LedgerError | None:
        """What the batch's waiters are told: None (committed) or the error, logged."""
        if outcome is None:
            if self._failures:
                log.info("ledger commit succeeded after %d failed attempts", self._failures)
            return None
        if isinstance(outcome, TransientLedgerError):  # given up: closing
            return outcome
        if not isinstance(outcome, LedgerError):
            log.error("ledger commit of %d records failed", len(batch), exc_info=outcome)
            outcome = LedgerError(f"ledger commit failed: {outcome!r}")
        log.error("ledger commit of %d records failed for good: %s", len(batch), outcome)
        return outcome

    def _release(self, taken: list[tuple[Record, Waiter]], error: LedgerError | None) -> None:
        """Tell every waiter of a batch, in one pass; then `on_released`."""
        for _, waiter in taken:
            if isinstance(waiter, asyncio.Future):
                if waiter.done():  # its waiter was cancelled
                    continue
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
                continue
            try:
                waiter(error)
            except Exception:  # one broken callback must not stall the writer
                log.exception("ledger completion callback failed")
        if self.on_released is not None:
            try:
                self.on_released()
            except Exception:
                log.exception("ledger release hook failed")

    def _fail_all(self, error: LedgerError) -> None:
        queued, self._queue = self._queue, []
        self.shares_pending -= sum(isinstance(r, ShareRecord) for r, _ in queued)
        self._release(queued, error)

    @abc.abstractmethod
    async def _open(self) -> None:
        """Connect and apply pending migrations (raises LedgerError)."""

    @abc.abstractmethod
    async def _write(self, batch: Batch) -> None:
        """Write the batch in one transaction; raise (Transient)LedgerError on failure."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Release the connection."""

    @abc.abstractmethod
    async def recent_blocks(self, limit: int = 50) -> list[BlockRecord]:
        """The newest blocks first, as recorded."""

    @abc.abstractmethod
    async def share_count(self) -> int:
        """How many shares the database holds (accepted and rejected)."""


SHARE_COLUMNS = (
    "time, worker, account, job_id, height, difficulty, share_difficulty, accepted, "
    "reject_reason, extranonce1, block_hash"
)
BLOCK_COLUMNS = (
    "hash, height, reward_sats, finder_worker, finder_account, time, accepted_by_node, node_verdict"
)
# A block may be recorded twice (submitted, then its verdict confirmed): keep the last verdict.
BLOCK_UPSERT_TAIL = (
    " ON CONFLICT (hash) DO UPDATE SET accepted_by_node = excluded.accepted_by_node,"
    " node_verdict = excluded.node_verdict"
)


# The ledger role's insert (pool/ledgerrole.py): the share id too, and a share whose id is
# already there (a broker redelivery, a front end's replay, one header sent to two front
# ends) is skipped, not an error, so a batch of redelivered shares commits and is acked.
SHARE_COLUMNS_WITH_ID = SHARE_COLUMNS + ", share_id"
SHARE_ID_CONFLICT_TAIL = " ON CONFLICT (share_id) DO NOTHING"


def share_id_of(r: ShareRecord) -> str | None:
    """The share's id: its header hash, display-order hex (None when it has none)."""
    return None if r.header_hash is None else r.header_hash[::-1].hex()


def share_row_with_id(r: ShareRecord) -> tuple[object, ...]:
    """The values of one shares row in SHARE_COLUMNS_WITH_ID order."""
    return (*share_row(r), share_id_of(r))


def share_row(r: ShareRecord) -> tuple[object, ...]:
    """The values of one shares row, in SHARE_COLUMNS order."""
    return (
        r.time,
        r.worker,
        r.account,
        r.job_id,
        r.height,
        r.difficulty,
        r.share_difficulty,
        r.accepted,
        r.reject_reason,
        r.extranonce1_hex,
        r.block_hash_hex,
    )


def block_row(r: BlockRecord) -> tuple[object, ...]:
    """The values of one blocks row, in BLOCK_COLUMNS order."""
    return (
        r.hash_hex,
        r.height,
        r.reward_sats,
        r.finder_worker,
        r.finder_account,
        r.time,
        r.accepted_by_node,
        r.node_verdict,
    )


def block_from_row(row: Sequence[Any]) -> BlockRecord:
    """A BlockRecord from a row read in BLOCK_COLUMNS order."""
    h, height, reward, worker, account, t, ok, verdict = row
    return BlockRecord(
        height=int(height),
        hash_hex=str(h),
        reward_sats=int(reward),
        finder_worker=str(worker),
        finder_account=str(account),
        time=float(t),
        accepted_by_node=bool(ok),
        node_verdict=None if verdict is None else str(verdict),
    )
