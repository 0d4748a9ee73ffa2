"""A pool that publishes jobs and records their terms, for the PPS/FPPS and TIDES tests.

`PoolWithJobs` builds real `PoolJob`s from templates (the pool's own `JobBook`), records each
job's terms through the pool's real `JobTermsRecorder` (its own SQLite connection) and writes
shares answering the current job and found blocks through the pool's real `SQLiteLedger`,
all on one controlled clock, so a test knows which job each share answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hashfarm.accounting.tides import CoinbasePlan
from hashfarm.node.template import Template, TemplateTx
from hashfarm.pool.jobs import JobBook, PoolJob, payout_outputs
from hashfarm.pool.jobterms import JobTermsRecorder
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.storage.base import GroupCommitLedger

POOL_SCRIPT = bytes.fromhex("0014") + bytes(range(20))


def make_template(height: int, bits: int, subsidy: int, fees: int, tip: int = 1) -> Template:
    """A template at `height` whose transactions pay `fees` (one tx carrying them all)."""
    txs = (TemplateTx(b"\x01" * 60, bytes([7]) * 32, fees),) if fees else ()
    return Template(
        height=height,
        version=0x20000000,
        prev_hash=tip.to_bytes(32, "little"),
        bits=bits,
        curtime=1_700_000_000,
        mintime=1_699_999_000,
        coinbase_value=subsidy + fees,
        transactions=txs,
        witness_commitment=None,
        coinbase_aux=b"",
        longpollid=None,
    )


@dataclass
class PoolWithJobs:
    """Publishes jobs (terms recorded) and writes the shares answering them."""

    ledger: GroupCommitLedger
    recorder: JobTermsRecorder
    time: float = 1_700_000_000.0
    book: JobBook = field(
        default_factory=lambda: JobBook(
            payout_outputs(None, 0.0), tag=b"/t/", extranonce2_size=4, generations_kept=3
        )
    )
    job: PoolJob | None = None
    blocks: list[BlockRecord] = field(default_factory=list)
    share_jobs: list[PoolJob] = field(default_factory=list)  # each accepted share's job

    def clock(self) -> float:
        """The recorder's clock: the pool's."""
        return self.time

    async def publish(
        self,
        template: Template,
        plan: CoinbasePlan | None = None,
        spec: str | None = None,
    ) -> PoolJob:
        """A new template's job, its terms recorded (and committed) before it is used."""
        self.time += 0.25
        self.book.set_template(template)
        job = self.book.job_for(POOL_SCRIPT)
        self.recorder.note(job, plan, spec)
        await self.recorder.flush()
        self.job = job
        return job

    async def share(
        self, account: str, difficulty: float, *, accepted: bool = True, found: str | None = None
    ) -> None:
        """One share answering the current job."""
        assert self.job is not None
        self.time += 1.0
        await self.ledger.record_share(
            ShareRecord(
                worker=f"{account}.rig",
                account=account,
                job_id=self.job.job_id,
                height=self.job.template.height,
                difficulty=difficulty,
                share_difficulty=difficulty,
                accepted=accepted,
                reject_reason=None if accepted else "low-difficulty",
                time=self.time,
                extranonce1_hex="00000000",
                block_hash_hex=found,
            )
        )
        if accepted:
            self.share_jobs.append(self.job)

    async def block(self, account: str, hash_hex: str, height: int) -> BlockRecord:
        """A block found by `account`'s share on the current job, accepted at `height`."""
        assert self.job is not None
        await self.share(account, 1.0, found=hash_hex)
        reward = self.job.template.coinbase_value
        rec = BlockRecord(
            height, hash_hex, reward, f"{account}.rig", account, self.time + 0.5, True, None
        )
        await self.ledger.record_block(rec)
        self.blocks.append(rec)
        return rec
