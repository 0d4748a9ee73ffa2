"""Prometheus text exposition (format 0.0.4) of the pool's statistics.

Written by hand rather than through a client library: the numbers already live in
`PoolStats`, so rendering them on scrape costs nothing while no share pays for a metric
update. Every reject reason is always exported (0 until it happens) so rate() works.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from hashfarm.api import health
from hashfarm.api.readmodel import ReadModel
from hashfarm.pool.bans import REASONS as BAN_REASONS
from hashfarm.pool.records import REJECT_REASONS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


Sample = tuple[str, float | int]  # (labels, value)
Family = tuple[str, str, str, Sequence[Sample]]  # (name, type, help, samples)


def render(model: ReadModel) -> str:
    """The whole /metrics page."""
    families = _pool_families(model) + _worker_families(model)
    text = "\n".join(line for family in families for line in _family(*family)) + "\n"
    return text + health.pool_metrics(model.pool)  # a front end's broker and spool


def _pool_families(model: ReadModel) -> list[Family]:
    snap = model.stats.pool()
    rejected = {reason: 0 for reason in REJECT_REASONS} | snap.shares_rejected
    families: list[Family] = [
        ("hashfarm_pool_hashrate_hps", "gauge", "Pool hashrate from accepted difficulty.",
         [(f'window="{w}"', h) for w, h in snap.hashrate.items()]),
        ("hashfarm_pool_connections", "gauge", "Open Stratum connections.",
         [("", len(model.pool.sessions()))]),
        ("hashfarm_pool_workers", "gauge", "Workers with a share in the last 24 h.",
         [("", snap.workers)]),
        ("hashfarm_pool_shares_accepted", "counter", "Accepted shares.",
         [("", snap.shares_accepted)]),
        ("hashfarm_pool_shares_rejected", "counter", "Rejected shares by reason.",
         [(f'reason="{_escape(r)}"', n) for r, n in sorted(rejected.items())]),
        ("hashfarm_pool_best_share_difficulty", "gauge", "Highest accepted share difficulty.",
         [("", snap.best_share)]),
        ("hashfarm_pool_blocks_found", "counter", "Blocks the node accepted.",
         [("", snap.blocks_found)]),
        ("hashfarm_pool_blocks_rejected", "counter", "Blocks the node refused.",
         [("", snap.blocks_rejected)]),
        ("hashfarm_pool_bans_active", "gauge", "Addresses banned now, by reason.",
         _bans_by_reason(model)),
    ]  # fmt: skip
    job = model.pool.current_job()
    if job is not None:
        families += [
            ("hashfarm_pool_job_height", "gauge", "Height of the current job.",
             [("", job.template.height)]),
            ("hashfarm_pool_network_difficulty", "gauge", "Network difficulty of the job.",
             [("", job.template.difficulty)]),
        ]  # fmt: skip
    return families


def _bans_by_reason(model: ReadModel) -> list[Sample]:
    """Every known reason (0 until used) and any other the ban list reports."""
    counts = dict.fromkeys(BAN_REASONS, 0)
    for ban in model.pool.bans.active(time.time()):
        counts[ban.reason] = counts.get(ban.reason, 0) + 1
    return [(f'reason="{_escape(r)}"', n) for r, n in sorted(counts.items())]


def _worker_families(model: ReadModel) -> list[Family]:
    workers = model.stats.workers()
    rates = [(f'worker="{_escape(w.name)}",window="{win}"', h)
             for w in workers for win, h in w.hashrate.items()]  # fmt: skip
    accepted = [(f'worker="{_escape(w.name)}"', w.shares_accepted) for w in workers]
    return [
        ("hashfarm_worker_hashrate_hps", "gauge", "Worker hashrate from accepted difficulty.",
         rates),
        ("hashfarm_worker_shares_accepted", "counter", "Accepted shares per worker.", accepted),
    ]  # fmt: skip


def _family(name: str, kind: str, help_text: str, samples: Sequence[Sample]) -> list[str]:
    """HELP, TYPE and one line per sample (counters get the `_total` suffix)."""
    full = f"{name}_total" if kind == "counter" else name
    out = [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
    for labels, value in samples:
        out.append(f"{full}{{{labels}}} {_number(value)}" if labels else f"{full} {_number(value)}")
    return out


def _number(value: float | int) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _escape(label: str) -> str:
    """A label value as the exposition format wants it (backslash, quote, newline escaped)."""
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_fleet(
    machines: Sequence[Mapping[str, Any]],
    boards: Sequence[Mapping[str, Any]],
    alerts: Sequence[Any],
) -> str:
    """The fleet's /metrics page: per machine and per board, from the fleet store's latest
    rows (`FleetSql.machines()`, `.boards()`) and the open alerts. A reading the machine
    does not report is left out, not exported as 0."""
    families = _fleet_machine_families(machines) + _fleet_board_families(boards)
    by_severity = {"critical": 0, "warning": 0, "info": 0}
    for alert in alerts:
        by_severity[str(alert.severity)] = by_severity.get(str(alert.severity), 0) + 1
    families.append(("hashfarm_fleet_alerts_active", "gauge", "Open fleet alerts by severity.",
                     [(f'severity="{s}"', n) for s, n in sorted(by_severity.items())]))  # fmt: skip
    return "\n".join(line for family in families for line in _family(*family)) + "\n"


_FLEET_MACHINE_GAUGES = (
    ("live_hs", "hashfarm_fleet_machine_hashrate_hps", "Shortest-window machine hashrate."),
    ("nominal_hs", "hashfarm_fleet_machine_nominal_hashrate_hps", "Nominal hashrate."),
    ("power_w", "hashfarm_fleet_machine_power_watts", "Power, reported or derived."),
    ("chip_temp_max_c", "hashfarm_fleet_machine_chip_temp_max_celsius", "Hottest chip."),
    ("board_temp_max_c", "hashfarm_fleet_machine_board_temp_max_celsius", "Hottest board (PCB)."),
    ("fan_min_rpm", "hashfarm_fleet_machine_fan_min_rpm", "Slowest fan."),
    ("boards_present", "hashfarm_fleet_machine_boards_present", "Hashboards the firmware sees."),
    ("boards_expected", "hashfarm_fleet_machine_boards_expected", "Hashboards the model has."),
    ("uptime_s", "hashfarm_fleet_machine_uptime_seconds", "Seconds since the miner started."),
    ("latency_s", "hashfarm_fleet_machine_poll_seconds", "How long the last poll took."),
    ("last_at", "hashfarm_fleet_machine_last_poll_timestamp_seconds", "When it was last polled."),
)  # fmt: skip
_FLEET_BOARD_GAUGES = (
    ("live_hs", "hashfarm_fleet_board_hashrate_hps", "Shortest-window board hashrate."),
    ("chip_temp_max_c", "hashfarm_fleet_board_chip_temp_max_celsius", "Hottest chip on the board."),
    ("board_temp_max_c", "hashfarm_fleet_board_temp_max_celsius", "Hottest PCB sensor."),
    ("chips_working", "hashfarm_fleet_board_chips_working", "Chips answering."),
    ("chips_expected", "hashfarm_fleet_board_chips_expected", "Chips the board has."),
)  # fmt: skip


def _fleet_machine_families(machines: Sequence[Mapping[str, Any]]) -> list[Family]:
    def label(m: Mapping[str, Any]) -> str:
        return f'machine="{_escape(str(m["id"]))}"'

    up = [(f'{label(m)},backend="{_escape(str(m["backend"]))}",'
           f'model="{_escape(str(m["model"] or ""))}"', 0 if m["error"] else 1)
          for m in machines]  # fmt: skip
    families: list[Family] = [
        ("hashfarm_fleet_machine_up", "gauge", "1 when the last poll got a readable reply.", up),
        ("hashfarm_fleet_machine_faults", "gauge", "Faults the last poll showed.",
         [(label(m), len([f for f in (m["faults"] or "").split(",") if f]))
          for m in machines if not m["error"]]),
    ]  # fmt: skip
    for column, name, help_text in _FLEET_MACHINE_GAUGES:
        samples = [(label(m), _plain(m[column])) for m in machines if m[column] is not None]
        families.append((name, "gauge", help_text, samples))
    return families


def _fleet_board_families(boards: Sequence[Mapping[str, Any]]) -> list[Family]:
    def label(b: Mapping[str, Any]) -> str:
        return f'machine="{_escape(str(b["machine_id"]))}",board="{int(b["slot"])}"'

    families: list[Family] = [
        ("hashfarm_fleet_board_present", "gauge", "1 when the firmware sees the board.",
         [(label(b), int(b["present"])) for b in boards]),
    ]  # fmt: skip
    for column, name, help_text in _FLEET_BOARD_GAUGES:
        samples = [(label(b), _plain(b[column])) for b in boards if b[column] is not None]
        families.append((name, "gauge", help_text, samples))
    return families


def _plain(value: Any) -> float | int:
    """A database number as the exposition writes it (integral floats without '.0')."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value if isinstance(value, int | float) else float(value)
