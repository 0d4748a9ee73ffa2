"""`hashfarm farm report` end to end on a real SQLite file and on PostgreSQL: two machines
bought on 2026-11-01, billed for November by a real `bill run` (nameplate contract), their
mined satoshis and BTC prices from CSV; every figure of the report worked out by hand below.

The month, by hand:
* prices: 90,000 USD/BTC on Nov 1-15, 100,000 on Nov 16-30.
* m1 mines 5,000 sats a day: 150,000 sats; worth 75,000 x 90,000 / 1e8 = 67.50 plus
  75,000 x 100,000 / 1e8 = 75.00: 142.50 USD.
* m2 mines 1,000 sats a day: 30,000 sats; 13.50 + 15.00 = 28.50 USD.
* bills (contract nameplate 3,500 W at 0.05/kWh, hosting 10.00/month): 3.5 kW x 720 h =
  2,520 kWh x 0.05 = 126.00 + 10.00 = 136.00 USD per machine, accrued 136/30 a day.
* m1 cost 100.00: position = -100.00 + 142.50 - 136.00 = -93.50; trend 6.50 / 30 days per
  day; 9,350 cents / (650/30) = 431.5 -> 432 days from Dec 1, 2026 (day 1 = Dec 1): the
  432nd day is Dec 1 + 431 days = 2028-02-05 (31 days of Dec + 365 of 2027 + 35 of 2028).
* m2 cost 3,000.00: net 28.50 - 136.00 = -107.50 over the month: the trend is <= 0, so it
  never pays back.
* the promise (economics.payback, difficulty 1e14, price 90,000, fees 0, height 930,000:
  subsidy 3.125 BTC): BTC a day = 100 TH/s x 86,400 x 1e12 x 3.125 / (1e14 x 2^32);
  power 3.5 kW x 24 h x 0.05 = 4.20 a day, hosting 10.00 x 12 / 365 a day.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hashfarm.cli.farm import HEADERS
from hashfarm.cli.main import cli
from hashfarm.hosting.money import fmt_cents

Run = Callable[..., Result]
DAY = 86_400
NOV1 = int(dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp())


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


def _day(i: int) -> str:
    return dt.datetime.fromtimestamp(NOV1 + i * DAY, dt.UTC).strftime("%Y-%m-%d")


def _set_up(hf: Run, tmp: Path) -> dict[str, Path]:
    hf("customer", "add", "acme", "--name", "Acme", "--at", "2026-10-01T00:00:00Z")
    hf("contract", "add", "acme-np", "--customer", "acme", "--method", "nameplate",
       "--rate", "0.05", "--hosting-fee", "10", "--at", "2026-10-01T00:00:00Z")  # fmt: skip
    for mid in ("m1", "m2"):
        hf("contract", "assign", mid, "acme-np", "--from", "2026-11-01T00:00:00Z",
           "--nameplate-w", "3500")  # fmt: skip
    common = ["--hashrate-ths", "100", "--power-w", "3500", "--difficulty", "100000000000000",
              "--btc-price", "90000", "--power-rate", "0.05", "--hosting-fee", "10",
              "--height", "930000", "--day", "2026-11-01"]  # fmt: skip
    hf("farm", "purchase", "m1", "--price", "100", *common)
    hf("farm", "purchase", "m2", "--price", "3000", *common)
    samples = ["machine_id,time,watts,state"]
    for mid in ("m1", "m2"):
        samples += [f"{mid},{NOV1 + h * 3600},3400,running" for h in range(30 * 24)]
    mined = ["machine_id,day,sats"]
    mined += [f"m1,{_day(i)},5000" for i in range(30)] + [f"m2,{_day(i)},1000" for i in range(30)]
    prices = ["day,btc_usd"] + [f"{_day(i)},{90000 if i < 15 else 100000}" for i in range(30)]
    files = {"samples": samples, "mined": mined, "prices": prices}
    out = {}
    for name, rows in files.items():
        out[name] = tmp / f"{name}.csv"
        out[name].write_text("\n".join(rows) + "\n")
    hf("bill", "run", "--period", "2026-11", "--samples", str(out["samples"]),
       "--at", "2026-12-01T09:00:00Z")  # fmt: skip
    return out


def _report(hf: Run, files: dict[str, Path], *extra: str) -> Result:
    return hf("farm", "report", "--as-of", "2026-12-01", "--mined", str(files["mined"]),
              "--prices", str(files["prices"]), *extra)  # fmt: skip


def _promised_position(days: int, price: float) -> float:
    btc = 100 * 86_400 * 1e12 * 3.125 / (1e14 * 2**32)
    per_day = btc * 90_000 - 3.5 * 24 * 0.05 - 10 * 12 / 365
    return (-price + days * per_day) * 100  # cents


def test_report_by_hand(hf: Run, tmp_path: Path) -> None:
    files = _set_up(hf, tmp_path)
    data = json.loads(_report(hf, files, "--json").output)
    m1, m2 = data["machines"]
    assert (m1["machine_id"], m1["customer_id"], m1["days"]) == ("m1", "acme", 30)
    assert m1["earned_sats"] == 150_000
    assert m1["earned_cents"] == 14_250
    assert m1["bills_cents"] == 13_600
    assert m1["bills_sats"] == 0
    assert m1["net_cents"] == 650
    assert m1["position_cents"] == -9_350
    assert m1["trend_cents_per_day"] == "65/3"
    assert m1["payback"]["status"] == "projected"
    assert m1["payback"]["day"] == "2028-02-05"
    # the curve: day 15 (Nov 15) holds 15 x 5,000 sats at 90,000 and half the bill
    assert m1["actual_cents"][14] == -10_000 + 6_750 - 6_800
    assert m1["actual_cents"][-1] == -9_350
    assert m1["promised_cents"] == pytest.approx(_promised_position(30, 100), abs=1)
    assert m1["gap_cents"] == m1["position_cents"] - m1["promised_cents"]
    assert m1["promised_is_projection"] is True
    # the promise: 5.6578 - 4.20 - 0.3288 = 1.129 a day pays 100.00 back on day 89
    per_day = _promised_position(1, 0) / 100
    promised_day = int(-(-100 // per_day))  # ceil
    assert m1["promised_payback_day"] == _day(promised_day - 1)

    assert m2["earned_sats"] == 30_000
    assert m2["earned_cents"] == 2_850
    assert m2["net_cents"] == 2_850 - 13_600
    assert m2["position_cents"] == -300_000 - 10_750
    assert m2["payback"]["status"] == "never"
    assert m2["payback"]["day"] is None
    assert "<= 0" in m2["payback"]["reason"]


def test_json_equals_table(hf: Run, tmp_path: Path) -> None:
    files = _set_up(hf, tmp_path)
    data = json.loads(_report(hf, files, "--json").output)
    text = _report(hf, files).output
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if len(cells) == len(HEADERS) and cells[1] in ("m1", "m2"):
            rows[cells[1]] = dict(zip(HEADERS, cells, strict=True))
    assert set(rows) == {"m1", "m2"}
    for m in data["machines"]:
        row = rows[m["machine_id"]]
        assert row["earned sats"] == f"{m['earned_sats']:,}"
        assert row["earned"] == fmt_cents(m["earned_cents"])
        assert row["bills"] == fmt_cents(m["bills_cents"] + m["bills_sats_cents"])
        assert row["net"] == fmt_cents(m["net_cents"])
        assert row["position"] == fmt_cents(m["position_cents"])
        assert row["promised*"] == fmt_cents(m["promised_cents"])
        assert row["gap"] == fmt_cents(m["gap_cents"])
        assert row["payback"].split()[0] == m["payback"]["status"]
        if m["payback"]["day"]:
            assert row["payback"].split()[1] == m["payback"]["day"]
    assert "m2: payback never: daily net earnings <= 0" in text


@pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="the chart needs the `plot` extra"
)
def test_chart_per_machine(hf: Run, tmp_path: Path) -> None:
    files = _set_up(hf, tmp_path)
    out = tmp_path / "charts"
    data = json.loads(_report(hf, files, "--json", "--plot", str(out)).output)
    assert set(data["charts"]) == {"m1", "m2"}
    for mid in ("m1", "m2"):
        png = out / f"{mid}.png"
        assert png.stat().st_size > 1000
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_customer_filter_and_bad_day(hf: Run, tmp_path: Path) -> None:
    files = _set_up(hf, tmp_path)
    none = json.loads(_report(hf, files, "--json", "--customer", "nobody").output)
    assert none["machines"] == []
    bad = hf("farm", "report", "--as-of", "2026-12-01T12:00:00Z", "--mined", str(files["mined"]),
             "--prices", str(files["prices"]), ok=False)  # fmt: skip
    assert bad.exit_code != 0
    assert "00:00 UTC" in bad.output


def test_without_matplotlib_the_report_still_works(
    hf: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _set_up(hf, tmp_path)
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "hashfarm.hosting.promise_chart", raising=False)
    out = tmp_path / "charts"
    text = _report(hf, files, "--plot", str(out)).output
    assert "needs matplotlib" in text
    assert "pip install 'hashfarm[plot]'" in text
    assert "projected 2028-02-05" in text
    data = json.loads(_report(hf, files, "--json", "--plot", str(out)).output)
    assert data["charts"] == {}
    assert "needs matplotlib" in data["chart_error"]


def test_accepted_work_at_the_hashprice_gives_the_same_report(hf: Run, tmp_path: Path) -> None:
    # 1.6e9 of accepted share difficulty at difficulty 1e14 and 312,500,000 sats a block:
    # 1.6e9 / 1e14 x 312,500,000 = 5,000 sats a day, m1's mined figure; 3.2e8 -> 1,000 (m2)
    files = _set_up(hf, tmp_path)
    work = ["machine_id,day,work"]
    work += [f"m1,{_day(i)},1600000000" for i in range(30)]
    work += [f"m2,{_day(i)},320000000" for i in range(30)]
    network = ["day,difficulty,reward_sats"] + [
        f"{_day(i)},100000000000000,312500000" for i in range(30)
    ]
    (tmp_path / "work.csv").write_text("\n".join(work) + "\n")
    (tmp_path / "network.csv").write_text("\n".join(network) + "\n")
    by_work = json.loads(
        hf(
            "farm",
            "report",
            "--as-of",
            "2026-12-01",
            "--work",
            str(tmp_path / "work.csv"),
            "--network",
            str(tmp_path / "network.csv"),
            "--prices",
            str(files["prices"]),
            "--json",
        ).output
    )
    by_sats = json.loads(_report(hf, files, "--json").output)
    assert by_work["earned_from"].startswith("accepted work")
    assert by_sats["earned_from"].startswith("mined satoshis")
    assert by_work["machines"] == by_sats["machines"]
    # a day of work without its difficulty is named
    (tmp_path / "network.csv").write_text("\n".join(network[:-1]) + "\n")
    bad = hf("farm", "report", "--as-of", "2026-12-01", "--work", str(tmp_path / "work.csv"),
             "--network", str(tmp_path / "network.csv"), "--prices", str(files["prices"]),
             ok=False)  # fmt: skip
    assert bad.exit_code == 1
    assert "no difficulty for 2026-11-30" in bad.output
    neither = hf("farm", "report", "--as-of", "2026-12-01", "--prices", str(files["prices"]),
                 ok=False)  # fmt: skip
    assert "one of --mined or --work" in neither.output


def test_purchase_refusals_and_later_purchases(hf: Run, tmp_path: Path) -> None:
    files = _set_up(hf, tmp_path)
    args = ["--hashrate-ths", "100", "--power-w", "3500", "--difficulty", "1",
            "--btc-price", "1", "--power-rate", "0", "--height", "0"]  # fmt: skip
    late = hf("farm", "purchase", "m1", "--day", "2026-11-01T06:00:00Z", "--price", "1", *args,
              ok=False)  # fmt: skip
    assert "00:00 UTC" in late.output
    cents = hf("farm", "purchase", "m1", "--day", "2026-11-01", "--price", "1.001", *args,
               ok=False)  # fmt: skip
    assert "fractions of a cent" in cents.output
    unknown = hf("farm", "purchase", "zz", "--day", "2026-11-01", "--price", "1", *args,
                 ok=False)  # fmt: skip
    assert "no machine 'zz'" in unknown.output
    # m2 re-bought after the report's end: left out, m1 unchanged
    hf("farm", "purchase", "m2", "--day", "2026-12-05", "--price", "1", *args)
    data = json.loads(_report(hf, files, "--json").output)
    assert [m["machine_id"] for m in data["machines"]] == ["m1"]
    assert data["machines"][0]["position_cents"] == -9_350


def test_purchase_difficulty_from_the_epoch_data(hf: Run, tmp_path: Path) -> None:
    files = _set_up(hf, tmp_path)
    args = ["--day", "2026-11-01", "--price", "100", "--hashrate-ths", "100", "--power-w",
            "3500", "--btc-price", "90000", "--power-rate", "0.05"]  # fmt: skip
    # Height 930,000 is in epoch 461 (929,376-931,391, bits 1701e605): the CSV's row, read
    # here as text, is what is stored, exactly, and the output says where it came from.
    csv_path = Path(__file__).resolve().parents[2] / "src/hashfarm/data/difficulty_epochs.csv"
    row = next(r for r in csv_path.read_text().splitlines() if r.startswith("461,"))
    assert row.split(",")[3] == "1701e605"
    expected = row.split(",")[4]
    done = hf("farm", "purchase", "m1", *args, "--height", "930000")
    assert f"network difficulty {expected} from the shipped mainnet epoch data" in done.output
    assert "epoch 461 (heights 929,376-931,391, bits 1701e605)" in done.output
    data = json.loads(_report(hf, files, "--json").output)
    stored = {m["machine_id"]: m["purchase"]["difficulty"] for m in data["machines"]}
    num, den = (int(x) for x in stored["m1"].split("/"))
    assert Fraction(num, den) == Fraction(Decimal(expected))
    # A given --difficulty wins and is said to be given.
    given = hf("farm", "purchase", "m1", *args, "--height", "930000", "--difficulty", "1e3",
               ok=False)  # fmt: skip
    assert "not a decimal number" in given.output
    given = hf("farm", "purchase", "m1", *args, "--height", "930000", "--difficulty", "1000")
    assert "network difficulty 1000 as given (--difficulty)" in given.output
    # Past the shipped data (the last epoch ends at 955,583): refused, naming --difficulty,
    # and the stored purchase is unchanged.
    past = hf("farm", "purchase", "m1", *args, "--height", "955584", ok=False)
    assert past.exit_code != 0
    assert "outside the shipped difficulty data" in past.output
    assert "--difficulty" in past.output
    data = json.loads(_report(hf, files, "--json").output)
    assert [m["purchase"]["difficulty"] for m in data["machines"] if m["machine_id"] == "m1"] == [
        "1000/1"
    ]
