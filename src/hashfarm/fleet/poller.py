"""Poll a fleet on a fixed period: one `Sample` per machine per round.

`Poller.poll_round()` asks every machine, `concurrency` at a time, the commands its backend
has (`commands_for`: a command the backend lacks is never sent), parses the replies
(`backends.read`), completes them (`hardware.enrich`) and derives faults. Each machine's
whole exchange runs under `timeout_s`, so a hung API costs one slot for at most that long and
never delays the other machines' samples; its sample carries the error instead of a
snapshot, naming the host, port, command and reason. A machine that does not answer (refused,
timed out) is retried with backoff: 1, 2, 4, then every `backoff_rounds_max` rounds while it
stays down (4 minutes at 30 s); the rounds in between repeat its last error without asking.

`run()` starts a round every `interval_s` on the injected clock (rounds are aligned to the
period; a round that overruns skips the ticks it missed instead of bunching up), and hands
each round to the sinks (the store, the alert engine). Time comes from `clock`/`sleep`
parameters, so a test drives hours of rounds without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import aiohttp

from hashfarm.errors import ConfigError
from hashfarm.fleet.errors import CommandError, FleetError, MachineUnreachable, ReplyError
from hashfarm.fleet.faults import Fault, FaultThresholds, derive_faults
from hashfarm.fleet.hardware import enrich
from hashfarm.fleet.model import MachineSnapshot
from hashfarm.fleet.scan import Found
from hashfarm.fleet.sources.backends import BACKENDS, Backend, read
from hashfarm.fleet.sources.transport import http_get, poll_cgminer

__all__ = [
    "POLL_COMMANDS",
    "Machine",
    "PollSettings",
    "Poller",
    "Round",
    "Sample",
    "commands_for",
    "error_kind",
    "machine_of",
]

log = logging.getLogger("hashfarm.fleet.poller")

# What a round asks each backend, in the order sent (the backend's map decides precedence).
# `version` and bmminer `devs` are left out: the first never changes between rounds (the
# scan read it), the second is a placeholder on X19 (`BTM_SOC`, MHS 0).
POLL_COMMANDS: dict[str, tuple[str, ...]] = {
    "bmminer": ("stats", "summary", "pools"),
    "luxos": ("stats", "summary", "pools", "events"),
    "btminer": ("summary", "devs", "pools", "get_version"),
    "btminer-v3": ("get.device.info",),
    "avalon": ("summary+pools+stats",),  # one connection; the Avalon 10xx capture shows it
    "bosminer": ("summary", "temps", "fans", "pools"),
    "braiins-rest": ("/api/v1/miner/stats", "/api/v1/miner/errors"),
    "axeos": ("/api/system/info",),
}


def commands_for(backend: Backend, wanted: Iterable[str] | None = None) -> tuple[str, ...]:
    """The commands to send: `wanted` (or the backend's default set) minus what it lacks."""
    names = POLL_COMMANDS.get(backend.name, tuple(backend.commands)) if wanted is None else wanted
    return tuple(c for c in names if backend.supports(c))


@dataclass(frozen=True, slots=True)
class Machine:
    """One machine to poll; `id` is how the store, alerts and API name it."""

    host: str
    port: int
    backend: str  # a key of sources.BACKENDS
    model: str | None = None  # a hint for replies that do not name the model (btminer)
    commands: tuple[str, ...] | None = None  # None: POLL_COMMANDS for the backend

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"fleet machine {self.id}: unknown backend {self.backend!r}")

    @property
    def id(self) -> str:
        """host:port"""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def machine_of(found: Found) -> Machine:
    """The machine a scan identified, ready to poll (its model as the parser's hint)."""
    return Machine(found.host, found.port, found.backend, found.model)


@dataclass(frozen=True, slots=True)
class PollSettings:
    """How often and how patiently a fleet is polled."""

    interval_s: float = 30.0  # one round per period
    timeout_s: float = 5.0  # all commands of one machine, connects included
    concurrency: int = 512  # machines asked at once
    max_reply_bytes: int = 1 << 20  # per reply (the largest capture is 40 kB)
    backoff_rounds_max: int = 8  # an unreachable machine is retried at most this many rounds
    # apart (1, 2, 4, 8 after each failure in a row); 1 asks every machine every round

    def __post_init__(self) -> None:
        checks = {
            "interval_s": 0 < self.interval_s <= 86_400,
            "timeout_s": 0 < self.timeout_s <= self.interval_s,
            "concurrency": 1 <= self.concurrency <= 16_384,
            "max_reply_bytes": 1024 <= self.max_reply_bytes <= 64 << 20,
            "backoff_rounds_max": 1 <= self.backoff_rounds_max <= 1024,
        }
        for name, ok in checks.items():
            if not ok:
                why = f" (at most interval_s, {self.interval_s:g})" if name == "timeout_s" else ""
                raise ConfigError(
                    f"fleet.poll.{name}: {getattr(self, name)!r} is out of range{why}"
                )


@dataclass(frozen=True, slots=True)
class Sample:
    """One machine in one round: a snapshot and its faults, or the error that stopped it."""

    machine: Machine
    at: float  # the round's start, seconds since the epoch (from the poller's clock)
    latency_s: float  # how long this machine took to answer (or to fail)
    snapshot: MachineSnapshot | None = None  # enriched
    faults: tuple[Fault, ...] = ()
    error: str | None = None  # "unreachable: 10.0.0.7:4028 stats: no complete reply ..."

    @property
    def ok(self) -> bool:
        """True when the machine answered every command with a readable reply."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class Round:
    """One poll round: every machine's sample."""

    at: float
    duration_s: float  # round start to last sample (monotonic)
    samples: tuple[Sample, ...]

    @property
    def errors(self) -> int:
        """Machines that gave no usable reply this round."""
        return sum(1 for s in self.samples if not s.ok)


def error_kind(exc: FleetError) -> str:
    """The operator's word for a poll failure: unreachable, bad reply, or refused command."""
    if isinstance(exc, MachineUnreachable):
        return "unreachable"
    if isinstance(exc, CommandError):
        return "command_error"
    if isinstance(exc, ReplyError):
        return "bad_reply"
    return "error"


Sink = Callable[[Round], Awaitable[None]]


class Poller:
    """Polls `machines` every `settings.interval_s`; `sinks` get each finished round."""

    def __init__(
        self,
        machines: Sequence[Machine],
        settings: PollSettings | None = None,
        *,
        thresholds: FaultThresholds | None = None,
        sinks: Sequence[Sink] = (),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.machines = list(machines)
        self.settings = settings or PollSettings()
        self.thresholds = thresholds or FaultThresholds()
        self.sinks = list(sinks)
        self._clock, self._sleep = clock, sleep
        self._session: aiohttp.ClientSession | None = None
        self.rounds = 0
        self._down: dict[str, tuple[int, int, str]] = {}  # id -> (failures, next round, error)

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.settings.concurrency, force_close=True)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def _ask(self, machine: Machine) -> MachineSnapshot:
        backend = BACKENDS[machine.backend]
        commands = commands_for(backend, machine.commands)
        s = self.settings
        if backend.transport == "http":
            session = await self._http()
            base = f"http://{machine.id}"
            replies = {}
            for path in commands:
                replies[path] = await http_get(
                    session, base, path, timeout_s=s.timeout_s, max_reply_bytes=s.max_reply_bytes
                )
            return read(backend, replies, model=machine.model)
        return await poll_cgminer(
            backend, machine.host, commands, port=machine.port, model=machine.model,
            timeout_s=s.timeout_s, max_reply_bytes=s.max_reply_bytes,
        )  # fmt: skip

    async def poll_one(self, machine: Machine, at: float) -> Sample:
        """One machine's sample; every failure is in the sample, never raised."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                snapshot = enrich(await self._ask(machine))
        except TimeoutError:
            error = (
                f"unreachable: {machine.id}: no complete poll within {self.settings.timeout_s:g} s"
            )
        except FleetError as exc:  # transport errors name host:port already, parsers do not
            said = str(exc)
            where = "" if said.startswith((machine.host, "http://")) else f"{machine.id}: "
            error = f"{error_kind(exc)}: {where}{said}"
        else:
            faults = derive_faults(snapshot, self.thresholds)
            return Sample(machine, at, time.monotonic() - started, snapshot, faults)
        return Sample(machine, at, time.monotonic() - started, error=error)

    async def _poll_or_skip(self, machine: Machine, at: float) -> Sample:
        """Poll `machine`, unless it is backing off after failing to answer: then its
        sample repeats the last error, saying when it is tried again."""
        down = self._down.get(machine.id)
        if down is not None and down[1] > self.rounds:
            failures, next_round, error = down
            wait = next_round - self.rounds
            note = f" (no answer {failures} times in a row: next try in {wait} round(s))"
            return Sample(machine, at, 0.0, error=error + note)
        sample = await self.poll_one(machine, at)
        if sample.error is not None and sample.error.startswith("unreachable"):
            failures = (down[0] if down else 0) + 1
            skip = min(2 ** (failures - 1), self.settings.backoff_rounds_max)
            self._down[machine.id] = (failures, self.rounds + skip, sample.error)
        elif down is not None:
            del self._down[machine.id]
        return sample

    async def poll_round(self) -> Round:
        """Poll every machine once, `concurrency` at a time; then run the sinks."""
        at = self._clock()
        started = time.monotonic()
        todo = iter(self.machines)
        samples: list[Sample] = []

        async def worker() -> None:
            for machine in todo:  # the workers share one iterator
                samples.append(await self._poll_or_skip(machine, at))

        workers = min(self.settings.concurrency, len(self.machines)) or 1
        await asyncio.gather(*(worker() for _ in range(workers)))
        result = Round(at, time.monotonic() - started, tuple(samples))
        self.rounds += 1
        for sink in self.sinks:
            try:
                await sink(result)
            except Exception:  # a broken sink must not stop polling; it is logged
                log.exception("fleet poller: a sink failed on the round at %.0f", at)
        return result

    async def run(self, rounds: int | None = None) -> None:
        """Poll every `interval_s` (aligned to the period) until cancelled or `rounds` done."""
        interval = self.settings.interval_s
        done = 0
        try:
            while rounds is None or done < rounds:
                start = self._clock()
                result = await self.poll_round()
                done += 1
                if result.duration_s > interval:
                    log.warning("fleet poll round took %.1f s, over its %g s period",
                                result.duration_s, interval)  # fmt: skip
                if rounds is not None and done >= rounds:
                    break
                now = self._clock()
                ticks = int((now - start) // interval) + 1  # skip the ticks an overrun missed
                await self._sleep(max(0.0, start + ticks * interval - now))
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the HTTP session (a later round opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
