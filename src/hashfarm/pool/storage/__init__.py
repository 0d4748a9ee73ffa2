"""The share ledger: SQLite (WAL) by default, PostgreSQL by URL, one versioned schema.

`open_ledger(settings)` picks the backend from `storage.url`, applies pending migrations and
starts the group-commit writer; see docs/persistence.md for when a share is durable.
"""

from __future__ import annotations

from pathlib import Path

from hashfarm.errors import ConfigError, LedgerError, TransientLedgerError
from hashfarm.pool.config import redact_url
from hashfarm.pool.settings import StorageSettings
from hashfarm.pool.storage.base import GroupCommitLedger
from hashfarm.pool.storage.migrations import LATEST_VERSION, MIGRATIONS

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "GroupCommitLedger",
    "LedgerError",
    "TransientLedgerError",
    "open_ledger",
    "sqlite_path",
]

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///PATH` URL (relative to the working directory), else None."""
    return Path(url[len(_SQLITE_PREFIX) :]) if url.startswith(_SQLITE_PREFIX) else None


def make_ledger(settings: StorageSettings) -> GroupCommitLedger:
    """The ledger for `settings.url`, not yet started (ConfigError for an unknown scheme)."""
    batch_max, batch_wait, queue_max = settings.batch_max, settings.batch_wait, settings.queue_max
    path = sqlite_path(settings.url)
    if path is not None:
        from hashfarm.pool.storage.sqlite import SQLiteLedger

        if not path.name:
            raise ConfigError(f"invalid setting storage.url: {settings.url!r} names no file")
        return SQLiteLedger(
            path,
            synchronous=settings.sqlite_synchronous,
            writer=settings.sqlite_writer,
            batch_max=batch_max,
            batch_wait=batch_wait,
            queue_max=queue_max,
        )
    if settings.url.startswith(_POSTGRES_PREFIXES):
        from hashfarm.pool.storage.postgres import PostgresLedger

        return PostgresLedger(
            settings.url, batch_max=batch_max, batch_wait=batch_wait, queue_max=queue_max
        )
    raise ConfigError(
        f"invalid setting storage.url: {redact_url(settings.url)!r} "
        "(expected sqlite:///PATH or postgresql://...)"
    )


async def open_ledger(settings: StorageSettings) -> GroupCommitLedger:
    """Open the configured ledger, migrate it and start its writer."""
    ledger = make_ledger(settings)
    await ledger.start()
    return ledger
