"""The fleet's store as the bill run's `PowerSource` (the wiring `hosting` asks `cli` for).

The fleet poller keeps each machine's polls for a day and rolls them up into 5-minute buckets
(kept 30 days) and hourly ones (kept a year): `fleet/store.py`. A bill run reads one
resolution's buckets. Each bucket becomes one sample at the bucket's start: its mean power
rounded to whole watts, *running* when the machine hashed in the bucket (mean live hashrate
above zero), *down* otherwise. A bucket in which no poll answered, or without a power
figure, is left out: no data, which billing counts as down. The fleet does not know about
curtailment (the farm's own switching-off), so a machine switched off on purpose shows as
down here; a curtailment schedule is future work.
"""

from __future__ import annotations

from typing import Any

from hashfarm.hosting.power import SampleSeries, State

RESOLUTIONS = (300, 3600)  # the fleet store's rollup buckets, seconds


class FleetPowerSource:
    """`hosting.power.PowerSource` over `fleet.store.FleetSql`'s rollups."""

    def __init__(self, fleet: Any, resolution: int) -> None:
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}")
        self._fleet = fleet
        self.resolution = resolution

    def samples(self, machine_id: str, start: int, end: int) -> SampleSeries:
        """The buckets starting in [start - resolution, end): the one before `start` says
        what the machine was doing when the window opened."""
        rows = self._fleet.history(machine_id, start - self.resolution, self.resolution)
        out: list[tuple[int, int, State]] = []
        for r in rows:
            bucket = int(r["bucket"])
            if bucket >= end or not r["ok_n"] or r["power_w_avg"] is None:
                continue
            hashing = (r["live_hs_avg"] or 0) > 0
            out.append(
                (bucket, max(round(r["power_w_avg"]), 0), State.RUNNING if hashing else State.DOWN)
            )
        return SampleSeries.of(out)
