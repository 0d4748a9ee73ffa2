"""Group commit: shares queue in memory and one writer task commits them in batches.

`record_share` puts the record on the queue and waits; the writer takes up to `batch_max`
queued records (waiting at most `batch_wait` seconds for the batch to fill once the first one
arrived), writes them in ONE transaction, and only when that transaction has committed does it
release every waiter of the batch. So a share the pool acknowledges is always in a committed
transaction; what "committed" survives (process crash, power loss) is the backend's
synchronous policy, documented in docs/persistence.md.

A transient database failure (locked, connection lost) is retried with capped backoff while
the waiters keep waiting, so nothing is acknowledged and nothing is dropped; a permanent one
(a constraint or SQL error) fails the batch's waiters with `LedgerError`.

The backlog is bounded: while `queue_max` shares are queued or being written (a database
outage), a further share is refused at once with `LedgerBacklogFull` (the pool answers it with
an error and does not acknowledge it); blocks are always queued. `enqueue_share` is the pool's
hot path: no task or future per share, the writer calls each share's callback in one pass
after the commit.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
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
    """A `ShareLedger` whose writes are batched into few transactions by one writer task."""

    retry_first = 0.05  # seconds before the first retry of a failed commit
    retry_cap = 5.0  # seconds: the backoff between retries never grows beyond this

    def __init__(self, *, batch_max: int, batch_wait: float, queue_max: int = 50_000) -> None:
        self._batch_max = batch_max
        self._batch_wait = batch_wait
        self._queue_max = queue_max
        self._queue: list[tuple[Record, Waiter]] = []
        self.shares_pending = 0  # shares queued or in the transaction being written
        self._refusing = False  # the backlog is full: logged once, until it drains
        self._wakeup = asyncio.Event()  # set while records are queued
        self._full = asyncio.Event()  # set when a full batch is queued (ends the linger)
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        # Run once after each batch's callbacks, in the same pass: the pool writes the answers
        # they queued at once, not after the loop's next round of reads (bench_pool_tail).
        self.on_released: Callable[[], None] | None = None
        self.batches_committed = 0  # for benchmarks and the metrics page
        self.records_committed = 0

    async def start(self) -> None:
        """Open the database, bring the schema up to date and start the writer."""
        await self._open()
        self._writer = asyncio.create_task(self._run(), name="ledger-writer")

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
        """Commit everything queued, stop the writer and close the database."""
        if self._writer is None:
            return
        self._closing = True
        self._wakeup.set()
        self._full.set()
        await self._writer
        self._writer = None
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
        if self._closing or self._writer is None:
            raise LedgerError("the share ledger is not running (closed or never started)")

    def _enqueue(self, rec: Record, waiter: Waiter) -> None:
        self._queue.append((rec, waiter))
        if isinstance(rec, ShareRecord):
            self.shares_pending += 1
        self._wakeup.set()
        if len(self._queue) >= self._batch_max:
            self._full.set()

    async def _submit(self, rec: Record) -> None:
        self._check_running()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(rec, future)
        # A waiter cancelled here (its miner hung up) leaves its record queued: it is still
        # written, only nobody is told.
        await future

    async def _run(self) -> None:
        try:
            while not (self._closing and not self._queue):
                await self._wakeup.wait()
                if len(self._queue) < self._batch_max and not self._closing:
                    await self._linger()
                taken = self._queue[: self._batch_max]
                del self._queue[: self._batch_max]
                if not self._queue:
                    self._wakeup.clear()
                if taken:
                    await self._commit(taken)
        finally:
            self._fail_all(LedgerError("the share ledger's writer stopped"))

    async def _linger(self) -> None:
        """Let a batch fill for up to batch_wait seconds (or until it is full)."""
        self._full.clear()
        if self._batch_wait <= 0 or len(self._queue) >= self._batch_max:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._full.wait(), self._batch_wait)

    async def _commit(self, taken: list[tuple[Record, Waiter]]) -> None:
        batch = Batch(
            [r for r, _ in taken if isinstance(r, ShareRecord)],
            [r for r, _ in taken if isinstance(r, BlockRecord)],
        )
        error = await self._write_with_retry(batch)
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

    async def _write_with_retry(self, batch: Batch) -> LedgerError | None:
        delay, failures = self.retry_first, 0
        while True:
            try:
                await self._write(batch)
                if failures:
                    log.info("ledger commit succeeded after %d failed attempts", failures)
                return None
            except TransientLedgerError as exc:
                failures += 1
                if self._closing and delay >= self.retry_cap:
                    return exc
                if failures & (failures - 1) == 0:  # 1st, 2nd, 4th, 8th...: an outage logs
                    # a few lines, not one per retry
                    log.warning(
                        "ledger commit failed %d time(s) (%s); retrying in %.2fs (backoff capped "
                        "at %gs)",
                        failures,
                        exc,
                        delay,
                        self.retry_cap,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_cap)
            except LedgerError as exc:
                log.error("ledger commit of %d records failed for good: %s", len(batch), exc)
                return exc

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
