"""Hardware facts a reply does not carry, and the snapshot completed with them.

A reply tells what the firmware sees; it cannot tell what should be there. Whether a board is
missing or a fan is dead is a comparison with the model's facts: how many boards, chips per
board and fans it has (`HARDWARE`, each row read off a healthy capture in
../shared/fixtures/asic-api, named in its comment), and its nominal hashrate and efficiency
(the catalog, src/hashfarm/data/asic_models.csv, read through economics.catalog).

`enrich` is pure: snapshot in, snapshot out. It fills only what the firmware left empty,
except `boards_expected`/`fans_expected`, where the hardware fact wins over a firmware count
(bosminer lists 4 fan slots on an S9 that has 2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from hashfarm.economics.catalog import MachineModel, find_model
from hashfarm.errors import ConfigError
from hashfarm.fleet.model import MachineSnapshot, MinerState, PowerSource
from hashfarm.fleet.sources.values import TH

__all__ = ["HARDWARE", "Hardware", "catalog_model", "enrich", "hardware"]


@dataclass(frozen=True, slots=True)
class Hardware:
    """What one model physically has."""

    boards: int
    chips_per_board: int | None
    fans: int


HARDWARE: dict[str, Hardware] = {
    # antminer-s9-*-stats: chain_acn6..8 = 63, fan_num 2 (fan5/fan6 spin)
    "Antminer S9": Hardware(3, 63, 2),
    # antminer-s19pro-bmminer-stats: chain_acn1..3 = 114, fan_num 4
    "Antminer S19 Pro": Hardware(3, 114, 4),
    # antminer-s19-bmminer-stats-sleeping: chain_acn2..3 = 76, fan_num 4, one board missing
    "Antminer S19": Hardware(3, 76, 4),
    # luxos-s19kpro-stats: chain_acn1..3 = 77, fan_num 4
    "Antminer S19k Pro": Hardware(3, 77, 4),
    # antminer-l3plus-cgminer-stats: chain_acn1..4 = 72, fan_num 2
    "Antminer L3+": Hardware(4, 72, 2),
    # whatsminer-m20s-btminer-stats: SM0..SM2, chip_num 105; btminer fans: in and out
    "Whatsminer M20S": Hardware(3, 105, 2),
    # avalon-1246-cgminer-stats: MGHS x3, PVT_T0 has 120 chips, Fan1..Fan4
    "AvalonMiner 1246": Hardware(3, 120, 4),
    # avalon-1566-cgminer-estats: MGHS x3, --hash-asic 160, Fan1..Fan2
    "Avalon A1566": Hardware(3, 160, 2),
    # avalon-q-cgminer-stats-idle: "Hash Board: 1", HBinfo PVT_T0 has 160 chips, Fan1..Fan4
    "Avalon Q": Hardware(1, 160, 4),
    # bitaxe-supra-axeos-system-info: asicCount 1, one fanrpm
    "Bitaxe Supra (BM1368)": Hardware(1, 1, 1),
}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


_BY_KEY = {_key(name): facts for name, facts in HARDWARE.items()}


def _names(model: str) -> list[str]:
    """Spellings to try: as sent, without a variant suffix (`M60S_VK40`), without the vendor
    word (`Avalon 1246` vs the catalog's `AvalonMiner 1246`)."""
    base = model.split("_")[0].strip()
    words = base.split()
    return [model, base] + ([" ".join(words[1:])] if len(words) > 1 else [])


@lru_cache(maxsize=256)
def hardware(model: str | None) -> Hardware | None:
    """The facts for `model`, or None when no capture has shown them yet."""
    if not model:
        return None
    for name in _names(model):
        facts = _BY_KEY.get(_key(name))
        if facts is not None:
            return facts
    for key, facts in _BY_KEY.items():  # "Avalon 1246" -> "AvalonMiner 1246"
        if any(key.endswith(_key(n)) for n in _names(model)[1:] if len(_key(n)) >= 3):
            return facts
    return None


@lru_cache(maxsize=256)  # a farm has a few dozen models; find_model scans the whole catalog
def catalog_model(model: str | None) -> MachineModel | None:
    """The catalog row for `model` (None when the catalog has no single match)."""
    if not model:
        return None
    for name in _names(model):
        try:
            return find_model(name)
        except ConfigError:
            continue
    return None


def _efficiency_j_per_th(row: MachineModel) -> float | None:
    if row.efficiency_j_per_th is not None:
        return row.efficiency_j_per_th
    if row.power_w is not None and row.hashrate_ths:
        return row.power_w / row.hashrate_ths
    return None


def enrich(snapshot: MachineSnapshot) -> MachineSnapshot:
    """Fill expected boards/fans/chips from HARDWARE, nominal hashrate from the catalog when
    the firmware gave none, and power (live hashrate × the catalog's J/TH) when the machine
    reports none. Reported values are never overwritten."""
    changes: dict[str, object] = {}
    facts = hardware(snapshot.model)
    if facts is not None:
        changes["boards_expected"] = facts.boards
        changes["fans_expected"] = facts.fans
        if facts.chips_per_board is not None:
            changes["boards"] = tuple(
                b
                if b.chips_expected is not None or not b.present
                else replace(b, chips_expected=facts.chips_per_board)
                for b in snapshot.boards
            )
    row = catalog_model(snapshot.model)
    if row is not None:
        rates = snapshot.hashrate
        if rates.nominal_hs is None and row.hashrate_ths is not None:
            # TH/s -> H/s; catalog figures have at most 1 decimal, so this is exact enough
            rates = replace(rates, nominal_hs=round(row.hashrate_ths * TH))
            changes["hashrate"] = rates
        efficiency = _efficiency_j_per_th(row)
        live = rates.live_hs
        # Only for a machine that hashes: J/TH says nothing about a stopped or idle one
        # (it still draws fans and controller power), so its power stays unknown.
        hashing = snapshot.state not in (MinerState.IDLE, MinerState.STOPPED)
        if snapshot.power_w is None and efficiency is not None and live and hashing:
            changes["power_w"] = round(live / TH * efficiency, 1)  # TH/s × J/TH = W
            changes["power_source"] = PowerSource.DERIVED
    return replace(snapshot, **changes) if changes else snapshot  # type: ignore[arg-type]
