"""The service fixtures themselves: PostgreSQL per session, skip-or-fail for missing services."""

from __future__ import annotations

import psycopg
import pytest

import nodes
from nodes import POSTGRES_URL, create_database, drop_database, postgres_problem

pytestmark = pytest.mark.services


def test_postgres_url_is_a_fresh_writable_database(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://")
    with psycopg.connect(postgres_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        assert name is not None
        assert name[0].startswith("hashfarm_test_")
        conn.execute("CREATE TABLE probe (id integer PRIMARY KEY)")
        conn.execute("INSERT INTO probe VALUES (1)")
        assert conn.execute("SELECT count(*) FROM probe").fetchone() == (1,)
        conn.rollback()  # leave the session database empty for the tests that own it


def test_databases_are_created_and_dropped() -> None:
    if problem := postgres_problem():
        nodes.service_missing(problem)
    url = create_database()
    name = url.rsplit("/", 1)[1]
    session = psycopg.connect(url, autocommit=True)  # an open session must not block the drop
    session.execute("SELECT 1")
    drop_database(url)
    session.close()
    with psycopg.connect(POSTGRES_URL) as conn:
        rows = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchall()
    assert rows == []


def test_unreachable_postgres_is_explained() -> None:
    problem = postgres_problem("postgresql://127.0.0.1:1/test")
    assert problem is not None
    assert "127.0.0.1:1" in problem


def test_missing_service_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodes, "REQUIRE_SERVICES", False)
    with pytest.raises(pytest.skip.Exception, match="no such service"):
        nodes.service_missing("no such service")


def test_missing_service_fails_when_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nodes, "REQUIRE_SERVICES", True)
    with pytest.raises(pytest.fail.Exception, match="HASHFARM_REQUIRE_SERVICES=1"):
        nodes.service_missing("no such service")
