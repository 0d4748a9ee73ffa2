"""The notify fan-out over real sockets: steady sessions get the bare shared line, a session
whose difficulty changed gets set_difficulty first, and each job is judged at its difficulty.

A real `Pool` (mainnet, pooled) with a template from a real block; only the node is absent:
templates are handed to the pool the way its tip watcher does.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from pool_helpers import template_of
from stratum_client import StratumTestMiner

from hashfarm.chain.block import Block
from hashfarm.pool.service import Pool
from hashfarm.pool.settings import PoolSettings, StorageSettings, StratumSettings
from hashfarm.pool.storage import make_ledger
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import Request, Response, decode, encode

PAYOUT = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"


@pytest.fixture
async def pool(tmp_path: Path, small_block: Block) -> AsyncIterator[Pool]:
    settings = PoolSettings(
        network="mainnet",
        mode="pooled",
        payout_address=PAYOUT,
        stratum=StratumSettings(port=0, raise_nofile=False),
        storage=StorageSettings(url=f"sqlite:///{tmp_path / 'pool.sqlite3'}"),
    )
    ledger = make_ledger(settings.storage)
    await ledger.start()
    pool = Pool(settings, None, ledger)  # type: ignore[arg-type]  # no node: templates by hand
    await pool.server.start()
    await pool._on_template(template_of(small_block), "test")
    yield pool
    await pool.server.stop()
    await ledger.close()


async def new_tip(pool: Pool, n: int) -> None:
    tpl = pool.jobs.template
    assert tpl is not None
    await pool._on_template(replace(tpl, prev_hash=bytes([n]) * 32, height=tpl.height + 1), "tip")


async def test_fanout_sends_set_difficulty_only_where_it_changed(pool: Pool) -> None:
    steady, changed = (StratumTestMiner(pool.stratum_port, f"{PAYOUT}.{w}") for w in "ab")
    for miner in (steady, changed):
        await miner.start()
    assert (await changed.request(m.SUGGEST_DIFFICULTY, 512)).ok
    assert changed.difficulty == 512.0  # announced at once, applies from the next job
    sessions = {next(iter(s.workers))[-1]: s for s in pool.sessions()}
    assert sessions["a"].steady
    assert not sessions["b"].steady

    for miner in (steady, changed):
        miner.notifications.clear()
    await new_tip(pool, 1)
    jobs = [await miner.wait_job() for miner in (steady, changed)]
    assert jobs[0] == jobs[1]
    assert jobs[0].clean_jobs
    assert [n.method for n in steady.notifications] == [m.NOTIFY]
    assert [n.method for n in changed.notifications] == [m.NOTIFY]  # 512 was already sent
    job = pool.current_job()
    assert sessions["b"].difficulty_for(job) == 512.0
    assert sessions["b"].steady
    assert sessions["a"].difficulty_for(job) == 1.0

    # A retarget clamps every session's difficulty: set_difficulty, then the clean job.
    tiny = replace(pool.jobs.template, bits=0x207FFFFF)  # type: ignore[arg-type]
    for miner in (steady, changed):
        miner.notifications.clear()
    await pool._on_template(replace(tiny, prev_hash=bytes([2]) * 32), "retarget")
    for miner in (steady, changed):
        await miner.wait_job()
        assert [n.method for n in miner.notifications] == [m.SET_DIFFICULTY, m.NOTIFY]
        assert miner.difficulty == pytest.approx(tiny.difficulty, rel=1e-12, abs=0)
        await miner.close()
    await asyncio.sleep(0)


async def test_answers_to_one_read_arrive_in_order_and_an_error_precedes_the_close(
    pool: Pool,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", pool.stratum_port)
    burst = [
        encode(Request(1, m.SUBSCRIBE, ("t",))),
        encode(Request(2, "mining.teleport", ())),
        encode(Request(3, m.AUTHORIZE, (f"{PAYOUT}.w", "x"))),
    ]
    writer.write(b"".join(burst))  # one segment: the pool answers all three in one write
    answers = [decode(await reader.readline()) for _ in range(3)]
    assert [a.id for a in answers if isinstance(a, Response)] == [1, 2, 3]
    assert isinstance(answers[1], Response)
    assert answers[1].error is not None
    assert answers[1].error.code == 20
    lines = [await reader.readline() for _ in range(2)]  # set_difficulty, then the first job
    assert [decode(x).method for x in lines] == [m.SET_DIFFICULTY, m.NOTIFY]  # type: ignore[union-attr]

    writer.write(b"x" * (pool.settings.stratum.max_line + 10))  # too long: answered, then closed
    last = decode(await reader.readline())
    assert isinstance(last, Response)
    assert last.error is not None
    assert await reader.read() == b""
    writer.close()


async def wait_ready(pool: Pool) -> None:
    for _ in range(200):
        if any(s.ready for s in pool.sessions()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the session never became ready")


async def test_a_sweep_in_parts_visits_every_session_once(pool: Pool) -> None:
    miners = [StratumTestMiner(pool.stratum_port, f"{PAYOUT}.{n}") for n in range(5)]
    for miner in miners:
        await miner.start()
    later = pool.now() + pool.settings.stratum.idle_timeout + 1  # every session is idle by then
    closing = []
    for part in range(3):
        pool.server.sweep(later, part, 3)
        closing.append(
            sum(
                p.transport is None or p.transport.is_closing()
                for p in pool.server.sessions.values()
            )
        )
    assert closing == [2, 4, 5]  # slices of ceil(5 / 3) sessions, each visited once
    for miner in miners:
        await miner.close()


async def test_a_miner_that_stops_reading_is_dropped(
    pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", pool.stratum_port))
    hello = [Request(1, m.SUBSCRIBE, ("t",)), Request(2, m.AUTHORIZE, (f"{PAYOUT}.w", "x"))]
    await asyncio.get_running_loop().sock_sendall(sock, b"".join(map(encode, hello)))
    await wait_ready(pool)
    for n in range(20_000):  # never read: new jobs' notify lines queue up in the pool
        if n % 100 == 0:
            await asyncio.sleep(0)
        if "not reading its socket: closing" in caplog.text and not pool.sessions():
            break
        await new_tip(pool, n % 250 + 3)
    assert "not reading its socket: closing" in caplog.text
    assert not pool.sessions()
    sock.close()
