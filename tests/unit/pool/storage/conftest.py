"""Fixtures for the ledger tests: a throw-away PostgreSQL database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nodes import create_database, drop_database


@pytest.fixture
def fresh_pg_url(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the test server (`postgres_url` skips without one)."""
    url = create_database()
    yield url
    drop_database(url)
