"""The declarative map: per firmware backend, which commands it answers, which parser reads
each reply, and what data it can supply at all (capability flags).

A poller asks `backend.commands` what to send, so a command a machine does not have is never
sent and never fails at run time; `read` refuses (ValueError, a programming error) a reply
for a command outside the map. `read` is sans-I/O: reply bytes in, one merged
MachineSnapshot out, the JSON repairs each reply needed recorded on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from hashfarm.fleet.model import MachineSnapshot, merge
from hashfarm.fleet.sources import antminer, avalon, axeos, braiins, cgminer, whatsminer
from hashfarm.fleet.sources.repair import decode_reply
from hashfarm.fleet.sources.values import obj

__all__ = ["BACKENDS", "Backend", "Capability", "Parser", "read"]

Parser = Callable[[Mapping[str, Any], "str | None", str], MachineSnapshot]


class Capability(StrEnum):
    """What a backend can tell at all; a missing flag means "this firmware does not say"."""

    HASHRATE = "hashrate"  # machine hashrate windows
    BOARD_HASHRATE = "board_hashrate"
    NOMINAL = "nominal"  # the firmware's own expected hashrate
    TEMPERATURES = "temperatures"
    FANS = "fans"
    POWER = "power"  # reported; without it power is derived from the catalog
    POOLS = "pools"
    ERRORS = "errors"  # the firmware's own error/event log
    STATE = "state"  # says whether it is idle/sleeping
    MULTI_COMMAND = "multi_command"  # answers `summary+pools+stats` in one request


@dataclass(frozen=True, slots=True)
class Backend:
    """One firmware family: transport, command -> parser (in merge precedence), capabilities."""

    name: str
    transport: str  # "cgminer-rpc" (TCP 4028, one JSON request per connection) or "http"
    commands: Mapping[str, Parser]
    capabilities: frozenset[Capability]

    def supports(self, command: str) -> bool:
        """True when `command` is in this backend's map; `a+b` also needs MULTI_COMMAND
        (some X19 bmminer builds reject it, so it is only declared where a capture shows it)."""
        parts = command.split("+")
        if len(parts) > 1 and Capability.MULTI_COMMAND not in self.capabilities:
            return False
        return all(part in self.commands for part in parts)

    def can(self, capability: Capability) -> bool:
        """Whether this firmware reports `capability` at all."""
        return capability in self.capabilities


C = Capability
_ANTMINER = {
    "stats": antminer.parse_stats,
    "summary": cgminer.parse_summary,
    "pools": cgminer.parse_pools,
    "version": cgminer.parse_version,
    "devs": antminer.parse_bmminer_devs,
}
BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "bmminer",  # stock Antminer (and Hiveon, cgminer on the L3+): same shapes
            "cgminer-rpc",
            _ANTMINER,
            frozenset({C.HASHRATE, C.BOARD_HASHRATE, C.NOMINAL, C.TEMPERATURES, C.FANS, C.POOLS}),
        ),
        Backend(
            "luxos",
            "cgminer-rpc",
            {**_ANTMINER, "events": antminer.parse_luxos_events},
            frozenset(
                {C.HASHRATE, C.BOARD_HASHRATE, C.NOMINAL, C.TEMPERATURES, C.FANS, C.POOLS, C.ERRORS}
            ),
        ),
        Backend(
            "btminer",
            "cgminer-rpc",
            {
                "summary": whatsminer.parse_summary,
                "devs": whatsminer.parse_devs,
                "stats": whatsminer.parse_stats,
                "pools": cgminer.parse_pools,
                "get_version": whatsminer.parse_get_version,
            },
            frozenset(
                {C.HASHRATE, C.BOARD_HASHRATE, C.NOMINAL, C.TEMPERATURES, C.FANS, C.POWER, C.POOLS}
            ),
        ),
        Backend(
            "btminer-v3",  # API v3 (M60S and later): device info only so far
            "cgminer-rpc",
            {"get.device.info": whatsminer.parse_v3_device},
            frozenset({C.STATE}),
        ),
        Backend(
            "avalon",
            "cgminer-rpc",
            {
                "estats": avalon.parse_stats,
                "stats": avalon.parse_stats,
                "summary": cgminer.parse_summary,
                "devs": avalon.parse_devs,
                "pools": cgminer.parse_pools,
                "version": cgminer.parse_version,
            },
            frozenset(
                {
                    C.HASHRATE,
                    C.BOARD_HASHRATE,
                    C.NOMINAL,
                    C.TEMPERATURES,
                    C.FANS,
                    C.POWER,
                    C.POOLS,
                    C.STATE,
                    C.MULTI_COMMAND,
                }
            ),
        ),
        Backend(
            "bosminer",  # Braiins OS+ cgminer-compatible API
            "cgminer-rpc",
            {
                "summary": cgminer.parse_summary,
                "temps": braiins.parse_temps,
                "fans": braiins.parse_fans,
                "pools": cgminer.parse_pools,
                "version": cgminer.parse_version,
            },
            frozenset({C.HASHRATE, C.TEMPERATURES, C.FANS, C.POOLS}),
        ),
        Backend(
            "braiins-rest",
            "http",
            {
                "/api/v1/miner/stats": braiins.parse_rest_stats,
                "/api/v1/miner/errors": braiins.parse_rest_errors,
            },
            frozenset({C.HASHRATE, C.NOMINAL, C.POWER, C.ERRORS}),
        ),
        Backend(
            "axeos",
            "http",
            {"/api/system/info": axeos.parse_system_info},
            frozenset({C.HASHRATE, C.TEMPERATURES, C.FANS, C.POWER, C.POOLS}),
        ),
    )
}


def read(
    backend: Backend, replies: Mapping[str, bytes], *, model: str | None = None
) -> MachineSnapshot:
    """Parse every reply (command -> raw bytes as received; `a+b` for a multi-command reply)
    and merge them in the backend's precedence order. `model` is a hint for replies that do
    not name the machine (the L3+ unit fix needs it when `stats` is not among them)."""
    for command in replies:
        if not backend.supports(command):
            raise ValueError(f"backend {backend.name!r} has no command {command!r}")
    decoded: dict[str, Mapping[str, Any]] = {}
    repairs: list[str] = []
    for command, raw in replies.items():
        result = decode_reply(raw, command=command)
        repairs += [f"{command}: {r}" for r in result.repairs]
        data = obj(result.data, command)  # every reply is a JSON object
        if "+" in command:
            decoded.update(cgminer.split_multi(data, command.split("+")))
        else:
            decoded[command] = data
    snapshots = []
    for command, parser in backend.commands.items():  # precedence order
        if command in decoded:
            snap = parser(decoded[command], model, backend.name)
            model = model or snap.model
            snapshots.append(snap)
    if not snapshots:
        return MachineSnapshot(backend=backend.name, model=model, repairs=tuple(repairs))
    merged = merge(*snapshots)
    return replace(merged, model=merged.model or model, repairs=tuple(repairs))
