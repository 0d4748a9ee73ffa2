"""The fleet store on real SQLite files and a real PostgreSQL database: migrations, rounds
written from parsed captures, the latest state and history the API reads, the 5-minute and
hourly rollups (values checked by hand), retention, and alerts kept for the API."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace

import pytest

from fleet_replay import capture
from hashfarm.errors import ConfigError, LedgerError
from hashfarm.fleet.alerts import AlertEngine, AlertPolicy
from hashfarm.fleet.faults import Fault, FaultKind, derive_faults
from hashfarm.fleet.hardware import enrich
from hashfarm.fleet.model import MachineSnapshot
from hashfarm.fleet.poller import Machine, Round, Sample
from hashfarm.fleet.scan import Found
from hashfarm.fleet.sources import BACKENDS, read
from hashfarm.fleet.store import LATEST_VERSION, FleetSql, Retention, connect, open_fleet_store

BASE = 1_700_002_800.0  # an hour boundary (472,223 h since the epoch)
S19 = Machine("10.0.0.7", 4028, "bmminer", "Antminer S19 Pro")
AXE = Machine("10.0.0.8", 80, "axeos")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    return request.getfixturevalue("fresh_pg_url")


@pytest.fixture
def sql(url: str) -> Iterator[FleetSql]:
    store = connect(url)
    yield store
    store.close()


def s19_snapshot() -> MachineSnapshot:
    replies = {
        c: capture(f"antminer-s19pro-bmminer-{c}.json") for c in ("stats", "summary", "pools")
    }
    return enrich(read(BACKENDS["bmminer"], replies))


def sample(machine: Machine, at: float, live_hs: int | None = None, error: str | None = None
           ) -> Sample:  # fmt: skip
    if error is not None:
        return Sample(machine, at, 5.0, error=error)
    snap = s19_snapshot()
    if live_hs is not None:
        snap = replace(snap, hashrate=replace(snap.hashrate, five_sec_hs=live_hs))
    return Sample(machine, at, 0.012, snap, derive_faults(snap))


def test_migrations_once_and_refuse_a_newer_database(url: str) -> None:
    first = connect(url)
    assert first.q("SELECT version FROM fleet_schema_version") == [(LATEST_VERSION,)]
    first.q("INSERT INTO fleet_schema_version VALUES (99, 'future', 0)")
    first.close()
    with pytest.raises(LedgerError, match="fleet schema version 99 is newer"):
        connect(url)
    with pytest.raises(ConfigError, match="sqlite:///PATH or postgresql"):
        connect("mysql://x")


def test_round_written_and_read_back(sql: FleetSql) -> None:
    down = "unreachable: 10.0.0.8:80: no complete poll within 5 s"
    sql.write_round(Round(BASE, 0.1, (sample(S19, BASE), sample(AXE, BASE, error=down))))
    sql.write_round(Round(BASE + 30, 0.1, (sample(S19, BASE + 30, 50_000_000_000_000),)))
    machines = {m["id"]: m for m in sql.machines()}
    assert sorted(machines) == ["10.0.0.7:4028", "10.0.0.8:80"]
    s19 = machines["10.0.0.7:4028"]
    assert (s19["model"], s19["firmware"], s19["backend"]) == ("Antminer S19 Pro", "49.0.1.3",
                                                               "bmminer")  # fmt: skip
    assert s19["live_hs"] == 50_000_000_000_000  # the latest round
    assert s19["nominal_hs"] == 110_000_000_000_000  # catalog, from enrich
    assert (s19["boards_present"], s19["boards_expected"], s19["pools_alive"]) == (3, 3, 3)
    assert s19["fan_min_rpm"] == 5040
    assert s19["chip_temp_max_c"] == 78  # temp_chip1 "78-50-69-70"
    assert s19["faults"] == "low_hashrate"  # 50 of 110 TH/s, past the warm-up
    assert (s19["first_seen"], s19["last_at"], s19["last_ok_at"]) == (BASE, BASE + 30, BASE + 30)
    axe = machines["10.0.0.8:80"]
    assert axe["error"] == down
    assert axe["last_ok_at"] is None
    doc = sql.machine("10.0.0.7:4028")
    assert doc is not None
    assert [b["slot"] for b in doc["boards"]] == [1, 2, 3, 4]
    assert doc["boards"][3]["present"] == 0  # slot 4 of the X19 is empty
    assert doc["boards"][0]["chips_working"] == 114
    assert sql.machine("10.9.9.9:4028") is None
    history = sql.history("10.0.0.7:4028", BASE, 0)
    assert [h["faults"] for h in history] == ["", "low_hashrate"]
    assert [(h["at"], h["live_hs"]) for h in history] == [
        (BASE, 110_566_890_000_000), (BASE + 30, 50_000_000_000_000)]  # fmt: skip
    assert len(sql.boards()) == 4


def count(sql: FleetSql, table: str, where: str = "1 = 1") -> int:
    return int(sql.q(f"SELECT COUNT(*) FROM {table} WHERE {where}")[0][0])


def test_rollups_by_hand_and_retention(sql: FleetSql) -> None:
    th = 1_000_000_000_000
    # 0-5 min: 10 polls at 100..190 TH/s; 5-10 min: 5 polls at 300 TH/s, one failed poll
    for i in range(10):
        sql.write_round(
            Round(BASE + 30 * i, 0.1, (sample(S19, BASE + 30 * i, (100 + 10 * i) * th),))
        )
    for i in range(5):
        at = BASE + 300 + 30 * i
        sql.write_round(Round(at, 0.1, (sample(S19, at, 300 * th),)))
    sql.write_round(Round(BASE + 450, 0.1, (sample(S19, BASE + 450, error="unreachable: x"),)))
    retention = Retention()
    sql.maintain(BASE + 599, retention)  # the second bucket has not ended yet
    rows = sql.history("10.0.0.7:4028", 0, 300)
    assert [(r["bucket"], r["n"], r["ok_n"]) for r in rows] == [(BASE, 10, 10)]
    assert (rows[0]["live_hs_avg"], rows[0]["live_hs_min"], rows[0]["live_hs_max"]) == (
        145 * th, 100 * th, 190 * th)  # fmt: skip
    sql.maintain(BASE + 3600, retention)
    sql.maintain(BASE + 3600, retention)  # idempotent
    rows = sql.history("10.0.0.7:4028", 0, 300)
    assert [(r["bucket"], r["n"], r["ok_n"], r["live_hs_avg"]) for r in rows] == [
        (BASE, 10, 10, 145 * th), (BASE + 300, 6, 5, 300 * th)]  # fmt: skip
    [hour] = sql.history("10.0.0.7:4028", 0, 3600)
    # weighted by the polls that had a reading: (10 x 145 + 5 x 300) / 15
    assert (hour["n"], hour["ok_n"]) == (16, 15)
    assert hour["live_hs_avg"] == pytest.approx((10 * 145 + 5 * 300) / 15 * th)
    assert (hour["live_hs_min"], hour["live_hs_max"]) == (100 * th, 300 * th)
    assert hour["chip_temp_max_c"] == 78
    assert count(sql, "fleet_board_rollups", "resolution = 3600") == 4
    assert count(sql, "fleet_samples") == 16
    sql.maintain(BASE + 86_400 + 600, retention)  # raw kept 24 h
    assert count(sql, "fleet_samples") == 0
    assert count(sql, "fleet_board_samples") == 0
    assert count(sql, "fleet_rollups") == 3
    sql.maintain(BASE + 31 * 86_400, retention)  # 5-min rollups kept 30 days
    assert count(sql, "fleet_rollups", "resolution = 300") == 0
    assert count(sql, "fleet_rollups", "resolution = 3600") == 1
    sql.maintain(BASE + 366 * 86_400, retention)  # hourly kept a year
    assert count(sql, "fleet_rollups") == 0
    assert count(sql, "fleet_board_rollups") == 0
    assert len(sql.machines()) == 1  # the latest state stays


def test_alerts_kept_for_the_api(sql: FleetSql) -> None:
    engine = AlertEngine(AlertPolicy(raise_after=1, clear_after=1))
    fan = Fault(FaultKind.DEAD_FAN, "3 of 4 fans spin")
    hot = Fault(FaultKind.OVERHEATING, "chip 97 °C", board=2)
    sql.record_alerts(engine.observe("10.0.0.7:4028", BASE, [fan, hot]))
    sql.record_alerts(engine.observe("10.0.0.8:80", BASE, error="bad_reply: stats: not JSON"))
    sql.record_alerts(engine.observe("10.0.0.7:4028", BASE + 30, [fan]))  # the heat clears
    active = sql.alerts(active_only=True, limit=100)
    assert [(a.machine_id, a.kind, a.board) for a in active] == [
        ("10.0.0.7:4028", "dead_fan", None), ("10.0.0.8:80", "bad_reply", None)]  # fmt: skip
    assert [a.kind for a in sql.alerts(active_only=False, limit=9, machine_id="10.0.0.8:80")] == [
        "bad_reply"]  # fmt: skip
    everything = sql.alerts(active_only=False, limit=100)
    assert [(a.kind, a.cleared_at) for a in everything][-1] == ("overheating", BASE + 30)
    assert sql.close_open_alerts(BASE + 60) == 2
    assert sql.alerts(active_only=True, limit=10) == []
    sql.maintain(BASE + 91 * 86_400, Retention())
    assert sql.alerts(active_only=False, limit=10) == []


async def test_async_store_is_a_poller_sink(tmp_path) -> None:
    store = await open_fleet_store(f"sqlite:///{tmp_path / 'f.db'}")
    await store(Round(BASE, 0.1, (sample(S19, BASE),)))
    rows = await store.call(lambda sql: sql.machines())
    assert rows[0]["id"] == "10.0.0.7:4028"
    (tmp_path / "f.db").chmod(0o444)
    await store.close()
    with pytest.raises(LedgerError):
        (await open_fleet_store(f"sqlite:///{tmp_path / 'nodir' / 'f.db'}"))
    assert sqlite3.sqlite_version_info >= (3, 24)  # ON CONFLICT ... DO UPDATE


def test_scanned_machines_become_the_inventory(sql: FleetSql) -> None:
    found = [Found("10.0.0.7", 4028, "bmminer", "Antminer S19 Pro", "49.0.1.3", "3.1"),
             Found("10.0.0.9", 4028, "btminer", None, "20210322.22.REL")]  # fmt: skip
    sql.register(found, BASE)
    assert sql.inventory() == [Machine("10.0.0.7", 4028, "bmminer", "Antminer S19 Pro"),
                               Machine("10.0.0.9", 4028, "btminer", None)]  # fmt: skip
    sql.write_round(Round(BASE + 30, 0.1, (sample(S19, BASE + 30),)))
    sql.register([replace(found[0], model=None)], BASE + 60)  # a rescan keeps what is known
    [doc] = [m for m in sql.machines() if m["id"] == "10.0.0.7:4028"]
    assert (doc["model"], doc["first_seen"], doc["last_at"]) == ("Antminer S19 Pro", BASE,
                                                                 BASE + 30)  # fmt: skip
    assert doc["live_hs"] == 110_566_890_000_000
