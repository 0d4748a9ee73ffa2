"""`hashfarm farm serve` as a real process on an ephemeral loopback port over a real SQLite
hosting database: November of `test_farm_report.py` (two machines, a nameplate contract, a
real `bill run`), then the admin routes over HTTP: the invoices, and the farm report equal
to `hashfarm farm report --json` for the same inputs; no token is a 401; SIGTERM exits 0.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from hashfarm.cli.farm_serve import exposure_hint, parse_listen
from hashfarm.cli.main import cli
from integration.test_farm_report import _set_up

TOKEN = "farm-admin-token-0123456789abcdef"
CODE = "from hashfarm.cli.main import main; main()"


def _get(url: str, token: str | None = None, body: bytes | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, Path]]]:
    """The month set up by the CLI; (db URL, base URL of the running server, input files)."""
    db = f"sqlite:///{tmp_path / 'hosting.sqlite3'}"
    runner = CliRunner()

    def hf(*args: str) -> Result:
        result = runner.invoke(cli, [*args, "--db", db], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    files = _set_up(hf, tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    args = ["farm", "serve", "--listen", "127.0.0.1:0", "--db", db,
            "--admin-token-file", str(token_file), "--samples", str(files["samples"]),
            "--mined", str(files["mined"]), "--prices", str(files["prices"])]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", CODE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m is not None, line
        yield db, f"http://127.0.0.1:{m.group(1)}/api/admin/hosting", files
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "stopping" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_admin_routes_and_report(farm: tuple[str, str, dict[str, Path]]) -> None:
    db, base, files = farm
    status, body = _get(f"{base}/invoices?period=2026-11", TOKEN)
    assert status == 200
    assert [i["customer"] for i in body["invoices"]] == ["acme"]
    assert body["invoices"][0]["total_cents"] == 2 * 13_600  # two machines, 136.00 each
    assert body["invoices"][0]["state"] == "draft"

    # the server's bill run reads the same samples: November is already drafted, unchanged
    status, run = _get(f"{base}/bill-runs", TOKEN, b'{"period": "2026-11"}')
    assert (status, run["written"], run["unchanged"]) == (200, [], ["acme"])

    status, report = _get(f"{base}/report?as_of=2026-12-01", TOKEN)
    assert status == 200
    result = CliRunner().invoke(
        cli,
        ["farm", "report", "--as-of", "2026-12-01", "--mined", str(files["mined"]),
         "--prices", str(files["prices"]), "--json", "--db", db],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert report == json.loads(result.output)
    assert [m["machine_id"] for m in report["machines"]] == ["m1", "m2"]
    assert report["machines"][0]["position_cents"] == -9_350

    status, one = _get(f"{base}/report?as_of=2026-12-01&machine=m2", TOKEN)
    assert status == 200
    assert [m["machine_id"] for m in one["machines"]] == ["m2"]


def test_refusals(farm: tuple[str, str, dict[str, Path]]) -> None:
    _, base, _ = farm
    for path in ("/invoices", "/report?as_of=2026-12-01", "/customers"):
        status, body = _get(base + path)
        assert status == 401, (path, body)
        status, _ = _get(base + path, "wrong-token-wrong-token-wrong")
        assert status == 401
    status, body = _get(f"{base}/report", TOKEN)
    assert status == 400
    assert "as_of" in body["error"]
    status, body = _get(f"{base}/report?as_of=2026-12-01T06:00:00Z", TOKEN)
    assert status == 400
    assert "as_of" in body["error"]


def test_listen_and_exposure() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:8090") == ("::1", 8090)
    for bad in ("8090", "host:", ":80", "h:99999", "h:x"):
        with pytest.raises(click.BadParameter):
            parse_listen(bad)
    assert exposure_hint("127.0.0.1") is None
    assert exposure_hint("::1") is None
    assert exposure_hint("localhost") is None
    for public in ("0.0.0.0", "192.168.1.5", "farm.example"):
        hint = exposure_hint(public)
        assert hint is not None
        assert public in hint


def test_short_token_refuses_to_start(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("short\n")
    token_file.chmod(0o600)
    db = f"sqlite:///{tmp_path / 'hosting.sqlite3'}"
    done = subprocess.run(
        [sys.executable, "-c", CODE, "farm", "serve", "--listen", "127.0.0.1:0", "--db", db,
         "--admin-token-file", str(token_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "admin_token_file" in done.stderr
    assert "farm API on" not in done.stdout
