"""Per-customer mode's refusals on real sockets, with no upstream reachable (the proxy
listens at once in this mode; customers' sessions keep trying in the background)."""

from __future__ import annotations

import socket

from hashfarm.proxy.server import Proxy
from hashfarm.proxy.settings import ProxySettings, Upstream
from unit.pool.stratum_client import StratumTestMiner


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_names_cap_and_one_customer_per_connection() -> None:
    settings = ProxySettings(
        Upstream("127.0.0.1", closed_port()), "", port=0, per_customer=True,
        user_template="addr.{customer}", max_upstreams=2, connect_timeout=0.5,
    )  # fmt: skip
    proxy = Proxy(settings)
    await proxy.start()
    miners: list[StratumTestMiner] = []
    try:

        async def authorize(name: str, conn: StratumTestMiner | None = None) -> str | None:
            if conn is None:
                conn = StratumTestMiner(proxy.port, name)
                miners.append(conn)
                await conn.connect()
                sub = await conn.subscribe()
                assert sub.ok  # before any session: the fixed size, 8 - 2 bytes
                assert conn.extranonce2_size == 6
            res = await conn.authorize(name)
            return None if res.ok else (res.error.message if res.error else "?")

        assert "is not [A-Za-z0-9_-]" in (await authorize("al{ce.m1") or "")
        assert await authorize("alice.m1") is None
        assert await authorize("alice.m2", miners[-1]) is None  # same customer, same connection
        other = await authorize("bob.m1", miners[-1])
        assert other == "this connection mines for alice"
        assert await authorize("bob.m1") is None
        assert await authorize("carol.m1") == "over 2 upstream sessions (customers)"
        assert set(proxy.channels) == {"alice", "bob"}
        assert proxy.channels["alice"].user == "addr.alice"
        assert len(proxy.channels["alice"].machines) == 1
        stats = proxy.stats_dict()
        assert stats["mode"] == "per-customer"
        assert stats["channels"]["bob"]["connected"] is False
    finally:
        for mi in miners:
            await mi.close()
        await proxy.stop()
