"""Faults derived from a snapshot: a pure function, thresholds as parameters.

`derive_faults(snapshot)` names what is wrong with one machine now. It sees only the
snapshot (run `hardware.enrich` first so expected boards, fans and nominal hashrate are
known); the alerting layer adds time (hysteresis, repeats).

Rules, each stated where it is applied:
- a state the firmware reports (idle, stopped) is one fault, and silences what follows from
  it: an idle machine's fans stop on purpose, a stopped machine's hashrate is 0 by definition;
- hashrate faults wait `warmup_s` after start (machines ramp up: the Bitaxe capture at 4 s and
  the Avalon at 155 s read 0 while healthy);
- a missing reading is not a fault; a rejected reading (a sentinel) is BAD_SENSOR.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hashfarm.errors import ConfigError
from hashfarm.fleet.model import ErrorCategory, MachineSnapshot, MinerState

__all__ = ["Fault", "FaultKind", "FaultThresholds", "derive_faults"]


class FaultKind(StrEnum):
    """What is wrong, one value per operator action."""

    MISSING_BOARD = "missing_board"
    DEAD_BOARD = "dead_board"  # a board the firmware sees hashes nothing while others hash
    OVERHEATING = "overheating"
    DEAD_FAN = "dead_fan"
    DEAD_POOL = "dead_pool"  # a configured pool is dead
    NO_LIVE_POOL = "no_live_pool"  # pools are known and none is active: the machine earns nothing
    LOW_HASHRATE = "low_hashrate"
    BAD_SENSOR = "bad_sensor"
    IDLE = "idle"  # the firmware says it sleeps / is soft-off
    NOT_HASHING = "not_hashing"  # every board reports 0 and every chip 'x', reason unstated
    FIRMWARE_ERROR = "firmware_error"  # the firmware's own error log names a problem


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault; `board` is the firmware's slot when the fault is a board's."""

    kind: FaultKind
    detail: str
    board: int | None = None


@dataclass(frozen=True, slots=True)
class FaultThresholds:
    """The limits faults are judged against."""

    chip_temp_max_c: float = 95.0  # hottest chip; healthy captures reach 92.5 (Whatsminer)
    board_temp_max_c: float = 90.0  # hottest PCB sensor; the overheating S19 Pro reads 92
    fan_min_rpm: int = 300  # below this a fan counts as stopped (a sleeping S19 idles at 600)
    hashrate_min_ratio: float = 0.8  # live / nominal below this is LOW_HASHRATE
    warmup_s: int = 900  # no hashrate faults this soon after start

    def __post_init__(self) -> None:
        checks = {
            "chip_temp_max_c": 0 < self.chip_temp_max_c <= 150,
            "board_temp_max_c": 0 < self.board_temp_max_c <= 150,
            "fan_min_rpm": self.fan_min_rpm >= 0,
            "hashrate_min_ratio": 0 < self.hashrate_min_ratio <= 1.5,
            "warmup_s": self.warmup_s >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"fleet.faults.{name}: {getattr(self, name)!r} is out of range")


def _state_faults(snap: MachineSnapshot) -> list[Fault]:
    if snap.state is MinerState.IDLE:
        return [Fault(FaultKind.IDLE, "the firmware reports it is idle (sleep or soft-off)")]
    if snap.state is MinerState.STOPPED:
        return [Fault(FaultKind.NOT_HASHING, "every board reads 0 and no chip answers")]
    return []


def _empty_slots(snap: MachineSnapshot) -> list[int]:
    """Which empty slots should hold the missing boards. Firmwares list more slots than the
    machine has (X19: 4 for 3 boards; S9: 16 for 3 at 6-8), so take the run of
    `boards_expected` consecutive slots holding the most present boards, lowest first."""
    slots = sorted(b.slot for b in snap.boards)
    present = {b.slot for b in snap.present_boards}
    size = snap.boards_expected or 0
    if not present or size == 0:
        return [s for s in slots if s not in present]
    best = max(
        (slots[i : i + size] for i in range(max(1, len(slots) - size + 1))),
        key=lambda run: (len(present.intersection(run)), -run[0]),
    )
    return [s for s in best if s not in present]


def _dead_boards(snap: MachineSnapshot, t: FaultThresholds) -> list[Fault]:
    """A present board at 0 H/s (or with no chip answering) on a machine that hashes. Only
    boards with a short window or a chip map are judged: an Avalon board's average cannot
    say it stopped."""
    if snap.state in (MinerState.IDLE, MinerState.STOPPED) or (snap.uptime_s or 0) < t.warmup_s:
        return []
    return [
        Fault(FaultKind.DEAD_BOARD, f"board {b.slot} hashes nothing", b.slot)
        for b in snap.present_boards
        if b.hashrate.live_hs == 0 or b.chips_working == 0
    ]


def _board_faults(snap: MachineSnapshot) -> list[Fault]:
    present = len(snap.present_boards)
    if snap.boards_expected is None or not snap.boards or present >= snap.boards_expected:
        return []
    empty = _empty_slots(snap)
    where = f" (empty slots: {', '.join(map(str, empty))})" if empty else ""
    return [Fault(FaultKind.MISSING_BOARD, f"{present} of {snap.boards_expected} boards{where}")]


def _temperature_faults(snap: MachineSnapshot, t: FaultThresholds) -> list[Fault]:
    faults = []
    for board in snap.present_boards:
        hot_chip = max(board.chip_temps_c, default=None)
        hot_pcb = max(board.board_temps_c, default=None)
        if hot_chip is not None and hot_chip >= t.chip_temp_max_c:
            faults.append(Fault(FaultKind.OVERHEATING, f"chip {hot_chip:g} °C", board.slot))
        elif hot_pcb is not None and hot_pcb >= t.board_temp_max_c:
            faults.append(Fault(FaultKind.OVERHEATING, f"board {hot_pcb:g} °C", board.slot))
    chip = max(snap.chip_temps_c, default=None)
    if chip is not None and chip >= t.chip_temp_max_c:
        faults.append(Fault(FaultKind.OVERHEATING, f"chip {chip:g} °C"))
    return faults


def _fan_faults(snap: MachineSnapshot, t: FaultThresholds) -> list[Fault]:
    if snap.state is MinerState.IDLE or snap.fans_expected is None or not snap.fans:
        return []
    spinning = [f for f in snap.fans if f.rpm >= t.fan_min_rpm]
    if len(spinning) >= snap.fans_expected:
        return []
    slow = ", ".join(f"fan {f.slot} at {f.rpm} rpm" for f in snap.fans if f.rpm < t.fan_min_rpm)
    return [
        Fault(
            FaultKind.DEAD_FAN,
            f"{len(spinning)} of {snap.fans_expected} fans spin" + (f" ({slow})" if slow else ""),
        )
    ]


def _pool_faults(snap: MachineSnapshot) -> list[Fault]:
    faults = [
        Fault(FaultKind.DEAD_POOL, f"pool {p.index} {p.url} is {p.status}")
        for p in snap.pools
        if not p.alive
    ]
    if snap.pools and snap.live_pool is None:
        faults.append(Fault(FaultKind.NO_LIVE_POOL, "no pool is active"))
    return faults


def _hashrate_faults(snap: MachineSnapshot, t: FaultThresholds) -> list[Fault]:
    if snap.state in (MinerState.IDLE, MinerState.STOPPED):
        return []
    if snap.uptime_s is None or snap.uptime_s < t.warmup_s:
        return []  # unknown uptime counts as warming up: a guess must not page anyone
    live, nominal = snap.hashrate.live_hs, snap.hashrate.nominal_hs
    if live is None or not nominal:
        return []
    ratio = live / nominal
    if ratio >= t.hashrate_min_ratio:
        return []
    return [Fault(FaultKind.LOW_HASHRATE, f"{ratio:.0%} of nominal ({live:,} of {nominal:,} H/s)")]


def _sensor_and_error_faults(snap: MachineSnapshot) -> list[Fault]:
    faults = [Fault(FaultKind.BAD_SENSOR, s) for s in snap.bad_sensors]
    faults += [
        Fault(FaultKind.BAD_SENSOR, ", ".join(b.bad_sensors), b.slot)
        for b in snap.present_boards
        if b.bad_sensors
    ]
    seen: set[tuple[FaultKind, str, int | None]] = set()
    for error in snap.errors:  # a log repeats itself: one fault per (kind, what, board)
        if error.category is ErrorCategory.SENSOR:
            key = (FaultKind.BAD_SENSOR, f"sensor {error.sensor} reports errors", error.board)
        else:
            what = error.code or error.message
            key = (FaultKind.FIRMWARE_ERROR, f"{error.category}: {what}", error.board)
        if key not in seen:
            seen.add(key)
            faults.append(Fault(*key))
    return faults


def derive_faults(
    snapshot: MachineSnapshot, thresholds: FaultThresholds | None = None
) -> tuple[Fault, ...]:
    """Every fault the snapshot shows, in a stable order (state first)."""
    t = thresholds or FaultThresholds()
    return tuple(
        _state_faults(snapshot)
        + _board_faults(snapshot)
        + _dead_boards(snapshot, t)
        + _temperature_faults(snapshot, t)
        + _fan_faults(snapshot, t)
        + _pool_faults(snapshot)
        + _hashrate_faults(snapshot, t)
        + _sensor_and_error_faults(snapshot)
    )
