"""Simulated mining machines on loopback: N servers speaking the real APIs, for tests and load.

`SimulatedFarm(count=N)` serves machine i at its own loopback address (`base_address` + i,
skipping addresses ending in .0 and .255, so a /24 holds 254 machines), on the port its
firmware uses: TCP 4028 for the cgminer family, HTTP 80 for AxeOS. Linux answers on all of
127.0.0.0/8 without setup, so a scanner sweeping 127.0.1.0/24 finds them where it would find
real machines. Port 80 needs root (or CAP_NET_BIND_SERVICE): pass `http_port=8080`; port 0
gives each machine an ephemeral port (tests), read back from `machine.port`.

Each machine's replies are rendered per request from its state (`sim_state`) in the real
wire format (`sim_replies`). What hashes is pluggable (`HashSource`): without one (API only,
`--no-mining`) a machine reports its nominal rate and costs one listening socket, so 5,000
fit in one process; with one (the CLI wires `hashfarm.miner`'s Stratum client, throttled to a
few kH/s) it mines for real through a pool, and reports what it really did scaled up to its
model's size by `scale = nominal / source.full_rate_hs` (stated per machine).

Faults (`SimFault`) are injected at run time (`machine.inject`), or played from a script
(`parse_fault_script`, `SimulatedFarm.run_script`). Every connection is bounded: a request
line over 64 KiB or slower than 10 s is dropped, a machine holds at most 64 connections
(more are closed at once), and a hung-API fault holds only its own connection, until the
client gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from hashfarm.errors import ConfigError
from hashfarm.fleet.faults import FaultKind
from hashfarm.fleet.sim_replies import GARBAGE, UnknownCommand, invalid_command, render
from hashfarm.fleet.sim_state import (
    PROFILES,
    Hashing,
    MachineState,
    Profile,
    Reading,
    SimFault,
)

__all__ = [
    "CGMINER_PORT",
    "HTTP_PORT",
    "PROFILES",
    "HashSource",
    "ScriptStep",
    "SimFault",
    "SimulatedFarm",
    "SimulatedMachine",
    "farm_addresses",
    "parse_fault_script",
]

CGMINER_PORT = 4028
HTTP_PORT = 80
MAX_REQUEST_BYTES = 64 * 1024  # a cgminer request is ~30 bytes; an HTTP GET's head < 8 KiB
REQUEST_TIMEOUT_S = 10.0  # a client that sends nothing for this long is dropped
MAX_CONNECTIONS = 64  # open connections per machine (a poller needs one at a time)
HANDLER_BACKLOG = 1024  # listen() backlog per machine (a poller opens one connection a command)


class HashSource(Protocol):
    """What really hashes for one machine (the CLI plugs in hashfarm.miner's StratumMiner).
    Figures are real, unscaled H/s; the machine scales them to its model."""

    full_rate_hs: float  # the source's rate at throttle 1.0 (its cap), H/s

    def hashing(self) -> Hashing:
        """Real figures now: 5 s / 1 min / 15 min / average H/s, shares, pool connected."""
        ...

    def throttle(self, fraction: float) -> None:
        """Hash at `fraction` of `full_rate_hs` (a dropped board: 2/3)."""
        ...

    async def run(self) -> None:
        """Connect and hash until cancelled."""
        ...


HashSourceFactory = Callable[["SimulatedMachine"], HashSource]


def farm_addresses(base: str, count: int) -> list[str]:
    """`count` loopback addresses from `base`, skipping .0 and .255 (network/broadcast in a
    /24, where a scanner would not look)."""
    try:
        address = ipaddress.IPv4Address(base)
    except ValueError:
        raise ConfigError(f"fleet.simulate.base_address: {base!r} is not an IPv4 address") from None
    out: list[str] = []
    while len(out) < count:
        if not address.is_loopback:
            raise ConfigError(
                f"fleet.simulate.base_address: {count} machines from {base} leave 127.0.0.0/8"
            )
        if address.packed[3] not in (0, 255):
            out.append(str(address))
        address += 1
    return out


class SimulatedMachine:
    """One machine: a server on (address, port) answering from its state."""

    def __init__(
        self,
        state: MachineState,
        address: str,
        port: int,
        *,
        uptime_s: int,
        clock: Callable[[], float] = time.monotonic,
        hash_source: HashSourceFactory | None = None,
    ) -> None:
        self.state, self.address, self.port = state, address, port
        self.clock = clock
        self._started = clock()
        self._uptime0 = uptime_s
        self._factory = hash_source
        self.source: HashSource | None = None
        self._source_task: asyncio.Task[None] | None = None
        self._past_shares = (0, 0)  # accepted, rejected by sources replaced after POOL_DOWN
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.requests = 0  # answered or not: every connection that sent a request

    @property
    def profile(self) -> Profile:
        """The firmware personality this machine plays."""
        return self.state.profile

    @property
    def index(self) -> int:
        """Position in the farm."""
        return self.state.index

    @property
    def open_connections(self) -> int:
        """API connections being served now."""
        return len(self._handlers)

    @property
    def scale(self) -> float | None:
        """Reported H/s per real H/s (None without a hash source)."""
        if self.source is None:
            return None
        return self.profile.nominal_hs / self.source.full_rate_hs

    async def start(self) -> None:
        """Listen; start hashing when a source is wired."""
        try:
            self._server = await asyncio.start_server(
                self._handle, self.address, self.port, backlog=HANDLER_BACKLOG
            )
        except PermissionError:
            raise ConfigError(
                f"fleet.simulate: binding {self.address}:{self.port} needs root or "
                "CAP_NET_BIND_SERVICE; choose an http port above 1023 (--http-port 8080)"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"fleet.simulate: cannot listen on {self.address}:{self.port}: {exc.strerror}"
            ) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._start_source()

    async def stop(self) -> None:
        """Close the server, every open connection and the hash source."""
        if self._server is not None:
            self._server.close()
        for task in [*self._handlers, self._source_task]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._stop_source()
        if self._server is not None:
            await self._server.wait_closed()

    # -- faults ----------------------------------------------------------------------------

    def inject(self, fault: SimFault | str, slot: int | None = None) -> None:
        """Start a fault now (see SimFault); slot picks the board or fan (None: the first)."""
        fault = SimFault(fault)
        self.state.inject(fault, slot)
        if fault is SimFault.POOL_DOWN:
            self._drop_source()
        self._throttle()

    def clear(self, fault: SimFault | str | None = None) -> None:
        """End one fault, or all."""
        had_pool_down = SimFault.POOL_DOWN in self.state.faults
        self.state.clear(None if fault is None else SimFault(fault))
        if had_pool_down and SimFault.POOL_DOWN not in self.state.faults:
            self._start_source()
        self._throttle()

    def expected_faults(self) -> frozenset[FaultKind]:
        """Fault kinds the fleet's parsers + faults.derive_faults must raise now."""
        return self.state.expected_faults()

    def expected_error(self) -> type[Exception] | None:
        """The FleetError a poller must get now (API_HANG, API_GARBAGE), else None."""
        return self.state.expected_error()

    # -- readings --------------------------------------------------------------------------

    @property
    def uptime_s(self) -> int:
        """Seconds since the simulated machine booted."""
        return self._uptime0 + int(self.clock() - self._started)

    def reading(self) -> Reading:
        """What the machine's replies show now."""
        uptime = self.uptime_s
        hashing = self.state.nominal_hashing(uptime) if self._factory is None else self._scaled()
        return self.state.reading(hashing, uptime, int(time.time()))

    def _scaled(self) -> Hashing:
        accepted, rejected = self._past_shares
        if self.source is None:  # the pool is down: nothing hashes
            return Hashing(0, 0, 0, 0, accepted, rejected, False)
        real, k = self.source.hashing(), self.scale or 1.0
        return Hashing(
            real.five_sec_hs * k,
            real.one_min_hs * k,
            real.fifteen_min_hs * k,
            real.average_hs * k,
            accepted + real.accepted,
            rejected + real.rejected,
            real.connected,
        )

    # -- hash source -----------------------------------------------------------------------

    def _start_source(self) -> None:
        if self._factory is None or SimFault.POOL_DOWN in self.state.faults:
            return
        self.source = self._factory(self)
        self._throttle()
        self._source_task = asyncio.get_running_loop().create_task(
            self.source.run(), name=f"sim-hash-{self.address}"
        )

    def _drop_source(self) -> None:
        """The pool went away: the machine's Stratum connection ends (cancelled)."""
        if self.source is not None:
            real = self.source.hashing()
            self._past_shares = (
                self._past_shares[0] + real.accepted,
                self._past_shares[1] + real.rejected,
            )
        if self._source_task is not None:
            self._source_task.cancel()
        self.source, self._source_task = None, None

    async def _stop_source(self) -> None:
        task = self._source_task
        self._drop_source()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _throttle(self) -> None:
        if self.source is not None:
            self.source.throttle(self.state.hashing_fraction)

    # -- the API server --------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._handlers) >= MAX_CONNECTIONS:
            writer.close()  # a client holding this many connections gets no more
            return
        self._handlers.add(task)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                request = await self._read_request(reader)
            if request is None:
                return
            self.requests += 1
            if SimFault.API_HANG in self.state.faults:
                while await reader.read(MAX_REQUEST_BYTES):  # read, never answer, until
                    pass  # the client gives up and closes (no socket left in CLOSE_WAIT)
                return
            if SimFault.API_GARBAGE in self.state.faults:  # HTTP: a 200 with a junk body
                http = self.profile.transport == "http"
                writer.write(_http(200, "OK", GARBAGE) if http else GARBAGE)
            else:
                writer.write(self._answer(request))
            await writer.drain()
        except (
            ConnectionError,
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass  # a client that went away, or sent too much or nothing: drop it
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> str | None:
        """The command (cgminer) or the path (HTTP GET), None for a request we drop."""
        if self.profile.transport == "http":
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_REQUEST_BYTES:
                return None
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) != 3 or parts[0] != b"GET":
                return "\x00bad"
            return parts[1].decode("latin-1").split("?", 1)[0]
        data = await reader.read(MAX_REQUEST_BYTES)  # cgminer reads one request, no framing
        if not data:
            return None
        try:
            request = json.loads(data)
            command = request["command"]
        except (ValueError, TypeError, KeyError):
            return "\x00bad"
        return command if isinstance(command, str) else "\x00bad"

    def _answer(self, request: str) -> bytes:
        reading = self.reading()
        if self.profile.transport == "http":
            try:
                return _http(200, "OK", render(reading, request))
            except UnknownCommand:
                return _http(404, "Not Found", b'{"error":"not found"}')
        try:
            return render(reading, request)
        except UnknownCommand:
            return invalid_command(reading, request)


def _http(status: int, reason: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


@dataclass(frozen=True, slots=True)
class ScriptStep:
    """One line of a fault script: at `at_s` seconds, on `target` (index, address or *),
    inject `fault` (or clear it: `clear` True, `fault` None for every fault)."""

    at_s: float
    target: str
    fault: SimFault | None
    clear: bool = False
    slot: int | None = None


def parse_fault_script(text: str) -> list[ScriptStep]:
    """`AT MACHINE FAULT [slot=N]` or `AT MACHINE clear [FAULT]` per line, `#` comments.
    MACHINE is an index, an address or `*`. Raises ConfigError naming the line."""
    steps = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        where = f"fault script line {number}"
        try:
            if len(line) < 3:
                raise ValueError("expected AT MACHINE FAULT")
            at_s, target, action, *rest = line
            clear = action == "clear"
            fault = SimFault(rest[0] if clear and rest else action) if not clear or rest else None
            slot = None
            for option in rest[1:] if clear else rest:
                key, _, value = option.partition("=")
                if key != "slot":
                    raise ValueError(f"unknown option {option!r}")
                slot = int(value)
            steps.append(ScriptStep(float(at_s), target, fault, clear, slot))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc} in {raw.strip()!r}") from None
    return sorted(steps, key=lambda s: s.at_s)


class SimulatedFarm:
    """N simulated machines; an async context manager (start on enter, stop on exit)."""

    def __init__(
        self,
        count: int,
        *,
        models: Sequence[str] | None = None,
        base_address: str = "127.0.1.1",
        cgminer_port: int = CGMINER_PORT,
        http_port: int = HTTP_PORT,
        hash_sources: HashSourceFactory | None = None,
        uptime_s: int = 86_400,
        pool_url: str = "stratum+tcp://127.0.0.1:3333",
        pool_user: str = "hashfarm.sim",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1:
            raise ConfigError(f"fleet.simulate.count: {count} must be at least 1")
        names = list(models or PROFILES)
        unknown = [n for n in names if n not in PROFILES]
        if unknown:
            raise ConfigError(
                f"fleet.simulate.models: unknown {', '.join(unknown)}; known: {', '.join(PROFILES)}"
            )
        self.machines: list[SimulatedMachine] = []
        for i, address in enumerate(farm_addresses(base_address, count)):
            profile = PROFILES[names[i % len(names)]]
            user = f"{pool_user}{i}" if "." in pool_user else f"{pool_user}.sim{i}"
            state = MachineState(profile, i, pool_url=pool_url, pool_user=user)
            port = http_port if profile.transport == "http" else cgminer_port
            self.machines.append(
                SimulatedMachine(
                    state, address, port, uptime_s=uptime_s, clock=clock, hash_source=hash_sources
                )
            )
        self._by_address = {m.address: m for m in self.machines}

    async def start(self) -> None:
        """Start every machine (stops those already started if one fails)."""
        try:
            for machine in self.machines:
                await machine.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every machine."""
        await asyncio.gather(*(m.stop() for m in self.machines), return_exceptions=True)

    async def __aenter__(self) -> SimulatedFarm:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def machine_at(self, address: str) -> SimulatedMachine | None:
        """The machine at `address`, if any."""
        return self._by_address.get(address)

    def targets(self, target: str) -> list[SimulatedMachine]:
        """The machines a script's MACHINE names: an index, an address, or `*`."""
        if target == "*":
            return list(self.machines)
        if target.isdigit() and int(target) < len(self.machines):
            return [self.machines[int(target)]]
        machine = self.machine_at(target)
        if machine is None:
            raise ConfigError(f"fault script: no machine {target!r} in this farm")
        return [machine]

    def apply(self, step: ScriptStep) -> None:
        """Play one script step now."""
        for machine in self.targets(step.target):
            if step.clear:
                machine.clear(step.fault)
            else:
                assert step.fault is not None
                machine.inject(step.fault, step.slot)

    async def run_script(
        self, steps: Iterable[ScriptStep], on_step: Callable[[ScriptStep], None] | None = None
    ) -> None:
        """Play `steps` at their times (seconds from now)."""
        begin = asyncio.get_running_loop().time()
        for step in steps:
            delay = begin + step.at_s - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.apply(step)
            if on_step is not None:
                on_step(step)
