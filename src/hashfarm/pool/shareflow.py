"""A front end's share flow: accepted shares and blocks to the broker, with their ids.

A Stratum front end (`cluster.role = "stratum"`) keeps no database. Its ledger is a
`BrokerLedger`: an accepted share is encoded (`encode_share`) and published durably through
`hashfarm.broker.Publisher`; the miner is answered `true` only in the publisher's
`done(None)`, which comes once the broker acknowledged the message or, while the broker is
away, once the front end's local spool has fsynced it. The ledger role (`pool/ledgerrole.py`)
consumes both subjects into PostgreSQL.

The share id is the share's header hash (display-order hex, as block hashes are shown): the
judge has already computed it (`Verdict.hash`), it is the same for the same header on any
front end, and no two different shares have it. It is the broker's message id (JetStream drops
a re-published id within its dedup window) and the `shares.share_id` unique key (the ledger
skips an id it already holds), so a replay after a crash, a redelivery and one header sent to
two front ends are each credited once.

The wire format is a JSON array, version first: small (~230 bytes), cheap to build (orjson), and
readable with `nats stream view` when an operator needs to look. Only accepted shares travel:
rejected ones are counted by the front end's statistics, as before.

Job terms (PPS/FPPS). A front end also publishes the terms of every job it publishes
(`BrokerJobTerms`, the `JobTermsRecorder` interface, called by the Pool before the job's
notify is written) on a third subject, `PREFIX.jobterms`, message id `t<run>.<job id>`. `run`
is the front end process's own random run id (its `pool_run`: job ids restart with every
process), whose first two hex digits are the front end's id; a share (format 2) carries it
too. The ledger stores both the share's and the terms row's job id as `<job id>@<run>`
(`cluster_job_id`): unique across front ends and their restarts, so the crediting service's
lookup of a share's job (height, job id, published last at or before the share) can only
find that share's own job's terms or nothing, never another run's job that reused the id.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from hashfarm.errors import HashfarmError
from hashfarm.pool.records import BlockRecord, ShareRecord, new_share_record
from hashfarm.pool.storage.base import LedgerBacklogFull

if TYPE_CHECKING:  # accounting (numpy) is loaded only where job terms are made or read
    from hashfarm.pool.jobs import PoolJob
    from hashfarm.pool.jobterms import JobTermsRow

log = logging.getLogger(__name__)

SHARE_FORMAT = 2  # first element of an encoded share (2: the front end's run id appended)
SHARE_FORMATS = (1, 2)  # read: 1 from a front end of the previous version (no run, no terms)
BLOCK_FORMAT = 1
TERMS_FORMAT = 1
BLOCKS_KEPT = 1000  # blocks a front end keeps in memory for its API (the ledger keeps all)

Done = Callable[[BaseException | None], None]


class ShareFlowError(HashfarmError):
    """A broker message that is not a share or block this version can read."""


class SpoolFull(LedgerBacklogFull):
    """Neither the broker nor the front end's spool took the share: it is not acknowledged."""


class PublisherLike(Protocol):
    """What a front end needs of `hashfarm.broker.Publisher` (its interface, structurally)."""

    async def start(self) -> None: ...

    def publish(self, subject: str, msg_id: str, payload: bytes, done: Done) -> None: ...

    async def close(self) -> None: ...

    def stats(self) -> Any: ...


def subjects(prefix: str) -> tuple[str, str, str]:
    """(shares, blocks, job terms) subjects under `cluster.subject_prefix`."""
    return f"{prefix}.shares", f"{prefix}.blocks", f"{prefix}.jobterms"


def new_run(frontend_id: int) -> str:
    """A front end process's run id: its id (2 hex digits) and 14 random hex digits."""
    if not 0 <= frontend_id <= 255:
        raise ValueError(f"front end id {frontend_id} is not in 0..255")
    return f"{frontend_id:02x}{secrets.token_hex(7)}"


def cluster_job_id(job_id: str, run: str) -> str:
    """The job id the ledger stores for a front end's share and its job's terms row."""
    return f"{job_id}@{run}"


def terms_msg_id(run: str, job_id: str) -> str:
    """The job terms message's idempotent id: the front end's run and the job id."""
    return f"t{run}.{job_id}"


# -- the share id and the codec ------------------------------------------------------------


def share_id(rec: ShareRecord) -> str:
    """The share's id: its header hash, display-order hex (ShareFlowError when it has none)."""
    if rec.header_hash is None or len(rec.header_hash) != 32:
        raise ShareFlowError("a share without its header hash has no id")
    return rec.header_hash[::-1].hex()


def block_msg_id(rec: BlockRecord) -> str:
    """The block record's message id: its hash and verdict (a block is recorded when it is
    submitted and again with the node's final word; both must reach the ledger)."""
    verdict = zlib.crc32((rec.node_verdict or "").encode()) if rec.node_verdict else 0
    return f"b{rec.hash_hex}{'a' if rec.accepted_by_node else 'r'}{verdict:08x}"


def encode_share(rec: ShareRecord, sid: str | None = None, run: str = "") -> bytes:
    """An accepted share as the broker carries it (`sid`: its `share_id`, if known; `run`:
    the front end process's run id, "" when it publishes no job terms)."""
    return orjson.dumps(
        [
            SHARE_FORMAT,
            rec.worker,
            rec.account,
            rec.job_id,
            rec.height,
            rec.difficulty,
            rec.share_difficulty,
            rec.time,
            rec.extranonce1_hex,
            rec.block_hash_hex,
            share_id(rec) if sid is None else sid,
            run,
        ]
    )


def decode_share(payload: bytes) -> ShareRecord:
    """The accepted share `encode_share` made (ShareFlowError for anything else), its job id
    as the ledger stores it (`cluster_job_id` when the share names its front end's run)."""
    return decode_share_run(payload)[0]


def _message(payload: bytes, what: str, formats: tuple[int, ...]) -> list[Any]:
    """A message's JSON list whose first element is one of `formats` (ShareFlowError for
    anything else); the decoders check the rest."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ShareFlowError(f"{what} message is not JSON: {exc}") from exc
    if not isinstance(doc, list) or not doc or doc[0] not in formats:
        versions = " or ".join(f"version-{v}" for v in formats)
        raise ShareFlowError(f"not a {versions} {what} message")
    return doc


def decode_share_run(payload: bytes) -> tuple[ShareRecord, str | None]:
    """(the share as the ledger stores it, its front end's run id or None: no job terms)."""
    doc = _message(payload, "share", SHARE_FORMATS)
    if len(doc) != 10 + doc[0]:
        raise ShareFlowError(f"malformed message: a version-{doc[0]} share has {9 + doc[0]} fields")
    run: str | None = None
    if doc[0] == 2:
        run = doc.pop()
        _check(isinstance(run, str) and (run == "" or _run_ok(run)), "run id")
        run = run or None
    _, worker, account, job_id, height, diff, share_diff, when, en1, block, sid = doc
    _check(all(isinstance(v, str) for v in (worker, account, job_id, en1, sid)), "strings")
    _check(type(height) is int and 0 <= height < 1 << 32, "height")
    _check(all(_finite(v) for v in (diff, share_diff, when)), "numbers")
    _check(block is None or (isinstance(block, str) and _hash_hex(block)), "block hash")
    _check(_hash_hex(sid), "share id")
    rec = new_share_record(
        worker,
        account,
        job_id if run is None else cluster_job_id(job_id, run),
        height,
        float(diff),
        float(share_diff),
        True,
        None,
        float(when),
        en1,
        block,
        bytes.fromhex(sid)[::-1],
    )
    return rec, run


def _run_ok(run: str) -> bool:
    """16 lowercase hex digits (`new_run`)."""
    return len(run) == 16 and all(c in "0123456789abcdef" for c in run)


# -- job terms (PPS/FPPS): one message per published job ---------------------------------


def encode_terms(row: JobTermsRow) -> bytes:
    """A job's terms row as the broker carries it (no TIDES plan: refused in cluster roles)."""
    if row.plan is not None:
        raise ShareFlowError("a coinbase plan does not travel through the broker")
    return orjson.dumps([TERMS_FORMAT, *row.columns()])


def decode_terms(payload: bytes) -> JobTermsRow:
    """The terms row as the ledger stores it: job id `cluster_job_id(job id, run)`, pool_run
    the run (ShareFlowError for anything `encode_terms` did not make, or impossible terms)."""
    doc = _message(payload, "job terms", (TERMS_FORMAT,))
    if len(doc) != 12:
        raise ShareFlowError("not a version-1 job terms message")
    _, run, job_id, gen, prev, height, bits, nd, subsidy, fees, value, at = doc
    _check(isinstance(run, str) and _run_ok(run), "run id")
    _check(isinstance(job_id, str) and 0 < len(job_id) <= 64 and job_id.isprintable(), "job id")
    _check(isinstance(prev, str) and _hash_hex(prev), "previous block hash")
    _check(all(type(v) is int and 0 <= v < 1 << 63 for v in (gen, height, bits)), "integers")
    _check(all(type(v) is int and 0 <= v < 1 << 63 for v in (subsidy, fees, value)), "sats")
    _check(subsidy + fees == value, "coinbase value is not subsidy + fees")
    _check(_finite(nd) and nd > 0 and _finite(at), "difficulty/time")
    from hashfarm.pool.jobterms import JobTermsRow  # accounting: only where terms are read

    return JobTermsRow(
        pool_run=run,
        job_id=cluster_job_id(job_id, run),
        generation=gen,
        prev_hash=prev,
        height=height,
        bits=bits,
        network_difficulty=float(nd),
        subsidy_sats=subsidy,
        fees_sats=fees,
        coinbase_value=value,
        published_at=float(at),
    )


def encode_block(rec: BlockRecord) -> bytes:
    """A submitted block (and the node's verdict) as the broker carries it."""
    return orjson.dumps(
        [
            BLOCK_FORMAT,
            rec.height,
            rec.hash_hex,
            rec.reward_sats,
            rec.finder_worker,
            rec.finder_account,
            rec.time,
            rec.accepted_by_node,
            rec.node_verdict,
        ]
    )


def decode_block(payload: bytes) -> BlockRecord:
    """The block record `encode_block` made (ShareFlowError for anything else)."""
    doc = _message(payload, "block", (BLOCK_FORMAT,))
    if len(doc) != 9:
        raise ShareFlowError("not a version-1 block message")
    _, height, hash_hex, reward, worker, account, when, ok, verdict = doc
    _check(type(height) is int and 0 <= height < 1 << 32, "height")
    _check(isinstance(hash_hex, str) and _hash_hex(hash_hex), "block hash")
    _check(type(reward) is int and reward >= 0, "reward")
    _check(isinstance(worker, str) and isinstance(account, str), "finder")
    _check(_finite(when) and isinstance(ok, bool), "time/verdict")
    _check(verdict is None or isinstance(verdict, str), "node verdict")
    return BlockRecord(height, hash_hex, reward, worker, account, float(when), ok, verdict)


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ShareFlowError(f"malformed message: {what}")


def _finite(v: object) -> bool:
    return type(v) in (int, float) and math.isfinite(v)  # type: ignore[arg-type]


def _hash_hex(text: str) -> bool:
    """64 lowercase hex digits (bytes.fromhex would also take spaces and uppercase)."""
    if len(text) != 64 or not text.isascii() or not text.isalnum() or text != text.lower():
        return False
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


# -- the front end's ledger ----------------------------------------------------------------


class BrokerLedger:
    """A front end's `ShareLedger`: shares and blocks to the broker, acknowledged when it (or
    the spool) holds them. Pool's share path calls `enqueue_share` (no task, coroutine or
    future per share, as with the group-commit ledger)."""

    def __init__(
        self,
        publisher: PublisherLike,
        subject_prefix: str,
        *,
        network: str | None = None,
        frontend_id: int | None = None,
    ) -> None:
        self.publisher = publisher
        self.shares_subject, self.blocks_subject, terms_subject = subjects(subject_prefix)
        # the job terms publisher (network and front end id given): Pool's `job_terms`
        self.job_terms: BrokerJobTerms | None = None
        self.run = ""
        if network is not None and frontend_id is not None:
            self.run = new_run(frontend_id)
            self.job_terms = BrokerJobTerms(publisher, terms_subject, network, self.run)
        self._blocks: deque[BlockRecord] = deque(maxlen=BLOCKS_KEPT)
        self._refusing = False  # spool full: logged once until a share is taken again
        self.shares_published = 0  # acknowledged by the broker or the spool
        self.shares_refused = 0

    async def start(self) -> None:
        """Connect to the broker (or start spooling while it is away)."""
        await self.publisher.start()

    def enqueue_share(self, rec: ShareRecord, done: Done) -> None:
        """Publish one accepted share; `done(None)` once it is durable, `done(SpoolFull)`
        when neither the broker nor the spool took it. Raises ShareFlowError at once (done
        never called) for a share without its header hash."""
        msg_id = share_id(rec)
        payload = encode_share(rec, msg_id, self.run)

        def published(error: BaseException | None) -> None:
            if error is None:
                self.shares_published += 1
                if self._refusing:
                    self._refusing = False
                    log.info("the broker or the spool takes shares again")
                done(None)
                return
            self.shares_refused += 1
            if not self._refusing:
                self._refusing = True
                log.error("shares refused: neither the broker nor the spool takes them (%s)",
                          error)  # fmt: skip
            done(SpoolFull(f"share not durable: {error}"))

        self.publisher.publish(self.shares_subject, msg_id, payload, published)

    async def record_share(self, rec: ShareRecord) -> None:
        """Publish one share; return once it is durable (raises SpoolFull otherwise)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.enqueue_share(rec, lambda error: _settle(future, error))
        await future

    async def record_block(self, rec: BlockRecord) -> None:
        """Publish one block record; return once it is durable."""
        self._blocks.appendleft(rec)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.publisher.publish(
            self.blocks_subject, block_msg_id(rec), encode_block(rec),
            lambda error: _settle(future, error),
        )  # fmt: skip
        await future

    async def close(self) -> None:
        """Flush what the broker takes, fsync the rest into the spool."""
        await self.publisher.close()

    async def recent_blocks(self, limit: int = 50) -> list[BlockRecord]:
        """This front end's blocks, newest first (the ledger's database holds every one)."""
        return list(self._blocks)[:limit]


class BrokerJobTerms:
    """A front end's `JobTermsSink`: each published job's terms to the broker (the ledger
    writes them with `pool.jobterms.write_rows`). `note` never blocks and never raises into
    the pool; a job whose terms were not taken (spool full) is logged and counted: its shares
    then wait unpriced at the ledger (never priced at other terms)."""

    def __init__(
        self,
        publisher: PublisherLike,
        subject: str,
        network: str,
        run: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from hashfarm.pool.jobterms import terms_row  # accounting: only on a pooled front end

        self._terms_row = terms_row
        self.publisher = publisher
        self.subject = subject
        self.network = network
        self.pool_run = run
        self.clock = clock
        self.published = 0  # terms messages acknowledged by the broker or the spool
        self.refused = 0  # terms messages neither took (their jobs' shares wait unpriced)

    def note(self, job: PoolJob, plan: object = None, plan_spec: object = None,
             plan_extra: object = None) -> None:  # fmt: skip
        """Publish `job`'s terms; call before its notify goes out (published_at is taken
        here, so every share answering the job is later). A TIDES plan is refused."""
        try:
            if plan is not None:
                raise ShareFlowError("TIDES plans are not published by a front end")
            row = self._terms_row(job, self.network, self.pool_run, self.clock())
            payload = encode_terms(row)
        except Exception:
            self.refused += 1
            log.exception("job %s: terms not published", job.job_id)
            return

        def done(error: BaseException | None) -> None:
            if error is None:
                self.published += 1
                return
            self.refused += 1
            log.error("job %s: terms not taken by the broker nor the spool (%s): its shares "
                      "will wait unpriced", job.job_id, error)  # fmt: skip

        self.publisher.publish(self.subject, terms_msg_id(self.pool_run, job.job_id), payload,
                               done)  # fmt: skip


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(
            error if isinstance(error, HashfarmError) else SpoolFull(f"not durable: {error}")
        )
