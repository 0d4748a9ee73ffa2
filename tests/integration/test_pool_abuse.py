"""Hostile clients against a real pool on real sockets: the budget before authorize and bans.

Abusers connect from their own loopback addresses (127.0.0.2, 127.0.0.3, ...; Linux routes all
of 127/8 to lo), with `bans.exempt_loopback` off, so per-IP limits and bans apply to them and
the good miner on 127.0.0.1 is a different IP. After every abuse case that good miner still
connects, subscribes, authorizes and gets a share accepted.

The regtest-node cases run the `Pool` in this process (so its state can be inspected); the
get_transactions case runs `hashfarm pool` as its own process on block 481829's template
(2,019 transactions: regtest templates are nearly empty), where the defect was measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from hashfarm.pool.service import Pool
from hashfarm.pool.settings import BanSettings, PoolSettings, StratumSettings, VardiffSettings
from hashfarm.pool.stats import PoolStats
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import Request, encode
from nodes import RegtestNode, bcoin_address
from unit.pool.harness import MINER_SCRIPTS, Recorder, pool_settings, running_pool, wait_for
from unit.pool.stratum_client import StratumTestMiner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the template node
from bench_pool import PAYOUT, rss_mb, start_node, start_pool, wait_ready

GOOD = bcoin_address(MINER_SCRIPTS[0])
ABUSER = bcoin_address(MINER_SCRIPTS[1])


def settings_for(
    node: RegtestNode, tmp_path: Path, stratum: dict[str, Any] | None = None, **bans: Any
) -> PoolSettings:
    """A test pool with loopback not exempt; shares far below regtest's block difficulty."""
    base = pool_settings(node.rpc_url, node.api_key, tmp_path)
    return replace(
        base,
        stratum=StratumSettings(port=0, raise_nofile=False, **(stratum or {})),
        bans=BanSettings(exempt_loopback=False, **bans),
        vardiff=VardiffSettings(initial=1e-11, minimum=1e-12, enabled=False),
    )


@contextlib.asynccontextmanager
async def pool_on(
    node: RegtestNode, settings: PoolSettings
) -> AsyncIterator[tuple[Pool, Recorder]]:
    async with running_pool(settings, node.rpc()) as (pool, recorder):
        yield pool, recorder
        await good_miner_is_served(pool)


async def good_miner_is_served(pool: Pool) -> None:
    """A well-behaved miner on 127.0.0.1: subscribe, authorize, one accepted share."""
    miner = StratumTestMiner(pool.stratum_port, f"{GOOD}.good")
    try:
        await miner.start()
        share = await miner.mine_share()
        assert share.response.ok, share.response.error
    finally:
        await miner.close()


class Raw:
    """A client connection from a chosen loopback address, speaking raw lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, pool: Pool, ip: str) -> Raw:
        r, w = await asyncio.open_connection(
            "127.0.0.1", pool.stratum_port, local_addr=(ip, 0), limit=1 << 24
        )
        return cls(r, w)

    async def send(self, *requests: Request | bytes) -> None:
        self.writer.write(b"".join(x if isinstance(x, bytes) else encode(x) for x in requests))
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def answer(self, wait_s: float = 10.0) -> dict[str, Any]:
        """The next line that is not a notification."""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), wait_s)
            assert line, "the pool closed the connection"
            msg: dict[str, Any] = orjson.loads(line)
            if msg.get("method") is None:
                return msg

    async def closed_by_pool(self, wait_s: float = 10.0) -> bool:
        """True when the pool closes the connection (read to EOF) within `wait_s`."""
        with contextlib.suppress(ConnectionError):
            while await asyncio.wait_for(self.reader.read(1 << 16), wait_s):
                pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def hello(user: str) -> list[Request]:
    return [Request(1, m.SUBSCRIBE, ("abuse/1",)), Request(2, m.AUTHORIZE, (user, "x"))]


pytestmark = pytest.mark.node


async def test_junk_lines_ban_the_ip_close_its_connections_and_refuse_new_ones(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    settings = settings_for(regtest_node, tmp_path, junk_lines=20)
    async with pool_on(regtest_node, settings) as (pool, _):
        quirky = await Raw.open(pool, "127.0.0.10")  # an authorized miner's odd methods
        await quirky.send(*hello(f"{ABUSER}.quirky"))
        await quirky.answer()
        await quirky.answer()
        await quirky.send(*(Request(10 + n, "mining.ping", ()) for n in range(30)))
        for _ in range(30):
            assert (await quirky.answer())["error"][0] == 20
        assert pool.bans.active(pool.now()) == []  # answered, not counted against the IP
        await quirky.close()
        idle = await Raw.open(pool, "127.0.0.2")
        await idle.send(Request(1, m.SUBSCRIBE, ("idle",)))
        assert (await idle.answer())["error"] is None
        noisy = await Raw.open(pool, "127.0.0.2")
        junk = [b"not json\n", encode(Request(5, "mining.teleport", ())),
                encode(Request(6, m.SUBMIT, ("w", "1", "00", "00", "00")))] * 7  # fmt: skip
        await noisy.send(*junk)  # 21 junk lines: one over the limit
        assert await noisy.closed_by_pool()
        assert await idle.closed_by_pool()  # every connection of the IP goes
        [ban] = pool.bans.active(pool.now())
        assert (ban.ip, ban.reason) == ("127.0.0.2", "junk-lines")
        assert ban.until - ban.since == settings.bans.seconds
        again = await Raw.open(pool, "127.0.0.2")  # refused at accept
        await again.send(Request(1, m.SUBSCRIBE, ("again",)))
        assert await again.closed_by_pool()
        assert pool.server.refused["banned"] >= 1
        await good_miner_is_served(pool)
        assert pool.bans.lift("127.0.0.2")
        lifted = await Raw.open(pool, "127.0.0.2")
        await lifted.send(Request(1, m.SUBSCRIBE, ("lifted",)))
        assert (await lifted.answer())["error"] is None
        await lifted.close()


async def test_failed_authorizations_ban_and_names_cannot_forge_log_lines(
    regtest_node: RegtestNode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hashfarm")
    settings = settings_for(regtest_node, tmp_path, failed_authorizations=5)
    async with pool_on(regtest_node, settings) as (pool, _):
        client = await Raw.open(pool, "127.0.0.3")
        await client.send(Request(1, m.SUBSCRIBE, ("x",)))
        await client.answer()
        forged = f"{ABUSER}.rig\n12:00:00.000 WARNING hashfarm.pool: BLOCK FOUND by FORGED"
        await client.send(Request(2, m.AUTHORIZE, (forged, "x")))
        refused = await client.answer()
        assert refused["error"][0] == 24
        assert "control characters" in refused["error"][1]
        assert not any("\nFORGED" in r.getMessage() or "\n12:00" in r.getMessage()
                       for r in caplog.records)  # fmt: skip
        assert "BLOCK FOUND by FORGED" in caplog.text  # it is there, escaped on one line
        for n in range(5):  # not an address of this network: refused
            await client.send(Request(3 + n, m.AUTHORIZE, (f"nobody{n}.rig", "x")))
        assert await client.closed_by_pool()
        [ban] = pool.bans.active(pool.now())
        assert (ban.ip, ban.reason) == ("127.0.0.3", "failed-authorize")


async def test_an_invalid_share_ratio_bans_the_ip(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    settings = settings_for(regtest_node, tmp_path, invalid_min_shares=50, invalid_ratio=0.9)
    async with pool_on(regtest_node, settings) as (pool, _):
        client = await Raw.open(pool, "127.0.0.4")
        await client.send(*hello(f"{ABUSER}.rig"))
        bad = [Request(10 + n, m.SUBMIT, (f"{ABUSER}.rig", "ffff", "00" * 8, "00000000",
                                          f"{n:08x}")) for n in range(60)]  # fmt: skip
        await client.send(*bad)
        assert await client.closed_by_pool()
        [ban] = pool.bans.active(pool.now())
        assert (ban.ip, ban.reason) == ("127.0.0.4", "invalid-shares")


async def test_connections_and_unauthorized_connections_per_ip_are_capped(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    caps = {"max_connections_per_ip": 6, "max_unauthorized_per_ip": 3}
    async with pool_on(regtest_node, settings_for(regtest_node, tmp_path, caps)) as (pool, _):
        ip = "127.0.0.5"
        first = [await Raw.open(pool, ip) for _ in range(3)]
        for c in first:
            await c.send(Request(1, m.SUBSCRIBE, ("x",)))
            assert (await c.answer())["error"] is None
        fourth = await Raw.open(pool, ip)  # a fourth stranger from the same IP
        assert await fourth.closed_by_pool()
        for n, c in enumerate(first):  # authorized: they no longer count as strangers
            await c.send(Request(2, m.AUTHORIZE, (f"{ABUSER}.r{n}", "x")))
            assert (await c.answer())["result"] is True
        more = [await Raw.open(pool, ip) for _ in range(3)]
        for c in more:
            await c.send(Request(1, m.SUBSCRIBE, ("x",)))
            assert (await c.answer())["error"] is None
        seventh = await Raw.open(pool, ip)  # six from this IP already
        assert await seventh.closed_by_pool()
        assert pool.server.refused["max-unauthorized-per-ip"] == 1
        assert pool.server.refused["max-connections-per-ip"] == 1
        assert pool.bans.active(pool.now()) == []  # capped, not banned
        for c in first + more:
            await c.close()
        await wait_for(lambda: ip not in pool.server.by_ip, 5, "the IP's connections forgotten")
        assert ip not in pool.server.unauthorized


async def test_a_short_line_limit_before_authorize_and_the_full_one_after(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    async with pool_on(regtest_node, settings_for(regtest_node, tmp_path)) as (pool, _):
        padding = "p" * 2000  # a 2 KB line: over 1 KiB, under 16 KiB
        stranger = await Raw.open(pool, "127.0.0.6")
        await stranger.send(Request(padding, m.SUBSCRIBE, ("x",)))
        assert "longer than 1024 bytes" in (await stranger.answer())["error"][1]
        assert await stranger.closed_by_pool()
        miner = await Raw.open(pool, "127.0.0.6")
        await miner.send(*hello(f"{ABUSER}.rig"))
        assert (await miner.answer())["error"] is None
        assert (await miner.answer())["result"] is True
        await miner.send(Request(padding, m.EXTRANONCE_SUBSCRIBE, ()))
        assert (await miner.answer())["id"] == padding
        await miner.close()


async def test_workers_per_connection_are_capped_and_unauthorized_names_make_no_stats(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    settings = settings_for(regtest_node, tmp_path, {"max_workers": 3})
    async with pool_on(regtest_node, settings) as (pool, recorder):
        stats = PoolStats()
        pool.observers = (*pool.observers, stats)
        client = await Raw.open(pool, "127.0.0.7")
        await client.send(*hello(f"{ABUSER}.w0"))
        await client.answer()
        assert (await client.answer())["result"] is True
        for n in (1, 2, 0):  # w0 again is no new worker
            await client.send(Request(10 + n, m.AUTHORIZE, (f"{ABUSER}.w{n}", "x")))
            assert (await client.answer())["result"] is True
        await client.send(Request(20, m.AUTHORIZE, (f"{ABUSER}.w3", "x")))
        capped = await client.answer()
        assert capped["error"][0] == 24
        assert "3 workers on this connection already" in capped["error"][1]
        made_up = [Request(30 + n, m.SUBMIT, (f"{ABUSER}.fake{n}", "1", "00" * 8, "00000000",
                                              "00000000")) for n in range(200)]  # fmt: skip
        await client.send(*made_up)
        for _ in made_up:
            assert (await client.answer())["error"][0] == 24
        await wait_for(lambda: len(recorder.shares) >= 200, 5, "the rejected shares observed")
        assert {s.reject_reason for s in recorder.shares} == {"unauthorized"}
        assert stats.workers() == []  # no per-name tally, no /metrics label
        assert stats.pool().shares_rejected == {"unauthorized": 200}
        await client.close()
        stranger = await Raw.open(pool, "127.0.0.8")  # subscribed only: no share is judged
        await stranger.send(Request(1, m.SUBSCRIBE, ("x",)), made_up[0])
        await stranger.answer()
        assert (await stranger.answer())["error"][:2] == [24, "mining.submit: authorize first"]
        assert len(recorder.shares) == 200
        await stranger.close()


async def test_a_pipelining_connection_is_served_in_turns_and_paced(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    budget = {"lines_per_turn": 64, "lines_per_second": 1000.0}
    async with pool_on(regtest_node, settings_for(regtest_node, tmp_path, budget)) as (pool, _):
        flood = await Raw.open(pool, "127.0.0.9")
        count = 3000
        lines = [Request(n, m.EXTRANONCE_SUBSCRIBE, ()) for n in range(count)]
        started = time.monotonic()
        await flood.send(*lines)  # one write; the pool reads it in a few large chunks
        [proto] = [p for p in pool.server.sessions.values() if p.ip == "127.0.0.9"]
        await wait_for(lambda: proto.waiting > 0, 5, "lines waiting for a later turn")
        assert proto.transport is not None
        assert not proto.transport.is_reading()  # the socket rests meanwhile
        # Another miner is answered while most of the flood still waits its turn.
        await good_miner_is_served(pool)
        assert proto.waiting > 0
        answers = [await flood.answer() for _ in range(count)]
        elapsed = time.monotonic() - started
        assert [a["id"] for a in answers] == list(range(count))  # in order, none lost
        assert elapsed >= 1.5  # 1,000 at once, then 1,000 a second: paced, never refused
        await wait_for(lambda: proto.transport is not None and proto.transport.is_reading(), 5,
                       "reading resumed")  # fmt: skip
        await flood.close()


# -- mining.get_transactions on a real mainnet template, in a pool process --------------


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def test_get_transactions_floods_cannot_grow_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """500 get_transactions in one write grew the pool from 58 MB to 1.9 GB and sent a
    stranger every transaction of the template; now a stranger gets errors, and even with
    no rate limit an authorized connection is dropped once 1 MiB of answers is held."""
    node, runner, url = await start_node()
    monkeypatch.setenv("HASHFARM_STRATUM_GET_TRANSACTIONS_INTERVAL", "0")  # only the byte cap
    monkeypatch.setenv("HASHFARM_VARDIFF_MINIMUM", "1e-12")  # every hash a share (test miners)
    proc, port, log = start_pool(url, node.zmq_url, tmp_path, "NORMAL")
    try:
        await wait_ready(proc, log)
        holder = StratumTestMiner(port, f"{PAYOUT}.holder")  # a job exists, as in the issue
        await holder.start()
        assert holder.job is not None
        assert holder.difficulty is not None
        assert holder.difficulty < 1e-9  # else grinding a share in Python would never end
        job_id = holder.job.job_id
        await asyncio.sleep(0.5)
        before = rss_mb(proc.pid)
        asks = [Request(10 + n, "mining.get_transactions", (job_id,)) for n in range(500)]
        r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        w.write(b"".join(map(encode, asks)))  # ~33 KB, never logged in
        stranger = [orjson.loads(await r.readline()) for _ in asks]
        assert {a["result"] is None and a["error"][0] == 25 for a in stranger} == {True}
        w.close()
        r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        w.write(b"".join(map(encode, [*hello(f"{PAYOUT}.greedy"), *asks])))
        got = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(r.read(1 << 20), 30):
                got += chunk
        assert len(got) < 2 << 20  # dropped once 1 MiB of answers was held, not after 500
        assert "bytes of answers held: closing" in log.read_text()
        one = await holder.request("mining.get_transactions", job_id)
        assert len(one.result) == 2019
        assert {len(t) for t in one.result} == {64}  # txids, not raw transactions
        peak = peak_rss_mb(proc.pid)
        print(f"pool RSS {before:.0f} MB before, peak {peak:.0f} MB")
        assert peak - before < 200, f"pool grew from {before:.0f} MB to {peak:.0f} MB"
        share = await holder.mine_share()
        assert share.response.ok, share.response.error
        good = StratumTestMiner(port, f"{PAYOUT}.good")
        await good.start()
        assert (await good.mine_share()).response.ok
        await good.close()
        await holder.close()
    finally:
        proc.terminate()
        proc.wait(10)
        await runner.cleanup()
