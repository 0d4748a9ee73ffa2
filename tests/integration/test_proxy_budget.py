"""The proxy's downstream side under hostile input, on real sockets, with the real pool above.

The same rules as the pool's: a short line limit and a method allow-list before authorize, an
authorize deadline, connections per IP, workers per connection, a customer allow-list; a
share below the upstream difficulty is answered here (23) and never forwarded; one bad line
is answered and the machine lives on.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from hashfarm.chain.pow import difficulty_to_target
from hashfarm.proxy.server import UPSTREAM_VERSION_MASK, Proxy
from hashfarm.proxy.settings import ProxySettings, Upstream
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import ErrorCode
from nodes import RegtestNode, bcoin_address
from unit.pool.harness import MINER_SCRIPTS, pool_settings, running_pool, wait_for
from unit.pool.stratum_client import StratumTestMiner

pytestmark = pytest.mark.node


async def closed_by_peer(reader: asyncio.StreamReader, seconds: float = 5.0) -> bool:
    """Read until EOF (True) or `seconds` pass (False)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


def high_hash_share(miner: StratumTestMiner, target: int) -> tuple[bytes, bytes]:
    """A header whose hash misses `target` (about one nonce in two on regtest)."""
    job = miner.job
    assert job is not None
    en2 = (1).to_bytes(miner.extranonce2_size, "little")
    head = job.header(miner.extranonce1, en2, job.time, 0)[:76]
    for nonce in range(1 << 20):
        header = head + nonce.to_bytes(4, "little")
        digest = hashlib.sha256(hashlib.sha256(header).digest()).digest()
        if int.from_bytes(digest, "little") > target:
            return header, en2
    raise AssertionError("every nonce met the target")


async def test_hostile_machines_are_bounded_and_low_shares_stay_local(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    user = f"{bcoin_address(MINER_SCRIPTS[7])}.proxy"
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        proxy = Proxy(
            ProxySettings(
                Upstream("127.0.0.1", pool.stratum_port),
                user,
                port=0,
                max_connections_per_ip=4,
                max_workers=2,
                auth_timeout=1.0,
                allowed_workers=frozenset({"alice"}),
            )
        )
        await proxy.start()
        try:
            # Before authorize: only the handshake methods; a submit is refused (24).
            early = StratumTestMiner(proxy.port, "alice.m1")
            await early.connect()
            res = await early.request(m.SUBMIT, "alice.m1", "1", "00", "00000000", "00000000")
            assert res.error is not None
            assert res.error.code == ErrorCode.UNAUTHORIZED
            # Version rolling: the machine gets what it asked for within the upstream's mask.
            conf = await early.configure(0x0FFFF000)
            assert m.parse_configure_result(conf.result) == 0x0FFFF000 & UPSTREAM_VERSION_MASK
            # A customer not on the allow-list is refused; the workers cap holds.
            assert (await early.subscribe()).ok
            bad = await early.authorize("mallory.x")
            assert bad.error is not None
            assert bad.error.code == ErrorCode.UNAUTHORIZED
            assert (await early.authorize("alice.m1")).ok
            assert (await early.authorize("alice.m2")).ok
            over = await early.authorize("alice.m3")
            assert over.error is not None
            assert "over 2 workers" in over.error.message
            job = await early.wait_job()
            assert job.clean_jobs
            # One bad line: answered, the machine lives on.
            await early.send_raw(b"{not json\n")
            assert early.difficulty is not None
            target = difficulty_to_target(early.difficulty)
            # A share below the upstream difficulty is answered here and never forwarded.
            header, en2 = high_hash_share(early, target)
            low = await early.submit(job, header, en2)
            assert low.error is not None
            assert low.error.code == ErrorCode.LOW_DIFFICULTY
            assert proxy.stats.low_difficulty == 1
            # A good share goes up and comes back with the pool's own verdict.
            good = await early.mine_share()
            assert good.response.ok, good.response.error
            await wait_for(lambda: len(recorder.shares) >= 1, 5, "the pool's record")
            assert len(recorder.shares) == 1
            assert recorder.shares[0].accepted
            assert proxy.stats.accepted_by_machine == {"alice.m1": 1}

            # A line over the unauthorized limit closes the connection.
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"x" * 2000)
            assert await closed_by_peer(reader)
            writer.close()
            # No authorize within auth_timeout: closed.
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await closed_by_peer(reader, 5.0)
            writer.close()
            # Connections per IP: `early` plus three more fill the cap; the next is closed.
            held = [await asyncio.open_connection("127.0.0.1", proxy.port) for _ in range(3)]
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await closed_by_peer(reader, 2.0)
            writer.close()
            for _, w in held:
                w.close()
            # The honest machine kept its connection through all of it.
            assert (await early.mine_share()).response.ok
            await early.close()
        finally:
            await proxy.stop()
