"""hashfarm.broker on the real NATS JetStream server at 127.0.0.1:4222.

Each test uses its own stream (deleted afterwards). Broker outages are made with a TCP
forwarder the test controls (cutting it drops every connection and refuses new ones), so
the shared nats-server keeps running for everyone else. What is checked: every message
whose done(None) came (acknowledged) reaches the consumer after outages and kill -9, each
msg_id once; unacked deliveries come back; the same msg_id from two publishers is stored once.

Run as a script, this file is the child publisher the kill -9 test kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nodes import NATS_HOST, NATS_PORT, NATS_URL, nats_problem, service_missing


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    """A fresh stream name for one test; the stream is deleted afterwards."""
    if problem := nats_problem():
        service_missing(problem)
    name = f"TEST_{secrets.token_hex(5).upper()}"
    yield name
    await delete_stream(name)


async def delete_stream(name: str) -> None:
    import nats
    import nats.js.errors

    nc = await nats.connect(NATS_URL)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream(name)
    await nc.close()


class Forwarder:
    """A loopback TCP forwarder to NATS that the test can cut and restore (same port)."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and reset every open one (a broker outage)."""
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    def blackhole(self) -> None:
        """A silent partition: connections stay open, nothing gets through either way."""
        self.blackholed = True

    def heal(self) -> None:
        """End the partition: the silenced connections are reset, new ones go through."""
        self.blackholed = False
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    blackholed = False

    async def _pipe(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self._writers.add(c_writer)
        if self.blackholed:  # accept, then say nothing
            with contextlib.suppress(OSError, ConnectionError):
                while await c_reader.read(65536):
                    pass
            return
        try:
            s_reader, s_writer = await asyncio.open_connection(NATS_HOST, NATS_PORT)
        except OSError:
            c_writer.transport.abort()
            return
        self._writers |= {c_writer, s_writer}

        async def copy(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await r.read(65536):
                    if not self.blackholed:
                        w.write(data)
                        await w.drain()
            w.transport.abort()

        await asyncio.gather(copy(c_reader, s_writer), copy(s_reader, c_writer))
        self._writers -= {c_writer, s_writer}


@pytest.fixture
async def forwarder() -> AsyncIterator[Forwarder]:
    fwd = Forwarder()
    await fwd.start()
    yield fwd
    with contextlib.suppress(Exception):
        await fwd.cut()


class Acks:
    """done() callbacks that record which msg_ids were acknowledged (exactly once each)."""

    def __init__(self) -> None:
        self.ok: list[str] = []
        self.refused: list[str] = []
        self._seen: set[str] = set()

    def done_for(self, msg_id: str):  # type: ignore[no-untyped-def]
        def done(exc: BaseException | None) -> None:
            assert msg_id not in self._seen, f"done() twice for {msg_id}"
            self._seen.add(msg_id)
            (self.refused if exc else self.ok).append(msg_id)

        return done

    async def settled(self, n: int, within: float = 20.0) -> None:
        async with asyncio.timeout(within):
            while len(self._seen) < n:  # noqa: ASYNC110 - done() runs plain callbacks
                await asyncio.sleep(0.01)


async def drain(
    consumer, expect: int | None = None, idle: float = 1.0, into: list[str] | None = None
) -> list[str]:  # type: ignore[no-untyped-def]
    """Fetch and ack until nothing comes for `idle` seconds (and `expect` came); the msg_ids
    in order, also appended to `into` as they come (readable after a timeout)."""
    got: list[str] = [] if into is None else into
    while True:
        batch = await consumer.fetch(500, idle)
        if not batch:
            if expect is None or len(got) >= expect:
                return got
            continue
        got += [d.msg_id for d in batch]
        await consumer.ack(batch)


async def wait_for(predicate, within: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polling the publisher's stats
            await asyncio.sleep(0.05)


async def lag_reaches_zero(con) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(10):
        while await con.lag():  # noqa: ASYNC110 - polling the server
            await asyncio.sleep(0.05)


async def stream_info(name: str):  # type: ignore[no-untyped-def]
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        return await nc.jetstream().stream_info(name)
    finally:
        await nc.close()


def publisher(url: str, stream: str, spool: Path, **kw):  # type: ignore[no-untyped-def]
    from hashfarm.broker import Publisher

    return Publisher(url, stream, [f"{stream}.shares"], spool, name="test", **kw)


def consumer(stream: str, **kw):  # type: ignore[no-untyped-def]
    from hashfarm.broker import Consumer

    return Consumer(NATS_URL, stream, "ledger", [f"{stream}.shares"], **kw)


# -- tests ----------------------------------------------------------------------------------


async def test_every_acknowledged_message_is_consumed_once(stream: str, tmp_path: Path) -> None:
    pub = publisher(NATS_URL, stream, tmp_path)
    await pub.start()
    acks = Acks()
    ids = [f"share-{n}" for n in range(3000)]
    for msg_id in ids:
        pub.publish(f"{stream}.shares", msg_id, msg_id.encode(), acks.done_for(msg_id))
    await acks.settled(len(ids))
    assert sorted(acks.ok) == sorted(ids)
    stats = pub.stats()
    assert stats.acked + stats.spooled == len(ids)
    assert stats.publish_p50_ms > 0
    await wait_for(lambda: pub.stats().spool_messages == 0)
    await pub.close()

    con = consumer(stream)
    await con.start()
    assert await con.lag() == len(ids)
    got = await drain(con, expect=len(ids))
    assert sorted(got) == sorted(ids)
    await lag_reaches_zero(con)
    await con.close()


async def test_the_same_msg_id_from_two_publishers_is_stored_once(
    stream: str, tmp_path: Path
) -> None:
    a = publisher(NATS_URL, stream, tmp_path / "a")
    b = publisher(NATS_URL, stream, tmp_path / "b")
    await a.start()
    await b.start()
    acks = Acks()
    for n in range(100):  # the same header submitted to two front ends
        a.publish(f"{stream}.shares", f"h{n}", b"from a", acks.done_for(f"a{n}"))
        b.publish(f"{stream}.shares", f"h{n}", b"from b", acks.done_for(f"b{n}"))
    await acks.settled(200)
    assert len(acks.ok) == 200  # both acknowledged: the duplicate is known to the broker
    await a.close()
    await b.close()
    con = consumer(stream)
    await con.start()
    got = await drain(con, expect=100)
    assert sorted(got) == sorted(f"h{n}" for n in range(100))
    await con.close()


async def test_a_full_stream_spools_until_the_ledger_drains_it(stream: str, tmp_path: Path) -> None:
    from hashfarm.broker import StreamLimits

    limits = StreamLimits(max_msgs=300)  # the ledger is down and the stream fills
    pub = publisher(NATS_URL, stream, tmp_path, limits=limits)
    await pub.start()
    acks = Acks()
    ids = [f"f{n}" for n in range(1500)]
    for msg_id in ids:
        pub.publish(f"{stream}.shares", msg_id, b"s" * 100, acks.done_for(msg_id))
    await acks.settled(len(ids))
    assert sorted(acks.ok) == sorted(ids)  # every one acknowledged: by the broker or the spool
    assert pub.stats().spooled > 0
    # the full stream refused the rest and deleted none of what it acknowledged (a byte bound
    # on nats-server < 2.10.5 deletes its oldest messages: the test below)
    state = (await stream_info(stream)).state
    assert (state.messages, state.first_seq) == (pub.stats().acked, 1) == (300, 1)

    con = consumer(stream, limits=limits)  # the ledger comes back
    await con.start()
    seen: list[str] = []
    try:  # bounded, and saying what is missing: one CI run hung here until pytest's 300 s
        async with asyncio.timeout(90):
            got = await drain(con, expect=len(ids), idle=2.0, into=seen)
    except TimeoutError:
        missing = sorted(set(ids) - set(seen))
        raise AssertionError(
            f"{len(missing)} acknowledged messages never delivered (first: {missing[:10]}); "
            f"publisher {pub.stats()}; consumer lag {await con.lag()}"
        ) from None
    assert sorted(got) == sorted(ids)
    await wait_for(lambda: pub.stats().spool_messages == 0)
    assert pub.stats().replayed == pub.stats().spooled
    await pub.close()
    await con.close()


async def test_a_byte_bound_on_this_server_would_delete_acknowledged_messages(
    stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Why the stream is bounded by a count: on nats-server before 2.10.5 a discard-new
    stream at max_bytes acknowledges a message it then makes room for by deleting its oldest
    (nats-server issue 4771). Skipped on a fixed server; ensure_stream warns of such a stream."""
    import json

    import nats
    from nats.js import api

    from hashfarm.broker.stream import (
        EXACT_BYTE_LIMIT_SERVER,
        StreamLimits,
        ensure_stream,
        loss_risk,
        server_version,
    )

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        version = server_version(js)
        assert version is not None
        if version >= EXACT_BYTE_LIMIT_SERVER:
            pytest.skip(f"nats-server {version} keeps max_bytes by refusal only")
        config = api.StreamConfig(
            name=stream, subjects=[f"{stream}.shares"], retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE, discard=api.DiscardPolicy.NEW, max_bytes=64 * 1024,
        )  # fmt: skip
        await js.add_stream(config)

        async def publish(n: int, size: int) -> bool:
            reply = await nc.request(
                f"{stream}.shares", b"s" * size, timeout=5, headers={"Nats-Msg-Id": f"b{n}"}
            )
            return "error" not in json.loads(reply.data)

        acked = 0
        while (room := 64 * 1024 - (await js.stream_info(stream)).state.bytes) > 1000:
            assert await publish(acked, 100)
            acked += 1
        for size in range(room, 0, -1):  # the largest message the server's estimate admits
            if await publish(acked, size):  # (it stores more: subject and record overhead)
                acked += 1
                break
        state = (await js.stream_info(stream)).state
        assert 0 < state.messages < acked  # acknowledged, then deleted by the server
        assert state.first_seq > 1
        problem = loss_risk(config, version)
        assert problem is not None
        assert "4771" in problem
        with caplog.at_level(logging.WARNING, "hashfarm.broker.stream"):  # a publisher or a
            await ensure_stream(js, stream, config.subjects or [], StreamLimits())  # ledger
        assert f"stream {stream}: {problem}" in caplog.text  # starting on it says so
    finally:
        await nc.close()


async def test_unacked_deliveries_are_redelivered(stream: str, tmp_path: Path) -> None:
    pub = publisher(NATS_URL, stream, tmp_path)
    await pub.start()
    acks = Acks()
    for n in range(50):
        pub.publish(f"{stream}.shares", f"m{n}", b"x", acks.done_for(f"m{n}"))
    await acks.settled(50)
    await pub.close()

    first = consumer(stream, ack_wait=1.0)
    await first.start()
    taken = await first.fetch(20, 2.0)
    assert len(taken) == 20
    assert all(d.delivered == 1 for d in taken)
    await first.ack(taken[:5])  # the ledger committed 5, then died
    await first.close()
    assert {d.subject for d in taken} == {f"{stream}.shares"}

    second = consumer(stream, ack_wait=1.0)
    await second.start()
    got: dict[str, int] = {}
    async with asyncio.timeout(20):
        while len(got) < 45:
            batch = await second.fetch(100, 1.5)
            got.update((d.msg_id, d.delivered) for d in batch)
            await second.ack(batch)
    committed = {d.msg_id for d in taken[:5]}
    assert set(got) == {f"m{n}" for n in range(50)} - committed
    assert all(got[d.msg_id] >= 2 for d in taken[5:])  # came back after ack_wait
    await lag_reaches_zero(second)  # acks are applied by the server within milliseconds
    await second.close()


async def test_an_outage_loses_no_acknowledged_message(
    stream: str, tmp_path: Path, forwarder: Forwarder
) -> None:
    pub = publisher(forwarder.url, stream, tmp_path, ack_timeout=2.0)
    await pub.start()
    assert pub.stats().connected
    acks = Acks()
    sent = 0

    async def produce(n: int) -> None:
        nonlocal sent
        for _ in range(n):
            msg_id = f"o{sent}"
            pub.publish(f"{stream}.shares", msg_id, msg_id.encode(), acks.done_for(msg_id))
            sent += 1
            if sent % 50 == 0:
                await asyncio.sleep(0.005)

    await produce(2000)
    await forwarder.cut()  # mid-stream: some messages are in flight
    await produce(2000)
    await acks.settled(sent)
    await wait_for(lambda: not pub.stats().connected)
    await produce(1000)
    await acks.settled(sent)
    assert pub.stats().spooled > 0
    await forwarder.start()  # the broker is back
    await produce(1000)
    await acks.settled(sent)
    await wait_for(lambda: pub.stats().connected and pub.stats().spool_messages == 0, 30)
    stats = pub.stats()
    assert stats.replayed == stats.spooled
    assert acks.refused == []
    await pub.close()

    con = consumer(stream)
    await con.start()
    got = await drain(con, expect=len(acks.ok))
    assert sorted(set(got)) == sorted(acks.ok)  # none lost
    assert len(got) == len(set(got))  # none twice (within the duplicate window)
    await con.close()


async def test_a_silent_partition_delays_acks_by_at_most_the_ack_timeout(
    stream: str, tmp_path: Path, forwarder: Forwarder
) -> None:
    pub = publisher(forwarder.url, stream, tmp_path, ack_timeout=1.0)
    await pub.start()
    loop = asyncio.get_running_loop()
    acks = Acks()
    waits: list[float] = []
    n = 0

    async def steady(seconds: float) -> None:  # 500 shares/s
        nonlocal n
        end = loop.time() + seconds
        while loop.time() < end:
            for _ in range(10):
                t0, msg_id = loop.time(), f"p{n}"
                done = acks.done_for(msg_id)

                def timed(exc: BaseException | None, t0: float = t0, done=done) -> None:  # type: ignore[no-untyped-def]
                    waits.append(loop.time() - t0)
                    done(exc)

                pub.publish(f"{stream}.shares", msg_id, b"x", timed)
                n += 1
            await asyncio.sleep(0.02)

    await steady(1.0)
    forwarder.blackhole()  # no reset, no FIN: only the missing PubAcks and pings tell
    await steady(8.0)
    assert not pub.stats().connected  # the client noticed the silence
    forwarder.heal()
    await steady(2.0)
    await acks.settled(n)
    await wait_for(lambda: pub.stats().connected and pub.stats().spool_messages == 0, 30)
    assert acks.refused == []
    assert max(waits) < 1.0 + 1.0  # ack_timeout, then one spool fsync
    await pub.close()

    con = consumer(stream)
    await con.start()
    got = await drain(con, expect=n)
    assert sorted(set(got)) == sorted(acks.ok)
    assert len(got) == len(set(got))
    await con.close()


@pytest.mark.parametrize("outage", [True, False], ids=["spooling", "connected"])
async def test_kill_9_of_the_publisher_loses_nothing_it_acknowledged(
    stream: str, tmp_path: Path, forwarder: Forwarder, outage: bool
) -> None:
    spool = tmp_path / "spool"
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, forwarder.url, stream, str(spool),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert child.stdout is not None
    acked: list[str] = []

    async def read_until(n: int) -> None:
        assert child.stdout is not None
        while len(acked) < n:
            line = await child.stdout.readline()
            assert line, "the child publisher exited early"
            acked.append(line.decode().strip())

    async with asyncio.timeout(60):
        await read_until(2000)  # acked through the broker
        if outage:
            await forwarder.cut()
        await read_until(len(acked) + 3000)  # by the spool's fsync, or the broker again
    child.send_signal(signal.SIGKILL)  # with PubAcks outstanding and spool writes under way
    await child.wait()
    assert child.stdout is not None
    acked += (await child.stdout.read()).decode().split()  # acks printed before the kill

    if outage:
        await forwarder.start()
    pub = publisher(forwarder.url, stream, spool)
    await pub.start()
    if outage:
        assert pub.stats().spool_messages > 0  # what the killed process left
    await wait_for(lambda: pub.stats().spool_messages == 0, 30)
    await pub.close()

    con = consumer(stream)
    await con.start()
    got = await drain(con, expect=len(acked))
    assert set(acked) <= set(got)  # every acknowledged message is there
    assert len(got) == len(set(got))
    await con.close()


async def test_the_consumer_rides_out_an_outage(
    stream: str, tmp_path: Path, forwarder: Forwarder
) -> None:
    from hashfarm.broker import Consumer
    from hashfarm.errors import BrokerError

    pub = publisher(NATS_URL, stream, tmp_path)
    await pub.start()
    acks = Acks()
    for n in range(200):
        pub.publish(f"{stream}.shares", f"c{n}", b"x", acks.done_for(f"c{n}"))
    await acks.settled(200)

    con = Consumer(forwarder.url, stream, "ledger", [f"{stream}.shares"], ack_wait=2.0)
    await con.start()
    got = [d.msg_id for d in await con.fetch(50, 2.0)]
    await forwarder.cut()  # the ledger loses the broker with 50 deliveries unacked
    for _ in range(3):
        with contextlib.suppress(BrokerError):  # [] or BrokerError, nothing else
            assert await con.fetch(50, 0.5) == []
    for n in range(200, 300):  # front ends go on meanwhile
        pub.publish(f"{stream}.shares", f"c{n}", b"x", acks.done_for(f"c{n}"))
    await acks.settled(300)
    await pub.close()
    await forwarder.start()
    async with asyncio.timeout(30):
        while len(set(got)) < 300:
            with contextlib.suppress(BrokerError):
                batch = await con.fetch(100, 1.0)
                got += [d.msg_id for d in batch]
                await con.ack(batch)
    assert set(got) == {f"c{n}" for n in range(300)}  # the unacked 50 came back too
    await con.close()


class PrivateNats:
    """A nats-server of this test's own (own port and store), so it may be killed -9."""

    def __init__(self, store: Path) -> None:
        self.store = store
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with asyncio.timeout(10):
            while True:
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", self.port)
                    w.close()
                    return
                except OSError:
                    await asyncio.sleep(0.05)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()


NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


@pytest.fixture
async def private_nats(tmp_path: Path) -> AsyncIterator[PrivateNats]:

    if not os.access(NATS_SERVER, os.X_OK):
        service_missing("nats-server is not installed (needed to kill -9 a broker of our own)")
    server = PrivateNats(tmp_path / "jetstream")
    await server.start()
    yield server
    if server.proc is not None and server.proc.returncode is None:
        await server.kill()


async def test_kill_9_of_the_broker_loses_no_acknowledged_message(
    tmp_path: Path, private_nats: PrivateNats
) -> None:
    from hashfarm.broker import Consumer, Publisher

    subject = "SHARES.in"
    pub = Publisher(private_nats.url, "SHARES", [subject], tmp_path / "spool", name="t",
                    ack_timeout=2.0)  # fmt: skip
    await pub.start()
    acks = Acks()
    sent = 0

    async def produce(n: int) -> None:
        nonlocal sent
        for _ in range(n):
            msg_id = f"b{sent}"
            pub.publish(subject, msg_id, msg_id.encode(), acks.done_for(msg_id))
            sent += 1
            if sent % 50 == 0:
                await asyncio.sleep(0.005)

    await produce(3000)
    await private_nats.kill()  # under load: PubAcks outstanding
    await produce(2000)
    await acks.settled(sent)
    await private_nats.start()  # same store, same port
    await produce(1000)
    await acks.settled(sent)
    await wait_for(lambda: pub.stats().connected and pub.stats().spool_messages == 0, 40)
    assert pub.stats().spooled > 0
    assert acks.refused == []
    await pub.close()

    con = Consumer(private_nats.url, "SHARES", "ledger", [subject])
    await con.start()
    got = await drain(con, expect=len(acks.ok))
    assert sorted(set(got)) == sorted(acks.ok)  # none lost
    assert len(got) == len(set(got))  # none stored twice
    await con.close()


# -- the child publisher of the kill -9 test -------------------------------------------------


async def child_main(url: str, stream: str, spool: str) -> None:
    pub = publisher(url, stream, Path(spool), ack_timeout=2.0)
    await pub.start()

    def done_for(msg_id: str):  # type: ignore[no-untyped-def]
        def done(exc: BaseException | None) -> None:
            if exc is None:
                sys.stdout.write(msg_id + "\n")
                sys.stdout.flush()

        return done

    n = 0
    while True:  # until killed
        for _ in range(20):
            pub.publish(f"{stream}.shares", f"k{n}", b"%d" % n, done_for(f"k{n}"))
            n += 1
        await asyncio.sleep(0.002)


if __name__ == "__main__":
    asyncio.run(child_main(*sys.argv[1:4]))
