"""Property: replaying the crediting service, cut short anywhere, credits every block once.

Random histories of pool-written shares and blocks (through the pool's real SQLiteLedger), a
chain that grows and reorganizes blocks away, and between chain changes any number of
service passes, each a fresh service (a restart) stopped after a random number of events
(a crash between two transactions). At the end the chain matures everything and a full pass
runs; then every block still on the chain is credited exactly as the pure reference
(`settle_history`) says, every block that left the chain is orphaned with its credits
reversed, and the books balance.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hashfarm.accounting import FoundBlock, JobTerms, Share
from hashfarm.accounting.crediting import CustodialScheme as Scheme
from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import Pplns, Prop, Solo
from hashfarm.accounting.service import CreditingService
from hashfarm.accounting.store import AccountingStore, SqlStore, open_store
from hashfarm.accounting.switching import settle_history
from hashfarm.pool.storage.sqlite import SQLiteLedger
from unit.accounting.acct_pool import PoolHistory, ScriptedChain, block_hash
from unit.accounting.acct_strategies import ACCOUNTS, PROPERTY

schemes = st.one_of(
    st.builds(Solo, st.builds(Fee.bps, st.integers(0, 500))),
    st.builds(Prop, st.builds(Fee.bps, st.integers(0, 500))),
    st.builds(
        Pplns,
        st.builds(Fee.bps, st.integers(0, 500)),
        st.sampled_from([Fraction(1, 2), Fraction(2), Fraction(5)]),
    ),
)
# a pass: None runs to the end, an int stops after that many events (a crash between two
# transactions), ("crash", n) dies at the n-th SQL statement (inside a transaction)
Run = int | None | tuple[str, int]
budgets = st.lists(
    st.one_of(st.none(), st.integers(0, 4), st.tuples(st.just("crash"), st.integers(1, 40))),
    max_size=4,
)


class Crash(Exception):
    """The process died here."""


class CrashingSql(SqlStore):
    """The same connection, dying at its `after`-th statement."""

    def __init__(self, sql: SqlStore, after: int) -> None:
        super().__init__(sql.conn, sql.dialect, sql.where)
        self.left = after

    def q(self, text: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        self.left -= 1
        if self.left <= 0:
            raise Crash(text)
        return super().q(text, params)


async def run_pass(store: AccountingStore, chain: ScriptedChain, scheme: Scheme, run: Run) -> None:
    """One pass of a freshly started service, cut as `run` says."""
    service = CreditingService(store, chain, scheme)
    if not isinstance(run, tuple):
        await service.step(run)
        return
    healthy = store.sql
    store.sql = CrashingSql(healthy, run[1])
    try:
        await service.step()
    except Crash:
        pass
    finally:
        store.sql = healthy


@dataclass(frozen=True)
class Found:
    shares: list[tuple[str, float, bool]]  # (account, difficulty, accepted) before the block
    finder: str
    reward: int
    mined_after: int  # blocks others mine on top before the next event
    orphan: bool  # a longer branch then replaces it
    runs: list[Run]  # service passes after the chain changed


found_blocks = st.builds(
    Found,
    st.lists(
        st.tuples(
            st.sampled_from(ACCOUNTS),
            st.sampled_from([0.25, 0.5, 1.0, 3.0, 0.3]),
            st.sampled_from([True, True, True, False]),  # accepted; a few rejected
        ),
        max_size=6,
    ),
    st.sampled_from(ACCOUNTS),
    st.integers(0, 5_000_000_000),
    st.integers(0, 120),
    st.booleans(),
    budgets,
)


async def _scenario(path: Path, scheme: Scheme, plan: list[Found]) -> None:
    ledger = SQLiteLedger(path, synchronous="NORMAL")
    await ledger.start()
    pool = PoolHistory(ledger)
    chain = ScriptedChain()
    url = f"sqlite:///{path}"
    store = await open_store(url)
    try:
        for n, f in enumerate(plan):
            for account, d, accepted in f.shares:
                await pool.share(account, d, accepted=accepted)
            rec = await pool.block(f.finder, 1.0, block_hash(n), chain.tip + 1, f.reward)
            chain.place(rec.hash_hex)
            for run in f.runs:
                await run_pass(store, chain, scheme, run)
            chain.extend(f.mined_after)
            if f.orphan:
                chain.reorg(rec.height, longer_by=1)
            for run in f.runs:
                await run_pass(store, chain, scheme, run)
        chain.extend(120)
        final = await CreditingService(store, chain, scheme).step()
        assert final.complete
        await ledger.close()
        _check(store.sql, scheme, chain, pool)
    finally:
        await store.close()


def _check(sql: object, scheme: Scheme, chain: ScriptedChain, pool: PoolHistory) -> None:
    from hashfarm.accounting.store import SqlStore

    assert isinstance(sql, SqlStore)
    rows = sql.q(
        "SELECT id, account, difficulty, time, height, block_hash FROM shares "
        "WHERE accepted ORDER BY id"
    )
    shares = [Share(int(i), str(a), float(d), float(t), int(h)) for i, a, d, t, h, _ in rows]
    finding = {str(bh): int(i) for i, _, _, _, _, bh in rows if bh is not None}
    blocks = [
        FoundBlock(
            b.hash_hex, b.height, b.reward_sats, b.finder_account, finding[b.hash_hex], b.time, 1.0
        )
        for b in pool.blocks
    ]
    reference = settle_history(scheme, [], shares, blocks, lambda s: JobTerms(1.0, 0))
    expected: dict[str, int] = {}
    fees = 0
    for credit in reference.blocks:
        height = next(b.height for b in blocks if b.hash_hex == credit.block_hash)
        state = sql.q("SELECT state FROM acct_blocks WHERE hash = ?", (credit.block_hash,))
        kept = chain.hashes[height] == credit.block_hash
        assert state == [("credited" if kept else "orphaned",)]
        keys = {
            str(k)
            for (k,) in sql.q(
                "SELECT key FROM acct_transactions WHERE block_hash = ?", (credit.block_hash,)
            )
        }
        if kept:
            assert keys == {f"found:{credit.block_hash}", f"mature:{credit.block_hash}"}
            for account, sats in credit.credits.items():
                expected[f"miner:{account}"] = expected.get(f"miner:{account}", 0) + sats
            fees += credit.fee
        else:
            assert f"mature:{credit.block_hash}" not in keys
            assert keys in (
                set(),
                {f"found:{credit.block_hash}", f"reverse:found:{credit.block_hash}"},
            )
    assert sql.balances("miner:") == {k: v for k, v in expected.items() if v}
    assert sql.balance("pool:fees") == fees
    assert sum(sql.balances().values()) == 0  # the trial balance
    replayed = dict(
        sql.q(
            "SELECT account, SUM(amount) FROM acct_postings GROUP BY account "
            "HAVING SUM(amount) <> 0"
        )
    )
    assert {str(k): int(v) for k, v in replayed.items()} == sql.balances()


@PROPERTY
@given(scheme=schemes, plan=st.lists(found_blocks, min_size=1, max_size=4))
def test_replays_and_crashes_credit_every_block_exactly_once(
    scheme: Scheme, plan: list[Found]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_scenario(Path(tmp) / "pool.sqlite3", scheme, plan))
