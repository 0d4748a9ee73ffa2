"""The one normalised model every firmware's replies are read into.

Units are in the names and never vary by firmware: hashrates in H/s (`*_hs`, integers, so a
converted value is exact and a test can check it by hand), temperatures in °C (`*_c`), power
in W (`*_w`), fan speeds in RPM, durations in seconds (`*_s`). A value the firmware does not
report is None (or an empty tuple); a value it reports as a sentinel (-273 °C, a 0 °C sensor
on a board that hashes) is not a reading: it is left out and named in `bad_sensors`.

Hashrate windows mean what they say. `average_hs` is the average since the miner started
(cgminer's `av`); it is never copied into a short window. When a firmware only reports an
average (Avalon's per-board `MGHS`), the short windows stay None.

Every field is optional because one reply rarely carries everything: the poller reads several
commands (`summary`, `stats`, `pools`...) and `merge` joins their snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum

__all__ = [
    "ErrorCategory",
    "Fan",
    "Hashboard",
    "Hashrates",
    "MachineError",
    "MachineSnapshot",
    "MinerState",
    "Pool",
    "PowerSource",
    "merge",
]


class MinerState(StrEnum):
    """What the machine says it is doing."""

    MINING = "mining"
    IDLE = "idle"  # the firmware says so: sleep, soft-off, "In Idle" (fans may stop on purpose)
    STOPPED = "stopped"  # reports no hashing without saying why (every chip 'x', every chain 0)


class PowerSource(StrEnum):
    """Where `power_w` comes from."""

    REPORTED = "reported"  # the machine measured or estimated it
    DERIVED = "derived"  # live hashrate × the catalog's J/TH for the model


class ErrorCategory(StrEnum):
    """A firmware-reported error, sorted by what an operator does about it."""

    SENSOR = "sensor"
    HASHBOARD = "hashboard"
    POWER = "power"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Hashrates:
    """Hashrate over the windows the firmwares report, each in H/s (None: not reported)."""

    five_sec_hs: int | None = None
    one_min_hs: int | None = None
    fifteen_min_hs: int | None = None
    average_hs: int | None = None  # since the miner process started (a lifetime average)
    nominal_hs: int | None = None  # what the machine should make (firmware's ideal or catalog)

    @property
    def live_hs(self) -> int | None:
        """The shortest window reported: the best guess at what the machine makes now.
        Never falls back to `average_hs`."""
        for value in (self.five_sec_hs, self.one_min_hs, self.fifteen_min_hs):
            if value is not None:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Hashboard:
    """One hashboard (chain), by the firmware's own slot number (an S9 uses 6-8)."""

    slot: int
    present: bool
    hashrate: Hashrates = field(default_factory=Hashrates)
    chips_working: int | None = None
    chips_expected: int | None = None
    board_temps_c: tuple[float, ...] = ()
    chip_temps_c: tuple[float, ...] = ()
    hardware_errors: int | None = None
    serial: str | None = None
    bad_sensors: tuple[str, ...] = ()  # "temp2_7=-83": a reading rejected as a sentinel


@dataclass(frozen=True, slots=True)
class Fan:
    """One fan slot as the firmware numbers it."""

    slot: int
    rpm: int


@dataclass(frozen=True, slots=True)
class Pool:
    """One configured pool; `active` is the pool the machine mines on now."""

    index: int
    url: str
    user: str
    alive: bool
    active: bool
    status: str  # the firmware's word ("Alive", "Dead", "Disabled"), kept for display
    accepted: int | None = None
    rejected: int | None = None
    group: int | None = None


@dataclass(frozen=True, slots=True)
class MachineError:
    """An error the firmware itself reports (Braiins REST errors, LuxOS events)."""

    category: ErrorCategory
    message: str
    code: str | None = None
    board: int | None = None
    sensor: str | None = None  # "hb2.4" for a sensor error
    at: str | None = None  # the firmware's timestamp text, unparsed


@dataclass(frozen=True, slots=True)
class MachineSnapshot:
    """Everything known about one machine from one poll (or one reply)."""

    backend: str
    model: str | None = None
    firmware: str | None = None
    api_version: str | None = None
    state: MinerState | None = None
    uptime_s: int | None = None
    hashrate: Hashrates = field(default_factory=Hashrates)
    boards: tuple[Hashboard, ...] = ()
    boards_expected: int | None = None
    fans: tuple[Fan, ...] = ()
    fans_expected: int | None = None
    chip_temps_c: tuple[float, ...] = ()  # machine-level readings (when not per board)
    board_temps_c: tuple[float, ...] = ()
    power_w: float | None = None
    power_source: PowerSource | None = None
    pools: tuple[Pool, ...] = ()
    errors: tuple[MachineError, ...] = ()
    bad_sensors: tuple[str, ...] = ()
    hardware_errors: int | None = None
    repairs: tuple[str, ...] = ()  # the JSON repairs the replies needed (see sources.repair)

    @property
    def live_pool(self) -> Pool | None:
        """The pool the machine mines on now, if any is active."""
        return next((p for p in self.pools if p.active), None)

    @property
    def present_boards(self) -> tuple[Hashboard, ...]:
        """The boards the firmware sees."""
        return tuple(b for b in self.boards if b.present)

    @property
    def chip_temp_max_c(self) -> float | None:
        """The hottest chip reading, per board or machine-level."""
        temps = [t for b in self.boards for t in b.chip_temps_c] + list(self.chip_temps_c)
        return max(temps) if temps else None

    @property
    def board_temp_max_c(self) -> float | None:
        """The hottest board (PCB) reading."""
        temps = [t for b in self.boards for t in b.board_temps_c] + list(self.board_temps_c)
        return max(temps) if temps else None


def _empty(value: object) -> bool:
    return value is None or value == () or value == Hashrates()


def _merge_hashrates(first: Hashrates, second: Hashrates) -> Hashrates:
    values = {
        f.name: getattr(first, f.name)
        if getattr(first, f.name) is not None
        else getattr(second, f.name)
        for f in fields(Hashrates)
    }
    return Hashrates(**values)


def merge(*snapshots: MachineSnapshot) -> MachineSnapshot:
    """Join the snapshots of several replies from one machine: for each field the first
    snapshot that has it wins (pass the most trusted reply first); repairs add up."""
    if not snapshots:
        raise ValueError("merge needs at least one snapshot")
    result = snapshots[0]
    for other in snapshots[1:]:
        changes: dict[str, object] = {}
        for f in fields(MachineSnapshot):
            mine, theirs = getattr(result, f.name), getattr(other, f.name)
            if f.name == "hashrate":
                changes[f.name] = _merge_hashrates(mine, theirs)
            elif f.name == "repairs":
                changes[f.name] = mine + tuple(r for r in theirs if r not in mine)
            elif _empty(mine) and not _empty(theirs):
                changes[f.name] = theirs
        result = replace(result, **changes)  # type: ignore[arg-type]
    return result
