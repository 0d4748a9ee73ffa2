"""`bill run --fleet-db`: the fleet poller's store as the bill run's power source.

The month of hosting_month.py is written as the fleet store's hourly rollups (the rows its
`maintain` step writes from polls: one per machine-hour with the mean power and hashrate;
written here directly, hours without samples left out). Beta's and gamma's invoices come out
identical to the run from the samples CSV; alpha's differ exactly where the fleet cannot
know: the 10 curtailed hours show as down (no hashrate), so nameplate bills them. Given the
farm's curtailment windows (`--curtailment`), alpha's is identical too.
"""

from __future__ import annotations

import json
from pathlib import Path

import hosting_month as sc
from click.testing import CliRunner, Result

from hashfarm.cli.main import cli
from hashfarm.fleet.store import connect as fleet_connect
from hashfarm.hosting.power import State
from hashfarm.hosting.store import connect


def _fleet_db(path: Path) -> str:
    url = f"sqlite:///{path}"
    fleet = fleet_connect(url)
    rows = []
    for mid, s in sc.samples().items():
        for t, w, st in zip(s.times.tolist(), s.watts.tolist(), s.states.tolist(), strict=True):
            hs = 95e12 if st == State.RUNNING else 0.0
            rows.append((mid, 3600, float(t), 120, 120, hs, hs, hs, float(w), 70.0, 60.0, 4000))
    with fleet.tx():
        fleet.many(
            "INSERT INTO fleet_rollups (machine_id, resolution, bucket, n, ok_n, live_hs_avg, "
            "live_hs_min, live_hs_max, power_w_avg, chip_temp_max_c, board_temp_max_c, "
            "fan_min_rpm) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    fleet.close()
    return url


def test_bill_run_from_the_fleet_store(tmp_path: Path) -> None:
    runner = CliRunner()
    dbs = {k: f"sqlite:///{tmp_path / f'{k}.sqlite3'}" for k in ("csv", "fleet")}
    files: dict[str, Path] = {}
    fleet_url = _fleet_db(tmp_path / "fleet.sqlite3")
    for kind, db in dbs.items():

        def hf(*args: str, db: str = db) -> Result:
            result = runner.invoke(cli, [*args, "--db", db], catch_exceptions=False)
            assert result.exit_code == 0, result.output
            return result

        files = sc.cli_set_up(hf, tmp_path)
        source = (["--samples", str(files["samples"])] if kind == "csv"
                  else ["--fleet-db", fleet_url])  # fmt: skip
        done = runner.invoke(cli, ["bill", "run", "--period", "2026-11", *source, "--mined",
                                   str(files["mined"]), "--at", "2026-12-01T09:00:00Z",
                                   "--json", "--db", db])  # fmt: skip
        assert done.exit_code == 0, done.output
        assert json.loads(done.output)["written"] == ["alpha", "beta", "gamma"]
    stores = {k: connect(db) for k, db in dbs.items()}
    try:
        for cid in ("beta", "gamma"):
            a, b = (stores[k].latest(cid, "2026-11") for k in ("csv", "fleet"))
            assert a is not None
            assert b is not None
            assert a.document == b.document
        fleet_alpha = stores["fleet"].latest("alpha", "2026-11")
        assert fleet_alpha is not None
        u1 = next(u for u in fleet_alpha.invoice.usage if u.machine_id == "m1")
        assert (u1.curtailed_s, u1.down_s) == (0, 58 * 3600)
        # nameplate now bills all 720 h: 3.25 kW x 720 h = 2,340 kWh x $0.065 = $152.10
        assert u1.billed_kwh == 2340
        assert next(x.cents for x in fleet_alpha.invoice.lines if x.kind == "power") == 15210
        # the farm's curtailment schedule tells the fleet's silence from a breakdown
        off = tmp_path / "curtailment.csv"
        off.write_text("machine_id,start,end\nm1,2026-11-05T12:00:00Z,2026-11-05T22:00:00Z\n")
        again = runner.invoke(cli, ["bill", "run", "--period", "2026-11", "--fleet-db", fleet_url,
                                    "--mined", str(files["mined"]), "--curtailment", str(off),
                                    "--json", "--db", dbs["fleet"]])  # fmt: skip
        assert json.loads(again.output)["written"] == ["alpha"], again.output
        for cid in ("alpha", "beta", "gamma"):
            a, b = (stores[k].latest(cid, "2026-11") for k in ("csv", "fleet"))
            assert a is not None
            assert b is not None
            assert a.document == b.document
    finally:
        for s in stores.values():
            s.close()
