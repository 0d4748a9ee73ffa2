"""Accepted work stored: per UTC day, customer and machine, in SQLite.

The proxy adds each verdict to an in-memory batch on the event loop (a dict update, nothing
else); `WorkStore.run` writes the batch every `every` seconds in a worker thread
(`asyncio.to_thread`), one transaction, adding to the stored rows. Share forwarding never
waits on the disk. `export_work_csv` writes the `machine_id,day,work` CSV that
`hashfarm farm report --work` reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sqlite3
from decimal import Decimal
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MIGRATIONS = {
    1: """
    CREATE TABLE proxy_work (
        day TEXT NOT NULL,          -- UTC date, YYYY-MM-DD
        customer TEXT NOT NULL,
        machine TEXT NOT NULL,      -- the downstream user name, CUSTOMER.MACHINE
        work REAL NOT NULL,         -- sum of the upstream difficulty of accepted shares
        accepted INTEGER NOT NULL,
        rejected INTEGER NOT NULL,
        PRIMARY KEY (day, customer, machine)
    ) WITHOUT ROWID;
    """,
}

Key = tuple[str, str, str]  # day, customer, machine


def utc_day(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d")


class WorkStore:
    """The proxy's `proxy_work` table and its pending batch."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._migrate()
        self.pending: dict[Key, list[float]] = {}  # key -> [work, accepted, rejected]
        self.flushes = 0

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for v in range(version + 1, SCHEMA_VERSION + 1):
            self._db.execute("BEGIN")
            self._db.execute(MIGRATIONS[v])
            self._db.execute(f"PRAGMA user_version = {v}")
            self._db.execute("COMMIT")

    def add(self, day: str, customer: str, machine: str, work: float, accepted: bool) -> None:
        """One verdict (on the event loop: memory only)."""
        row = self.pending.get((day, customer, machine))
        if row is None:
            row = self.pending[(day, customer, machine)] = [0.0, 0, 0]
        if accepted:
            row[0] += work
            row[1] += 1
        else:
            row[2] += 1

    def take(self) -> dict[Key, list[float]]:
        batch, self.pending = self.pending, {}
        return batch

    def write(self, batch: dict[Key, list[float]]) -> None:
        """Add a batch to the stored rows, one transaction (blocking: call off the loop)."""
        if not batch:
            return
        rows = [(d, c, mch, w, int(a), int(r)) for (d, c, mch), (w, a, r) in batch.items()]
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT INTO proxy_work (day, customer, machine, work, accepted, rejected)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day, customer, machine) DO UPDATE SET"
                " work = work + excluded.work, accepted = accepted + excluded.accepted,"
                " rejected = rejected + excluded.rejected",
                rows,
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self.flushes += 1

    async def flush(self) -> None:
        """Write what is pending, in a worker thread."""
        batch = self.take()
        if batch:
            try:
                await asyncio.to_thread(self.write, batch)
            except sqlite3.Error:
                log.exception("proxy work store %s: write failed; kept for the next try", self.path)
                for key, (w, a, r) in batch.items():
                    row = self.pending.setdefault(key, [0.0, 0, 0])
                    row[0] += w
                    row[1] += a
                    row[2] += r

    async def run(self, every: float) -> None:
        """Flush every `every` seconds until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(every)
                await self.flush()
        finally:
            with contextlib.suppress(Exception):
                self.write(self.take())

    def rows(self) -> list[tuple[str, str, str, float, int, int]]:
        """Stored rows: (day, customer, machine, work, accepted, rejected), sorted."""
        cur = self._db.execute(
            "SELECT day, customer, machine, work, accepted, rejected FROM proxy_work"
            " ORDER BY day, customer, machine"
        )
        return [(d, c, mch, float(w), int(a), int(r)) for d, c, mch, w, a, r in cur]

    def close(self) -> None:
        self._db.close()


def work_csv(rows: list[tuple[str, str, str, float, int, int]]) -> str:
    """`machine_id,day,work` (what `farm report --work` reads); work as a plain decimal."""
    lines = ["machine_id,day,work"]
    for day, _customer, machine, work, _a, _r in rows:
        lines.append(f"{machine},{day},{format(Decimal(repr(work)), 'f')}")
    return "\n".join(lines) + "\n"
