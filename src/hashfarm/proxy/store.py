"""Accepted work stored: per UTC day, customer and machine, in SQLite.

The proxy adds each verdict to an in-memory batch on the event loop (a dict update, nothing
else); `WorkStore.run` writes the batch every `every` seconds in a worker thread
(`asyncio.to_thread`), one transaction, adding to the stored rows. Share forwarding never
waits on the disk. `export_work_csv` writes the `machine_id,day,work` CSV that
`hashfarm farm report --work` reads.

Work is kept exactly: a share difficulty is a float, i.e. a fraction with a power-of-two
denominator; sums are `Fraction`s and are stored as their exact decimal text, so the stored
total does not depend on how verdicts fell into batches and the export is to the last digit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MIGRATIONS = {
    1: """
    CREATE TABLE proxy_work (
        day TEXT NOT NULL,          -- UTC date, YYYY-MM-DD
        customer TEXT NOT NULL,
        machine TEXT NOT NULL,      -- the downstream user name, CUSTOMER.MACHINE
        work TEXT NOT NULL,         -- exact decimal: sum of accepted shares' difficulties
        accepted INTEGER NOT NULL,
        rejected INTEGER NOT NULL,
        PRIMARY KEY (day, customer, machine)
    ) WITHOUT ROWID;
    """,
}

Key = tuple[str, str, str]  # day, customer, machine
Row = tuple[str, str, str, Fraction, int, int]  # day, customer, machine, work, accepted, rejected


def exact_decimal(value: Fraction) -> str:
    """A fraction whose denominator is a power of two (sums of floats) as exact decimal text."""
    den = value.denominator
    k = den.bit_length() - 1
    if den != 1 << k:
        raise ValueError(f"{value} has no finite decimal expansion")
    digits = str(abs(value.numerator) * 5**k).rjust(k + 1, "0")
    sign = "-" if value < 0 else ""
    return sign + (f"{digits[:-k]}.{digits[-k:]}" if k else digits)


def utc_day(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d")


class Pending:
    """A batch's sums for one key."""

    __slots__ = ("accepted", "rejected", "work")

    def __init__(self) -> None:
        self.work = Fraction(0)
        self.accepted = 0
        self.rejected = 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Pending):
            other = (other.work, other.accepted, other.rejected)
        return (self.work, self.accepted, self.rejected) == other

    def __repr__(self) -> str:
        return f"Pending({self.work}, {self.accepted}, {self.rejected})"


class WorkStore:
    """The proxy's `proxy_work` table and its pending batch."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._migrate()
        self.pending: dict[Key, Pending] = {}
        self.flushes = 0
        # One writer at a time on the connection: a cancelled flush's thread still writes,
        # and the last write at stop must wait for it (not BEGIN inside its transaction).
        self._writing = threading.Lock()
        # The store's own thread: a write never queues behind the loop's other to_thread work
        # (a flush cancelled while queued in the shared executor was never run: lost).
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="proxy-work-store")

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
            row = self.pending[(day, customer, machine)] = Pending()
        if accepted:
            row.work += Fraction(work)
            row.accepted += 1
        else:
            row.rejected += 1

    def take(self) -> dict[Key, Pending]:
        batch, self.pending = self.pending, {}
        return batch

    def write(self, batch: dict[Key, Pending]) -> None:
        """Add a batch to the stored rows, one transaction (blocking: call off the loop)."""
        if not batch:
            return
        with self._writing:
            self._write(batch)

    def _write(self, batch: dict[Key, Pending]) -> None:
        self._db.execute("BEGIN")
        try:
            rows = []
            for (d, c, mch), p in batch.items():
                old = self._db.execute(
                    "SELECT work, accepted, rejected FROM proxy_work"
                    " WHERE day = ? AND customer = ? AND machine = ?",
                    (d, c, mch),
                ).fetchone()
                w, a, r = (Fraction(old[0]), old[1], old[2]) if old else (Fraction(0), 0, 0)
                rows.append((d, c, mch, exact_decimal(w + p.work), a + p.accepted, r + p.rejected))
            self._db.executemany(
                "INSERT OR REPLACE INTO proxy_work"
                " (day, customer, machine, work, accepted, rejected) VALUES (?, ?, ?, ?, ?, ?)",
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
            job = asyncio.wrap_future(self._thread.submit(self.write, batch))
            try:
                # Shielded: a stop during the write lets it finish (the last write follows it
                # on the same thread); cancelling it while queued would drop the batch.
                await asyncio.shield(job)
            except sqlite3.Error:
                log.exception("proxy work store %s: write failed; kept for the next try", self.path)
                for key, p in batch.items():
                    row = self.pending.setdefault(key, Pending())
                    row.work += p.work
                    row.accepted += p.accepted
                    row.rejected += p.rejected

    async def run(self, every: float) -> None:
        """Flush every `every` seconds until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(every)
                await self.flush()
        finally:
            # On the store's thread after any write still under way; waited for (at stop).
            try:
                self._thread.submit(self.write, self.take()).result()
            except sqlite3.Error:
                log.exception("proxy work store %s: the last write failed", self.path)

    def rows(self) -> list[Row]:
        """Stored rows: (day, customer, machine, work, accepted, rejected), sorted."""
        cur = self._db.execute(
            "SELECT day, customer, machine, work, accepted, rejected FROM proxy_work"
            " ORDER BY day, customer, machine"
        )
        return [(d, c, mch, Fraction(w), int(a), int(r)) for d, c, mch, w, a, r in cur]

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._db.close()


def work_csv(rows: list[Row]) -> str:
    """`machine_id,day,work` (what `farm report --work` reads); work as exact decimal text."""
    lines = ["machine_id,day,work"]
    for day, _customer, machine, work, _a, _r in rows:
        lines.append(f"{machine},{day},{exact_decimal(work)}")
    return "\n".join(lines) + "\n"
