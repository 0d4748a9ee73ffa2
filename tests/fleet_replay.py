"""Replay machines for the fleet's scanner, poller and API tests: real TCP and HTTP servers on
loopback addresses that answer with the captured bytes of ../shared/fixtures/asic-api.

Each `ReplayMachine` listens on its own address (127.x.y.z), all on one shared port, so a
scan of a CIDR range finds them the way it finds a farm. A cgminer machine answers
`{"command": c}` with `replies[c]` plus cgminer's trailing NUL, then closes; a command it
lacks gets cgminer's own `Invalid command` status (E, code 14). An HTTP machine serves
`replies[path]`. `behaviour` switches a machine to `hang` (accept, never answer) or
`garbage` at any time, and `replies` can be swapped (a healthy capture for a fault one).

Importable from tests and bench/ (pytest `pythonpath = ["tests"]`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from realdata import shared_path

ASIC_DIR = "fixtures/asic-api"
INVALID_COMMAND = (
    b'{"STATUS":[{"STATUS":"E","When":0,"Code":14,"Msg":"Invalid command",'
    b'"Description":"cgminer 4.11.1"}],"id":1}'
)
GARBAGE = b"\x16\x03\x01\x02\x00garbage, not json\x00"


def capture(name: str) -> bytes:
    """The bytes a machine sent, read in place from the shared fixtures."""
    return shared_path(f"{ASIC_DIR}/{name}").read_bytes()


# What each kind of machine answers, from the captures of one machine each.
def s19pro() -> dict[str, bytes]:
    return {c: capture(f"antminer-s19pro-bmminer-{c}.json")
            for c in ("version", "stats", "summary", "pools", "devs")}  # fmt: skip


def avalon1246() -> dict[str, bytes]:
    return {"stats": capture("avalon-1246-cgminer-stats.json")}


def whatsminer() -> dict[str, bytes]:
    return {
        "get_version": capture("whatsminer-btminer-get-version.json"),
        "summary": capture("whatsminer-btminer-summary.json"),
        "devs": capture("whatsminer-btminer-devs.json"),
    }


def luxos() -> dict[str, bytes]:
    return {"stats": capture("luxos-s19kpro-stats.json"),
            "pools": capture("luxos-s19kpro-pools-dead.json")}  # fmt: skip


def bitaxe() -> dict[str, bytes]:
    return {"/api/system/info": capture("bitaxe-supra-axeos-system-info.json")}


@dataclass
class ReplayMachine:
    """One machine at `host` (cgminer RPC or HTTP, by `kind`)."""

    host: str
    kind: str  # "cgminer" or "http"
    replies: dict[str, bytes]
    behaviour: str = "reply"  # "reply" | "hang" | "garbage"
    requests: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = await asyncio.wait_for(reader.read(4096), 10)
            command = str(json.loads(raw).get("command", ""))
            self.requests.append(command)
            if self.behaviour == "hang":
                await asyncio.sleep(3600)
            elif self.behaviour == "garbage":
                writer.write(GARBAGE)
            else:
                writer.write(self.replies.get(command, INVALID_COMMAND) + b"\x00")
            await writer.drain()
        except (ConnectionError, TimeoutError, ValueError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def http(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        if self.behaviour == "garbage":
            return web.Response(body=GARBAGE, content_type="application/json")
        body = self.replies.get(request.path)
        if body is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=body, content_type="application/json")


def free_prefix() -> str:
    """A random 127.a.b prefix (other tests on this machine use their own)."""
    return f"127.{random.randint(100, 250)}.{random.randint(0, 255)}"


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ReplayFarm:
    """Machines on `prefix`.1, .2, ...; every cgminer one on `cgminer_port`, every HTTP one
    on `http_port`. Use as `async with ReplayFarm(...) as farm:`."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or free_prefix()
        self.cgminer_port = free_port(f"{self.prefix}.1")
        self.http_port = free_port(f"{self.prefix}.1")
        self.machines: dict[str, ReplayMachine] = {}
        self._servers: list[asyncio.Server] = []
        self._runners: list[web.AppRunner] = []
        self._handlers: set[asyncio.Task[None]] = set()

    async def add(
        self, index: int, kind: str, replies: Mapping[str, bytes], behaviour: str = "reply"
    ) -> ReplayMachine:
        """Start machine `prefix.index`."""
        host = f"{self.prefix}.{index}"
        machine = ReplayMachine(host, kind, dict(replies), behaviour)
        self.machines[host] = machine
        if kind == "cgminer":

            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                task = asyncio.current_task()
                assert task is not None
                self._handlers.add(task)
                try:
                    await machine.handle(r, w)
                finally:
                    self._handlers.discard(task)

            server = await asyncio.start_server(handle, host, self.cgminer_port, backlog=64)
            self._servers.append(server)
        else:
            app = web.Application()
            app.router.add_get("/{path:.*}", machine.http)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await runner.setup()
            await web.TCPSite(runner, host, self.http_port).start()
            self._runners.append(runner)
        return machine

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        for runner in self._runners:
            await runner.cleanup()

    async def __aenter__(self) -> ReplayFarm:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
