"""The transports against real sockets on 127.0.0.1: a TCP server that replays the captured
bytes the way cgminer sends them (with its trailing NUL, then close), a hung server, garbage,
an oversized reply; and an aiohttp server for AxeOS HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from hashfarm.fleet.errors import CommandError, MachineUnreachable, ReplyError
from hashfarm.fleet.sources import BACKENDS
from hashfarm.fleet.sources.backends import read
from hashfarm.fleet.sources.transport import cgminer_request, http_get, poll_cgminer


class FakeMiner:
    """A cgminer-style server: reads one request, answers with `replies[command]` + NUL
    (or the `behaviour` for hang/garbage), closes. Records every request it got."""

    def __init__(self, replies: dict[str, bytes], behaviour: str = "reply") -> None:
        self.replies = replies
        self.behaviour = behaviour
        self.requests: list[dict[str, str]] = []
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()  # cancelled at teardown (3.11 has no
        # Server.close_clients)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            request = json.loads(await reader.read(4096))
            self.requests.append(request)
            if self.behaviour == "hang":
                await asyncio.sleep(3600)
            elif self.behaviour == "garbage":
                writer.write(b"\x16\x03\x01\x02\x00garbage not json\x00")
            elif self.behaviour == "flood":
                for _ in range(64):
                    writer.write(b"x" * 65536)
                    await writer.drain()
            else:
                writer.write(self.replies[request["command"]] + b"\x00")  # cgminer: len + 1
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def miner_server() -> AsyncIterator[Callable[..., asyncio.Future[FakeMiner]]]:
    started: list[FakeMiner] = []

    async def start(replies: dict[str, bytes] | None = None, behaviour: str = "reply"):
        miner = FakeMiner(replies or {}, behaviour)
        miner.server = await asyncio.start_server(miner.handle, "127.0.0.1", 0)
        started.append(miner)
        return miner

    yield start
    for miner in started:
        assert miner.server is not None
        miner.server.close()
        for task in miner.handlers:
            task.cancel()
        await asyncio.gather(*miner.handlers, return_exceptions=True)
        await miner.server.wait_closed()


async def test_replayed_capture_reads_to_eof_with_the_nul(capture, miner_server):
    raw = capture("antminer-s19pro-bmminer-stats.json")
    miner = await miner_server({"stats": raw})
    reply = await cgminer_request("127.0.0.1", "stats", port=miner.port)
    assert reply == raw + b"\x00"
    assert miner.requests == [{"command": "stats"}]
    snap = read(BACKENDS["bmminer"], {"stats": reply})
    assert snap.hashrate.five_sec_hs == 110_566_890_000_000


async def test_poll_sends_one_request_per_connection_and_skips_unknown_commands(
    capture, miner_server
):
    replies = {
        cmd: capture(f"antminer-s19pro-bmminer-{cmd}.json") for cmd in ("summary", "stats", "pools")
    }
    miner = await miner_server(replies)
    snap = await poll_cgminer(
        BACKENDS["bmminer"], "127.0.0.1", ["stats", "summary", "estats", "pools"], port=miner.port
    )
    # `estats` is not a bmminer command: never sent, never an error
    assert miner.requests == [{"command": "stats"}, {"command": "summary"}, {"command": "pools"}]
    assert snap.model == "Antminer S19 Pro"
    assert snap.live_pool is not None


async def test_invalid_json_capture_over_the_wire(capture, miner_server):
    miner = await miner_server({"stats": capture("antminer-l3plus-cgminer-stats.raw")})
    snap = await poll_cgminer(BACKENDS["bmminer"], "127.0.0.1", ["stats"], port=miner.port)
    assert snap.hashrate.five_sec_hs == 504_560_000
    assert snap.repairs == ("stats: missing-comma-between-objects",)


async def test_hung_server_times_out_with_a_clear_error(miner_server):
    miner = await miner_server(behaviour="hang")
    started = time.monotonic()
    with pytest.raises(MachineUnreachable, match=r"127\.0\.0\.1:\d+ summary: no complete reply"):
        await cgminer_request("127.0.0.1", "summary", port=miner.port, timeout_s=0.3)
    assert time.monotonic() - started < 5  # bounded by the deadline, generous margin


async def test_garbage_is_a_clear_reply_error(miner_server):
    miner = await miner_server(behaviour="garbage")
    with pytest.raises(ReplyError, match="summary: not JSON"):
        await poll_cgminer(BACKENDS["bmminer"], "127.0.0.1", ["summary"], port=miner.port)


async def test_oversized_reply_is_dropped(miner_server):
    miner = await miner_server(behaviour="flood")  # 4 MiB of junk
    with pytest.raises(MachineUnreachable, match="reply over 1000000 bytes"):
        await cgminer_request("127.0.0.1", "stats", port=miner.port, max_reply_bytes=1_000_000)


async def test_refused_connection():
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()  # nothing listens there now
    with pytest.raises(MachineUnreachable, match=f"127.0.0.1:{port} version"):
        await cgminer_request("127.0.0.1", "version", port=port, timeout_s=2)


async def test_one_hung_machine_does_not_stall_the_others(capture, miner_server):
    good = await miner_server({"summary": capture("antminer-s19pro-bmminer-summary.json")})
    hung = await miner_server(behaviour="hang")
    results = await asyncio.gather(
        cgminer_request("127.0.0.1", "summary", port=hung.port, timeout_s=0.5),
        cgminer_request("127.0.0.1", "summary", port=good.port, timeout_s=0.5),
        return_exceptions=True,
    )
    assert isinstance(results[0], MachineUnreachable)
    assert isinstance(results[1], bytes)
    assert results[1].endswith(b"\x00")


@pytest.fixture
async def axeos(capture) -> AsyncIterator[str]:
    body = capture("bitaxe-supra-axeos-system-info.json")
    release = asyncio.Event()  # set at teardown, so cleanup does not wait out a hung handler

    async def info(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/api/system/info", info)
    app.router.add_get("/hang", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    release.set()
    await runner.cleanup()


async def test_axeos_http(axeos):
    async with aiohttp.ClientSession() as session:
        body = await http_get(session, axeos, "/api/system/info")
        snap = read(BACKENDS["axeos"], {"/api/system/info": body})
        assert snap.model == "Bitaxe Supra (BM1368)"
        assert snap.fans[0].rpm == 3517
        with pytest.raises(CommandError, match=r"/api/v1/nothing: .*\[404\]"):
            await http_get(session, axeos, "/api/v1/nothing")
        with pytest.raises(MachineUnreachable, match=r"no complete reply within 0\.3 s"):
            await http_get(session, axeos, "/hang", timeout_s=0.3)
        with pytest.raises(MachineUnreachable, match="reply over 100 bytes"):
            await http_get(session, axeos, "/api/system/info", max_reply_bytes=100)
