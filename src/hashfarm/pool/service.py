"""The `Pool`: wires node, jobs, sessions, shares, blocks and the ledger together.

Start-up order: check the payout address, fetch the first template, prove the coinbase with
the node (refuse to start otherwise), listen, then start the tip watcher and the sweeper.
Per share: the session judges it (pure), a block is submitted at once, an accepted share is
recorded in the ledger and only then acknowledged, observers see every share.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from hashfarm.chain.address import address_to_script
from hashfarm.chain.coinbase import coinbase_fixed_size
from hashfarm.chain.networks import get_network
from hashfarm.chain.subsidy import block_subsidy
from hashfarm.chain.tx import TxOut
from hashfarm.errors import ConfigError, HashfarmError, NodeError, NodeUnavailable
from hashfarm.node.template import Template
from hashfarm.pool.blocks import BlockSubmitter, Found, prove_coinbase
from hashfarm.pool.jobs import EXTRANONCE1_SIZE, JobBook, PoolJob, payout_outputs
from hashfarm.pool.records import (
    BlockRecord,
    PoolObserver,
    ShareLedger,
    ShareRecord,
    new_share_record,
)
from hashfarm.pool.server import StratumServer, raise_nofile_limit
from hashfarm.pool.session import Session
from hashfarm.pool.settings import PoolSettings
from hashfarm.pool.shareflow import BrokerLedger
from hashfarm.pool.shares import Verdict
from hashfarm.pool.storage.base import GroupCommitLedger, LedgerBacklogFull
from hashfarm.pool.tipwatch import NodeRPC, TipWatcher
from hashfarm.stratum import messages
from hashfarm.stratum.codec import ErrorCode, encode

if TYPE_CHECKING:  # accounting (numpy) is loaded only when the pool records job terms
    from hashfarm.pool.jobterms import JobTermsSink
    from hashfarm.pool.tides import PlanRequest, PlanResult, PlanWorker, Reservations

log = logging.getLogger(__name__)

PROVING_SCRIPT = bytes.fromhex("0014") + bytes(20)  # P2WPKH layout for solo mode's proof
START_TRIES = 50  # attempts (0.2 s apart) to get a first template from a starting node
SWEEP_INTERVAL = 1.0  # seconds between vardiff/idle sweeps of every connection
SWEEP_PARTS = 20  # steps per sweep (10,000 connections: ~0.7 ms each instead of one ~15 ms stall)
GC_YOUNG_THRESHOLD = 10_000  # allocations between young GC collections (CPython's default: 700)


class Pool:
    """One pool process: `await start()`, serve, `await stop()`."""

    def __init__(
        self,
        settings: PoolSettings,
        rpc: NodeRPC,
        ledger: ShareLedger,
        observers: Sequence[PoolObserver] = (),
        *,
        hashblock: Callable[[], AsyncIterator[str]] | None = None,
        job_terms: JobTermsSink | None = None,
    ) -> None:
        self.settings = settings.validate()
        self.job_terms = job_terms  # records each published job's terms (pool/jobterms.py)
        self.rpc = rpc
        self.ledger = ledger
        # the share path's queue without a task per share: the group-commit ledger's, or a
        # front end's broker ledger's (pool/shareflow.py); None: await record_share
        self._enqueue_share: Callable[[ShareRecord, Any], None] | None = (
            ledger.enqueue_share if isinstance(ledger, GroupCommitLedger | BrokerLedger) else None
        )
        self.observers = tuple(observers)
        self.network = get_network(settings.network)
        self.pool_script = self._pool_script()
        fee_script = (
            self._script(settings.fee_address, "fee_address") if settings.fee_address else None
        )
        self._plain_outputs = payout_outputs(fee_script, settings.fee_percent)
        self.jobs = JobBook(
            self._outputs,
            tag=settings.pool_tag.encode("ascii"),
            extranonce2_size=settings.stratum.extranonce2_size,
            generations_kept=settings.stratum.jobs_kept,
            job_prefix=frontend_job_prefix(settings.cluster.frontend_id),
        )
        self.server = StratumServer(self, settings.stratum)
        if isinstance(ledger, GroupCommitLedger):  # a commit's answers go out in its pass
            ledger.on_released = self.server.flush_answers
        self.bans = self.server.bans  # Stratum bans by IP (pool/bans.py): the API lists and lifts
        self.watcher = TipWatcher(rpc, settings.node, self._on_template, hashblock)
        self.blocks = BlockSubmitter(
            rpc,
            ledger,
            self.observers,
            settings.blocks,
            retry_max=settings.node.retry_max,
            tip=lambda: None if self.jobs.template is None else self.jobs.template.prev_hash,
            on_accepted=self._block_accepted,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._clean_jobs: dict[str, PoolJob] = {}  # a front end's clean first jobs (joined)
        self._sweeper: asyncio.Task[None] | None = None
        self.last_fanout_ms = 0.0  # new template -> last notify written, milliseconds
        self.last_tip_to_notify_ms = 0.0  # new tip detected -> last notify written, ms
        self.started = False
        # TIDES (pool/tides.py): plans come from a worker process, never awaited at a new tip
        self.tides: PlanWorker | None = None
        self._plan: PlanResult | None = None  # what the current template's jobs pay
        self._gen_plans: dict[int, PlanResult | None] = {}  # job generation -> its plan
        self._next: PlanResult | None = None  # precomputed: the next height's empty block
        self._found_since_next = False  # a block was found after `_next` was asked for
        self._reserved: Reservations | None = None  # held balances found blocks still pay
        self.tides_empty_first = 0  # new tips whose first job was the precomputed empty block
        self._serial = 0  # templates handed over by the watcher
        self._planning: asyncio.Task[None] | None = None
        self._precomputing: asyncio.Task[None] | None = None
        self._tides_payouts = False  # user names must be addresses (TIDES configured)
        acct = settings.accounting
        if acct.enabled and settings.mode == "pooled":
            from hashfarm.accounting.schemes import Tides
            from hashfarm.pool.tides import PlanWorker, Reservations

            self._reserved = Reservations()
            scheme = acct.to_scheme()
            configured = scheme if isinstance(scheme, Tides) else None
            self._tides_payouts = configured is not None
            self.tides = PlanWorker(
                settings.storage.url, configured, self.network.name, acct.coinbase_max_bytes
            )

    # -- settings -> scripts -------------------------------------------------------------

    def _script(self, address: str, key: str) -> bytes:
        try:
            return address_to_script(address, self.network)
        except HashfarmError as exc:
            raise ConfigError(f"invalid setting {key}: {exc}") from exc

    def _pool_script(self) -> bytes | None:
        if self.settings.payout_address:
            return self._script(self.settings.payout_address, "payout_address")
        return None

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch work, prove the coinbase with the node, listen, start watching."""
        if self.settings.stratum.raise_nofile:
            raise_nofile_limit()
        await self._first_template()
        if self._planning is not None:  # TIDES: the first job needs its plan
            await self._planning
            if self.jobs.template is None:
                raise NodeError("no TIDES coinbase plan for the first template (see the log)")
        if self.settings.node.check_coinbase:
            await self._prove()
        await self.server.start()
        self.watcher.start()
        self._sweeper = asyncio.ensure_future(self._sweep_loop())
        self.started = True
        tune_gc()

    async def _first_template(self) -> None:
        for attempt in range(START_TRIES):
            try:
                await self.watcher.fetch("start")
                return
            except NodeUnavailable as exc:
                if attempt == START_TRIES - 1:
                    raise
                log.info("waiting for the node: %s", exc)
                await asyncio.sleep(0.2)

    async def _prove(self) -> None:
        job = self.jobs.job_for(self.pool_script or PROVING_SCRIPT)
        for attempt in range(3):
            try:
                await prove_coinbase(self.rpc, job, self.settings.stratum.extranonce2_size)
                return
            except NodeError as exc:
                if "inconclusive" not in str(exc) or attempt == 2:
                    raise
                await self.watcher.fetch("tip moved during the coinbase proof")
                job = self.jobs.job_for(self.pool_script or PROVING_SCRIPT)

    async def stop(self) -> None:
        """Stop watching and serving; wait for shares and blocks in flight."""
        await self.watcher.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.server.stop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.blocks.drain()
        tides, self.tides = self.tides, None  # a block accepted from now on plans nothing
        for task in (self._planning, self._precomputing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if tides is not None:
            tides.close()
        self.started = False

    async def _sweep_loop(self) -> None:
        while True:
            for part in range(SWEEP_PARTS):
                await asyncio.sleep(SWEEP_INTERVAL / SWEEP_PARTS)
                self.server.sweep(self.now(), part, SWEEP_PARTS)

    # -- read-only views for the API -----------------------------------------------------

    @property
    def stratum_port(self) -> int:
        """The bound Stratum port."""
        return self.server.port

    def sessions(self) -> list[Session]:
        """Live connections."""
        return list(self.server.sessions)

    def current_job(self) -> PoolJob | None:
        """The current template's job for the pool's script (or any, in solo mode)."""
        if self.jobs.template is None:
            return None
        if self.pool_script is not None:
            return self.jobs.job_for(self.pool_script)
        jobs = self.jobs.current_jobs()
        return jobs[0] if jobs else None

    def found_blocks(self) -> list[BlockRecord]:
        """Blocks submitted since start, with the node's verdicts."""
        return list(self.blocks.found)

    def reconnect_all(self, host: str | None = None, port: int | None = None, wait: int = 0) -> int:
        """Send `client.reconnect` to every session (maintenance, migration); the count."""
        sessions = self.sessions()
        for session in sessions:
            session.reconnect(host, port, wait)
        return len(sessions)

    # -- templates -> jobs -> sessions ---------------------------------------------------

    def _outputs(self, value: int, payout_script: bytes) -> list[TxOut]:
        """The coinbase outputs of the current template's jobs: its TIDES plan's, or all to
        the payout script (less the solo fee) as without accounting."""
        result = self._plan
        if result is None or result.plan is None:
            return self._plain_outputs(value, payout_script)
        if result.plan.value != value:
            raise AssertionError(f"TIDES plan for {result.plan.value} sats, coinbase {value}")
        pool = self.pool_script or payout_script
        return [TxOut(sats, script or pool) for script, sats in result.outputs]

    async def _on_template(self, template: Template, reason: str) -> None:
        if self.tides is None:
            if not self.settings.accounting.enabled or self.jobs.template is None:
                self._publish(template, reason, None)  # (a TIDES pool that stopped: nothing)
            return
        self._serial += 1
        current = self.jobs.template
        if current is None or template.prev_hash != current.prev_hash:
            ready = self._ready_for(template)
            if ready is not None and ready.plan is not None:
                from hashfarm.pool.tides import empty_template

                self._publish(empty_template(template, self.network.name), reason, ready)
                self.tides_empty_first += 1
                reason += ", full template"
            elif ready is not None:  # TIDES not in force: the pool's coinbase, as before
                self._publish(template, reason, ready)
        if self._planning is not None and not self._planning.done():
            self._planning.cancel()  # a newer template supersedes the one being planned
        self._planning = asyncio.ensure_future(self._plan_and_publish(template, reason))

    async def _plan_and_publish(self, template: Template, reason: str) -> None:
        """Plan `template`'s coinbase in the worker, publish it, precompute the next one."""
        assert self.tides is not None
        assert self._reserved is not None
        serial = self._serial
        try:
            result = await self.tides.plan(self._request(template, empty=False))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the jobs already out stay valid; the next template retries
            log.exception("TIDES plan for height %d failed", template.height)
            self.tides.restart_if_broken(exc)
            current = self.jobs.template
            if (
                self.started
                and serial == self._serial
                and current is not None
                and (current.prev_hash != template.prev_hash)
            ):  # never leave the miners on a stale tip: this tip's jobs pay the pool's address
                log.error(
                    "height %d: no TIDES plan, the jobs pay the pool's address; a block found "
                    "on them is not TIDES-paid (the crediting service reports it)",
                    template.height,
                )
                self._publish(template, reason + " (no TIDES plan)", None)
            return
        self._reserved.drop(result.settled)
        if serial != self._serial:
            return  # a newer template arrived meanwhile: its own plan follows
        same = self.jobs.template is template and self._plan is not None
        if not (same and result.plan is None and self._plan.plan is None):  # type: ignore[union-attr]
            self._publish(template, reason, result)
        self._found_since_next = False
        self._precomputing = asyncio.ensure_future(self._precompute(template))

    async def _precompute(self, template: Template) -> None:
        """The next height's empty-block plan, ready before that height's tip arrives."""
        assert self.tides is not None
        nxt = replace(template, height=template.height + 1)
        try:
            self._next = await self.tides.plan(self._request(nxt, empty=True))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("TIDES plan for the next height %d failed", nxt.height)
            self.tides.restart_if_broken(exc)

    def _request(self, template: Template, *, empty: bool) -> PlanRequest:
        from hashfarm.pool.tides import PlanRequest

        fixed = coinbase_fixed_size(
            template.height,
            extranonce_size=EXTRANONCE1_SIZE + self.settings.stratum.extranonce2_size,
            tag=self.settings.pool_tag.encode("ascii"),
            aux=template.coinbase_aux,
            witness_commitment=None if empty else template.witness_commitment,
        )
        value = block_subsidy(template.height, self.network) if empty else template.coinbase_value
        reserved = {} if empty or self._reserved is None else self._reserved.snapshot()
        return PlanRequest(template.height, value, template.bits, fixed, not empty, reserved)

    def _ready_for(self, template: Template) -> PlanResult | None:
        """The precomputed empty-block plan, if it fits this new tip."""
        nxt = self._next
        if nxt is None:
            return None
        req = nxt.request
        if req.height != template.height or req.bits != template.bits:
            return None  # another height (a reorg) or a retarget: the window size changed
        if nxt.switch_pending and self._found_since_next:
            return None  # the block the pool found may be a switch's boundary
        if req.fixed_bytes < self._request(template, empty=True).fixed_bytes:
            return None  # the node's coinbase aux grew: the output bound may not hold
        return nxt

    def _publish(self, template: Template, reason: str, plan: PlanResult | None) -> None:
        """Adopt `template` (its coinbase paying `plan`, if any) and notify every session."""
        previous = self.jobs.template
        self._plan = plan
        clean = self.jobs.set_template(template)
        gen = self.jobs.generation
        self._gen_plans[gen] = plan
        for old in [g for g in self._gen_plans if g <= gen - self.settings.stratum.jobs_kept]:
            del self._gen_plans[old]
        start = time.perf_counter()
        if previous is None or previous.bits != template.bits:  # a retarget: every 2016 blocks
            for session in self.server.sessions:
                session.network_changed(template.difficulty)
        if self.job_terms is not None and self.pool_script is not None:
            job = self.jobs.job_for(self.pool_script)
            if plan is None or plan.plan is None:
                self.job_terms.note(job)
            else:
                self.job_terms.note(job, plan.plan, plan.spec, plan.extra)
        count = self.server.broadcast(self.jobs.job_for)
        done = time.perf_counter()
        self.last_fanout_ms = (done - start) * 1000.0
        since_tip = ""
        if clean and self.watcher.detected_at:
            self.last_tip_to_notify_ms = (done - self.watcher.detected_at) * 1000.0
            since_tip = f" ({self.last_tip_to_notify_ms:.2f} ms after the tip was detected)"
        log.info(
            "%s: height %d, %d txs, clean=%s, notified %d sessions in %.2f ms%s%s",
            reason,
            template.height,
            len(template.transactions),
            clean,
            count,
            self.last_fanout_ms,
            since_tip,
            f", TIDES {plan.summary()}" if plan is not None else "",
        )

    # -- SessionHost ---------------------------------------------------------------------

    def now(self) -> float:
        """UNIX time."""
        return time.time()

    def claim_extranonce1(self, session: Session, wanted: bytes | None) -> bytes:
        """A unique extranonce1; the old one when a resuming miner asks and it is free."""
        return self.server.extranonces.claim(session, wanted, self.now())

    def payout_for(self, username: str) -> tuple[str, bytes]:
        """(account, script): solo pays the username's address, pooled the pool's."""
        account = username.split(".", 1)[0]
        if not account:
            raise ConfigError(f"user name {username!r} has no account part")
        if self.settings.mode == "pooled" and not self._tides_payouts:
            assert self.pool_script is not None
            return account, self.pool_script
        if self.settings.mode == "pooled":  # TIDES pays the account, an address, in the coinbase
            assert self.pool_script is not None
            try:
                address_to_script(account, self.network)
            except HashfarmError as exc:
                raise ConfigError(
                    f"{account!r} is not a {self.network.name} address (TIDES pays miners in "
                    f"the coinbase: user name is ADDRESS.worker): {exc}"
                ) from exc
            return account, self.pool_script
        try:
            return account, address_to_script(account, self.network)
        except HashfarmError as exc:
            raise ConfigError(
                f"{account!r} is not a {self.network.name} address (solo mode: user name "
                f"is ADDRESS.worker): {exc}"
            ) from exc

    def joined(self, session: Session) -> None:
        """A session became ready: group it and send it the current job."""
        self.server.join(session)
        if self.jobs.template is not None:
            assert session.payout_script is not None
            job = self.jobs.job_for(session.payout_script)
            if not job.work.clean_jobs and self.settings.cluster.frontend_id is not None:
                job = self._clean_first(job)
            session.send_job(job)
            log.info("%s ready: %s", session.prefix, session.account)

    def _clean_first(self, job: PoolJob) -> PoolJob:
        """`job` with clean_jobs true, for a front end's newly joined session (a miner that
        came over from another front end drops the work it had there at once). One encode
        per job of the current template, kept until the template changes."""
        clean = self._clean_jobs.get(job.job_id)
        if clean is None or clean.generation != job.generation:
            if any(c.generation != job.generation for c in self._clean_jobs.values()):
                self._clean_jobs.clear()
            work = replace(job.work, clean_jobs=True)
            clean = replace(job, work=work, notify_line=encode(messages.notify(work)))
            self._clean_jobs[job.job_id] = clean
        return clean

    def handle_verdict(self, session: Session, msg_id: Any, verdict: Verdict) -> None:
        """Block first, then the ledger (accepted shares), then the answer."""
        worker = verdict.share.worker if verdict.share else ""
        account = session.workers.get(worker, session.account or "")
        if verdict.is_block and verdict.job and verdict.header and verdict.hash and verdict.share:
            started = time.perf_counter()
            en = session.extranonce1 + verdict.share.extranonce2
            found = Found(verdict.job, verdict.header, verdict.hash, en, worker, account)
            self.blocks.submit(found, started)
            self._found_since_next = True
            plan = self._gen_plans.get(verdict.job.generation)
            if plan is not None and plan.plan is not None and self._reserved is not None:
                # the held balances its coinbase pays are never paid by another plan
                self._reserved.add(verdict.hash[::-1].hex(), plan.plan.held_used)
        rec = self._record_of(session, verdict, worker, account)
        if not verdict.accepted:
            session.reply_error(msg_id, verdict.code, verdict.message)
            self._observe(rec)
            return
        self._record_and_ack(session, msg_id, rec)

    def _record_of(self, s: Session, v: Verdict, worker: str, account: str) -> ShareRecord:
        job = v.job
        return new_share_record(  # ShareRecord(...) in field order, built faster (per share)
            worker,
            account,
            v.share.job_id if v.share else "",  # job_id
            job.template.height if job else 0,  # height
            v.difficulty,  # what it was judged at (vardiff may since have moved)
            v.share_difficulty,
            v.reason is None,  # accepted
            v.reason,
            self.now(),
            s.extranonce1.hex(),
            v.hash[::-1].hex() if v.is_block and v.hash else None,  # block_hash_hex
            v.hash,  # header_hash: the share id of a scaled-out pool (pool/shareflow.py)
        )

    def _record_and_ack(self, session: Session, msg_id: Any, rec: ShareRecord) -> None:
        """Queue the share in the ledger; answer `true` only once it is durable.

        A group-commit ledger runs the callbacks of a whole batch in one pass after its commit
        (no task, coroutine and future per share: bench/bench_pool_tail.py); a full backlog
        (database outage) refuses the share at once: answered with an error, never acked."""
        enqueue = self._enqueue_share
        if enqueue is None:  # e.g. the benchmarks' in-memory ledger
            self._spawn(self._await_record(session, msg_id, rec))
            return
        try:
            enqueue(rec, partial(self._recorded, session, msg_id, rec))
        except HashfarmError as exc:
            self._recorded(session, msg_id, rec, exc)

    async def _await_record(self, session: Session, msg_id: Any, rec: ShareRecord) -> None:
        try:
            await self.ledger.record_share(rec)
        except HashfarmError as exc:
            self._recorded(session, msg_id, rec, exc)
            return
        self._recorded(session, msg_id, rec, None)

    def _recorded(
        self, session: Session, msg_id: Any, rec: ShareRecord, error: BaseException | None
    ) -> None:
        """The ledger's verdict on one accepted share: acknowledge it, or say why not."""
        if error is None:
            session.ack(msg_id)
            self._observe(rec)
            return
        if isinstance(error, LedgerBacklogFull):  # logged once by the ledger
            reason = str(error)
        else:  # the detail (a file path, a database host) is for the log, not for a stranger
            log.error("%s share not recorded: %s", session.prefix, error)
            reason = "ledger error"
        session.reply_error(msg_id, ErrorCode.OTHER, f"share not recorded: {reason}")

    def _observe(self, rec: ShareRecord) -> None:
        for observer in self.observers:
            try:
                observer.on_share(rec)
            except Exception:  # an observer must never break share handling
                log.exception("observer %r failed", observer)

    async def _block_accepted(self, hash_hex: str) -> None:
        """The node took our block: new work on it now, before confirming, not at the next
        poll (the miners would otherwise keep making siblings of it)."""
        with contextlib.suppress(NodeError):
            await self.watcher.tip_seen(hash_hex, "own block")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def frontend_job_prefix(frontend_id: int | None) -> str:
    """A front end's job-id prefix (two hex digits: fixed width, so `01`+`23` can never be
    another front end's `0`+`123`); "" for the single process, whose ids stay as before."""
    return "" if frontend_id is None else f"{frontend_id:02x}"


def tune_gc() -> None:
    """Keep the garbage collector's pauses off the share path (docs/benchmarks.md, "Submit
    latency tail"). What start-up built (modules, the template, the job book) lives on, so
    it leaves every later full collection (`gc.freeze`); young collections run every 10,000
    allocations instead of 700, so the objects of a share waiting for its commit are rarely
    alive at one and are not promoted into the old generations, whose full collections were
    the long pauses (45-90 ms of CPU each with 1,000 connections at 10,000 shares/s)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
