"""PROXY protocol v1/v2 on real sockets: a trusted load balancer's miners are limited and
banned by the address its header names; nobody else's header is believed.

The "balancer" is a client connecting from 127.0.0.50 (Linux routes all of 127/8 to lo),
the only address in `stratum.proxy_protocol_from`; an untrusted client connects from
127.0.0.60. `bans.exempt_loopback` is off, so per-IP limits and bans apply to every address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from pathlib import Path

import pytest
from test_pool_abuse import ABUSER, Raw, hello, pool_on, settings_for

from hashfarm.pool.service import Pool
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import Request
from hashfarm.stratum.proxyproto import V2_SIGNATURE
from nodes import RegtestNode
from unit.pool.harness import wait_for

pytestmark = pytest.mark.node

BALANCER = "127.0.0.50"
STRANGER = "127.0.0.60"


def v1(ip: str, port: int = 40000) -> bytes:
    return f"PROXY TCP4 {ip} 127.0.0.1 {port} 3333\r\n".encode()


def v2(ip: str, port: int = 40000) -> bytes:
    body = ipaddress.ip_address(ip).packed + ipaddress.ip_address("127.0.0.1").packed
    body += port.to_bytes(2, "big") + (3333).to_bytes(2, "big")
    return V2_SIGNATURE + b"\x21\x11" + len(body).to_bytes(2, "big") + body


def ips(pool: Pool) -> set[str]:
    return set(pool.server.by_ip)


async def test_a_trusted_balancers_miners_are_banned_by_their_claimed_address(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    settings = settings_for(
        regtest_node, tmp_path, {"proxy_protocol_from": f"10.0.1.0/24, {BALANCER}"}, junk_lines=5
    )
    async with pool_on(regtest_node, settings) as (pool, _):
        # v1: the header, then Stratum in the same segment; served as 203.0.113.7
        miner = await Raw.open(pool, BALANCER)
        await miner.send(v1("203.0.113.7"), *hello(f"{ABUSER}.v1"))
        assert (await miner.answer())["error"] is None
        assert (await miner.answer())["result"] is True
        assert "203.0.113.7" in ips(pool)
        assert BALANCER not in ips(pool)
        # v2 (binary), the header split over two writes: served as 198.51.100.9
        other = await Raw.open(pool, BALANCER)
        head = v2("198.51.100.9")
        await other.send(head[:10])
        await asyncio.sleep(0.1)
        await other.send(head[10:], *hello(f"{ABUSER}.v2"))
        assert (await other.answer())["error"] is None
        assert (await other.answer())["result"] is True
        assert {"203.0.113.7", "198.51.100.9"} <= ips(pool)
        # junk from the v1 miner bans 203.0.113.7, not the balancer and not the v2 miner
        await miner.send(*(b"junk\n" for _ in range(6)))
        assert await miner.closed_by_pool()
        now = pool.now()
        assert pool.bans.banned("203.0.113.7", now) is not None
        assert pool.bans.banned(BALANCER, now) is None
        assert pool.bans.banned("198.51.100.9", now) is None
        # the banned address is refused through the balancer, in v1 and in v2...
        for header in (v1("203.0.113.7", 40001), v2("203.0.113.7", 40002)):
            again = await Raw.open(pool, BALANCER)
            await again.send(header, Request(1, m.SUBSCRIBE, ("again",)))
            assert await again.closed_by_pool()
        assert pool.server.refused["banned"] == 2
        # ...while the v2 miner and a new address through the same balancer are served
        await other.send(Request(9, m.SUBSCRIBE, ("still",)))
        assert (await other.answer())["id"] == 9
        fresh = await Raw.open(pool, BALANCER)
        await fresh.send(v2("192.0.2.44"), Request(1, m.SUBSCRIBE, ("fresh",)))
        assert (await fresh.answer())["error"] is None
        for raw in (other, fresh):
            await raw.close()


async def test_per_ip_limits_count_the_claimed_address(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    stratum = {"proxy_protocol_from": BALANCER, "max_connections_per_ip": 2}
    settings = settings_for(regtest_node, tmp_path, stratum)
    async with pool_on(regtest_node, settings) as (pool, _):
        held = []
        for n, header in enumerate((v1("198.51.100.20", 1), v2("198.51.100.20", 2))):
            raw = await Raw.open(pool, BALANCER)
            await raw.send(header, Request(n, m.SUBSCRIBE, ("cap",)))
            assert (await raw.answer())["error"] is None
            held.append(raw)
        third = await Raw.open(pool, BALANCER)
        await third.send(v1("198.51.100.20", 3), Request(1, m.SUBSCRIBE, ("cap",)))
        assert await third.closed_by_pool()
        assert pool.server.refused["max-connections-per-ip"] == 1
        # five miners behind the one balancer: each its own address, all served
        for n in range(5):
            raw = await Raw.open(pool, BALANCER)
            await raw.send(v2(f"198.51.100.{100 + n}"), Request(1, m.SUBSCRIBE, ("nat",)))
            assert (await raw.answer())["error"] is None
            held.append(raw)
        assert len(pool.server.by_ip.get(BALANCER, ())) == 0
        for raw in held:
            await raw.close()


async def test_a_trusted_source_must_send_a_valid_header_first_and_in_time(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    stratum = {"proxy_protocol_from": BALANCER, "proxy_protocol_timeout": 1.0}
    settings = settings_for(regtest_node, tmp_path, stratum)
    async with pool_on(regtest_node, settings) as (pool, _):
        plain = await Raw.open(pool, BALANCER)  # Stratum with no header: closed, unanswered
        await plain.send(Request(1, m.SUBSCRIBE, ("plain",)))
        assert await plain.closed_by_pool()
        bad = await Raw.open(pool, BALANCER)  # a malformed header
        await bad.send(b"PROXY TCP4 203.0.113.999 127.0.0.1 1 2\r\n")
        assert await bad.closed_by_pool()
        oversize = await Raw.open(pool, BALANCER)  # v2 announcing 65,535 bytes
        await oversize.send(V2_SIGNATURE + b"\x21\x11\xff\xff")
        assert await oversize.closed_by_pool()
        slow = await Raw.open(pool, BALANCER)  # half a header, then silence
        t0 = time.monotonic()
        await slow.send(b"PROXY TCP4 203.0.")
        assert await slow.closed_by_pool(wait_s=5.0)
        assert 0.9 <= time.monotonic() - t0 < 4.0
        assert pool.server.refused["proxy-header"] == 4
        assert pool.server.awaiting_header == 0
        assert pool.sessions() == []  # none of them got a session


async def test_an_untrusted_sources_header_is_ordinary_bad_input(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    settings = settings_for(regtest_node, tmp_path, {"proxy_protocol_from": BALANCER})
    async with pool_on(regtest_node, settings) as (pool, _):
        for header in (v1("203.0.113.7"), v2("203.0.113.8")):
            raw = await Raw.open(pool, STRANGER)
            await raw.send(header + b"\n", Request(7, m.SUBSCRIBE, ("liar",)))
            first = await raw.answer()
            assert first["id"] is None  # the header line: answered as a bad Stratum line
            assert first["error"][0] == 20
            await wait_for(lambda: STRANGER in ips(pool), 5.0, "the stranger's own address")
            assert not {"203.0.113.7", "203.0.113.8"} & ips(pool)
            session = next(s for s, p in pool.server.sessions.items() if p.ip == STRANGER)
            assert session.junk >= 1
            await raw.close()
            await wait_for(lambda: STRANGER not in ips(pool), 5.0, "the stranger gone")
