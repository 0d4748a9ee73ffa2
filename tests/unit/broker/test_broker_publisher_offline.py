"""The Publisher with no broker reachable: messages are acknowledged by the spool's fsync,
refused once the spool is full, and still on disk for the next process."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from hashfarm.broker import Publisher
from hashfarm.broker.spool import Spool
from hashfarm.errors import BrokerError


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def publish_all(pub: Publisher, ids: list[str]) -> dict[str, BaseException | None]:
    return await publish_all_on(pub, "t.shares", ids)


async def publish_all_on(
    pub: Publisher, subject: str, ids: list[str]
) -> dict[str, BaseException | None]:
    results: dict[str, BaseException | None] = {}
    finished = asyncio.Event()

    def done_for(msg_id: str):  # type: ignore[no-untyped-def]
        def done(exc: BaseException | None) -> None:
            assert msg_id not in results, "done() called twice"
            results[msg_id] = exc
            if len(results) == len(ids):
                finished.set()

        return done

    for msg_id in ids:
        pub.publish(subject, msg_id, msg_id.encode() * 10, done_for(msg_id))
    await asyncio.wait_for(finished.wait(), 10)
    return results


async def test_without_a_broker_the_spool_acknowledges_and_keeps(tmp_path: Path) -> None:
    pub = Publisher(f"nats://127.0.0.1:{closed_port()}", "T", ["t.shares"], tmp_path,
                    name="offline")  # fmt: skip
    await pub.start(connect_wait=0.1)
    ids = [f"share-{n}" for n in range(500)]
    results = await publish_all(pub, ids)
    assert all(exc is None for exc in results.values())
    stats = pub.stats()
    assert (stats.connected, stats.spooled, stats.acked, stats.spool_messages) == (
        False, 500, 0, 500)  # fmt: skip
    await pub.close()

    spool = Spool(tmp_path, max_bytes=1 << 30)  # what the next process will replay
    spool.open()
    replay = [r for path in spool.sealed() for r in spool.read(path)]
    spool.close()
    assert [r.msg_id for r in replay] == ids
    assert replay[7].payload == b"share-7" * 10


async def test_a_full_spool_refuses_and_does_not_acknowledge(tmp_path: Path) -> None:
    pub = Publisher(f"nats://127.0.0.1:{closed_port()}", "T", ["t.shares"], tmp_path,
                    name="offline", spool_max_bytes=4096)  # fmt: skip
    await pub.start(connect_wait=0.1)
    results = await publish_all(pub, [f"s{n:04d}" for n in range(200)])
    accepted = [k for k, exc in results.items() if exc is None]
    refused = [exc for exc in results.values() if exc is not None]
    assert accepted
    assert refused
    assert all(isinstance(exc, BrokerError) for exc in refused)
    stats = pub.stats()
    assert stats.refused == len(refused)
    assert stats.spool_bytes <= 4096
    assert stats.spool_messages == len(accepted)
    await pub.close()


async def test_publish_after_close_is_refused(tmp_path: Path) -> None:
    pub = Publisher(f"nats://127.0.0.1:{closed_port()}", "T", ["t.shares"], tmp_path,
                    name="offline")  # fmt: skip
    await pub.start(connect_wait=0.1)
    await pub.close()
    results = await publish_all(pub, ["late"])
    assert isinstance(results["late"], BrokerError)


@pytest.mark.parametrize("n", [1, 3])
async def test_records_left_by_earlier_runs_are_counted(tmp_path: Path, n: int) -> None:
    for run in range(n):
        pub = Publisher(f"nats://127.0.0.1:{closed_port()}", "T", ["t.shares"], tmp_path,
                        name="offline")  # fmt: skip
        await pub.start(connect_wait=0.1)
        await publish_all(pub, [f"r{run}-{k}" for k in range(10)])
        await pub.close()
    pub = Publisher(f"nats://127.0.0.1:{closed_port()}", "T", ["t.shares"], tmp_path,
                    name="offline")  # fmt: skip
    await pub.start(connect_wait=0.1)
    assert pub.stats().spool_messages == 10 * n
    await pub.close()


async def test_a_subject_outside_the_stream_is_refused(tmp_path: Path) -> None:
    pub = Publisher(f"nats://127.0.0.1:{closed_port()}", "T", ["t.shares"], tmp_path,
                    name="offline")  # fmt: skip
    await pub.start(connect_wait=0.1)
    results = await publish_all_on(pub, "t.other", ["x"])
    assert isinstance(results["x"], BrokerError)
    assert pub.stats().spool_messages == 0  # never spooled: it could never be replayed
    await pub.close()
