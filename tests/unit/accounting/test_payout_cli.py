"""`hashfarm accounts threshold`, `payout --dry-run` and `show` on a real SQLite ledger (a dry
run reads the books only: no node is asked)."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from hashfarm.accounting.ledger import transaction
from hashfarm.accounting.store import connect
from hashfarm.chain.address import script_to_address
from hashfarm.cli.accounts import accounts


def address(i: int) -> str:
    found = script_to_address(bytes.fromhex("0014") + bytes([i]) * 20, "regtest")
    assert found is not None
    return found


A, B = address(1), address(2)


def ledger(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'pool.sqlite3'}"
    sql = connect(url, create=True)
    try:
        with sql.tx():
            amounts = {f"miner:{A}": 700_000, f"miner:{B}": 3_000_000, "miner:carol": 9_000_000}
            sql.post(transaction("found:01", "found", {**amounts, "block:01": -12_700_000}, 0.0))
    finally:
        sql.close()
    return url


def test_thresholds_and_the_dry_run(tmp_path: Path) -> None:
    url = ledger(tmp_path)
    runner = CliRunner()
    dry = [
        "payout",
        "--storage-url",
        url,
        "--dry-run",
        "--json",
        "--rpc-url",
        "http://127.0.0.1:9/",
    ]
    first = runner.invoke(accounts, dry)
    assert first.exit_code == 0, first.output
    plan = orjson.loads(first.output)
    assert [(i["account"], i["amount"]) for i in plan["items"]] == [(B, 3_000_000)]
    assert plan["unpayable"] == ["carol"]  # not an address of the network

    done = runner.invoke(accounts, ["threshold", A, "500000", "--storage-url", url])
    assert done.exit_code == 0, done.output
    assert f"payout threshold of {A}: 500,000 sats" in done.output
    second = orjson.loads(runner.invoke(accounts, dry).output)
    assert [i["account"] for i in second["items"]] == sorted([A, B])

    shown = runner.invoke(accounts, ["show", A, "--storage-url", url])
    assert "own payout threshold: 500,000 sats" in shown.output
    shown_json = orjson.loads(
        runner.invoke(accounts, ["show", A, "--storage-url", url, "--json"]).output
    )
    assert (shown_json["payout_threshold"], shown_json["payouts"]) == (500_000, [])

    assert runner.invoke(accounts, ["threshold", A, "--clear", "--storage-url", url]).exit_code == 0
    third = orjson.loads(runner.invoke(accounts, dry).output)
    assert [i["account"] for i in third["items"]] == [B]
    refused = runner.invoke(accounts, ["threshold", A, "--storage-url", url])
    assert refused.exit_code == 2
    assert "give SATS or --clear" in refused.output
    # the policy refuses a run threshold that could pay dust, before touching anything
    dust = runner.invoke(accounts, [*dry, "--threshold-sats", "600", "--payout-fee-sats", "100"])
    assert dust.exit_code == 2
    assert "dust" in dust.output


def test_the_pools_settings_give_the_default_threshold(tmp_path: Path) -> None:
    """`--config` reads `[accounting] payout_threshold_sats`; `--threshold-sats` still wins."""
    url = ledger(tmp_path)
    config = tmp_path / "pool.toml"
    config.write_text("[accounting]\npayout_threshold_sats = 600000\n")
    dry = [
        "payout",
        "--storage-url",
        url,
        "--dry-run",
        "--json",
        "--rpc-url",
        "http://127.0.0.1:9/",
    ]

    def paid(*extra: str) -> list[str]:
        result = CliRunner().invoke(accounts, [*dry, *extra])
        assert result.exit_code == 0, result.output
        return sorted(i["account"] for i in orjson.loads(result.output)["items"])

    assert paid() == [B]  # the built-in 1,000,000
    assert paid("--config", str(config)) == sorted([A, B])  # A's 700,000 reaches 600,000
    assert paid("--config", str(config), "--threshold-sats", "2000000") == [B]
    config.write_text("[accounting]\npayout_threshold_sats = 0\n")
    refused = CliRunner().invoke(accounts, [*dry, "--config", str(config)])
    assert refused.exit_code == 2
    assert "payout_threshold_sats" in refused.output
