"""The terms of every job the pool publishes, recorded for accounting (PPS/FPPS and TIDES).

PPS prices a share at the terms of the job it answered (network difficulty from the
template's bits, the subsidy at its height, the template's fees), and a TIDES block is
credited from the coinbase plan of the job it was found on. The `shares` table carries each
share's `job_id`, `height` and `time` but not those terms, so the pool records them here, one
`acct_job_terms` row per published job (`accounting/schema.py`, version 3), with the job's
TIDES coinbase plan in `acct_coinbase_plans` when it has one.

Job ids are the `JobBook`'s sequence numbers, which restart with every pool process: a row
carries the process's random `pool_run` id and its `published_at` time, and accounting finds a
share's job as the row with the share's (height, job_id) published last at or before the
share (`accounting.crediting.job_of_share`). `published_at` is taken in `note()`, which the
pool calls before the job's notify is written, so every share answering it is later.

`note()` never blocks the event loop: it queues the row, and one writer task commits queued
rows, in order, in one transaction per wake-up on the recorder's own database connection
and thread (`accounting.store`). Jobs come every 20-30 s, so this costs nothing next to the
share ledger. A database outage is retried with capped backoff, rows kept in order (at most
`queue_max`; beyond that the oldest are dropped and logged: their shares then wait unpriced,
reported by the crediting service, never priced at wrong terms).

In cluster roles a front end has no database: its `JobTermsSink` is `shareflow.BrokerJobTerms`,
which publishes the same row through the broker, and the ledger role writes the rows it
consumes with `write_rows` (`JobTermsRecorder.write_now`), idempotently on (pool_run, job_id),
and asks which shares' jobs are recorded (`recorded`) before it stores those shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from hashfarm.accounting.crediting import plan_to_json
from hashfarm.accounting.store import AccountingStore, SqlStore, open_store
from hashfarm.accounting.tides import CoinbasePlan
from hashfarm.chain.networks import get_network
from hashfarm.chain.subsidy import block_subsidy
from hashfarm.errors import LedgerError, TransientLedgerError
from hashfarm.pool.jobs import PoolJob

log = logging.getLogger(__name__)

RETRY_FIRST = 0.1  # seconds before the first retry of a failed write
RETRY_CAP = 5.0  # the backoff never grows beyond this


@dataclass(frozen=True, slots=True)
class JobTermsRow:
    """One published job's terms (an `acct_job_terms` row) and its coinbase plan, if any."""

    pool_run: str
    job_id: str
    generation: int
    prev_hash: str  # display hex
    height: int
    bits: int
    network_difficulty: float
    subsidy_sats: int
    fees_sats: int
    coinbase_value: int
    published_at: float
    plan_spec: str | None = None  # the TIDES scheme spec the plan was built under
    plan: CoinbasePlan | None = None
    plan_extra: Mapping[str, object] | None = None  # the window explaining the plan

    def columns(self) -> tuple[str, str, int, str, int, int, float, int, int, int, float]:
        """The row's `acct_job_terms` columns in their INSERT order (the plan goes apart);
        also the order the broker's job-terms message carries them in."""
        return (
            self.pool_run,
            self.job_id,
            self.generation,
            self.prev_hash,
            self.height,
            self.bits,
            self.network_difficulty,
            self.subsidy_sats,
            self.fees_sats,
            self.coinbase_value,
            self.published_at,
        )


class JobTermsSink(Protocol):
    """Where Pool notes each job it publishes: `JobTermsRecorder` (the single process) or a
    front end's `shareflow.BrokerJobTerms`."""

    def note(
        self,
        job: PoolJob,
        plan: CoinbasePlan | None = None,
        plan_spec: str | None = None,
        plan_extra: Mapping[str, object] | None = None,
    ) -> None: ...


def terms_row(
    job: PoolJob,
    network: str,
    pool_run: str,
    published_at: float,
    plan: CoinbasePlan | None = None,
    plan_spec: str | None = None,
    plan_extra: Mapping[str, object] | None = None,
) -> JobTermsRow:
    """The row recording `job`: the subsidy by consensus at its height, the fees the rest
    of the template's coinbase value (what that block would have paid beyond the subsidy)."""
    template = job.template
    subsidy = block_subsidy(template.height, get_network(network))
    if template.coinbase_value < subsidy:
        raise ValueError(
            f"template at height {template.height} is worth {template.coinbase_value} sats, "
            f"below the subsidy {subsidy}"
        )
    if plan is not None and (plan_spec is None or plan.value != template.coinbase_value):
        raise ValueError("a coinbase plan needs its scheme spec and the template's value")
    return JobTermsRow(
        pool_run=pool_run,
        job_id=job.job_id,
        generation=job.generation,
        prev_hash=template.prev_hash[::-1].hex(),
        height=template.height,
        bits=template.bits,
        network_difficulty=template.difficulty,
        subsidy_sats=subsidy,
        fees_sats=template.coinbase_value - subsidy,
        coinbase_value=template.coinbase_value,
        published_at=published_at,
        plan_spec=plan_spec,
        plan=plan,
        plan_extra=plan_extra,
    )


def write_rows(sql: SqlStore, rows: list[JobTermsRow]) -> None:
    """Insert rows (one transaction, in order); a row already written is skipped."""
    with sql.tx():
        for row in rows:
            done = sql.q(
                "SELECT id FROM acct_job_terms WHERE pool_run = ? AND job_id = ?",
                (row.pool_run, row.job_id),
            )
            if done:
                continue
            sql.q(
                "INSERT INTO acct_job_terms (pool_run, job_id, generation, prev_hash, height, "
                "bits, network_difficulty, subsidy_sats, fees_sats, coinbase_value, "
                "published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row.columns(),
            )
            if row.plan is None:
                continue
            ref = sql.q(
                "SELECT id FROM acct_job_terms WHERE pool_run = ? AND job_id = ?",
                (row.pool_run, row.job_id),
            )[0][0]
            sql.q(
                "INSERT INTO acct_coinbase_plans (job_ref, scheme, value, fee, pool_sats, plan) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    int(ref),
                    row.plan_spec,
                    row.plan.value,
                    row.plan.fee,
                    row.plan.pool_sats,
                    plan_to_json(row.plan, row.plan_extra),
                ),
            )


def recorded_jobs(sql: SqlStore, keys: list[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which (height, job_id) pairs have a terms row."""
    found: set[tuple[int, str]] = set()
    for height, job_id in keys:
        if sql.q(
            "SELECT 1 FROM acct_job_terms WHERE height = ? AND job_id = ? LIMIT 1",
            (height, job_id),
        ):
            found.add((height, job_id))
    return found


class JobTermsRecorder:
    """Records the terms of each job the pool publishes (see the module docstring)."""

    def __init__(
        self,
        url: str,
        network: str,
        *,
        queue_max: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.network = network
        self.pool_run = secrets.token_hex(8)
        self.clock = clock
        self.queue_max = queue_max
        self.written = 0  # rows committed (tests, metrics)
        self.dropped = 0  # rows dropped: the queue overflowed during a long outage
        self._queue: deque[JobTermsRow] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._store: AccountingStore | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Open the database (accounting's migrations applied) and start the writer."""
        self._store = await open_store(self.url, create=True)
        self._writer = asyncio.create_task(self._run(), name="job-terms-writer")

    def note(
        self,
        job: PoolJob,
        plan: CoinbasePlan | None = None,
        plan_spec: str | None = None,
        plan_extra: Mapping[str, object] | None = None,
    ) -> None:
        """Queue `job`'s terms (and its TIDES coinbase plan); call before its notify goes out.

        Never blocks, never raises into the pool: a job that cannot be recorded is logged
        (its shares will wait unpriced, which the crediting service reports)."""
        try:
            row = terms_row(
                job, self.network, self.pool_run, self.clock(), plan, plan_spec, plan_extra
            )
        except Exception:
            log.exception("job %s: terms not recorded", job.job_id)
            return
        if len(self._queue) >= self.queue_max:
            self._queue.popleft()
            self.dropped += 1
            log.error("job terms queue full (%d): the oldest job's terms dropped", self.queue_max)
        self._queue.append(row)
        self._idle.clear()
        self._wakeup.set()

    async def write_now(self, rows: list[JobTermsRow]) -> None:
        """Commit `rows` now, in order, each once (the ledger role: rows from the broker;
        raises LedgerError, TransientLedgerError included, when they are not committed)."""
        if not rows:
            return
        if self._store is None:
            raise LedgerError("job terms recorder not started")
        await self._store.call(partial(write_rows, rows=rows))
        self.written += len(rows)

    async def recorded(self, keys: list[tuple[int, str]]) -> set[tuple[int, str]]:
        """Which (height, job_id) pairs have their terms committed."""
        if not keys:
            return set()
        if self._store is None:
            raise LedgerError("job terms recorder not started")
        return await self._store.call(partial(recorded_jobs, keys=keys))

    async def flush(self) -> None:
        """Wait until every queued row is committed (tests; close)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Write what is queued (a bounded wait), stop the writer, close the database."""
        if self._writer is None:
            return
        self._closing = True
        self._wakeup.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._writer), RETRY_CAP * 2)
        if not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._writer = None
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            if not self._queue:
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            rows = list(self._queue)
            assert self._store is not None
            try:
                await self._store.call(partial(write_rows, rows=rows))
            except TransientLedgerError as exc:
                if self._closing and delay >= RETRY_CAP:
                    log.error("job terms not written at shutdown (%d jobs): %s", len(rows), exc)
                    self._queue.clear()
                    continue
                log.warning("job terms not written yet (retrying in %.1f s): %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP)
                continue
            except (LedgerError, ValueError, TypeError) as exc:  # permanent: never written
                log.error("job terms of %d jobs not recorded: %s", len(rows), exc)
            else:
                self.written += len(rows)
            delay = RETRY_FIRST
            taken = {id(r) for r in rows}  # rows queued meanwhile stay
            while self._queue and id(self._queue[0]) in taken:
                self._queue.popleft()
