"""Block templates become Stratum jobs: coinbase split, merkle branch, one notify line each.

A `Template` (`hashfarm.node.template`) is the node's template in native types. For each
template the `JobBook` builds one `PoolJob` per payout script (solo mode: one per miner
address; pooled mode: just the pool's), lazily, the first time a session with that script
needs it. The `mining.notify` line is encoded once per job, as bytes, and the server writes
those same bytes to every session that shares the script.

Recent jobs are kept (`jobs_kept` templates back) so a late share on the previous tip is
still judged (stale, yet tested as a block). Duplicates are detected per tip, not per job:
a refresh on the same tip builds a new job whose coinbase, and so whose headers, can be the
very same as the last one's, so every job on one prevhash shares one `SeenHashes` set of the
header hashes that counted. The set lives as long as any job on that tip is kept (a late
block on an old tip is still caught as a duplicate) and holds at most `SEEN_PER_TIP`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from hashfarm.chain.coinbase import CoinbaseParts, build_coinbase
from hashfarm.chain.merkle import coinbase_branch
from hashfarm.chain.tx import TxOut
from hashfarm.errors import NodeError
from hashfarm.node.template import Template
from hashfarm.stratum import messages
from hashfarm.stratum.codec import encode
from hashfarm.stratum.work import Job

EXTRANONCE1_SIZE = 4  # bytes the pool assigns per connection (unique among live sessions)

# Header hashes that counted (accepted shares and blocks) remembered per tip, at most. Sized
# for the worst legitimate load: vardiff holds each connection near one share per
# vardiff.target_interval (10 s), so even 20,000 connections (stratum.max_connections) make
# ~2,000 shares/s and a tip that lasts 35 minutes (longer than 97% of block intervals); a
# home pool of a few hundred miners would need days. Each entry costs ~100 bytes (a 32-byte
# hash and its slot, measured), so a full set holds ~420 MB; only the current tip's set
# grows (an older tip's jobs only take blocks). Filling it takes real work, not junk: only
# shares that met their target enter, each at least the network's floor (mainnet:
# difficulty 1, 2**32 hashes). A full set never lets a share through unchecked: further
# non-block shares on that tip are rejected (`records.REJECT_SEEN_FULL`) until the next
# tip; blocks always enter (each costs the network's difficulty; one must never be lost).
SEEN_PER_TIP = 1 << 22


class SeenHashes(set[bytes]):
    """Header hashes that already counted on one tip, shared by every job on it."""

    __slots__ = ("limit",)

    def __init__(self, limit: int = SEEN_PER_TIP) -> None:
        super().__init__()
        self.limit = limit  # non-block shares are refused once the set holds this many


OutputsFor = Callable[[int, bytes], list[TxOut]]
"""(coinbase value in sats, payout script) -> the coinbase outputs (before the commitment)."""


def payout_outputs(fee_script: bytes | None, fee_percent: float) -> OutputsFor:
    """The coinbase outputs policy: all to the payout script, less an optional pool fee."""

    def outputs(value: int, payout_script: bytes) -> list[TxOut]:
        fee = int(value * fee_percent / 100.0) if fee_script else 0
        outs = [TxOut(value - fee, payout_script)]
        if fee and fee_script is not None:
            outs.append(TxOut(fee, fee_script))
        return outs

    return outputs


@dataclass(frozen=True, slots=True)
class PoolJob:
    """One job as the pool keeps it: the notify fields, the coinbase and the encoded line."""

    seq: int  # increases with every job; orders jobs against difficulty changes
    generation: int  # which template the job was built from
    work: Job  # notify fields (stratum.work), shared with the miner side
    template: Template
    coinbase: CoinbaseParts
    payout_script: bytes
    notify_line: bytes  # the `mining.notify` line, encoded once, written to every session

    @property
    def job_id(self) -> str:
        """The Stratum job id."""
        return self.work.job_id


JOB_ID_HOLE = "jobidhole"  # stand-in values that cannot occur elsewhere in a notify line
COINB2_HOLE = bytes.fromhex("c0b2") * 16


@dataclass(frozen=True, slots=True)
class NotifyLayout:
    """One template's `mining.notify` line, encoded once, with holes for the two fields that
    differ between its payout scripts (the job id and coinb2): a solo pool with many miner
    addresses fills the holes instead of encoding the branch and the rest again."""

    head: bytes  # up to the job id
    middle: bytes  # between the job id and coinb2's hex
    tail: bytes  # after coinb2's hex

    @classmethod
    def of(cls, work: Job) -> NotifyLayout | None:
        """The layout of `work`'s template (None if a hole cannot be told apart)."""
        line = encode(messages.notify(replace(work, job_id=JOB_ID_HOLE, coinb2=COINB2_HOLE)))
        head, sep, rest = line.partition(JOB_ID_HOLE.encode())
        middle, sep2, tail = rest.partition(COINB2_HOLE.hex().encode())
        if not (sep and sep2) or JOB_ID_HOLE.encode() in rest or COINB2_HOLE.hex().encode() in tail:
            return None
        return cls(head, middle, tail)

    def line(self, job_id: str, coinb2: bytes) -> bytes:
        """The notify line of the job `job_id` whose coinbase ends with `coinb2`."""
        return b"".join((self.head, job_id.encode(), self.middle, coinb2.hex().encode(), self.tail))


@dataclass(frozen=True, slots=True)
class CoinbaseLayout:
    """One template's coinbase with a hole for the payout output, the only output that
    differs between payout scripts: other scripts' coinbases are filled in, not rebuilt."""

    parts: CoinbaseParts  # the coinbase built for the template's first payout script
    others: tuple[TxOut, ...]  # the outputs after the payout output (fee), the same for all
    before: bytes  # coinb2 up to the payout output
    after: bytes  # coinb2 after it

    @classmethod
    def of(cls, parts: CoinbaseParts, outputs: Sequence[TxOut]) -> CoinbaseLayout | None:
        """The layout of a coinbase built with `outputs` (None if the payout output cannot
        be found exactly once)."""
        payout = outputs[0].serialize()
        before, sep, after = parts.coinb2.partition(payout)
        if not sep or payout in after:
            return None
        return cls(parts, tuple(outputs[1:]), before, after)

    def parts_for(self, outputs: Sequence[TxOut]) -> CoinbaseParts | None:
        """The coinbase paying `outputs`; None unless only the payout output differs."""
        if tuple(outputs[1:]) != self.others:
            return None
        return replace(self.parts, coinb2=self.before + outputs[0].serialize() + self.after)


def build_job(
    seq: int,
    generation: int,
    template: Template,
    payout_script: bytes,
    outputs_for: OutputsFor,
    *,
    tag: bytes,
    extranonce2_size: int,
    clean: bool,
    branch: tuple[bytes, ...] | None = None,
    layout: NotifyLayout | None = None,
    coinbase_layout: CoinbaseLayout | None = None,
    job_prefix: str = "",
) -> PoolJob:
    """Build the coinbase for `payout_script`, the notify fields and the notify line.

    `branch` is the template's coinbase merkle branch and `layout` its notify line with
    holes, and `coinbase_layout` its coinbase with a hole for the payout output, when
    already known: they do not depend on the payout script, so one computation serves every
    payout script of a template. `job_prefix` starts the job id (a front end's id, so job
    ids never collide across the front ends of one pool).
    """
    outputs = outputs_for(template.coinbase_value, payout_script)
    coinbase = coinbase_layout.parts_for(outputs) if coinbase_layout else None
    if coinbase is None:
        coinbase = build_coinbase(
            template.height,
            outputs,
            extranonce_size=EXTRANONCE1_SIZE + extranonce2_size,
            tag=tag,
            aux=template.coinbase_aux,
            witness_commitment=template.witness_commitment,
        )
    if branch is None:
        branch = tuple(coinbase_branch(template.txids))
    work = Job(
        f"{job_prefix}{seq:x}",
        template.prev_hash,
        coinbase.coinb1,
        coinbase.coinb2,
        branch,
        template.version,
        template.bits,
        template.curtime,
        clean,
    )
    line = layout.line(work.job_id, work.coinb2) if layout else encode(messages.notify(work))
    return PoolJob(seq, generation, work, template, coinbase, payout_script, line)


class JobBook:
    """The current template, the jobs built from it per payout script, and recent jobs."""

    def __init__(
        self,
        outputs_for: OutputsFor,
        *,
        tag: bytes,
        extranonce2_size: int,
        generations_kept: int,
        seen_per_tip: int = SEEN_PER_TIP,
        job_prefix: str = "",
    ) -> None:
        self._outputs_for = outputs_for
        self._job_prefix = job_prefix  # a front end's: fixed width, so ids never collide
        self._seen_limit = seen_per_tip
        self._tag = tag
        self._en2_size = extranonce2_size
        self._kept = generations_kept
        self._seq = 0
        self.generation = 0
        self.template: Template | None = None
        self._clean = True
        self._branch: tuple[bytes, ...] | None = None  # the template's, shared by its jobs
        self._layout: NotifyLayout | None = None  # the template's notify line, with holes
        self._coinbase: CoinbaseLayout | None = None  # its coinbase, with a payout hole
        self._current: dict[bytes, PoolJob] = {}  # payout script -> job for this template
        self._jobs: OrderedDict[str, PoolJob] = OrderedDict()
        self._seen: dict[bytes, SeenHashes] = {}  # tip -> header hashes that counted on it
        self._tip_jobs: dict[bytes, int] = {}  # tip -> how many kept jobs build on it
        self._roots: dict[str, dict[bytes, bytes]] = {}  # job id -> extranonce -> merkle root

    def set_template(self, template: Template) -> bool:
        """Adopt a new template; return True when it is on a new tip (clean_jobs)."""
        clean = self.template is None or template.prev_hash != self.template.prev_hash
        self.template = template
        self._clean = clean
        self.generation += 1
        self._current = {}
        self._branch = None  # computed with the template's first job
        self._layout = None
        self._coinbase = None
        self._evict()
        return clean

    def job_for(self, payout_script: bytes) -> PoolJob:
        """The current template's job for `payout_script`, built on first use."""
        job = self._current.get(payout_script)
        if job is None:
            job = self._build(payout_script)
        return job

    def _build(self, payout_script: bytes) -> PoolJob:
        if self.template is None:
            raise NodeError("no block template yet")
        self._seq += 1
        if self._branch is None:
            self._branch = tuple(coinbase_branch(self.template.txids))
        job = build_job(
            self._seq,
            self.generation,
            self.template,
            payout_script,
            self._outputs_for,
            tag=self._tag,
            extranonce2_size=self._en2_size,
            clean=self._clean,
            branch=self._branch,
            layout=self._layout,
            coinbase_layout=self._coinbase,
            job_prefix=self._job_prefix,
        )
        if self._layout is None:  # the template's first job: what the others share with it
            self._layout = NotifyLayout.of(job.work)
            value = self.template.coinbase_value
            self._coinbase = CoinbaseLayout.of(
                job.coinbase, self._outputs_for(value, payout_script)
            )
        self._current[payout_script] = job
        self._jobs[job.job_id] = job
        tip = job.work.prev_hash
        if tip not in self._seen:
            self._seen[tip] = SeenHashes(self._seen_limit)
        self._tip_jobs[tip] = self._tip_jobs.get(tip, 0) + 1
        self._roots[job.job_id] = {}
        return job

    def get(self, job_id: str) -> PoolJob | None:
        """A recent job by id (None once it has aged out, or if it never existed)."""
        return self._jobs.get(job_id)

    def seen(self, job_id: str) -> SeenHashes:
        """Header hashes that counted on a job's tip (mutable: the judge adds to it)."""
        job = self._jobs.get(job_id)
        return self.seen_for(job) if job is not None else SeenHashes(0)  # unknown: no growth

    def seen_for(self, job: PoolJob) -> SeenHashes:
        """The duplicate set shared by every kept job on `job`'s tip (a kept job's)."""
        seen = self._seen.get(job.work.prev_hash)
        return seen if seen is not None else SeenHashes(0)  # a job not from this book

    def roots(self, job_id: str) -> dict[bytes, bytes]:
        """Merkle roots already computed for a job, by extranonce (the judge fills it)."""
        roots = self._roots.get(job_id)
        return roots if roots is not None else {}

    def current_jobs(self) -> Sequence[PoolJob]:
        """Jobs built for the current template so far."""
        return list(self._current.values())

    @property
    def tip(self) -> bytes | None:
        """The previous-block hash current jobs build on (internal order)."""
        return None if self.template is None else self.template.prev_hash

    def _evict(self) -> None:
        oldest = self.generation - self._kept
        while self._jobs:
            job_id, job = next(iter(self._jobs.items()))
            if job.generation > oldest:
                break
            del self._jobs[job_id]
            self._roots.pop(job_id, None)
            tip = job.work.prev_hash
            left = self._tip_jobs[tip] - 1
            if left:
                self._tip_jobs[tip] = left
            else:  # no kept job can produce a header on this tip any more
                del self._tip_jobs[tip]
                del self._seen[tip]
