"""The pure parts of the accounts, fleet, hosting and calculator pages: what is wrong with a
machine in words, the heat map's levels, the table's order (the API's), money text, scheme
specs, and the calculator form's values (its URL is the calculation)."""

from __future__ import annotations

from typing import Any

import pytest

from hashfarm.api import calc
from hashfarm.api.fleet import machine_rank
from hashfarm.api.params import BadRequest
from hashfarm.api.web.pages_accounts import scheme_parts
from hashfarm.api.web.pages_calc import defaults, form_values, given
from hashfarm.api.web.pages_fleet import fleet_view, heat_level, totals, wrong_text
from hashfarm.api.web.pages_hosting import cents
from hashfarm.fleet.alerts import Alert, Severity
from hashfarm.fleet.faults import FaultThresholds

LIMITS = FaultThresholds()


def _machine(mid: str, **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": mid, "error": None, "faults": "", "live_hs": 100e12,
                           "nominal_hs": 100e12, "boards_present": 3, "boards_expected": 3,
                           "power_w": 3000.0, "model": "Antminer S19 Pro"}  # fmt: skip
    return doc | kw


def test_heat_levels_follow_the_chip_limit() -> None:
    limit = LIMITS.chip_temp_max_c
    assert heat_level(None, False, LIMITS) == "absent"
    assert heat_level(None, True, LIMITS) == "unknown"
    assert heat_level(limit, True, LIMITS) == "hot"
    assert heat_level(limit - 0.5, True, LIMITS) == "warm"
    assert heat_level(limit - 10, True, LIMITS) == "warm"
    assert heat_level(limit - 10.5, True, LIMITS) == "cool"


def test_what_is_wrong_in_words() -> None:
    assert wrong_text(_machine("a"), 0, LIMITS) == ""
    hung = _machine("b", error="no complete poll within 0.3 s", live_hs=None)
    assert wrong_text(hung, 1, LIMITS) == "not answering: no complete poll within 0.3 s"
    slow = _machine("c", live_hs=70e12, faults="overheating,fan_stopped", boards_present=2)
    assert wrong_text(slow, 2, LIMITS) == (
        "faults: overheating, fan stopped; hashing at 70% of nominal; 2 of 3 boards"
    )
    assert wrong_text(_machine("d"), 2, LIMITS) == "2 open alerts"  # nothing else to say


def test_the_table_keeps_the_api_order_and_places_boards() -> None:
    docs = [_machine("10.0.0.1:4028"), _machine("10.0.0.2:4028", faults="overheating"),
            _machine("10.0.0.3:4028", error="refused", live_hs=None)]  # fmt: skip
    temps = ((1, 80.0), (2, 96.0), (3, None), (4, None))
    boards = [{"machine_id": "10.0.0.2:4028", "slot": s, "present": s < 4, "chip_temp_max_c": t}
              for s, t in temps]  # fmt: skip
    cleared = Alert("10.0.0.1:4028", "low_hashrate", None, Severity.WARNING, "", 1.0, True, 2.0)
    alerts = [Alert("10.0.0.2:4028", "overheating", 2, Severity.CRITICAL, "97 C", 1.0, True),
              cleared]  # fmt: skip
    rows = fleet_view(docs, boards, alerts)
    assert [r.id for r in rows] == [d["id"] for d in sorted(docs, key=machine_rank)]
    assert [r.id for r in rows] == ["10.0.0.3:4028", "10.0.0.2:4028", "10.0.0.1:4028"]
    hot = rows[1]
    assert [(b.slot, b.level) for b in hot.boards] == [
        (1, "cool"),
        (2, "hot"),
        (3, "unknown"),
        (4, "absent"),
    ]
    assert hot.alerts == 1
    assert rows[2].alerts == 0  # a cleared alert is not open
    assert rows[0].ok is False
    assert totals(rows) == {"machines": 3, "wrong": 2, "unreachable": 1, "live_hs": 200e12,
                            "power_w": 9000.0}  # fmt: skip


def test_money_and_scheme_text() -> None:
    assert [cents(v) for v in (0, 5, 123456, -1050, None)] == [
        "0.00",
        "0.05",
        "1,234.56",
        "-10.50",
        "—",
    ]
    assert scheme_parts("pplns:fee=100/10000:factor=2/1") == {
        "spec": "pplns:fee=100/10000:factor=2/1", "name": "pplns", "fee": "100/10000",
        "params": {"factor": "2/1"},
    }  # fmt: skip
    assert scheme_parts(None) is None


def test_the_form_shows_every_input_used_and_its_url_reproduces_it() -> None:
    values = form_values([("btc_price", "120000"), ("compare", " S9=30 ")])
    assert values.keys() == defaults().keys()
    assert values["btc_price"] == "120000"
    assert values["compare"] == "S9=30"
    assert values["machine_price"] == calc.EXAMPLE["machine_price"]
    # the form's query parses to the inputs `/api/calc` gets for the bare query
    assert calc.parse_inputs(given(values)) == calc.parse_inputs(
        [("btc_price", "120000"), ("compare", "S9=30")]
    )
    custom = form_values([("model", ""), ("hashrate_ths", "1.2"), ("power_w", "18")])
    assert calc.parse_inputs(given(custom)).machines[0].name == "custom"
    with pytest.raises(BadRequest, match="unknown query parameter 'nope'"):
        form_values([("nope", "1")])
    with pytest.raises(BadRequest, match="more than once"):
        form_values([("seed", "1"), ("seed", "2")])
