"""`hashfarm calc ...` through real subprocesses: JSON, CSV, tables, PNGs and bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hashfarm.economics.odds import attacker_success

EXE = Path(sys.executable).with_name("hashfarm")


def _calc(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(EXE), "calc", *args], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert (done.returncode == 0) == ok, done.stderr + done.stdout
    return done


def _json(*args: str) -> Any:
    return json.loads(_calc(*args, "--json").stdout)


def test_hashprice_json_is_the_hand_checked_figure() -> None:
    doc = _json("hashprice", "--difficulty", "1e14", "--subsidy-btc", "3.125",
                "--fees-btc", "0", "--price", "100000")  # fmt: skip
    assert doc["fiat_per_ph_day"] == pytest.approx(62.8643, abs=5e-5)
    assert doc["btc_per_th_day"] == pytest.approx(6.28642737865448e-7, rel=1e-12)
    assert doc["currency"] == "USD"


def test_hashprice_in_another_currency() -> None:
    doc = _json("hashprice", "--difficulty", "1e14", "--subsidy-btc", "3.125",
                "--price", "100000", "--fx", "CNY=7.1")  # fmt: skip
    assert (doc["currency"], doc["fiat_per_ph_day"]) == ("CNY", pytest.approx(62.8643 * 7.1, 1e-5))


def test_attack_json() -> None:
    doc = _json("attack", "--q", "0.1", "--z", "5")
    assert round(doc["probability"], 7) == 0.0009137
    table = _json("attack", "--q", "0.3", "--z-max", "50", "--z-step", "5")
    assert [r["z"] for r in table["rows"]] == list(range(0, 51, 5))
    assert table["rows"][2]["probability"] == attacker_success(0.3, 10)  # the CLI's plumbing
    assert round(table["rows"][2]["probability"], 7) == 0.0416605  # the whitepaper's table
    assert table["confirmations_for_below_0.1%"] == 24


def test_machine_json() -> None:
    doc = _json("machine", "S21", "--difficulty", "1e14", "--height", "900000", "--price",
                "100000", "--power-price", "0.06", "--pool-fee", "2")  # fmt: skip
    btc = 200 * 0.98 * 6.28642737865448e-7
    assert doc["btc_per_day"] == pytest.approx(btc)
    assert doc["power_cost_per_day"] == pytest.approx(3.5 * 24 * 0.06)
    assert doc["profit_per_day"] == pytest.approx(btc * 100_000 - 3.5 * 24 * 0.06)


def test_payback_csv_has_one_row_per_day_and_json_says_never(tmp_path: Path) -> None:
    args = ("payback", "S19 Pro", "--difficulty", "1.2e14", "--height", "1040000",
            "--price", "90000", "--machine-price", "700", "--power-price", "0.05",
            "--difficulty-growth", "2", "--horizon-days", "400")  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(_calc(*args, "--csv").stdout)))
    assert len(rows) == 400
    assert rows[0]["days"] == "1-1"
    doc = _json(*args)
    assert doc["payback_day"] is None  # JSON null: never pays back
    assert doc["static_payback_days"] > 0  # the naive answer promises it would
    assert doc["days_off"] > 0


def test_payback_monte_carlo_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "payback.png"
    doc = _json("payback", "S21", "--difficulty", "1.2e14", "--height", "1000000", "--price",
                "90000", "--machine-price", "1000", "--power-price", "0.04", "--paths", "2000",
                "--seed", "3", "--horizon-days", "1000", "--plot", str(png))  # fmt: skip
    assert 0 < doc["mc_probability_payback"] <= 1
    assert doc["mc_payback_p10_day"] <= doc["mc_payback_p50_day"]
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 20_000
    again = _json("payback", "S21", "--difficulty", "1.2e14", "--height", "1000000", "--price",
                  "90000", "--machine-price", "1000", "--power-price", "0.04", "--paths", "2000",
                  "--seed", "3", "--horizon-days", "1000")  # fmt: skip
    assert again["mc_cumulative_end_p50_fiat"] == doc["mc_cumulative_end_p50_fiat"]


def test_compare_table_and_fair_price() -> None:
    doc = _json("compare", "S9=30", "S19 Pro=700", "S21=3000", "A1466=1800", "--power-price",
                "0.05", "--price", "100000", "--difficulty", "1.2e14", "--height", "925000",
                "--fair-price-days", "365")  # fmt: skip
    names = [r["machine"] for r in doc["rows"]]
    assert names == ["Antminer S9", "Antminer S19 Pro", "Antminer S21", "Avalon A1466"]
    assert sorted(r["rank_profit"] for r in doc["rows"]) == [1, 2, 3, 4]
    assert doc["rows"][0]["fair_price_365d_fiat"] == 0.0  # an S9 at 5 cents: worth nothing
    table = _calc("compare", "S9", "S21", "--price", "100000").stdout
    assert "Antminer S21" in table
    assert "rank" in table


def test_odds_retarget_race_and_models() -> None:
    odds = _json("odds", "--hashrate-ths", "1.2", "--difficulty", "1e14")
    rate = 1.2e12 / (1e14 * 2**32) * 365 * 86400  # expected blocks a year
    assert odds["probability_block_per_year"] == pytest.approx(rate, rel=1e-4)
    nxt = _json("retarget", "--bits", "1c05a3f4", "--epoch-start-time", "1279008237",
                "--last-time", "1279297671")  # fmt: skip
    assert nxt["next_bits"] == "1c0168fd"  # Core's get_next_work_lower_limit_actual
    race = _json("race", "--days", "60", "--growth", "10")
    assert race["rows"][1]["difficulty"] > race["rows"][0]["difficulty"]
    models = list(csv.DictReader(io.StringIO(_calc("models", "--csv").stdout)))
    assert len(models) == 31
    assert all(m["source"] for m in models)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("machine", "no such miner", "--price", "1"), "no single catalog model"),
        (("machine", "--price", "1"), "give a MODEL"),
        (("machine", "Avalon Nano 3", "--price", "1"), "no TH/s or watts"),
        (("hashprice", "--difficulty", "-5"), "difficulty"),
        (("hashprice", "--difficulty", "0"), "difficulty must be positive"),
        (("hashprice", "--fees-btc", "-1"), "fees: must not be negative"),
        (("machine", "S21", "--price", "1", "--hashrate-ths", "0"), "must be a positive number"),
        (("machine", "--hashrate-ths", "100", "--power-w", "0", "--price", "1"), "power: must be"),
        (("race", "--hashrate-ehs", "0"), "hashrate path"),
        (("hashprice", "--fx", "CNY"), "CODE=RATE"),
        (("payback", "S21", "--price", "1", "--difficulty-growth", "400"), "retarget rule"),
        (("attack", "--q", "1.5", "--z", "1"), "q:"),
        (("retarget",), "--rpc-url"),
        (
            ("retarget", "--bits", "zz", "--epoch-start-time", "1", "--last-time", "2"),
            "compact bits in hex",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(args: tuple[str, ...], message: str) -> None:
    done = _calc(*args, ok=False)
    assert message in done.stderr


def test_payback_with_a_price_path_a_difficulty_path_and_a_currency(tmp_path: Path) -> None:
    path = tmp_path / "price.csv"
    path.write_text("day,price_usd\n0,100000\n100,50000\n")
    doc = _json("payback", "--hashrate-ths", "100", "--power-w", "3000", "--difficulty", "1e14",
                "--height", "1007999", "--price", "1", "--price-path", str(path),
                "--difficulty-path", "10,0", "--horizon-days", "200", "--fx", "INR=80",
                "--power-price", "4", "--daily")  # fmt: skip
    rows = doc["rows"]
    assert doc["currency"] == "INR"
    assert rows[0]["price_fiat"] == 100_000 * 80  # the path is in USD, shown in INR
    assert rows[50]["price_fiat"] == pytest.approx(75_000 * 80)
    assert rows[150]["price_fiat"] == 50_000 * 80
    # epoch 0 grows 10 % (blocks every 600/1.1 s), then the path's last value (0) repeats
    assert rows[20]["difficulty"] == pytest.approx(1.1e14)
    assert rows[199]["difficulty"] == pytest.approx(1.1e14)
    per_th = 86400 * 1e12 * 3.125 / (1e14 * 2**32)
    assert rows[0]["btc_mined"] == pytest.approx(100 * per_th)


@pytest.mark.parametrize(
    "text", ["day,price\n0,1\n", "day,price_usd\n0,abc\n", "day,price_usd\n0\n"]
)
def test_a_bad_price_path_names_the_file_and_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "price.csv"
    path.write_text(text)
    done = _calc("payback", "S21", "--price", "1", "--price-path", str(path), ok=False)
    assert f"{path}: line 2: need numbers in columns day,price_usd" in done.stderr
