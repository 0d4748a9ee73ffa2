"""TIDES plans from the pool's real SQLite ledger (pool/tides.py), against the references.

Shares and blocks are written through the pool's own `SQLiteLedger`; the planner reads them
as it does in the worker process (here in-process, same code). Each plan is checked against
`accounting.tides.plan_coinbase` over the reference window (`window.pplns_window`, one
Fraction per share) of the same shares, cut where the switching rule says.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import AsyncIterator
from concurrent.futures.process import BrokenProcessPool
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashfarm.accounting.crediting import format_spec, parse_spec
from hashfarm.accounting.inputs import FoundBlock, Share
from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import Pplns, Prop, Tides
from hashfarm.accounting.store import SqlStore, connect
from hashfarm.accounting.switching import SchemeSwitch, plan_epochs
from hashfarm.accounting.tides import CoinbasePlan, plan_coinbase
from hashfarm.accounting.window import Window, pplns_window, window_size
from hashfarm.chain.address import address_to_script, script_to_address
from hashfarm.chain.coinbase import build_coinbase, coinbase_fixed_size
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.chain.tx import TxOut
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.settings import StorageSettings
from hashfarm.pool.storage import make_ledger
from hashfarm.pool.storage.base import GroupCommitLedger
from hashfarm.pool.tides import (
    PlanRequest,
    PlanWorker,
    TidesPlanner,
    epoch_in_force,
    in_force,
    outputs_within_budget,
)

BITS = 0x1D00FFFF  # network difficulty 1: the TIDES window is 8 difficulty units
VALUE = 312_500_000 + 12_345_678
SCHEME = Tides(Fee.bps(100), Fraction(8), dust_sats=1, max_outputs=500)
POOL = address_to_script("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "regtest")


def address(i: int) -> str:
    """A distinct regtest P2WPKH address per miner."""
    key_hash = hashlib.sha256(f"miner-{i}".encode()).digest()[:20]
    found = script_to_address(bytes.fromhex("0014") + key_hash, "regtest")
    assert found is not None
    return found


class Ledger:
    """The pool's ledger with a clock and the shares written so far (the reference input)."""

    def __init__(self, ledger: GroupCommitLedger) -> None:
        self.ledger = ledger
        self.time = 1_700_000_000.0
        self.shares: list[Share] = []

    async def share(self, account: str, difficulty: float, found: str | None = None) -> None:
        self.time += 1.0
        await self.ledger.record_share(
            ShareRecord(
                f"{account}.rig",
                account,
                "1",
                0,
                difficulty,
                difficulty,
                True,
                None,
                self.time,
                "00000000",
                found,
            )
        )
        self.shares.append(Share(len(self.shares) + 1, account, difficulty, self.time, 0))

    async def block(self, account: str, hash_hex: str) -> None:
        await self.share(account, 0.01, found=hash_hex)
        rec = BlockRecord(
            1, hash_hex, VALUE, f"{account}.rig", account, self.time + 0.5, True, None
        )
        await self.ledger.record_block(rec)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    storage = StorageSettings(
        url=f"sqlite:///{tmp_path / 'pool.sqlite3'}", sqlite_synchronous="NORMAL"
    )
    pool_ledger = make_ledger(storage)
    await pool_ledger.start()
    yield Ledger(pool_ledger)
    await pool_ledger.close()


def open_sql(tmp_path: Path) -> SqlStore:
    return connect(f"sqlite:///{tmp_path / 'pool.sqlite3'}")


def request(
    fixed: int = 126, *, value: int = VALUE, reserved: dict[str, dict[str, int]] | None = None
) -> PlanRequest:
    return PlanRequest(900_000, value, BITS, fixed, True, reserved or {})


def reference(
    shares: list[Share], after: int, held: dict[str, int] | None = None, bound: int = 500
) -> tuple[CoinbasePlan, Window]:
    """The reference plan over the shares after `after`, and its window."""
    cut = [s for s in shares if s.share_id > after]
    window = pplns_window(cut, window_size(SCHEME.factor, bits_to_difficulty(BITS)))
    scheme = Tides(SCHEME.fee, SCHEME.factor, SCHEME.dust_sats, bound)
    return plan_coinbase(VALUE, window.weights, scheme, held or {}), window


async def test_a_plan_pays_the_window_of_the_ledger_exactly(ledger: Ledger, tmp_path: Path) -> None:
    # 40 miners, uneven work, more than the window holds: the oldest shares fall out
    for round_ in range(6):
        for i in range(40):
            await ledger.share(address(i), 0.01 * (1 + i % 7) * (1 + round_ % 3))
    sql = open_sql(tmp_path)
    planner = TidesPlanner(sql, SCHEME, "regtest", 1_000_000)
    result = planner.plan(request())
    expected, window = reference(ledger.shares, -1)
    assert window.full  # the ledger holds more than 8 difficulty units
    assert result.plan == expected
    assert result.spec == format_spec(SCHEME)
    assert result.window_total == window.total
    assert result.newest_share_id == len(ledger.shares)
    assert result.extra["oldest_share_id"] == window.oldest_share_id
    outs = result.txouts()
    assert sum(o.value for o in outs) == VALUE
    paid = {o.script_pubkey: o.value for o in outs if o.script_pubkey}
    assert paid == {address_to_script(a, "regtest"): v for a, v in expected.outputs}
    assert len(outs) == len(expected.outputs) + (1 if expected.pool_sats else 0)
    sql.close()


async def test_the_cache_follows_new_shares_like_a_fresh_read(
    ledger: Ledger, tmp_path: Path
) -> None:
    sql = open_sql(tmp_path)
    planner = TidesPlanner(sql, SCHEME, "regtest", 1_000_000)
    for step in range(4):  # each step adds ~5 windows of work: the cache drops old shares
        for i in range(200):
            await ledger.share(address(i % 25), 0.2 + 0.01 * ((i * 7 + step) % 11))
        incremental = planner.plan(request())
        fresh = TidesPlanner(open_sql(tmp_path), SCHEME, "regtest", 1_000_000).plan(request())
        assert incremental.plan == fresh.plan == reference(ledger.shares, -1)[0]
    assert planner.cache.ids.size < len(ledger.shares)  # trimmed, yet exact
    sql.close()


async def test_the_byte_budget_bounds_the_outputs_and_the_coinbase(
    ledger: Ledger, tmp_path: Path
) -> None:
    for i in range(120):
        await ledger.share(address(i), 0.05)
    fixed = coinbase_fixed_size(
        900_000, extranonce_size=12, tag=b"/hashfarm/", witness_commitment=bytes(32)
    )
    budget = 2_000
    bound = outputs_within_budget(budget, fixed)
    assert bound == (budget - fixed) // 43
    result = TidesPlanner(open_sql(tmp_path), SCHEME, "regtest", budget).plan(request(fixed))
    assert result.plan == reference(ledger.shares, -1, bound=bound)[0]
    outs = [TxOut(v, s or POOL) for s, v in result.outputs]
    assert len(outs) <= bound
    parts = build_coinbase(
        900_000, outs, extranonce_size=12, tag=b"/hashfarm/", witness_commitment=bytes(32)
    )
    assert len(parts.coinb1) + 12 + len(parts.coinb2) <= budget


async def test_the_window_starts_at_the_switch_boundary(ledger: Ledger, tmp_path: Path) -> None:
    for i in range(30):
        await ledger.share(address(i), 0.1)
    sql = open_sql(tmp_path)
    with sql.tx():  # the crediting service noted pplns first, then a switch to TIDES
        sql.q(
            "INSERT INTO acct_scheme_switches (requested_at, scheme, params) VALUES (?, ?, ?)",
            (0.0, "pplns", format_spec(Pplns(Fee.bps(100)))),
        )
        sql.q(
            "INSERT INTO acct_scheme_switches (requested_at, scheme, params) VALUES (?, ?, ?)",
            (ledger.time + 0.1, "tides", format_spec(SCHEME)),
        )
    planner = TidesPlanner(sql, SCHEME, "regtest", 1_000_000)
    before = planner.plan(request())
    assert before.plan is None
    assert before.switch_pending
    await ledger.share(address(99), 0.5)  # work before the boundary block: old scheme
    await ledger.block(address(98), "aa" * 32)  # the boundary block (still pplns)
    boundary = len(ledger.shares)
    for i in range(10):
        await ledger.share(address(i), 0.3)
    now = in_force(sql)
    assert (now.spec, now.epoch_after, now.switch_pending) == (format_spec(SCHEME), boundary, False)
    after = planner.plan(request())
    assert after.plan == reference(ledger.shares, boundary)[0]
    assert after.plan is not None
    assert address(99) not in after.plan.earnings
    assert address(98) not in after.plan.earnings
    assert after.extra["epoch_after"] == boundary
    sql.close()


async def test_held_balances_are_paid_once_while_a_block_is_unposted(
    ledger: Ledger, tmp_path: Path
) -> None:
    for i in range(5):
        await ledger.share(address(i), 1.0)
    sql = open_sql(tmp_path)
    held_account = address(7)  # no share in the window, a mature held balance
    with sql.tx():
        sql.q(
            "INSERT INTO acct_balances (account, currency, balance) VALUES (?, 'SAT', ?)",
            (f"miner:{held_account}", 900_000),
        )
    planner = TidesPlanner(sql, SCHEME, "regtest", 1_000_000)
    first = planner.plan(request())
    assert first.plan is not None
    assert first.plan.held_used == {held_account: 900_000}
    assert first.plan == reference(ledger.shares, -1, {held_account: 900_000})[0]
    # a block found on that plan is not posted yet: the next plan must not pay it again
    pending = {"bb" * 32: dict(first.plan.held_used)}
    second = planner.plan(request(reserved=pending))
    assert second.plan is not None
    assert second.plan.held_used == {}
    assert second.settled == ()
    # once the books posted the block (and took the balance), nothing is reserved any more
    with sql.tx():
        sql.q(
            "INSERT INTO acct_transactions (key, kind, time, block_hash) VALUES (?, 'found', 0, ?)",
            (f"found:{'bb' * 32}", "bb" * 32),
        )
    third = planner.plan(request(reserved=pending))
    assert third.settled == ("bb" * 32,)
    sql.close()


async def test_a_plan_from_postgresql_is_the_same(fresh_pg_url: str) -> None:
    """The same planner over the pool's PostgreSQL ledger (held balances read too)."""
    pool_ledger = make_ledger(StorageSettings(url=fresh_pg_url))
    await pool_ledger.start()
    try:
        ledger = Ledger(pool_ledger)
        for round_ in range(3):
            for i in range(30):
                await ledger.share(address(i), 0.05 * (1 + (i + round_) % 4))
    finally:
        await pool_ledger.close()
    sql = connect(fresh_pg_url)
    try:
        with sql.tx():
            sql.q(
                "INSERT INTO acct_balances (account, currency, balance) VALUES (?, 'SAT', ?)",
                (f"miner:{address(3)}", 777),
            )
        result = TidesPlanner(sql, SCHEME, "regtest", 1_000_000).plan(request())
        assert result.plan == reference(ledger.shares, -1, {address(3): 777})[0]
    finally:
        sql.close()


async def test_a_killed_worker_is_replaced_and_plans_again(ledger: Ledger, tmp_path: Path) -> None:
    """The worker process (spawned, its own connection) plans like the in-process planner;
    killed with SIGKILL, the next call fails with BrokenProcessPool and a new one takes over."""
    for i in range(20):
        await ledger.share(address(i), 0.3)
    worker = PlanWorker(f"sqlite:///{tmp_path / 'pool.sqlite3'}", SCHEME, "regtest", 1_000_000)
    try:
        first = await worker.plan(request())
        assert first.plan == reference(ledger.shares, -1)[0]
        os.kill(await worker.pid(), signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            await worker.plan(request())
        assert worker.restart_if_broken(BrokenProcessPool("gone"))
        again = await worker.plan(request())
        assert again.plan == first.plan
    finally:
        worker.close()


SPECS = [
    format_spec(SCHEME),
    format_spec(Pplns(Fee.bps(100))),
    format_spec(Tides(Fee.bps(200))),
    format_spec(Prop(Fee.bps(50))),
]


@settings(max_examples=300, deadline=None)
@given(
    switches=st.lists(
        st.tuples(st.integers(0, 50).map(float), st.sampled_from(SPECS)), min_size=1, max_size=6
    ),
    blocks=st.lists(st.integers(0, 50), max_size=6, unique=True),
)
def test_the_scheme_in_force_is_switching_plan_epochs_last_epoch(
    switches: list[tuple[float, str]], blocks: list[int]
) -> None:
    """Whatever the switches and blocks, the pool's epoch is `plan_epochs`' open epoch."""
    found = [(10 * t + 5, t + 0.5) for t in sorted(blocks)]  # share ids grow with time
    now = epoch_in_force(switches, found)
    epochs = plan_epochs(
        parse_spec(switches[0][1]),
        [SchemeSwitch(t, parse_spec(p)) for t, p in switches[1:]],
        [FoundBlock(f"{i:064x}", i, 1, "a", s, t, 1.0) for i, (s, t) in enumerate(found)],
    )
    last = epochs[-1]
    assert now.spec == format_spec(last.scheme)
    assert now.epoch_after == last.after
    # pending: a later request would change the scheme at the next block
    requests = sorted(switches[1:], key=lambda sw: sw[0])  # stable: the order noted breaks ties
    later = [parse_spec(p) for t, p in requests if not found or t >= found[-1][1]]
    assert now.switch_pending == (bool(later) and later[-1] != last.scheme)


async def test_a_planner_started_on_an_empty_ledger_sees_the_shares_that_come(
    ledger: Ledger, tmp_path: Path
) -> None:
    """A pool started on a fresh database: the first plans see no work (all to the pool),
    the later ones the shares written since (reported by the crediting helper's test)."""
    sql = open_sql(tmp_path)
    planner = TidesPlanner(sql, SCHEME, "regtest", 1_000_000)
    empty = planner.plan(request())
    assert empty.plan is not None
    assert empty.plan.outputs == ()
    assert empty.plan.pool_sats == VALUE
    assert planner.plan(request()).plan == empty.plan  # still nothing, still reading
    for i in range(12):
        await ledger.share(address(i), 0.5)
    later = planner.plan(request())
    assert later.plan == reference(ledger.shares, -1)[0]
    assert len(later.plan.outputs) == 12
    sql.close()
