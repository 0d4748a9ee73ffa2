"""kill -9 under load: every share the pool acknowledged is in the database afterwards.

The real `hashfarm pool` process runs on the session's regtest node; several connections of
the Stratum load generator (bench/loadgen.py) pipeline real shares at it, each remembering
which of its shares the pool answered `true`. The pool is SIGKILLed while shares are still in
flight; then the database is opened cold and must hold every acknowledged share. A share is
identified by (extranonce1, job id, the hash's exact difficulty), which the client computes
from the header it built and the ledger stores as `share_difficulty`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
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
CONNECTIONS = 6
SHARES_EACH = 2500  # more than can be acknowledged before the kill
KILL_AFTER_ACKS = 2000  # acknowledged shares (all connections) before SIGKILL
ShareId = tuple[str, str, float]


@pytest.fixture
def pool_log(tmp_path: Path) -> Path:
    """Where the pool's output goes (quoted when it fails to start)."""
    return tmp_path / "pool.log"


def start_pool(node: RegtestNode, db_url: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`hashfarm pool` as its own process; shares far below the network's difficulty."""
    port = free_port()
    env = {
        **os.environ,
        "HASHFARM_VARDIFF_INITIAL": "1e-11",  # regtest's network difficulty is ~4.7e-10
        "HASHFARM_VARDIFF_ENABLED": "false",  # keep it there: no share may become a block
    }
    args = [str(HASHFARM), "pool", "--rpc-url", node.rpc_url, "--rpc-password", node.api_key,
            "--stratum-port", str(port), "--http-port", "0", "--db", db_url]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, port


async def wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Return once the pool accepts connections (fail with its log if it died)."""
    for _ in range(300):
        assert proc.poll() is None, f"the pool exited at start:\n{_tail(log)}"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise AssertionError(f"the pool never listened on {port}:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-20:])


async def load_then_kill(proc: subprocess.Popen[bytes], port: int, user: str) -> list[Miner]:
    """Pipeline shares from several connections; SIGKILL the pool mid-load."""
    miners = await connect_many("127.0.0.1", port, [f"{user}.k{i}" for i in range(CONNECTIONS)])
    job = miners[0].job
    assert job is not None
    network = bits_to_difficulty(job.bits)
    batches = [m.prepare(SHARES_EACH, keep=lambda d, m=m: m.difficulty <= d < network)
               for m in miners]  # fmt: skip
    submitting = [
        asyncio.ensure_future(m.submit(b, burst=64)) for m, b in zip(miners, batches, strict=True)
    ]
    while sum(len(m.answers) for m in miners) < KILL_AFTER_ACKS:
        assert not all(t.done() for t in submitting), "the load ended before the kill"
        await asyncio.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(proc.wait)
    await asyncio.gather(*submitting)
    for m in miners:
        await m.close()
    for m, batch in zip(miners, batches, strict=True):
        m.prepared = batch  # type: ignore[attr-defined]
    return miners


def acknowledged(miners: list[Miner]) -> tuple[set[ShareId], int]:
    """Shares the pool answered `true`, and how many shares were sent in all."""
    acked: set[ShareId] = set()
    sent = 0
    for m in miners:
        batch: list[Share] = m.prepared  # type: ignore[attr-defined]
        sent += len(batch)
        en1 = m.extranonce1.hex()
        acked |= {(en1, s.job_id, s.difficulty) for s in batch if _ok(m, s)}
    return acked, sent


def _ok(miner: Miner, share: Share) -> bool:
    answer = miner.answers.get(share.msg_id)
    return answer is not None and answer.ok


async def check_nothing_acknowledged_is_lost(miners: list[Miner], stored: set[ShareId]) -> None:
    acked, sent = acknowledged(miners)
    assert len(acked) >= KILL_AFTER_ACKS - CONNECTIONS * 64, "too few acknowledgements to judge"
    assert len(acked) < sent, "the pool was not killed mid-load"
    missing = acked - stored
    assert not missing, f"{len(missing)} acknowledged shares lost, e.g. {sorted(missing)[:3]}"


async def test_sigkill_under_load_loses_no_acknowledged_share_sqlite(
    regtest_node: RegtestNode, tmp_path: Path, pool_log: Path
) -> None:
    db = tmp_path / "pool.sqlite3"
    proc, port = start_pool(regtest_node, f"sqlite:///{db}", pool_log)
    try:
        await wait_listening(proc, port, pool_log)
        miners = await load_then_kill(proc, port, await regtest_node.payout_address())
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(db) as conn:  # opening recovers the WAL the killed process left
        rows = conn.execute("SELECT extranonce1, job_id, share_difficulty FROM shares").fetchall()
    await check_nothing_acknowledged_is_lost(miners, set(rows))


@pytest.mark.services
async def test_sigkill_under_load_loses_no_acknowledged_share_postgresql(
    regtest_node: RegtestNode, fresh_pg_url: str, pool_log: Path
) -> None:
    proc, port = start_pool(regtest_node, fresh_pg_url, pool_log)
    try:
        await wait_listening(proc, port, pool_log)
        miners = await load_then_kill(proc, port, await regtest_node.payout_address())
    finally:
        proc.kill()
    async with await psycopg.AsyncConnection.connect(fresh_pg_url) as conn:
        cur = await conn.execute("SELECT extranonce1, job_id, share_difficulty FROM shares")
        rows = await cur.fetchall()
    await check_nothing_acknowledged_is_lost(miners, {(a, b, c) for a, b, c in rows})
