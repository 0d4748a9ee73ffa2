"""The front end's lease on its frontend_id, on the real NATS JetStream (127.0.0.1:4222).

Two running front ends must never share an id (their extranonce1 ranges and job ids would
collide): the second refuses to start, naming the holder; a holder killed with SIGKILL frees
the id (at once on the same host, else after the TTL); a partition longer than the TTL is
survived when nobody took the id meanwhile, and stops the front end when someone did.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_broker_nats import Forwarder

from hashfarm.broker import FrontendLease, LeaseHeld
from nodes import NATS_URL, nats_problem, service_missing

HASHFARM = Path(sys.executable).parent / "hashfarm"


@pytest.fixture
async def bucket() -> AsyncIterator[str]:
    """A fresh lease bucket for one test; deleted afterwards."""
    if problem := nats_problem():
        service_missing(problem)
    name = f"test-leases-{secrets.token_hex(4)}"
    yield name
    import nats

    nc = await nats.connect(NATS_URL)
    for kv in (name, f"{name}-frontends"):  # the CLI test's: "<cluster.stream>-frontends"
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_key_value(kv)
    await nc.close()


def lease(
    bucket: str, frontend_id: int = 7, ttl: float = 2.0, url: str = NATS_URL
) -> FrontendLease:
    return FrontendLease(url, bucket, frontend_id, stratum="127.0.0.1:3340", ttl=ttl)


async def test_a_second_holder_is_refused_naming_the_first_and_another_id_is_free(
    bucket: str,
) -> None:
    first = lease(bucket)
    await first.acquire()
    assert first.held
    second = lease(bucket)
    t0 = time.monotonic()
    with pytest.raises(LeaseHeld) as refused:
        await second.acquire()
    waited = time.monotonic() - t0
    message = str(refused.value)
    assert "cluster.frontend_id 7 is in use by another running front end" in message
    assert f"pid {os.getpid()} on " in message
    assert "127.0.0.1:3340" in message
    assert 2.0 <= waited < 6.0  # one TTL (+1 s) for a holder that just died, no more
    other = lease(bucket, frontend_id=8)
    await other.acquire()  # a different id is independent
    assert other.held
    assert first.held  # renewed all along
    assert not first.lost.is_set()
    await other.close()
    await first.close()  # deletes its entry: the id is free at once
    third = lease(bucket)
    t0 = time.monotonic()
    await third.acquire()
    assert time.monotonic() - t0 < 1.5
    await third.close()


async def test_a_holder_that_stops_renewing_frees_the_id_after_the_ttl(bucket: str) -> None:
    first = lease(bucket, ttl=2.0)
    await first.acquire()
    # a holder on another host that stopped (killed, frozen): no renewal and no delete
    assert first._task is not None
    first._task.cancel()
    await first._drop_connection()
    stopped = time.monotonic()
    second = lease(bucket, ttl=2.0)
    await second.acquire()  # waits for the entry to expire
    assert second.held
    assert 1.0 <= time.monotonic() - stopped < 5.0
    await second.close()


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from hashfarm.broker import FrontendLease

    async def main():
        lease = FrontendLease(sys.argv[1], sys.argv[2], 9, stratum="127.0.0.1:3349", ttl=30.0)
        await lease.acquire()
        print("held", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_a_front_end_killed_with_sigkill_on_this_host_is_replaced_at_once(
    bucket: str,
) -> None:
    proc = subprocess.Popen(  # noqa: ASYNC220 (its stdout is read in a thread)
        [sys.executable, "-c", HOLDER, NATS_URL, bucket], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.to_thread(proc.stdout.readline) == "held\n"
        alive = FrontendLease(NATS_URL, bucket, 9, ttl=1.0)  # a short wait for the refusal
        with pytest.raises(LeaseHeld, match=f"pid {proc.pid} on "):
            await alive.acquire()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        after = FrontendLease(NATS_URL, bucket, 9, ttl=30.0)
        t0 = time.monotonic()
        await after.acquire()  # the entry's 30 s TTL is not waited for: its process is gone
        assert after.held
        assert time.monotonic() - t0 < 3.0
        await after.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def test_hashfarm_pool_refuses_a_second_front_end_with_one_id(
    bucket: str, tmp_path: Path
) -> None:
    stream = bucket  # `hashfarm pool` leases in "<cluster.stream>-frontends"
    holder = lease(f"{stream}-frontends", frontend_id=201, ttl=2.0)
    await holder.acquire()
    env = {**os.environ, "HASHFARM_CLUSTER_LEASE_TTL": "2", "HASHFARM_CLUSTER_STREAM": stream}
    env.pop("HASHFARM_CONFIG", None)
    proc = await asyncio.create_subprocess_exec(
        str(HASHFARM), "pool", "--role", "stratum", "--frontend-id", "201",
        "--broker", NATS_URL, "--stratum-port", "0", "--http-port", "0",
        "--spool-dir", str(tmp_path / "spool"), env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode()
    assert proc.returncode == 1, text
    assert "cluster.frontend_id 201 is in use by another running front end" in text
    assert f"pid {os.getpid()} on " in text
    assert "pool ready" not in text  # it never listened
    assert holder.held
    assert not holder.lost.is_set()
    await holder.close()


async def test_a_partition_longer_than_the_ttl_keeps_the_id_unless_another_took_it(
    bucket: str,
) -> None:
    fwd = Forwarder()
    await fwd.start()
    mine = lease(bucket, ttl=2.0, url=fwd.url)
    await mine.acquire()
    fwd.blackhole()  # silent: renewals time out, the entry expires on the broker
    await asyncio.sleep(4.0)
    fwd.heal()
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:  # renewed again (the client reconnected)
        await asyncio.sleep(0.5)
        if mine.held and mine._nc is not None and mine._nc.is_connected and await _is_mine(mine):
            break
    assert await _is_mine(mine), "the lease was not taken again after the partition"
    assert not mine.lost.is_set()
    # now a partition during which another front end takes the id: this one must stop
    fwd.blackhole()
    await asyncio.sleep(3.0)  # expired
    thief = lease(bucket, ttl=30.0)
    await thief.acquire()
    fwd.heal()
    await asyncio.wait_for(mine.lost.wait(), 20.0)
    assert "in use by another running front end" in mine.lost_reason
    assert thief.held
    await thief.close()
    await mine.close()
    await fwd.cut()


async def _is_mine(held: FrontendLease) -> bool:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        kv = await nc.jetstream().key_value(held.bucket)
        entry = await kv.get(held.key)
        return held.me.token.encode() in (entry.value or b"")
    except Exception:
        return False
    finally:
        await nc.close()
