"""The customers-and-bills pages in Debian's chromium: admin data, so on the admin listener
they need a login (the browser is sent to the login form and comes back), and on the public
port they refuse. Over a real SQLite hosting store holding hosting_month.py's month, billed
by the JSON route's bill run: customers, invoices, one customer and one invoice equal
`/api/admin/hosting/...` read with the same session. Without a hosting store the page says
so. No console error other than the refusals provoked, screenshots kept, axe-core clean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import hosting_month as sc
import pytest

from browser import PHONE, WebPage
from hashfarm.api.auth import AdminAuth, hash_password
from hashfarm.api.hosting import HostingSource
from hashfarm.api.server import make_app
from hashfarm.api.web.pages_hosting import NO_STORE, PUBLIC
from hashfarm.hosting.inputs import parse_meter_csv
from hashfarm.hosting.store import connect
from idle_pool import idle_model, serve

TOKEN = "hosting-admin-token-0123456789abcdef"
USER, PASSWORD = "operator", "a long enough password"


@pytest.fixture
def source(tmp_path: Path) -> HostingSource:
    db = f"sqlite:///{tmp_path / 'hosting.sqlite3'}"
    store = connect(db)
    try:
        sc.set_up(store, parse_meter_csv(sc.METER_CSV))
    finally:
        store.close()
    return HostingSource(db, power=sc.power(), mined=sc.mined(), clock=lambda: float(sc.NOW))


def _admin_app(source: HostingSource | None) -> Any:
    users = {USER: hash_password(PASSWORD)}
    return make_app(idle_model(), TOKEN.encode(), hosting_store=source, login=AdminAuth(users))


async def _bill(base: str) -> None:
    """The month's bill run, as an operator's script starts it (the admin token)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/api/admin/hosting/bill-runs", json={"period": "2026-11"}, headers=auth
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()


async def _log_in(web_page: WebPage, url: str) -> Any:
    """Open `url`, be sent to the login form, log in, and land on `url` again."""
    page = await web_page.open(url, wait_live=False)
    assert "/admin/login" in page.url
    await page.fill("#user", USER)
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    assert page.url == url
    return page


async def _api(page: Any, path: str) -> Any:
    """The JSON route read by the page itself (its session cookie, no token)."""
    return await page.evaluate(
        "async (p) => { const r = await fetch(p); return [r.status, await r.json()]; }", path
    )


async def test_bills_need_a_login_and_equal_the_api(
    web_page: WebPage, source: HostingSource
) -> None:
    async for base in serve(_admin_app(source)):
        await _bill(base)
        page = await _log_in(web_page, f"{base}/admin/hosting")
        status, customers = await _api(page, "/api/admin/hosting/customers")
        assert status == 200
        status, invoices = await _api(page, "/api/admin/hosting/invoices")
        rows = page.locator("#customers-table tbody tr")
        assert [await r.get_attribute("data-customer") for r in await rows.all()] == [
            c["id"] for c in customers["customers"]
        ]
        got = [(await r.get_attribute("data-invoice"), await r.get_attribute("data-total-cents"))
               for r in await page.locator("#invoices-table tbody tr").all()]  # fmt: skip
        assert got == [(i["number"], str(i["total_cents"])) for i in invoices["invoices"]]
        assert len(got) == 3  # alpha, beta, gamma billed
        await web_page.screenshot("hosting")
        assert await web_page.axe() == []
        await page.set_viewport_size(PHONE)
        assert not await web_page.overflows_horizontally()
        await page.set_viewport_size({"width": 1280, "height": 900})

        await page.click('#customers-table a[href$="/beta"]')
        await page.wait_for_selector("#customer-stats")
        status, beta = await _api(page, "/api/admin/hosting/customers/beta")
        assert status == 200
        prepaid = _money(beta["prepaid_available_cents"])
        assert await web_page.text("#customer-prepaid dd") == prepaid
        assert await page.locator("#assignments tbody tr").count() == len(beta["assignments"])
        assert await web_page.text("#customer-contracts dd") == str(len(beta["contracts"]))
        await web_page.screenshot("hosting-customer")
        assert await web_page.axe() == []

        number = beta["invoices"][0]["number"]
        await page.click(f'#invoices-table a[href$="/invoices/{number}"]')
        await page.wait_for_selector("#invoice-lines")
        status, invoice = await _api(page, f"/api/admin/hosting/invoices/{number}")
        assert status == 200
        assert await web_page.text("#invoice-total dd") == _money(invoice["total_cents"])
        cents = [await r.get_attribute("data-cents")
                 for r in await page.locator("#invoice-lines tbody tr").all()]  # fmt: skip
        assert cents == [str(x["cents"]) for x in invoice["lines"]]
        await web_page.screenshot("hosting-invoice")
        assert await web_page.axe() == []


def _money(cents: int) -> str:
    whole, part = divmod(abs(cents), 100)
    return f"{'-' if cents < 0 else ''}{whole:,}.{part:02d}"


async def test_the_public_port_refuses_them(web_page: WebPage, source: HostingSource) -> None:
    web_page.allow(r"HTTP 403: .*/admin/hosting")
    web_page.allow(r"status of 403 \(Forbidden\)")
    async for base in serve(make_app(idle_model(), TOKEN.encode(), hosting_store=source)):
        response = await web_page.page.goto(f"{base}/admin/hosting", wait_until="load")
        assert response is not None
        assert response.status == 403
        assert await web_page.text("main .notice") == PUBLIC
        nav = await web_page.page.locator("header nav a").all_inner_texts()
        assert "Customers" not in nav  # listed on the admin listener only
        assert await web_page.page.locator("#customers-table").count() == 0


async def test_without_a_hosting_store_the_page_says_so(web_page: WebPage) -> None:
    async for base in serve(_admin_app(None)):
        await _log_in(web_page, f"{base}/admin/hosting")
        assert await web_page.text("main .notice") == NO_STORE
        assert await web_page.axe() == []
