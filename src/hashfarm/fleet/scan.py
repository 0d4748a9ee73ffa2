"""Find the mining machines in an address range and say what each one is.

`scan(cidr)` probes every address of the range, `concurrency` at a time: the cgminer RPC
port (4028) with `version`, then `stats`, `get_version` (btminer) and `summary` until one
reply names the firmware, and the HTTP port with AxeOS `GET /api/system/info` and Braiins OS
`GET /api/v1/miner/stats`. A reply is parsed with the backend's own parser (`backends.read`)
for the model and firmware. `identify` (which backend a decoded reply comes from) is pure.

Every step is bounded, so one dead or hanging host never stalls a scan:
- a TCP connect waits at most `connect_timeout_s` (a refused port costs one round trip);
- one probe (connect, send, read to EOF) at most `probe_timeout_s` (`transport`);
- one host at most `host_timeout_s`, whatever it does;
- the whole scan at most `total_timeout_s`: hosts still unfinished then are reported as
  errors ("scan deadline"), never awaited.

An address where nothing listens is `dead` (counted, not listed). Something on the cgminer
port that cannot be identified (garbage, a hung API, a reply no backend knows) is a
`ScanError` naming the host, port, command and reason; a web server that answers like no
miner (any device's page on port 80) is only counted (`other`), while one that hangs is an
error. A scan never raises for one host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from hashfarm.errors import ConfigError
from hashfarm.fleet.errors import CommandError, FleetError, ReplyError
from hashfarm.fleet.sources.backends import BACKENDS, read
from hashfarm.fleet.sources.repair import decode_reply
from hashfarm.fleet.sources.transport import CGMINER_PORT, cgminer_request, http_get

__all__ = [
    "CGMINER_PROBES",
    "HTTP_PROBES",
    "Found",
    "ScanError",
    "ScanResult",
    "ScanSettings",
    "fd_budget",
    "hosts_of",
    "identify",
    "scan",
    "scan_hosts",
]

# Commands tried on port 4028, in order, until one reply names the firmware. `version` is
# cheap and names most; `stats` names Avalon (MM ID blob) and LuxOS builds without `version`.
CGMINER_PROBES = ("version", "stats", "get_version", "summary")
HTTP_PROBES = ("/api/system/info", "/api/v1/miner/stats")  # AxeOS, Braiins OS REST


@dataclass(frozen=True, slots=True)
class ScanSettings:
    """Bounds and ports of one scan."""

    cgminer_port: int = CGMINER_PORT  # cgminer RPC; None-like 0 skips it
    http_port: int = 80  # AxeOS / Braiins REST; 0 skips HTTP
    connect_timeout_s: float = 1.0  # one TCP connect (a blackholed address waits this long)
    probe_timeout_s: float = 3.0  # one command: connect + send + read to EOF
    host_timeout_s: float = 8.0  # everything one host may take
    concurrency: int = 2048  # hosts probed at once (two sockets each; capped by the fd limit)
    total_timeout_s: float = 60.0  # the whole scan; unfinished hosts become errors
    max_hosts: int = 65_536  # largest range accepted (a /16)
    max_reply_bytes: int = 1 << 20  # per reply (transport's cap)

    def __post_init__(self) -> None:
        checks = {
            "connect_timeout_s": 0 < self.connect_timeout_s <= 60,
            "probe_timeout_s": 0 < self.probe_timeout_s <= 120,
            "host_timeout_s": 0 < self.host_timeout_s <= 600,
            "concurrency": 1 <= self.concurrency <= 16_384,
            "total_timeout_s": 0 < self.total_timeout_s <= 86_400,
            "cgminer_port": 0 <= self.cgminer_port <= 65_535,
            "http_port": 0 <= self.http_port <= 65_535,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"fleet.scan.{name}: {getattr(self, name)!r} is out of range")


@dataclass(frozen=True, slots=True)
class Found:
    """One identified machine: where it answers and what it is."""

    host: str
    port: int
    backend: str  # a key of sources.BACKENDS
    model: str | None
    firmware: str | None
    api_version: str | None = None

    @property
    def address(self) -> str:
        """host:port ([host]:port for IPv6), the machine's id in the fleet (`Machine.id`)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ScanError:
    """Something listens at host:port but could not be identified; `reason` says why."""

    host: str
    port: int
    reason: str


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What one scan saw: identified machines, per-host errors, and silent addresses."""

    found: tuple[Found, ...]
    errors: tuple[ScanError, ...]
    dead: int  # addresses where no probed port accepted a connection
    scanned: int  # addresses probed (dead + found + errors, a host counted once)
    elapsed_s: float
    not_reached: int = 0  # addresses never probed because the scan deadline came first
    other: int = 0  # addresses where only a web server that is no known miner answered


def hosts_of(cidr: str, max_hosts: int = 65_536) -> list[str]:
    """The usable addresses of `cidr` (a /32 or a single address is itself); ConfigError for
    text that is not a network or a range over `max_hosts`."""
    try:
        net = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise ConfigError(
            f"fleet scan: {cidr!r} is not an address range (e.g. 10.0.0.0/24)"
        ) from None
    if net.num_addresses > max_hosts + 2:
        raise ConfigError(
            f"fleet scan: {cidr} has {net.num_addresses} addresses; at most {max_hosts}"
        )
    hosts = list(net.hosts()) if net.num_addresses > 2 else list(net)
    return [str(h) for h in hosts]


# -- identification (pure) -------------------------------------------------------------------


def _rows(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = data.get(key)
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def _description(data: Mapping[str, Any]) -> str:
    status = _rows(data, "STATUS")
    return str(status[0].get("Description", "")) if status else ""


def _antminer_header(row: Mapping[str, Any]) -> str | None:
    if "LUXminer" in row:
        return "luxos"
    if "avalon" in str(row.get("Type", "")).lower():
        return "avalon"
    if any(k in row for k in ("BOSminer", "BOSminer+", "BOSer")):
        return "bosminer"
    if "BMMiner" in row or ("CGMiner" in row and "Antminer" in str(row.get("Type", ""))):
        return "bmminer"
    if "Antminer" in str(row.get("Type", "")) and "Miner" in row:
        return "luxos"  # LuxOS stats header: Type + Miner "2025.4.8...", no BMMiner key
    return None


def identify(command: str, data: Mapping[str, Any]) -> str | None:
    """Which backend sent `data`, the decoded reply to `command` (None: cannot tell)."""
    if "code" in data and "msg" in data and "STATUS" not in data:
        return "btminer-v3"
    described = _description(data)
    if "BOSminer" in described or "BOSer" in described:
        return "bosminer"
    if "LUXminer" in described:
        return "luxos"
    msg = data.get("Msg")
    if isinstance(msg, dict) and "whatsminer" in str(msg.get("api_ver", "")).lower():
        return "btminer"
    for key in ("VERSION", "STATS"):
        for row in _rows(data, key):
            if any(str(k).startswith("MM ID") for k in row) or "PROD" in row:
                return "avalon"
            if str(row.get("ID", "")).startswith("SM") and "chip_num" in row:
                return "btminer"
            backend = _antminer_header(row)
            if backend is not None:
                return backend
    for row in _rows(data, "SUMMARY"):
        if "Firmware Version" in row or "Factory GHS" in row:
            return "btminer"
    if "ASICModel" in data and "hashRate" in data:
        return "axeos"
    if isinstance(data.get("miner_stats"), dict):
        return "braiins-rest"
    return None


def _avalon_model(data: Mapping[str, Any], firmware: str | None) -> str | None:
    for row in _rows(data, "VERSION"):
        if row.get("PROD"):
            return str(row["PROD"])
    head = (firmware or "").split("-")[0]
    return f"Avalon {head}" if len(head) == 4 and head.isdigit() else None


def _found(host: str, port: int, backend: str, command: str, raw: bytes) -> Found:
    """The machine as its own parser reads the identifying reply; a command the backend has
    no parser for (an Avalon `version`) still identifies it, without model details."""
    data = decode_reply(raw, command=command).data
    snap = read(BACKENDS[backend], {command: raw}) if BACKENDS[backend].supports(command) else None
    model = snap.model if snap else None
    firmware = snap.firmware if snap else None
    if backend == "avalon" and model is None:
        model = _avalon_model(data, firmware)
    for row in _rows(data, "VERSION"):
        firmware = firmware or (str(row["Miner"]) if "Miner" in row else None)
    api = snap.api_version if snap else None
    return Found(host, port, backend, model, firmware, api)


# -- probes (I/O) ----------------------------------------------------------------------------


class _NotAMiner(Exception):
    """An HTTP server answered, but not as any miner firmware does (a printer, a router)."""


_NOT_A_MINER = "not a miner"


class _Silent(Exception):
    """Nothing accepted a connection on this port."""


async def _port_open(host: str, port: int, timeout_s: float) -> None:
    """Connect and close; _Silent when refused, unreachable or not accepted in time."""
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except (TimeoutError, OSError):
        raise _Silent from None
    writer.close()


async def _probe_cgminer(host: str, s: ScanSettings) -> Found:
    port = s.cgminer_port
    await _port_open(host, port, s.connect_timeout_s)
    last: FleetError | None = None
    for command in CGMINER_PROBES:
        raw = await cgminer_request(
            host, command, port=port, timeout_s=s.probe_timeout_s, max_reply_bytes=s.max_reply_bytes
        )
        try:
            decoded = decode_reply(raw, command=command).data
            if not isinstance(decoded, dict):
                raise ReplyError(f"{command}: the reply is not a JSON object")
            backend = identify(command, decoded)
            if backend is not None:
                return _found(host, port, backend, command, raw)
            last = ReplyError(f"{command}: no known firmware answers like this")
        except CommandError as exc:  # this firmware lacks the command: try the next one
            last = exc
    raise last or ReplyError("no probe answered")


async def _probe_http(host: str, s: ScanSettings, session: aiohttp.ClientSession) -> Found:
    port = s.http_port
    await _port_open(host, port, s.connect_timeout_s)
    base = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
    for path in HTTP_PROBES:
        try:
            raw = await http_get(
                session, base, path, timeout_s=s.probe_timeout_s, max_reply_bytes=s.max_reply_bytes
            )
            decoded = decode_reply(raw, command=path).data
            backend = identify(path, decoded) if isinstance(decoded, dict) else None
            if backend is not None and BACKENDS[backend].supports(path):
                return _found(host, port, backend, path, raw)
        except (CommandError, ReplyError):  # a 404 or HTML: not this firmware
            continue
    # Port 80 is any device's web page: an unknown answer there is not a miner (counted in
    # `other`), unlike anything on the cgminer port, which is reported.
    raise _NotAMiner


async def _probe_host(
    host: str, s: ScanSettings, session: aiohttp.ClientSession | None
) -> list[Found | ScanError | str] | None:
    """What answers at `host`: identified machines, errors and `_NOT_A_MINER` markers;
    None when nothing listens."""
    probes: list[tuple[int, Any]] = []
    if s.cgminer_port:
        probes.append((s.cgminer_port, _probe_cgminer(host, s)))
    if s.http_port and session is not None:
        probes.append((s.http_port, _probe_http(host, s, session)))
    results = await asyncio.gather(*(p for _, p in probes), return_exceptions=True)
    out: list[Found | ScanError | str] = []
    for (port, _), result in zip(probes, results, strict=True):
        if isinstance(result, Found):
            out.append(result)
        elif isinstance(result, _Silent):
            continue
        elif isinstance(result, _NotAMiner):
            out.append(_NOT_A_MINER)
        elif isinstance(result, FleetError):
            out.append(ScanError(host, port, str(result)))
        elif isinstance(result, BaseException):
            raise result
    return out or None


async def _bounded_host(
    host: str, s: ScanSettings, session: aiohttp.ClientSession | None
) -> list[Found | ScanError | str] | None:
    try:
        async with asyncio.timeout(s.host_timeout_s):
            return await _probe_host(host, s, session)
    except TimeoutError:
        return [ScanError(host, 0, f"no answer within the host limit of {s.host_timeout_s:g} s")]


def fd_budget(concurrency: int) -> int:
    """`concurrency` lowered so that two sockets per host stay within the process's open
    file limit (a third of it, the rest left to the caller); at least 1."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return concurrency
    if soft == resource.RLIM_INFINITY:
        return concurrency
    return max(1, min(concurrency, soft // 6))


async def scan_hosts(hosts: Iterable[str], settings: ScanSettings | None = None) -> ScanResult:
    """Probe `hosts` (addresses as text) with `settings.concurrency` workers (fewer when the
    open file limit is low: see `fd_budget`)."""
    s = settings or ScanSettings()
    workers = fd_budget(s.concurrency)
    started = time.monotonic()
    queue: Iterator[str] = iter(hosts)
    found: list[Found] = []
    errors: list[ScanError] = []
    dead = scanned = other = 0
    pending: set[str] = set()

    async def worker(session: aiohttp.ClientSession | None) -> None:
        nonlocal dead, scanned, other
        for host in queue:  # workers share one iterator: each host is taken once
            pending.add(host)
            result = await _bounded_host(host, s, session)
            pending.discard(host)
            scanned += 1
            if result is None:
                dead += 1
                continue
            items = [i for i in result if not isinstance(i, str)]
            if not items:
                other += 1
            for item in items:
                if isinstance(item, Found):
                    found.append(item)
                else:
                    errors.append(item)

    connector = aiohttp.TCPConnector(limit=workers, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(worker(session if s.http_port else None))
                 for _ in range(workers)]  # fmt: skip
        _, late = await asyncio.wait(tasks, timeout=s.total_timeout_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]  # a bug, not a host's fault
    for host in sorted(pending):
        scanned += 1
        errors.append(ScanError(host, 0, f"scan deadline of {s.total_timeout_s:g} s reached"))
    not_reached = sum(1 for _ in queue)
    elapsed = time.monotonic() - started
    found.sort(key=_order)
    return ScanResult(tuple(found), tuple(errors), dead, scanned, elapsed, not_reached, other)


def _order(f: Found) -> tuple[bytes, int]:
    return ipaddress.ip_address(f.host).packed, f.port


async def scan(cidr: str, settings: ScanSettings | None = None) -> ScanResult:
    """Probe every usable address of `cidr` (ConfigError for a bad or too large range)."""
    s = settings or ScanSettings()
    return await scan_hosts(hosts_of(cidr, s.max_hosts), s)
