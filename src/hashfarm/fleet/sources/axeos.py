"""Bitaxe ESP-Miner (AxeOS) `GET /api/system/info`.

`hashRate` is GH/s (one window, ESP-Miner's recent rate), `power` W (a float32 artefact such
as 2.65000009536743 is kept as sent), `temp` the ASIC temperature °C, `fanrpm` RPM,
`uptimeSeconds` s. `bestDiff` is a suffixed string (`"483k"`) on older firmware and a number
on newer (asic-rs issue #350): both are accepted. `vrTemp: 0` means the board reported no VR
reading; it is not used as a temperature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hashfarm.fleet.errors import ReplyError
from hashfarm.fleet.model import Fan, Hashboard, Hashrates, MachineSnapshot, Pool, PowerSource
from hashfarm.fleet.sources.values import GH, hashrate_hs, opt_float, opt_int, suffixed

__all__ = ["best_difficulty", "parse_system_info"]

# ASIC -> the catalog's model name (src/hashfarm/data/asic_models.csv names each by its ASIC).
_MODELS = {
    "BM1366": "Bitaxe Ultra (BM1366)",
    "BM1368": "Bitaxe Supra (BM1368)",
    "BM1370": "Bitaxe Gamma (BM1370)",
}


def best_difficulty(reply: Mapping[str, Any]) -> float | None:
    """`bestDiff` as a number: `"483k"` -> 483000.0."""
    return suffixed(reply.get("bestDiff"), "bestDiff")


def _pools(reply: Mapping[str, Any]) -> tuple[Pool, ...]:
    pools = []
    fallback = reply.get("isUsingFallbackStratum")
    if fallback not in (0, 1, True, False, None):
        raise ReplyError(f"isUsingFallbackStratum: expected 0/1, got {fallback!r}")
    for index, prefix in enumerate(("stratum", "fallbackStratum")):
        host = reply.get(f"{prefix}URL")
        if not host:
            continue
        active = bool(fallback) == (index == 1)
        pools.append(
            Pool(
                index=index,
                url=f"stratum+tcp://{host}:{reply.get(f'{prefix}Port', '')}",
                user=str(reply.get(f"{prefix}User", "")),
                alive=True,  # AxeOS does not report per-pool health
                active=active,
                status="configured",
                # the share counters are the running session's, so they belong to the live pool
                accepted=opt_int(reply, "sharesAccepted") if active else None,
                rejected=opt_int(reply, "sharesRejected") if active else None,
            )
        )
    return tuple(pools)


def parse_system_info(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`/api/system/info`: one ASIC, one fan, one board."""
    if "hashRate" not in reply:
        raise ReplyError("system/info: no hashRate (not an AxeOS reply?)")
    temp = opt_float(reply, "temp")
    rate = hashrate_hs(reply, "hashRate", GH)
    power = opt_float(reply, "power")
    rpm = opt_int(reply, "fanrpm")
    asic = reply.get("ASICModel")
    return MachineSnapshot(
        backend=backend,
        model=_MODELS.get(str(asic), f"Bitaxe ({asic})") if asic else None,
        firmware=str(reply["version"]) if reply.get("version") else None,
        uptime_s=opt_int(reply, "uptimeSeconds"),
        hashrate=Hashrates(five_sec_hs=rate),
        boards=(
            Hashboard(
                slot=0,
                present=True,
                hashrate=Hashrates(five_sec_hs=rate),
                chips_working=opt_int(reply, "asicCount"),
                chip_temps_c=(temp,) if temp else (),
            ),
        ),
        fans=(Fan(slot=0, rpm=rpm),) if rpm is not None else (),
        fans_expected=1,
        power_w=power,
        power_source=PowerSource.REPORTED if power is not None else None,
        pools=_pools(reply),
    )
