"""The accounting pages in Debian's chromium over real books: shares and blocks written by the
pool's own SQLite ledger, credited by the crediting service against a scripted chain (a PROP
round: alice 2/3, bob 1/3; one block orphaned), one confirmed payout (the books of
tests/unit/api/test_api_accounts.py). Every balance, credit and payout on the pages equals
`/api/accounts`, `/api/payouts`, `/api/accounting` and `/api/accounts/{account}` on the same
server; without the ledger, or on a ledger accounting has not run on, the page says so.
No console error, screenshots kept, axe-core clean, no sideways scrolling on a phone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from browser import PHONE, WebPage, get_json
from hashfarm.api.server import ApiServer
from hashfarm.api.web import SITE_KEY
from hashfarm.api.web.pages_accounts import OFF
from hashfarm.pool.storage.sqlite import SQLiteLedger
from idle_pool import idle_model
from unit.api.test_api_accounts import _books


def btc(sats: int) -> str:
    return f"{sats / 100_000_000:.8f}"


@pytest.fixture
async def books(tmp_path: Path) -> str:
    path = tmp_path / "pool.sqlite3"
    url = f"sqlite:///{path}"
    await _books(SQLiteLedger(path), url)
    return url


async def running(ledger_url: str | None) -> AsyncIterator[tuple[str, ApiServer]]:
    server = ApiServer(idle_model(), "127.0.0.1", 0, ledger_url=ledger_url)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", server
    finally:
        await server.stop()


async def _rows(page: Any, selector: str, *attrs: str) -> list[tuple[str | None, ...]]:
    rows = await page.locator(selector).all()
    return [tuple([await r.get_attribute(a) for a in attrs]) for r in rows]


async def test_accounts_pages_equal_the_api(web_page: WebPage, books: str) -> None:
    async for base, server in running(books):
        accounting = await get_json(f"{base}/api/accounting")
        listed = await get_json(f"{base}/api/accounts?limit=50")
        payouts = await get_json(f"{base}/api/payouts?limit=50")
        page = await web_page.open(f"{base}/accounts")
        assert await _rows(page, "#accounts-table tbody tr", "data-account", "data-spendable",
                           "data-immature", "data-paid") == [
            (a["account"], str(a["spendable"]), str(a["immature"]), str(a["paid"]))
            for a in listed["accounts"]
        ]  # fmt: skip
        first = listed["accounts"][0]
        cells = await page.locator("#accounts-table tbody tr").first.locator("td").all_inner_texts()
        assert cells == [btc(first["spendable"]), btc(first["immature"]), btc(first["paid"])]
        assert await _rows(page, "#payouts-table tbody tr", "data-payout", "data-total") == [
            (str(p["id"]), str(p["total"])) for p in payouts["payouts"]
        ]
        assert payouts["total"] == 1
        assert await web_page.text("#acct-scheme dd") == accounting["scheme"]["name"].upper()
        assert await web_page.text("#acct-pool-fees dd") == btc(accounting["pool_fees"])
        assert await web_page.text("#acct-owed dd") == btc(accounting["reserve"]["owed_to_miners"])
        assert await web_page.text("#acct-count dd") == str(listed["total"])
        await web_page.screenshot("accounts")
        assert await web_page.axe() == []

        # live: a new block on the pages' event stream refreshes the figures without a reload
        hub = server._runner.app[SITE_KEY].hub
        async with page.expect_response(lambda r: "/accounts/fragments/tables" in r.url) as got:
            hub.publish("block", {"accepted_by_node": True, "height": 101, "finder_worker": "bob"})
        assert (await got.value).status == 200
        await page.wait_for_selector("#accounts-table")
        assert await web_page.text("#acct-count dd") == str(listed["total"])
        await page.set_viewport_size(PHONE)
        assert not await web_page.overflows_horizontally()

        alice = await get_json(f"{base}/api/accounts/alice")
        page = await web_page.open(f"{base}/accounts/alice")
        for key in ("spendable", "immature", "paid"):
            assert await web_page.text(f"#account-{key} dd") == btc(alice[key])
        assert await _rows(page, "#credits-table tbody tr", "data-block", "data-sats") == [
            (c["block"], str(c["sats"])) for c in alice["credits"]["lines"]
        ]
        assert await _rows(page, "#account-payouts tbody tr", "data-payout", "data-sats") == [
            (str(p["payout"]), str(p["sats"])) for p in alice["payouts"]
        ]
        assert alice["payouts"]  # the payout is there to compare
        await web_page.screenshot("accounts-alice")
        assert await web_page.axe() == []


async def test_without_the_ledger_the_page_says_accounting_is_off(web_page: WebPage) -> None:
    async for base, _ in running(None):
        assert (await get_json(f"{base}/api/accounting"))["available"] is False
        await web_page.open(f"{base}/accounts")
        assert await web_page.text("main .notice") == OFF
        assert await web_page.axe() == []


async def test_a_ledger_without_accounting_says_why(web_page: WebPage, tmp_path: Path) -> None:
    path = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(path)  # the pool's ledger, before any crediting ran
    await ledger.start()
    await ledger.close()
    async for base, _ in running(f"sqlite:///{path}"):
        reason = (await get_json(f"{base}/api/accounting"))["reason"]
        await web_page.open(f"{base}/accounts")
        assert await web_page.text("main .notice") == f"No accounting yet: {reason}."
