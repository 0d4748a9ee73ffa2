"""How the miner reports: a Rich live table, quiet (problems only), or JSON lines.

`Reporter.event` is called for everything that happens (connected, new job, share
accepted/rejected and why, block found); `Reporter.run` refreshes the live table or prints
a periodic `stats` line. JSON lines carry `time` (unix seconds) and `event`, one object per
line, for log shippers; the live table shows hashrate per thread over 5 s and 1 min,
accepted/rejected with reasons, current difficulty, best share and pool latency.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, TextIO

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hashfarm.miner.settings import OutputMode
from hashfarm.miner.stats import LONG_WINDOW, SHORT_WINDOW, MinerStats
from hashfarm.units import format_hashrate

Level = Literal["info", "good", "warn", "error"]
RECENT_EVENTS = 8  # lines of the event log under the live table
LIVE_REFRESH = 1.0  # seconds between live table redraws
_STYLE = {"info": "dim", "good": "green", "warn": "yellow", "error": "bold red"}


class Reporter:
    """Turns miner events and stats into terminal output in one of three modes."""

    def __init__(
        self,
        stats: MinerStats,
        mode: OutputMode,
        *,
        stats_interval: float = 10.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats, self.mode, self.stats_interval = stats, mode, stats_interval
        self.stream = stream or sys.stdout
        self.clock = clock
        self.recent: deque[tuple[str, Level]] = deque(maxlen=RECENT_EVENTS)
        self._console = Console(file=self.stream, stderr=False)

    def event(self, kind: str, text: str, level: Level = "info", **fields: Any) -> None:
        """Report one happening; `fields` go into the JSON line."""
        if self.mode == "json":
            self._json_line({"event": kind, "message": text, "level": level, **fields})
        elif self.mode == "quiet":
            if level in ("warn", "error") or kind == "block":
                print(f"{time.strftime('%H:%M:%S')} {kind}: {text}", file=self.stream, flush=True)
        else:
            self.recent.append((f"{time.strftime('%H:%M:%S')} {text}", level))

    async def run(self) -> None:
        """Refresh the live table, or print stats lines, until cancelled."""
        if self.mode == "live":
            with Live(self.render(), console=self._console, refresh_per_second=4) as live:
                try:
                    while True:
                        await asyncio.sleep(LIVE_REFRESH)
                        live.update(self.render())
                finally:  # leave the final figures on screen
                    live.update(self.render(), refresh=True)
        while True:
            await asyncio.sleep(self.stats_interval)
            self.print_stats()

    def print_stats(self) -> None:
        """One stats line (JSON object, or a short text line in quiet mode)."""
        snap = self.stats.snapshot(self.clock())
        if self.mode == "json":
            self._json_line({"event": "stats", **snap})
        elif self.mode == "quiet":
            rate = format_hashrate(snap["hashrate_1m"])
            line = (
                f"{rate} acc {snap['accepted']} rej {snap['rejected']} "
                f"blocks {snap['blocks']} diff {snap['difficulty']:g}"
            )
            print(f"{time.strftime('%H:%M:%S')} stats: {line}", file=self.stream, flush=True)

    def render(self) -> Group:
        """The live view: a summary, a row per thread, and the latest events."""
        now, s = self.clock(), self.stats
        table = Table(title=f"hashfarm miner -> {s.pool or 'not connected'}", expand=False)
        for column in ("thread", "5 s", "1 min", "hashes"):
            table.add_column(column, justify="right")
        for i, meter in enumerate(s.meters):
            table.add_row(
                f"{s.backend}#{i}",
                format_hashrate(meter.rate(SHORT_WINDOW, now)),
                format_hashrate(meter.rate(LONG_WINDOW, now)),
                f"{meter.total:,}",
            )
        table.add_row(
            "total",
            format_hashrate(s.hashrate(SHORT_WINDOW, now)),
            format_hashrate(s.hashrate(LONG_WINDOW, now)),
            f"{sum(m.total for m in s.meters):,}",
            style="bold",
        )
        return Group(table, self._summary(), *(Text(t, style=_STYLE[lv]) for t, lv in self.recent))

    def _summary(self) -> Text:
        s = self.stats
        reasons = ", ".join(f"{r}: {n}" for r, n in s.rejected.most_common(3))
        latency = "-" if s.latency is None else f"{s.latency * 1000:.1f} ms"
        status = "connected" if s.connected else "disconnected"
        return Text(
            f"{status} | difficulty {s.difficulty:g} | accepted {s.accepted} | "
            f"rejected {sum(s.rejected.values())}{f' ({reasons})' if reasons else ''} | "
            f"stale dropped {s.stale_dropped} | hw errors {s.hardware_errors} | "
            f"best share {s.best_share:.4g} | blocks {s.blocks} | latency {latency}"
        )

    def _json_line(self, obj: dict[str, Any]) -> None:
        line = orjson.dumps(
            {"time": round(time.time(), 3), **obj}, option=orjson.OPT_APPEND_NEWLINE
        )
        self.stream.write(line.decode())
        self.stream.flush()
