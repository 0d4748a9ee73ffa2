"""Property: all six schemes, switched among at random, replayed and crashed, pay exactly once.

Random histories written by the pool's real pieces (`JobBook` jobs whose terms the real
`JobTermsRecorder` records, shares and blocks through the real `SQLiteLedger`): jobs with
random template fees, TIDES jobs with a coinbase plan, accepted and rejected shares, found
blocks, blocks orphaned by a longer branch, the operator switching among SOLO, PROP, PPLNS,
TIDES, PPS and FPPS, and between chain changes any number of crediting passes, each a
freshly started service cut after a random number of events or dying at a random SQL
statement (`test_acct_replay`'s crashes). At the end every block is matured and a full pass
runs. Then, against references computed independently of the SQL:

* every block still on the chain is credited exactly as `switching.settle_history` says
  under the switches the books recorded (a block found on a TIDES job: exactly its coinbase
  plan), every orphan is reversed or never posted, and never matured;
* each block's credits sum to its reward minus its fee, exactly;
* every accepted share of a PPS/FPPS epoch is priced once (the pricing batches tile those
  shares, no share twice) and each account was credited `floor(exact value of its shares)`,
  the value at the terms of the share's own job;
* no miner balance is negative; the reserve is the PPS blocks' rewards minus PPS credits;
  the books balance and replay from the postings.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hashfarm.accounting import FoundBlock, JobTerms, Share
from hashfarm.accounting.crediting import format_spec, parse_spec
from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import Pplns, Pps, Prop, Scheme, Solo, Tides, share_value
from hashfarm.accounting.service import CreditingService
from hashfarm.accounting.store import AccountingStore, SqlStore, open_store
from hashfarm.accounting.switching import SchemeSwitch, epoch_of, settle_history
from hashfarm.accounting.tides import CoinbasePlan, plan_coinbase
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.chain.subsidy import block_subsidy
from hashfarm.pool.jobs import PoolJob
from hashfarm.pool.jobterms import JobTermsRecorder
from hashfarm.pool.storage.sqlite import SQLiteLedger
from unit.accounting.acct_jobs import PoolWithJobs, make_template
from unit.accounting.acct_pool import BITS_DIFFICULTY_1, ScriptedChain, block_hash
from unit.accounting.acct_strategies import ACCOUNTS, PROPERTY
from unit.accounting.test_acct_replay import Crash, CrashingSql, Run, budgets

fees = st.builds(Fee.bps, st.integers(0, 500))
tides = st.builds(
    Tides,
    fees,
    st.just(Fraction(8)),
    st.sampled_from([1, 10**9, 2 * 10**9]),  # dust: none, some or most earnings held
    st.integers(1, 4),  # max_outputs
)
schemes: st.SearchStrategy[Scheme] = st.one_of(
    st.builds(Solo, fees),
    st.builds(Prop, fees),
    st.builds(Pplns, fees, st.sampled_from([Fraction(1, 2), Fraction(2), Fraction(5)])),
    tides,
    st.builds(Pps, fees, st.booleans()),
)


@dataclass(frozen=True)
class Step:
    switch_to: Scheme | None  # the operator's scheme from here on
    template_fees: int  # the fees of the job published for this step
    refresh_fees: int | None  # a second job (a template refresh) halfway through the shares
    shares: list[tuple[str, float, bool]]  # (account, difficulty, accepted)
    finder: str
    mined_after: int
    orphan: bool
    runs: list[Run]


def steps_switching_to(switch: st.SearchStrategy[Scheme | None]) -> st.SearchStrategy[Step]:
    """Steps whose operator switches as `switch` draws (None: no switch)."""
    return st.builds(
        Step,
        switch,
        st.integers(0, 3_000_000),
        st.one_of(st.none(), st.integers(0, 3_000_000)),
        st.lists(
            st.tuples(
                st.sampled_from(ACCOUNTS),
                st.sampled_from([0.25, 0.5, 1.0, 3.0, 0.3]),
                st.sampled_from([True, True, True, False]),
            ),
            max_size=6,
        ),
        st.sampled_from(ACCOUNTS),
        st.one_of(st.integers(0, 5), st.integers(100, 120)),  # blocks on top: young or mature
        st.booleans(),
        budgets,
    )


steps = steps_switching_to(st.one_of(st.none(), schemes))


class Scenario:
    """One history: the pool, the chain, the books and what the test knows independently."""

    def __init__(self, pool: PoolWithJobs, store: AccountingStore) -> None:
        self.pool = pool
        self.store = store
        self.chain = ScriptedChain()
        self.plans: dict[str, CoinbasePlan] = {}  # job id (this pool run) -> its plan
        self.block_jobs: dict[str, PoolJob] = {}  # block hash -> the job it was found on
        self.held_paid = 0  # held balances the kept blocks' coinbases paid (for the stats)

    async def publish(self, scheme: Scheme, fees: int) -> None:
        template = make_template(
            self.chain.tip + 1, BITS_DIFFICULTY_1, block_subsidy(self.chain.tip + 1), fees
        )
        plan = None
        if isinstance(scheme, Tides):  # a TIDES job pays its window in the coinbase
            weights = {a: i + 1 for i, a in enumerate(ACCOUNTS[: 1 + template.height % 5])}
            plan = plan_coinbase(template.coinbase_value, weights, scheme, self.held())
        job = await self.pool.publish(template, plan, format_spec(scheme) if plan else None)
        if plan is not None:
            self.plans[job.job_id] = plan

    def held(self) -> dict[str, int]:
        """What a coinbase may pay of each miner's spendable balance, as the pool computes
        it: the balance (mature credits only) less what blocks found on plans but not posted
        (and not orphaned) will still take from it."""
        sql = self.store.sql
        held = {k[len("miner:") :]: v for k, v in sql.balances("miner:").items()}
        held = {a: v for a, v in held.items() if not a.endswith(":immature")}
        for found, job in self.block_jobs.items():
            plan = self.plans.get(job.job_id)
            if plan is None or sql.has_transaction(f"found:{found}"):
                continue
            state = sql.q("SELECT state FROM acct_blocks WHERE hash = ?", (found,))
            if state == [("orphaned",)]:
                continue
            for account, used in plan.held_used.items():
                held[account] = held.get(account, 0) - used
        return {a: v for a, v in held.items() if v > 0}

    async def run(self, scheme: Scheme, run: Run) -> None:
        """One pass of a freshly started service, cut as `run` says."""
        service = CreditingService(self.store, self.chain, scheme, clock=self.pool.clock)
        if not isinstance(run, tuple):
            await service.step(run)
            return
        healthy = self.store.sql
        self.store.sql = CrashingSql(healthy, run[1])
        try:
            await service.step()
        except Crash:
            pass
        finally:
            self.store.sql = healthy


async def _scenario(path: Path, initial: Scheme, plan: list[Step]) -> None:
    ledger = SQLiteLedger(path, synchronous="NORMAL")
    await ledger.start()
    holder: list[PoolWithJobs] = []
    recorder = JobTermsRecorder(f"sqlite:///{path}", "mainnet", clock=lambda: holder[0].clock())
    await recorder.start()
    pool = PoolWithJobs(ledger, recorder)
    holder.append(pool)
    store = await open_store(f"sqlite:///{path}")
    s = Scenario(pool, store)
    scheme = initial
    try:
        for n, step in enumerate(plan):
            scheme = step.switch_to or scheme
            await s.publish(scheme, step.template_fees)
            for i, (account, d, accepted) in enumerate(step.shares):
                if step.refresh_fees is not None and i == len(step.shares) // 2:
                    await s.publish(scheme, step.refresh_fees)
                await pool.share(account, d, accepted=accepted)
            assert pool.job is not None
            rec = await pool.block(step.finder, block_hash(n), s.chain.tip + 1)
            s.block_jobs[rec.hash_hex] = pool.job
            s.chain.place(rec.hash_hex)
            for run in step.runs:
                await s.run(scheme, run)
            s.chain.extend(step.mined_after)
            if step.orphan:
                s.chain.reorg(rec.height, longer_by=1)
            for run in step.runs:
                await s.run(scheme, run)
        # close the books: a last block (the boundary of a switch still pending), maturity
        # for everything, and a job after every share (their terms are all recorded)
        await s.publish(scheme, 0)
        await pool.share("alice", 1.0)
        rec = await pool.block("alice", block_hash(len(plan)), s.chain.tip + 1)
        assert pool.job is not None
        s.block_jobs[rec.hash_hex] = pool.job
        s.chain.place(rec.hash_hex)
        s.chain.extend(120)
        await s.publish(scheme, 0)
        final = await CreditingService(store, s.chain, scheme, clock=pool.clock).step()
        assert final.complete
        assert final.unpriced is None
        assert not final.failed
        await recorder.close()
        await ledger.close()
        _check(store.sql, s)
    finally:
        await store.close()


def _terms(job: PoolJob) -> JobTerms:
    """A job's terms from its template, computed here (not read back from the books)."""
    t = job.template
    subsidy = block_subsidy(t.height)
    return JobTerms(bits_to_difficulty(t.bits), subsidy, t.coinbase_value - subsidy)


def _check(sql: SqlStore, s: Scenario) -> None:
    rows = sql.q(
        "SELECT id, account, difficulty, time, height, block_hash FROM shares "
        "WHERE accepted ORDER BY id"
    )
    shares = [Share(int(i), str(a), float(d), float(t), int(h)) for i, a, d, t, h, _ in rows]
    assert len(shares) == len(s.pool.share_jobs)
    job_of = {sh.share_id: job for sh, job in zip(shares, s.pool.share_jobs, strict=True)}
    finding = {str(bh): int(i) for i, _, _, _, _, bh in rows if bh is not None}
    blocks = [
        FoundBlock(
            b.hash_hex, b.height, b.reward_sats, b.finder_account, finding[b.hash_hex], b.time, 1.0
        )
        for b in s.pool.blocks
    ]
    noted = sql.q("SELECT requested_at, params FROM acct_scheme_switches ORDER BY id")
    initial = parse_spec(str(noted[0][1]))
    switches = [SchemeSwitch(float(at), parse_spec(str(p))) for at, p in noted[1:]]
    ref = settle_history(initial, switches, shares, blocks, lambda sh: _terms(job_of[sh.share_id]))

    expected: dict[str, int] = {}
    fees_total = reserve = coinbase_paid = held_paid = 0
    for credit in ref.blocks:
        block = next(b for b in blocks if b.hash_hex == credit.block_hash)
        job = s.block_jobs[credit.block_hash]
        plan = s.plans.get(job.job_id)
        kept = s.chain.hashes[block.height] == credit.block_hash
        state = sql.q("SELECT state FROM acct_blocks WHERE hash = ?", (credit.block_hash,))
        assert state == [("credited" if kept else "orphaned",)]
        keys = {
            str(k)
            for (k,) in sql.q(
                "SELECT key FROM acct_transactions WHERE block_hash = ?", (credit.block_hash,)
            )
        }
        if not kept:
            assert keys in (
                set(),
                {f"found:{credit.block_hash}", f"reverse:found:{credit.block_hash}"},
            )
            continue
        assert keys == {f"found:{credit.block_hash}", f"mature:{credit.block_hash}"}
        if plan is not None:  # the coinbase paid it: exactly the plan, whatever the epoch
            paid = dict(plan.outputs)
            assert sum(plan.earnings.values()) == block.reward_sats - plan.fee
            for account, sats in plan.earnings.items():
                if account not in paid:  # held for the miner (dust or beyond the bound)
                    expected[account] = expected.get(account, 0) + sats
            for account, used in plan.held_used.items():  # a balance paid in its coinbase
                expected[account] = expected.get(account, 0) - used
            held_paid += sum(plan.held_used.values())
            coinbase_paid += sum(paid.values())
            fees_total += plan.fee
            continue
        assert sum(credit.credits.values()) + credit.fee + credit.reserve == block.reward_sats
        for account, sats in credit.credits.items():
            expected[account] = expected.get(account, 0) + sats
        fees_total += credit.fee
        reserve += credit.reserve

    # PPS/FPPS: every share of a PPS epoch priced once, at its own job's terms
    pps_ids = [
        sh.share_id for sh in shares if isinstance(epoch_of(sh.share_id, ref.epochs).scheme, Pps)
    ]
    batches = sql.q("SELECT after_id, until_id, shares FROM acct_pps_batches ORDER BY after_id")
    covered = [
        i for a, u, _ in batches for i in (sh.share_id for sh in shares) if int(a) < i <= int(u)
    ]
    assert sorted(covered) == pps_ids  # each PPS share in exactly one batch, nothing else
    assert sum(int(n) for _, _, n in batches) == len(pps_ids)
    owed: dict[str, Fraction] = {}
    for sh in shares:
        scheme = epoch_of(sh.share_id, ref.epochs).scheme
        if isinstance(scheme, Pps):
            value = share_value(sh.difficulty, _terms(job_of[sh.share_id]), scheme)
            owed[sh.account] = owed.get(sh.account, Fraction(0)) + value
    pps_credits = {a: math.floor(v) for a, v in owed.items()}
    assert {a: v for a, v in pps_credits.items() if v} == ref.pps_credits
    for account, sats in pps_credits.items():
        expected[account] = expected.get(account, 0) + sats

    s.held_paid = held_paid
    assert sql.balances("miner:") == {f"miner:{a}": v for a, v in expected.items() if v}
    assert all(v >= 0 for v in sql.balances("miner:").values())
    assert sql.balance("pool:fees") == fees_total
    assert sql.balance("payouts:coinbase") == coinbase_paid
    assert sql.balance("pool:reserve:immature") == 0  # everything matured
    assert sql.balance("pool:reserve") == reserve - sum(pps_credits.values())
    assert sum(sql.balances().values()) == 0  # the trial balance
    replayed = dict(
        sql.q(
            "SELECT account, SUM(amount) FROM acct_postings GROUP BY account "
            "HAVING SUM(amount) <> 0"
        )
    )
    assert {str(k): int(v) for k, v in replayed.items()} == sql.balances()


@PROPERTY
@given(initial=schemes, plan=st.lists(steps, min_size=1, max_size=4))
def test_every_scheme_switched_replayed_and_crashed_pays_exactly_once(
    initial: Scheme, plan: list[Step]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_scenario(Path(tmp) / "pool.sqlite3", initial, plan))


@PROPERTY
@given(initial=tides, plan=st.lists(steps_switching_to(st.none() | tides), min_size=2, max_size=5))
def test_tides_coinbases_paying_held_balances_never_pay_twice(
    initial: Tides, plan: list[Step]
) -> None:
    """TIDES throughout: dust held, matured, then paid in later coinbases (the plans take the
    held balances as the pool does: spendable, less what found but unposted blocks will
    take), blocks orphaned and passes crashed; the same checks as above."""
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_scenario(Path(tmp) / "pool.sqlite3", initial, plan))
