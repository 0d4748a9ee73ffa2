"""Fixtures for the ledger tests: a throw-away PostgreSQL database per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import psycopg
import pytest


@pytest.fixture
async def fresh_pg_url(postgres_url: str) -> AsyncIterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    name = f"hashfarm_t_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(postgres_url)._replace(path=f"/{name}").geturl()
    yield url
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
