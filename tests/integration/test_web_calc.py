"""The calculator page in Debian's chromium: figures equal to `/api/calc`'s for the same URL,
a chart that changes when an input changes (and the address bar that follows, so the URL
reproduces it), a plain error for bad input, a screenshot kept, axe-core clean, and no
sideways scrolling on a phone.

The server is the API's own app (`make_app`) on 127.0.0.1; its pool side is an idle pool
(no sessions, no job, no blocks): the calculator reads none of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from browser import PHONE, WebPage, get_json
from hashfarm.api import calc
from hashfarm.api.server import make_app
from idle_pool import idle_model, serve

QUERY = {"model": "Antminer S21", "machine_price": "2800", "btc_price": "90000",
         "power_price": "0.05", "fees_btc": "0.03", "pool_fee": "2", "horizon_days": "1095",
         "paths": "600", "seed": "3", "compare": "Antminer S19 Pro=600,Avalon A1466=1800",
         "fair_price_days": "365"}  # fmt: skip


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async for url in serve(make_app(idle_model())):
        yield url


async def _chart(page: Any, selector: str = "#calc-chart") -> tuple[str, str]:
    """(signature, canvas image) of a drawn chart."""
    await page.wait_for_selector(f'{selector}[data-loaded="chart"] canvas', timeout=15_000)
    sig = await page.get_attribute(selector, "data-signature")
    image = await page.eval_on_selector(f"{selector} canvas", "c => c.toDataURL()")
    return sig, image


def _days(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


async def _same_as_the_api(web_page: WebPage, base: str, query: str) -> dict[str, Any]:
    doc = await get_json(f"{base}/api/calc?{query}")
    first, mc = doc["machines"][0], doc["monte_carlo"]
    payback = first["summary"]["payback_day"]
    expected = f"day {payback:,}" if payback is not None else "never within"
    assert expected in await web_page.text("#calc-payback")
    assert f"{first['summary']['cumulative_end_fiat']:,.2f}" in await web_page.text("#calc-cash")
    assert f"{mc['mc_probability_payback'] * 100:.1f} %" in await web_page.text("#calc-probability")
    percentiles = " / ".join(_days(mc[f"mc_payback_p{p}_day"]) for p in (10, 50, 90))
    assert percentiles in await web_page.text("#calc-percentiles")
    rows = web_page.page.locator("#calc-compare tbody tr")
    assert await rows.count() == len(doc["machines"])
    for i, machine in enumerate(doc["machines"]):
        cells = await rows.nth(i).locator("th, td").all_inner_texts()
        c = machine["compare"]
        assert cells[0] == c["machine"]
        assert cells[3] == f"{c['profit_per_day_fiat']:,.2f}"
        assert cells[4] == (f"{c['payback_day']:,}" if c["payback_day"] is not None else "never")
        assert cells[6] == f"{c['cumulative_end_fiat']:,.2f}"
        if "fair_price" in machine:
            assert cells[10] == f"{machine['fair_price']:,.2f}"
    return doc


async def test_calculator_page_equals_the_api_and_passes_axe(web_page: WebPage, base: str) -> None:
    query = urlencode(QUERY)
    page = await web_page.open(f"{base}/calc?{query}")
    await _chart(page)
    await _chart(page, "#calc-difficulty")
    share = await page.get_attribute("#calc-share", "href")
    assert share is not None
    doc = await _same_as_the_api(web_page, base, urlsplit(share).query)
    # the link is the calculation: every input given is in it, as given
    assert dict(parse_qsl(urlsplit(share).query)).items() >= QUERY.items()
    assert doc["chart"]["bands"]["paths"] == min(600, calc.BAND_PATHS_MAX)
    (halving,) = doc["halving_days"]  # the 2028 halving, about 664.5 days out
    assert f"Halving on day {halving:,.0f} " in await web_page.text("#calc-halvings")
    await web_page.screenshot("calc")
    assert await web_page.axe() == []
    await page.set_viewport_size(PHONE)
    await _chart(page)
    assert not await web_page.overflows_horizontally()
    await web_page.screenshot("calc-phone")


async def test_the_chart_changes_with_its_inputs_and_the_url_follows(
    web_page: WebPage, base: str
) -> None:
    page = await web_page.open(f"{base}/calc?{urlencode(QUERY)}")
    before = await _chart(page)
    await page.fill("#f-btc_price", "150000")
    await page.press("#f-btc_price", "Tab")  # a change event, as a person leaving the field
    await page.wait_for_url("**btc_price=150000**", timeout=15_000)
    await page.wait_for_function(
        "old => document.querySelector('#calc-chart')?.dataset.signature"
        " && document.querySelector('#calc-chart').dataset.signature !== old",
        arg=before[0],
        timeout=15_000,
    )
    after = await _chart(page)
    assert after[0] != before[0]
    assert after[1] != before[1]  # the drawn pixels too
    query = urlsplit(page.url).query
    await _same_as_the_api(web_page, base, query)
    # the address bar now reproduces the calculation in a fresh page
    again = await web_page.open(page.url)
    assert (await _chart(again))[0] == after[0]


async def test_bad_input_is_a_plain_message(web_page: WebPage, base: str) -> None:
    web_page.allow(r"HTTP 400: .*/calc\?paths=99999")
    web_page.allow(r"status of 400 \(Bad Request\)")  # chromium's console line for the same
    response = await web_page.page.goto(f"{base}/calc?paths=99999", wait_until="load")
    assert response is not None
    assert response.status == 400
    assert "paths must be an integer from 0 to 10000" in await web_page.text("#calc-error")
    assert await web_page.page.locator("#calc-chart").count() == 0
