"""A database outage under load: the ledger's backlog stays bounded and nothing is acknowledged
that is not durable.

The real `hashfarm pool` process runs on the session's regtest node with a small
`storage.queue_max`. While another connection holds the database (SQLite: `BEGIN EXCLUSIVE`, so
the pool's commits fail with "database is locked" and are retried; PostgreSQL: the shares table
locked `ACCESS EXCLUSIVE`, so its INSERT waits), several load-generator connections (bench/
loadgen.py) send more real shares than the bound. Exactly `queue_max` of them may wait; every
other one must be answered at once with "share not recorded: ledger backlog full", the outage
logged once. When the database comes back, the waiting shares and new ones are acknowledged,
and the table then holds exactly the acknowledged shares.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg
import pytest

from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.node.bcoin import free_port
from nodes import RegtestNode

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the load generator
from loadgen import Miner, Share, connect_many

pytestmark = pytest.mark.node

HASHFARM = Path(sys.executable).parent / "hashfarm"
QUEUE_MAX = 300  # storage.queue_max of the pool under test
CONNECTIONS = 4
DURING = 200  # shares per connection sent while the database is locked (800 > QUEUE_MAX)
AFTER = 50  # shares per connection once it is back
FULL = "share not recorded: ledger backlog full"
ShareId = tuple[str, str, float]
Unlock = Callable[[], Awaitable[None]]


def start_pool(node: RegtestNode, db_url: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`hashfarm pool` as its own process, shares far below the network's difficulty."""
    port = free_port()
    env = {
        **os.environ,
        "HASHFARM_VARDIFF_INITIAL": "1e-11",  # regtest's network difficulty is ~4.7e-10
        "HASHFARM_VARDIFF_MINIMUM": "1e-12",
        "HASHFARM_VARDIFF_ENABLED": "false",  # keep it there: no share may become a block
        "HASHFARM_STORAGE_QUEUE_MAX": str(QUEUE_MAX),
        "HASHFARM_STORAGE_BATCH_MAX": "50",
    }
    args = [str(HASHFARM), "pool", "--rpc-url", node.rpc_url, "--rpc-password", node.api_key,
            "--stratum-port", str(port), "--http-port", "0", "--db", db_url]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, port


async def wait_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Return once the pool says it is ready (fail with its log if it died)."""
    for _ in range(600):
        assert proc.poll() is None, f"the pool exited at start:\n{_tail(log)}"
        if "pool ready" in _text(log):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the pool never got ready:\n{_tail(log)}")


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


def _tail(log: Path) -> str:
    return "\n".join(_text(log).splitlines()[-20:])


async def wait_answers(miners: list[Miner], count: int, seconds: float) -> None:
    """Until the miners hold `count` answers to shares (fail after `seconds`)."""
    for _ in range(int(seconds * 20)):
        if sum(len(m.answers) for m in miners) >= count:
            return
        await asyncio.sleep(0.05)
    got = sum(len(m.answers) for m in miners)
    raise AssertionError(f"{got} answers after {seconds} s, {count} expected")


def send(miners: list[Miner], shares: list[list[Share]]) -> None:
    """Write every share at once (no waiting for answers: the ledger may hold them)."""
    for miner, batch in zip(miners, shares, strict=True):
        miner.writer.write(b"".join(s.line for s in batch))
        for s in batch:
            miner._sent[s.msg_id] = 0.0


def outcome(miners: list[Miner], shares: list[list[Share]]) -> tuple[set[ShareId], list[str]]:
    """(the shares answered `true`, the error messages of the others) among `shares`."""
    acked: set[ShareId] = set()
    errors: list[str] = []
    for m, batch in zip(miners, shares, strict=True):
        for s in batch:
            answer = m.answers.get(s.msg_id)
            if answer is None:
                continue
            if answer.ok:
                acked.add((m.extranonce1.hex(), s.job_id, s.difficulty))
            else:
                errors.append(str(answer.error.message if answer.error else answer.result))
    return acked, errors


async def outage(
    node: RegtestNode, db_url: str, log: Path, lock: Callable[[], Awaitable[Unlock]]
) -> tuple[set[ShareId], set[ShareId]]:
    """Run the outage scenario; (acknowledged, refused) shares."""
    proc, port = start_pool(node, db_url, log)
    unlock: Unlock | None = None
    try:
        await wait_ready(proc, log)
        user = await node.payout_address()
        miners = await connect_many("127.0.0.1", port, [f"{user}.o{i}" for i in range(CONNECTIONS)])
        network = bits_to_difficulty(miners[0].job.bits)  # type: ignore[union-attr]
        prepared = [m.prepare(DURING + AFTER, keep=lambda d, m=m: m.difficulty <= d < network)
                    for m in miners]  # fmt: skip
        for m in miners:
            m.answers.clear()  # the hand-shake's
        during = [p[:DURING] for p in prepared]
        after = [p[DURING:] for p in prepared]

        unlock = await lock()
        send(miners, during)
        refused_count = CONNECTIONS * DURING - QUEUE_MAX
        await wait_answers(miners, refused_count, 30)  # the refusals come at once
        await asyncio.sleep(1.0)  # and nothing more while the database is away
        acked, errors = outcome(miners, during)
        assert not acked, f"{len(acked)} shares acknowledged while the database was locked"
        assert errors == [FULL] * refused_count, f"unexpected answers: {sorted(set(errors))}"
        assert _text(log).count("ledger backlog full") == 1, _tail(log)

        await unlock()
        unlock = None
        await wait_answers(miners, CONNECTIONS * DURING, 60)  # the waiting ones, once durable
        send(miners, after)
        await wait_answers(miners, CONNECTIONS * (DURING + AFTER), 60)
        acked, errors = outcome(miners, prepared)
        assert len(acked) == QUEUE_MAX + CONNECTIONS * AFTER, "after recovery, all acknowledged"
        assert errors == [FULL] * refused_count
        assert "accepting shares again" in _text(log), _tail(log)
        for m in miners:
            await m.close()
    finally:
        if unlock is not None:  # failed during the outage: let the pool stop
            await unlock()
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    refused = {(m.extranonce1.hex(), s.job_id, s.difficulty)
               for m, b in zip(miners, during, strict=True) for s in b
               if not m.answers[s.msg_id].ok}  # fmt: skip
    return acked, refused


async def test_a_locked_sqlite_ledger_refuses_past_the_bound_and_recovers(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    db = tmp_path / "pool.sqlite3"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    async def lock() -> Unlock:
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the database

        async def unlock() -> None:
            holder.execute("COMMIT")

        return unlock

    acked, refused = await outage(regtest_node, f"sqlite:///{db}", tmp_path / "pool.log", lock)
    holder.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT extranonce1, job_id, share_difficulty FROM shares").fetchall()
    assert len(rows) == len(set(rows)) == len(acked)
    assert set(rows) == acked  # every acknowledged share is stored, and only those
    assert not refused & set(rows)


@pytest.mark.services
async def test_a_locked_postgresql_ledger_refuses_past_the_bound_and_recovers(
    regtest_node: RegtestNode, fresh_pg_url: str, tmp_path: Path
) -> None:
    holder = await psycopg.AsyncConnection.connect(fresh_pg_url)

    async def lock() -> Unlock:
        await holder.execute("LOCK TABLE shares IN ACCESS EXCLUSIVE MODE")  # opens a transaction

        async def unlock() -> None:
            await holder.commit()

        return unlock

    try:
        acked, refused = await outage(regtest_node, fresh_pg_url, tmp_path / "pool.log", lock)
    finally:
        await holder.close()
    async with await psycopg.AsyncConnection.connect(fresh_pg_url) as conn:
        cur = await conn.execute("SELECT extranonce1, job_id, share_difficulty FROM shares")
        rows = [(a, b, c) for a, b, c in await cur.fetchall()]
    assert len(rows) == len(set(rows)) == len(acked)
    assert set(rows) == acked
    assert not refused & set(rows)
