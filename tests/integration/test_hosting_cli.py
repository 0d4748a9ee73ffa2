"""The hosting commands end to end, on a real SQLite file and on PostgreSQL: the month of
hosting_month.py set up through `hashfarm customer|contract|meter|bill`, a malformed meter
file refused by line with no bill changed, the invoice exported as CSV and PDF (its text read
back with pypdf), and the lifecycle: issue, a re-run that leaves the closed invoice alone,
pay, overdue, re-issue."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import hosting_month as sc
import pytest
from click.testing import CliRunner, Result
from pypdf import PdfReader

from hashfarm.cli.main import cli

Run = Callable[..., Result]


@pytest.fixture(params=["sqlite", "postgresql"])
def hf(request: pytest.FixtureRequest, tmp_path: Path) -> Run:
    if request.param == "sqlite":
        db = f"sqlite:///{tmp_path / 'hosting.sqlite3'}"
    else:
        db = request.getfixturevalue("fresh_pg_url")
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Result:
        result = runner.invoke(cli, [*args, "--db", db], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def _bill_run(hf: Run, files: dict[str, Path], ok: bool = True) -> Result:
    return hf("bill", "run", "--period", "2026-11", "--samples", str(files["samples"]),
              "--mined", str(files["mined"]), "--at", "2026-12-01T09:00:00Z", "--json",
              ok=ok)  # fmt: skip


def test_month_through_the_cli(hf: Run, tmp_path: Path) -> None:
    files = sc.cli_set_up(hf, tmp_path)
    first = json.loads(_bill_run(hf, files).output)
    assert first["written"] == ["alpha", "beta", "gamma"]
    listed = {r["number"]: r for r in json.loads(hf("bill", "list", "--json").output)}
    assert {n: (r["total"], r["sats"]) for n, r in listed.items()} == {
        "INV-2026-11-alpha-1": ("242.77", 0),  # figures worked out in test_hosting_month.py
        "INV-2026-11-beta-1": ("114.72", 0),
        "INV-2026-11-gamma-1": ("5.00", 55552),
    }
    shown = hf("bill", "show", "INV-2026-11-beta-1").output
    assert "m2,beta-me,metered" in shown
    assert "68.000 (3.05%)" in shown  # metered 2,300 vs calculated 2,232 kWh

    # a malformed meter file: every bad line named, nothing imported, no bill changed
    before = hf("bill", "show", "INV-2026-11-beta-1", "--json").output
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "machine_id,time,kwh\nm2,2026-12-02T00:00:00Z,7400\nm2,2026-12-03,abc\n"
        "m9,2026-12-03,1\nm2,2026-12-04,7000\nm2,2026-12-05\n"
    )
    refused = hf("meter", "import", str(bad), ok=False)
    assert refused.exit_code == 1
    for needle in ("line 3: kwh: 'abc' is not a decimal number", "line 6: 2 cell(s)"):
        assert needle in refused.output
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("machine_id,time,kwh\nm2,2026-12-02T00:00:00Z,7400\nm9,2026-12-03,1\n")
    assert "line 3: unknown machine 'm9'" in hf("meter", "import", str(unknown), ok=False).output
    backwards = tmp_path / "backwards.csv"
    backwards.write_text("machine_id,time,kwh\nm2,2026-12-02T00:00:00Z,7000\n")
    said = hf("meter", "import", str(backwards), ok=False).output
    assert "line 2: m2: register went backwards (7375.000 -> 7000.000)" in said
    assert json.loads(_bill_run(hf, files).output)["unchanged"] == ["alpha", "beta", "gamma"]
    assert hf("bill", "show", "INV-2026-11-beta-1", "--json").output == before

    # exports
    csv_path, pdf_path = tmp_path / "alpha.csv", tmp_path / "alpha.pdf"
    hf("bill", "export", "INV-2026-11-alpha-1", "--format", "csv", "-o", str(csv_path))
    assert "line,sla_credit,m1,SLA credit: uptime 93.24% < 95%" in csv_path.read_text()
    assert "total,242.77,0,500.00" in csv_path.read_text()
    hf("bill", "export", "INV-2026-11-alpha-1", "--format", "pdf", "-o", str(pdf_path))
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf_path.read_bytes())).pages)
    for needle in ("Invoice INV-2026-11-alpha-1", "Alpha Mining", "3250 W x 710.00 h",
                   "2307.500", "149.99", "-2.82", "45.50", "Total USD 242.77",
                   "Deposit held: USD 500.00", "93.24"):  # fmt: skip
        assert needle in text, text


def test_lifecycle_through_the_cli(hf: Run, tmp_path: Path) -> None:
    files = sc.cli_set_up(hf, tmp_path)
    _bill_run(hf, files)
    assert "cannot become paid" in hf("bill", "pay", "INV-2026-11-alpha-1", ok=False).output
    said = hf("bill", "issue", "--period", "2026-11", "--at", "2026-12-01T10:00:00Z").output
    assert "INV-2026-11-alpha-1: issued, due 2026-12-16" in said
    hf("bill", "pay", "INV-2026-11-beta-1", "--at", "2026-12-05")
    assert "cannot become issued" in hf("bill", "issue", "INV-2026-11-beta-1", ok=False).output
    overdue = hf("bill", "overdue", "--at", "2026-12-17").output
    assert overdue.split() == ["INV-2026-11-alpha-1:", "overdue", "INV-2026-11-gamma-1:", "overdue"]
    rerun = json.loads(_bill_run(hf, files).output)
    assert rerun["closed"] == ["alpha", "beta", "gamma"]
    assert rerun["written"] == []
    # re-issue beta's paid invoice: a credit note for all of it, the money kept on account
    note = hf("bill", "reissue", "beta", "--period", "2026-11", "--at", "2026-12-18").output
    assert "CN-2026-11-beta-1: credit note -114.72 for INV-2026-11-beta-1" in note
    third = json.loads(_bill_run(hf, files).output)
    assert third["written"] == ["beta"]
    states = {
        r["number"]: (r["state"], r["total"])
        for r in json.loads(hf("bill", "list", "--json").output)
    }
    assert states["INV-2026-11-beta-1"] == ("credited", "114.72")
    assert states["CN-2026-11-beta-1"] == ("issued", "-114.72")
    # revision 2: $214.72 due, the $100 prepayment and the $114.72 refund cover it all
    assert states["INV-2026-11-beta-2"] == ("draft", "0.00")
    shown = hf("customer", "show", "beta", "--json").output
    assert json.loads(shown)["prepaid_available"] == "0.00"
