"""The relay's output bound: a machine that stops reading is dropped, and no machine ever holds
more than `max_output` plus the one line that crossed it. The relay (`Channel._broadcast`)
writes to the transports with no check of its own; the bound is the transport's high-water
mark and `Downstream.pause_writing`. On real sockets: a scripted upstream sends big notifies
(a 20 kB coinbase part) while one machine reads them all and another never reads."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

from hashfarm.proxy.server import Proxy
from hashfarm.proxy.settings import ProxySettings, Upstream
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import LineBuffer, Request, decode, encode
from hashfarm.stratum.work import Job
from unit.pool.stratum_client import StratumTestMiner
from unit.proxy.scripted_upstream import answer_handshake

MAX_OUTPUT = 65_536
BIG = Job("j0", bytes(32), b"\x01" * 40, b"\x02" * 20_000, (), 0x20000000, 0x207FFFFF,
          1_700_000_000, False)  # fmt: skip


class Upstream20k:
    """Answers the handshake with one difficulty and job; `notify(i)` sends job i later."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        buffer = LineBuffer(65536)
        while data := await reader.read(65536):
            for line in buffer.feed(data):
                req = decode(line)
                assert isinstance(req, Request)
                answer_handshake(req, writer, 1.0, BIG)

    async def notify(self, i: int) -> None:
        assert self.writer is not None
        self.writer.write(encode(m.notify(_job(i))))
        await self.writer.drain()


def _job(i: int) -> Job:
    return replace(BIG, job_id=f"j{i}")


async def test_a_machine_that_stops_reading_is_bounded_and_dropped() -> None:
    upstream = Upstream20k()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = Proxy(ProxySettings(Upstream("127.0.0.1", port), "farm", port=0, max_output=MAX_OUTPUT))
    await proxy.start()
    honest = StratumTestMiner(proxy.port, "alice.m1")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        await honest.start()
        stalled.connect(("127.0.0.1", proxy.port))
        stalled.sendall(
            b'{"id":1,"method":"mining.subscribe","params":[]}\n'
            b'{"id":2,"method":"mining.authorize","params":["alice.m2","x"]}\n'
        )
        mine = stalled.getsockname()
        for _ in range(500):
            await asyncio.sleep(0.01)
            down = [d for d in proxy.machines if d.transport is not None
                    and d.transport.get_extra_info("peername") == mine and d.ready]  # fmt: skip
            if down:
                break
        [d] = down
        assert d.channel is not None
        assert d in d.channel.live
        # The kernel's send buffer on the proxy's side small, so that a few notifies fill it.
        d.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        line = len(encode(m.notify(_job(1)))) + 8  # the job id grows by a few digits
        assert line > 40_000
        sent, most = 0, 0
        while d in proxy.machines and sent < 200:
            sent += 1
            await upstream.notify(sent)
            await asyncio.sleep(0.005)
            for machine in proxy.machines:
                assert machine.transport is not None
                held = machine.transport.get_write_buffer_size()
                assert held <= MAX_OUTPUT + line, held
                if machine is d:
                    most = max(most, held)
        assert d not in proxy.machines, f"still connected after {sent} notifies"
        assert d.closed
        assert d not in d.channel.live
        # It was dropped at the bound (not for some other reason), within a few notifies of it.
        assert most > MAX_OUTPUT - line
        assert sent < 20
        # The reading machine got every notify and is still connected.
        for _ in range(500):
            if honest.job is not None and honest.job.job_id.endswith(f".j{sent}"):
                break
            await asyncio.sleep(0.01)
        assert honest.job is not None
        assert honest.job.job_id.endswith(f".j{sent}")
        notifies = [n for n in honest.notifications if n.method == m.NOTIFY]
        assert len(notifies) == sent + 1
        assert len(proxy.machines) == 1
    finally:
        stalled.close()
        await honest.close()
        await proxy.stop()
        server.close()
