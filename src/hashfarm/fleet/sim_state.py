"""What a simulated machine is (its profile), what it is doing now (its state and faults),
and which faults the fleet's own parsers must then raise. Pure: no sockets, no clock reads.

A `Profile` is one firmware personality with the hardware facts of the model it imitates
(board slots as that firmware numbers them, chips, fans, nominal hashrate). `MachineState`
holds a machine's injected faults and, once per reply, turns them plus the hashing figures
(`Hashing`, from the real miner or from the nominal rate) into a `Reading`: the numbers every
reply of the machine is rendered from (`sim_replies.render`), and that tests compare the
parsed snapshot against.

Hashrates are quantised to 10 MH/s (0.01 GH/s) so every firmware's text form (`GHS` with 2
decimals, `MHS`, AxeOS GH/s) holds them exactly and a parsed value equals the state's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from hashfarm.fleet.errors import FleetError, MachineUnreachable, ReplyError
from hashfarm.fleet.faults import FaultKind

__all__ = [
    "PROFILES",
    "QUANTUM_HS",
    "BoardReading",
    "Hashing",
    "MachineState",
    "PoolReading",
    "Profile",
    "Reading",
    "SimFault",
    "quantise",
]

QUANTUM_HS = 10**7  # 0.01 GH/s: the finest step every firmware's number format can carry
HOT_CHIP_C = 100.0  # OVERHEAT: every chip of every board (faults' default limit is 95 °C)
HOT_BOARD_C = 92.0  # OVERHEAT: PCB sensors (limit 90 °C)


def quantise(hs: float) -> int:
    """`hs` rounded to the nearest 10 MH/s step (never negative). Nearest, not down: a miner
    exactly on 80 % of nominal must not read 79.99 % (the low-hashrate limit is 80 %)."""
    return max(0, round(hs / QUANTUM_HS) * QUANTUM_HS)


class SimFault(StrEnum):
    """The faults a test or a `--faults` script can inject into one machine."""

    BOARD_DROP = "board_drop"  # a hashboard disappears (chips not found, slot empty)
    FAN_STOP = "fan_stop"  # one fan reads 0 rpm
    OVERHEAT = "overheat"  # chips at 100 °C, PCBs at 92 °C
    POOL_DOWN = "pool_down"  # the pool goes away: reported Dead, no work, hashing stops
    API_HANG = "api_hang"  # the API accepts and reads, then never answers
    API_GARBAGE = "api_garbage"  # the API answers bytes that are not JSON


API_FAULTS = frozenset({SimFault.API_HANG, SimFault.API_GARBAGE})


@dataclass(frozen=True, slots=True)
class Profile:
    """One firmware personality and the hardware of the model it plays."""

    name: str  # what --models takes: "antminer-s19pro"
    backend: str  # key of fleet.sources.BACKENDS
    model: str  # fleet.hardware / catalog name; a poller passes it to read() as the hint
    firmware: str
    transport: str  # "cgminer-rpc" (TCP 4028) or "http"
    commands: tuple[str, ...]  # what a poller sends: cgminer commands or HTTP paths
    board_slots: tuple[int, ...]  # the firmware's slot number of each board
    slot_count: int  # chain slots the firmware lists (X19: 4, S9: 16)
    chips_per_board: int
    fan_slots: tuple[int, ...]  # the fans the model has, by the firmware's slot number
    fan_rpm: int
    nominal_hs: int  # the whole machine, H/s
    chip_temp_c: float  # healthy hottest chip
    board_temp_c: float  # healthy PCB
    power_w: float | None  # reported power at nominal (None: the firmware reports none)


_TH, _GH = 10**12, 10**9
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        # antminer-s19pro-bmminer-*.json: chains 1-3 of 4, 114 chips, 4 fans, X19 dash temps
        Profile("antminer-s19pro", "bmminer", "Antminer S19 Pro", "49.0.1.3", "cgminer-rpc",
                ("stats", "summary", "pools", "version"), (1, 2, 3), 4, 114, (1, 2, 3, 4),
                5880, 110 * _TH, 71.0, 64.0, None),
        # antminer-s9-*-stats.raw: chains 6-8 of 16, 63 chips, fans 5-6, `}{` between objects
        Profile("antminer-s9", "bmminer", "Antminer S9", "30.0.1.3", "cgminer-rpc",
                ("stats", "summary", "pools", "version"), (6, 7, 8), 16, 63, (5, 6),
                4920, 13_500 * _GH, 72.0, 57.0, None),
        # luxos-s19kpro-*.json: chains 1-3 of 4 (empty slot rate "0"), 77 chips, 4 fans
        Profile("luxos-s19kpro", "luxos", "Antminer S19k Pro", "2025.4.8.220305",
                "cgminer-rpc", ("stats", "summary", "pools", "version", "events"), (1, 2, 3),
                4, 77, (1, 2, 3, 4), 2340, 120 * _TH, 62.0, 52.0, None),
        # whatsminer-*: boards 0-2 in devs, 105 chips, intake/exhaust fans, power in W
        Profile("whatsminer-m20s", "btminer", "Whatsminer M20S", "20200917.22.REL",
                "cgminer-rpc", ("summary", "devs", "pools", "get_version"), (0, 1, 2), 3, 105,
                (0, 1), 4950, 68 * _TH, 84.0, 72.0, 3360.0),
        # avalon-1246-cgminer-stats.json: the MM ID0 blob, 3 boards, Fan1-Fan4
        Profile("avalon-1246", "avalon", "AvalonMiner 1246", "1246-83-21072802_4ec6bb0_211fc46",
                "cgminer-rpc", ("summary+pools+stats",), (0, 1, 2), 3, 120, (1, 2, 3, 4),
                5344, 90 * _TH, 77.0, 65.0, 3420.0),
        # antminer-s9-braiins-os-plus-*.json: temps IDs 6-8, 4 fan slots of which 2 spin
        Profile("bosminer-s9", "bosminer", "Antminer S9", "BOSminer+ 0.2.0-36c56a9363",
                "cgminer-rpc", ("summary", "temps", "fans", "pools", "version"), (6, 7, 8), 16,
                63, (0, 1), 3780, 13_500 * _GH, 0.0, 70.0, None),
        # bitaxe-supra-axeos-system-info.json: one BM1368, one fan, HTTP /api/system/info
        Profile("bitaxe-supra", "axeos", "Bitaxe Supra (BM1368)", "v2.4.5", "http",
                ("/api/system/info",), (0,), 1, 1, (0,), 3517, 600 * _GH, 55.0, 0.0, 12.5),
    )
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Hashing:
    """What the machine really did, already scaled to its reported size (H/s)."""

    five_sec_hs: float
    one_min_hs: float
    fifteen_min_hs: float
    average_hs: float
    accepted: int
    rejected: int
    connected: bool


@dataclass(frozen=True, slots=True)
class BoardReading:
    """One board as every reply shows it."""

    slot: int
    present: bool
    rate_hs: int  # the short window (5 s)
    average_hs: int
    chips: int  # chips found (0: the board is gone)
    chip_temps_c: tuple[float, ...]  # 4 sensors, like X19's dash strings
    board_temps_c: tuple[float, ...]
    hardware_errors: int


@dataclass(frozen=True, slots=True)
class PoolReading:
    """The machine's one configured pool."""

    url: str
    user: str
    alive: bool
    accepted: int
    rejected: int


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything one reply is rendered from."""

    profile: Profile
    when: int  # unix seconds (cgminer's STATUS When)
    uptime_s: int
    five_sec_hs: int
    one_min_hs: int
    fifteen_min_hs: int
    average_hs: int
    nominal_hs: int
    boards: tuple[BoardReading, ...]  # every slot the firmware lists for the model's boards
    fans: tuple[tuple[int, int], ...]  # (slot, rpm) of the model's fans
    pool: PoolReading
    power_w: float | None
    hardware_errors: int

    @property
    def present_boards(self) -> tuple[BoardReading, ...]:
        """The boards the firmware sees."""
        return tuple(b for b in self.boards if b.present)


@dataclass
class MachineState:
    """One machine's configuration and injected faults; `reading()` is what it shows now."""

    profile: Profile
    index: int
    pool_url: str = "stratum+tcp://127.0.0.1:3333"
    pool_user: str = "hashfarm.sim"
    faults: dict[SimFault, int | None] = field(default_factory=dict)  # fault -> slot

    def inject(self, fault: SimFault, slot: int | None = None) -> None:
        """Start `fault` (slot: which board or fan; None: the first)."""
        fault = SimFault(fault)
        if fault is SimFault.BOARD_DROP:
            slots = self.profile.board_slots
            if len(slots) < 2:
                raise ValueError(f"{self.profile.name} has one board: it cannot drop one")
            slot = slots[0] if slot is None else slot
            if slot not in slots:
                raise ValueError(f"{self.profile.name} has no board in slot {slot}: {slots}")
        elif fault is SimFault.FAN_STOP:
            slot = self.profile.fan_slots[0] if slot is None else slot
            if slot not in self.profile.fan_slots:
                raise ValueError(f"{self.profile.name} has no fan {slot}: {self.profile.fan_slots}")
        self.faults[fault] = slot

    def clear(self, fault: SimFault | None = None) -> None:
        """End `fault`, or every fault."""
        if fault is None:
            self.faults.clear()
        else:
            self.faults.pop(SimFault(fault), None)

    @property
    def hashing_fraction(self) -> float:
        """The share of the machine's full rate it can make now (dropped board, no pool)."""
        if SimFault.POOL_DOWN in self.faults:
            return 0.0
        boards = len(self.profile.board_slots)
        return (boards - (SimFault.BOARD_DROP in self.faults)) / boards

    def nominal_hashing(self, uptime_s: int) -> Hashing:
        """Hashing when nothing really mines (--no-mining): the nominal rate less a small
        fixed per-machine spread (0-3 %), one synthetic accepted share per 30 s of uptime."""
        full = self.profile.nominal_hs * (1 - (self.index % 4) / 100)
        now = full * self.hashing_fraction
        return Hashing(
            now, now, now, full, uptime_s // 30, 0, SimFault.POOL_DOWN not in self.faults
        )

    def reading(self, hashing: Hashing, uptime_s: int, when: int) -> Reading:
        """The numbers this machine's replies show now."""
        p, faults = self.profile, self.faults
        dropped = faults.get(SimFault.BOARD_DROP)  # inject() always names the slot
        present = [s for s in p.board_slots if s != dropped]
        hot = SimFault.OVERHEAT in faults
        boards = []
        for i, slot in enumerate(p.board_slots):
            if slot == dropped:
                boards.append(BoardReading(slot, False, 0, 0, 0, (), (), 0))
                continue
            chip = HOT_CHIP_C if hot else p.chip_temp_c - i
            pcb = HOT_BOARD_C if hot else p.board_temp_c - i
            boards.append(
                BoardReading(
                    slot=slot,
                    present=True,
                    rate_hs=quantise(hashing.five_sec_hs / len(present)),
                    average_hs=quantise(hashing.average_hs / len(p.board_slots)),
                    chips=p.chips_per_board,
                    chip_temps_c=(chip, chip - 20, chip - 2, chip - 1),
                    board_temps_c=(pcb, pcb - 20, pcb - 2, pcb - 1),
                    hardware_errors=uptime_s // 3600,
                )
            )
        stopped = faults.get(SimFault.FAN_STOP)
        fans = tuple(
            (s, 0 if s == stopped else p.fan_rpm + 60 * i) for i, s in enumerate(p.fan_slots)
        )
        five = sum(b.rate_hs for b in boards)
        power = None if p.power_w is None else round(p.power_w * five / p.nominal_hs, 1)
        alive = SimFault.POOL_DOWN not in faults and hashing.connected
        return Reading(
            profile=p,
            when=when,
            uptime_s=uptime_s,
            five_sec_hs=five,
            one_min_hs=quantise(hashing.one_min_hs),
            fifteen_min_hs=quantise(hashing.fifteen_min_hs),
            average_hs=quantise(hashing.average_hs),
            nominal_hs=quantise(p.nominal_hs),
            boards=tuple(boards),
            fans=fans,
            pool=PoolReading(
                self.pool_url, self.pool_user, alive, hashing.accepted, hashing.rejected
            ),
            power_w=power,
            hardware_errors=sum(b.hardware_errors for b in boards),
        )

    def expected_error(self) -> type[FleetError] | None:
        """What a poller must get instead of a snapshot while an API fault is on."""
        if SimFault.API_HANG in self.faults:
            return MachineUnreachable
        if SimFault.API_GARBAGE in self.faults:
            return ReplyError
        return None

    def expected_faults(self) -> frozenset[FaultKind]:
        """The kinds `faults.derive_faults` raises on this machine's replies now (after
        `hardware.enrich`, past the 900 s warm-up). Checked for every profile and fault by
        tests/unit/fleet/test_simulate_replies.py and, over sockets, test_simulate.py."""
        if self.expected_error() is not None:
            return frozenset()
        return frozenset(k for f in self.faults for k in _EXPECTED[f](self.profile.backend))


def _pool_down(backend: str) -> set[FaultKind]:
    kinds = {FaultKind.DEAD_POOL, FaultKind.NO_LIVE_POOL}
    if backend == "axeos":  # AxeOS reports no pool health: only its one board at 0 shows it
        return {FaultKind.DEAD_BOARD}
    if backend == "bmminer":  # every chain at 0: the stats parser says the machine stopped
        return kinds | {FaultKind.NOT_HASHING}
    if backend == "btminer":  # devs shows each board at 0 while the machine is "mining"
        return kinds | {FaultKind.LOW_HASHRATE, FaultKind.DEAD_BOARD}
    return kinds | {FaultKind.LOW_HASHRATE}


_EXPECTED: dict[SimFault, Callable[[str], set[FaultKind]]] = {
    SimFault.BOARD_DROP: lambda backend: {FaultKind.MISSING_BOARD, FaultKind.LOW_HASHRATE},
    SimFault.FAN_STOP: lambda backend: {FaultKind.DEAD_FAN},
    SimFault.OVERHEAT: lambda backend: {FaultKind.OVERHEATING},
    SimFault.POOL_DOWN: _pool_down,
    SimFault.API_HANG: lambda backend: set(),
    SimFault.API_GARBAGE: lambda backend: set(),
}
