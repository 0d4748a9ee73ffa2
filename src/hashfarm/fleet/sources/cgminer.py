"""The cgminer RPC family's shared shapes: status envelopes, multi-command replies, `summary`,
`pools`, `version`. bmminer, btminer, Avalon, bosminer and LuxOS all descend from cgminer's
`api.c`, so these parsers serve every backend; firmware-specific fields live in the
per-firmware modules.

Sans-I/O: each parser takes the decoded reply (see repair.decode_reply) and returns a
MachineSnapshot carrying only what that reply says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hashfarm.fleet.errors import CommandError, ReplyError
from hashfarm.fleet.model import Hashrates, MachineSnapshot, Pool
from hashfarm.fleet.sources.values import GH, MH, hashrate_hs, obj, opt_int

__all__ = [
    "check_status",
    "ghs_scale",
    "parse_pools",
    "parse_summary",
    "parse_version",
    "section",
    "split_multi",
]

_OK = {"S", "W", "I"}  # success, warning, informational (cgminer API-README)


def _ok(status: Any) -> bool:
    return isinstance(status, str) and status in _OK


def check_status(reply: Mapping[str, Any], command: str) -> None:
    """Raise CommandError when the reply's status says the command failed.

    Three envelopes exist: cgminer's `STATUS: [{STATUS, Code, Msg}]`, btminer-native
    `STATUS: "S"` with `Msg` an object, and Whatsminer API v3's lower-case `code`/`msg`."""
    status = reply.get("STATUS")
    if isinstance(status, list):
        if not status:
            raise ReplyError(f"{command}: empty STATUS list")
        head = obj(status[0], f"{command}: STATUS[0]")
        if not _ok(head.get("STATUS")):
            raise CommandError(command, head.get("Code"), str(head.get("Msg", "")))
    elif isinstance(status, str):
        if not _ok(status):
            raise CommandError(command, reply.get("Code"), str(reply.get("Msg", "")))
    elif "code" in reply:
        if reply["code"] != 0:
            raise CommandError(command, reply["code"], str(reply.get("msg", "")))
    else:
        raise ReplyError(f"{command}: no STATUS or code in the reply")


def section(reply: Mapping[str, Any], key: str, command: str) -> list[Mapping[str, Any]]:
    """The list under `key` (SUMMARY, POOLS, STATS...) after checking the status."""
    check_status(reply, command)
    items = reply.get(key)
    if not isinstance(items, list):
        raise ReplyError(f"{command}: no {key} list in the reply")
    return [obj(item, f"{command}: {key}[{i}]") for i, item in enumerate(items)]


def split_multi(reply: Mapping[str, Any], commands: list[str]) -> dict[str, Mapping[str, Any]]:
    """A `summary+pools+stats` reply is keyed by command, each value a one-element list, in
    no particular order (cgminer API v3.1). Returns command -> that command's own reply."""
    out: dict[str, Mapping[str, Any]] = {}
    for command in commands:
        if command not in reply:
            raise ReplyError(f"{'+'.join(commands)}: no {command!r} section in the reply")
        value = reply[command]
        if isinstance(value, list):  # real firmwares; the API-README example shows an object
            if len(value) != 1:
                raise ReplyError(f"{command}: expected one reply in the list, got {len(value)}")
            value = value[0]
        out[command] = obj(value, command)
    return out


def ghs_scale(model: str | None) -> int:
    """H/s per unit of the `GHS *` keys. The L3+ (scrypt) reports MH/s under them: Foreman
    expects 504,560,000 H/s from `"GHS 5s": "504.56"`; bmminer issue #11 says the same."""
    if model and model.replace("Antminer", "").strip().upper().startswith("L3"):
        return MH
    return GH


def summary_hashrates(row: Mapping[str, Any], model: str | None) -> Hashrates:
    """The windows a cgminer-style SUMMARY (or STATS/DEVS) row carries. `GHS *` keys are
    GH/s except on the L3+; `MHS *` keys are MH/s. `GHS 30m`, `MHS 30s`, `MHS 5m` and
    `MHS 24h` have no slot in the model and are not squeezed into a neighbouring one."""
    scale = ghs_scale(model)

    def first(*keys: tuple[str, int]) -> int | None:
        for key, unit in keys:
            value = hashrate_hs(row, key, unit)
            if value is not None:
                return value
        return None

    return Hashrates(
        five_sec_hs=first(("GHS 5s", scale), ("MHS 5s", MH)),
        one_min_hs=first(("MHS 1m", MH)),
        fifteen_min_hs=first(("MHS 15m", MH)),
        average_hs=first(("GHS av", scale), ("MHS av", MH)),
    )


def parse_summary(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`summary`: machine hashrate windows, uptime (`Elapsed`) and hardware errors."""
    rows = section(reply, "SUMMARY", "summary")
    if not rows:
        raise ReplyError("summary: empty SUMMARY list")
    row = rows[0]
    return MachineSnapshot(
        backend=backend,
        hashrate=summary_hashrates(row, model),
        uptime_s=opt_int(row, "Elapsed"),
        hardware_errors=opt_int(row, "Hardware Errors"),
    )


def _truthy(value: Any) -> bool:
    return value is True or value in ("true", "Y", "1", 1)


def parse_pools(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`pools`: every configured pool; `active` is `Stratum Active` on a pool that is alive.
    Key spellings differ (`Pool Stale%%`, `Long Pool`); only stable keys are read."""
    pools = []
    for i, row in enumerate(section(reply, "POOLS", "pools")):
        status = str(row.get("Status", ""))
        alive = status == "Alive"
        pools.append(
            Pool(
                index=i if (index := opt_int(row, "POOL")) is None else index,
                url=str(row.get("URL", "")),
                user=str(row.get("User", "")),
                alive=alive,
                active=alive and _truthy(row.get("Stratum Active")),
                status=status,
                accepted=opt_int(row, "Accepted"),
                rejected=opt_int(row, "Rejected"),
                group=opt_int(row, "GROUP"),
            )
        )
    return MachineSnapshot(backend=backend, pools=tuple(pools))


def parse_version(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`version`: model (`Type`), miner version and API version."""
    rows = section(reply, "VERSION", "version")
    if not rows:
        raise ReplyError("version: empty VERSION list")
    row = rows[0]
    kind = row.get("Type")
    return MachineSnapshot(
        backend=backend,
        model=str(kind).split("\n")[0].strip() if kind else None,
        firmware=str(row["Miner"]) if "Miner" in row else None,
        api_version=str(row["API"]) if "API" in row else None,
    )
