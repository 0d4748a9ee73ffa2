"""The proxy's work store: real SQLite files; batches add up; the export is what
`farm report --work` reads."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from hashfarm.cli.main import cli
from hashfarm.hosting.promise import parse_work_csv
from hashfarm.proxy.store import SCHEMA_VERSION, WorkStore, exact_decimal, utc_day, work_csv

VERDICTS = st.lists(
    st.tuples(
        st.sampled_from(["2026-11-30", "2026-12-01"]),
        st.sampled_from(["alice.m1", "alice.m2", "bob.m1"]),
        st.sampled_from([0.001, 0.5, 1.0, 2.0, 1024.0, 3e-05]),
        st.booleans(),
        st.booleans(),  # flush after this one
    ),
    max_size=40,
)


def test_exact_decimal() -> None:
    assert exact_decimal(Fraction(0)) == "0"
    assert exact_decimal(Fraction(5, 2)) == "2.5"
    assert exact_decimal(Fraction(-3, 8)) == "-0.375"
    assert Fraction(exact_decimal(Fraction(0.1) + Fraction(3e-05))) == Fraction(0.1) + Fraction(
        3e-05
    )
    with pytest.raises(ValueError, match="finite"):
        exact_decimal(Fraction(1, 3))


def test_utc_day() -> None:
    assert utc_day(1_764_547_200) == "2025-12-01"
    assert utc_day(1_764_547_200 - 1) == "2025-11-30"


def test_migration_once_and_reopen_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite3"
    store = WorkStore(path)
    store.add("2026-12-01", "alice", "alice.m1", 2.0, accepted=True)
    store.write(store.take())
    store.close()
    again = WorkStore(path)  # no second CREATE TABLE
    assert again.rows() == [("2026-12-01", "alice", "alice.m1", Fraction(2), 1, 0)]
    again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@settings(max_examples=30, deadline=None)
@given(VERDICTS)
def test_batches_add_up_to_the_verdicts_and_export_reads_back(
    verdicts: list[tuple[str, str, float, bool, bool]],
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = WorkStore(Path(d) / "w.sqlite3")
        work: dict[tuple[str, str], Fraction] = {}
        counts: dict[tuple[str, str], list[int]] = {}
        for day, machine, diff, ok, flush in verdicts:
            store.add(day, machine.split(".")[0], machine, diff if ok else 0.0, accepted=ok)
            key = (machine, day)
            work[key] = work.get(key, Fraction(0)) + Fraction(diff if ok else 0.0)
            c = counts.setdefault(key, [0, 0])
            c[0 if ok else 1] += 1
            if flush:
                store.write(store.take())
        store.write(store.take())
        rows = store.rows()
        store.close()
    assert {(r[2], r[0]): [r[4], r[5]] for r in rows} == counts
    for day, _customer, machine, w, _a, _r in rows:
        assert w == work[(machine, day)]  # exact, however the batches fell
    parsed = parse_work_csv(work_csv(rows))
    assert {(mid, utc_day(d)): v for (mid, d), v in parsed.items()} == {
        key: w for key, w in work.items()
    }


def test_flush_runs_in_a_thread_and_a_failed_write_keeps_the_batch(tmp_path: Path) -> None:
    store = WorkStore(tmp_path / "w.sqlite3")

    async def go() -> None:
        store.add("2026-12-01", "bob", "bob.m1", 1.5, accepted=True)
        store.add("2026-12-01", "bob", "bob.m1", 0.0, accepted=False)
        await store.flush()
        assert store.pending == {}
        store._db.execute("DROP TABLE proxy_work")  # the next write fails
        store.add("2026-12-01", "bob", "bob.m1", 1.0, accepted=True)
        await store.flush()
        assert store.pending == {("2026-12-01", "bob", "bob.m1"): (Fraction(1), 1, 0)}

    asyncio.run(go())
    store.close()


def test_export_work_command(tmp_path: Path) -> None:
    db = tmp_path / "w.sqlite3"
    store = WorkStore(db)
    store.add("2026-12-01", "alice", "alice.m1", 0.25, accepted=True)
    store.add("2026-12-01", "alice", "alice.m1", 3e-05, accepted=True)
    store.add("2026-12-02", "bob", "bob.m1", 0.0, accepted=False)
    store.write(store.take())
    store.close()
    out = tmp_path / "work.csv"
    res = CliRunner().invoke(
        cli, ["proxy", "export-work", "--stats-db", str(db), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.splitlines()[0] == "machine_id,day,work"
    assert "e-" not in text  # plain decimals
    parsed = parse_work_csv(text)
    alice = sum(v for (mid, _d), v in parsed.items() if mid == "alice.m1")
    assert alice == Fraction(0.25) + Fraction(3e-05)  # exact, not the float sum
    assert [v for (mid, _d), v in parsed.items() if mid == "bob.m1"] == [Fraction(0)]


def test_per_customer_options_are_checked() -> None:
    runner = CliRunner()
    no_template = runner.invoke(cli, ["proxy", "--upstream", "h:1", "--per-customer"])
    assert no_template.exit_code == 2
    assert "--upstream-user-template" in no_template.output
    bad = runner.invoke(
        cli, ["proxy", "--upstream", "h:1", "--per-customer", "--upstream-user-template", "x"]
    )
    assert bad.exit_code == 2
    assert "{customer}" in bad.output
    no_user = runner.invoke(cli, ["proxy", "--upstream", "h:1"])
    assert no_user.exit_code == 2
    assert "--user" in no_user.output


async def test_stop_during_a_write_loses_no_verdict(tmp_path: Path) -> None:
    """The proxy stops (its store task cancelled) while a batch is being written in a worker
    thread: the last batch waits for that write, both land. Before 2026-12-03 the last write
    ran beside it on the same connection, its BEGIN failed inside the other's transaction and
    its ROLLBACK undid it (silently): test_proxy_customers once stored 116 of 957 shares."""
    store = WorkStore(tmp_path / "w.sqlite3")
    for i in range(20_000):  # a big first batch: its write takes a while
        store.add("2026-12-01", "alice", f"alice.m{i}", 1.0, True)
    task = asyncio.create_task(store.run(0.001))
    for _ in range(1000):
        await asyncio.sleep(0.001)
        if not store.pending:  # taken: the write is under way in its thread
            break
    assert not store.pending
    store.add("2026-12-01", "bob", "bob.m1", 2.0, True)  # the last batch
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = store.rows()
    store.close()
    assert sum(r[4] for r in rows) == 20_001
    assert sum(r[3] for r in rows) == 20_002


async def test_a_busy_default_executor_delays_no_write_and_loses_none(tmp_path: Path) -> None:
    """The loop's shared thread pool is full (the pool beside the proxy, under load, uses it
    too): the store writes on its own thread, so a stop right after a batch was taken still
    stores it. Before 2026-12-03 the write queued there, the stop cancelled it before it ran,
    and the batch was gone (test_proxy_customers under load: 0 of 589 shares stored)."""
    loop = asyncio.get_running_loop()
    busy = [loop.run_in_executor(None, time.sleep, 0.05) for _ in range(40)]
    store = WorkStore(tmp_path / "w.sqlite3")
    store.add("2026-12-01", "alice", "alice.m1", 1.0, True)
    task = asyncio.create_task(store.run(0.001))
    for _ in range(1000):
        await asyncio.sleep(0.001)
        if not store.pending:  # taken
            break
    assert not store.pending
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = store.rows()
    store.close()
    assert [(r[2], r[4]) for r in rows] == [("alice.m1", 1)]
    await asyncio.gather(*busy)
