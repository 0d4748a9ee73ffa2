"""The admin pages in Debian's chromium: /admin sends a stranger to the login form, a wrong
password is refused, the right one opens the ban list, a ban made in the form shows in the
pool's ban list and is lifted again; no console error, axe-core clean, screenshots kept."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from browser import WebPage
from hashfarm.api.auth import set_password
from hashfarm.api.readmodel import PoolInfo, ReadModel
from hashfarm.api.server import MODEL_KEY, ApiServer
from hashfarm.node.bcoin import free_port
from hashfarm.pool.bans import BanList
from hashfarm.pool.stats import PoolStats
from hashfarm.pool.storage.sqlite import SQLiteLedger
from integration.test_pool_bans_api import BannablePool

PASSWORD = "a long browser password"


@dataclass
class Admin:
    public: str
    admin: str
    bans: BanList


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    password_file = tmp_path / "admin.passwd"
    set_password(password_file, "carol", PASSWORD)
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3")
    await ledger.start()
    info = PoolInfo(network="regtest", mode="solo", stratum_port=3333, started=time.time())
    model = ReadModel(info, BannablePool(), PoolStats(), ledger)
    server = ApiServer(model, "127.0.0.1", 0, admin_port=free_port(),
                       admin_password_file=str(password_file))  # fmt: skip
    await server.start()
    pool = server._runner.app[MODEL_KEY].pool
    assert isinstance(pool, BannablePool)
    try:
        yield Admin(f"http://127.0.0.1:{server.port}", f"http://127.0.0.1:{server.admin_port}",
                    pool.bans)  # fmt: skip
    finally:
        await server.stop()
        await ledger.close()


async def _log_in(web_page: WebPage, password: str) -> None:
    page = web_page.page
    await page.fill("#user", "carol")
    await page.fill("#password", password)
    async with page.expect_navigation():
        await page.click("button[type=submit]")


async def test_the_admin_pages_in_a_browser(admin: Admin, web_page: WebPage) -> None:
    admin.bans.ban("198.51.100.30", "junk-lines", time.time())
    page = await web_page.open(f"{admin.admin}/admin")  # redirected to the login form
    assert page.url == f"{admin.admin}/admin/login?next=%2Fadmin"
    assert await page.locator("label[for=password]").inner_text() == "Password"
    await web_page.screenshot("admin-login")
    assert await web_page.axe() == []

    web_page.allow(r"HTTP 401: .*/admin/login$")  # the wrong password's answer
    web_page.allow(r"console error: .* status of 401 \(Unauthorized\)")
    await _log_in(web_page, "not the password")
    assert "Wrong user or password" in await web_page.text("[role=alert]")
    assert admin.bans.active(time.time())[0].ip == "198.51.100.30"

    await _log_in(web_page, PASSWORD)
    assert page.url == f"{admin.admin}/admin"
    await page.wait_for_selector('#live-status[data-state="on"]', timeout=10_000)
    assert "logged in as carol" in await web_page.text("h1")
    assert await page.locator('tr[data-ip="198.51.100.30"]').count() == 1
    assert await web_page.axe() == []

    await page.fill("#ban-ip", "2001:DB8::5")
    await page.fill("#ban-seconds", "900")
    async with page.expect_navigation():
        await page.click("form[action='/admin/bans'] button[type=submit]")
    assert await page.locator('tr[data-ip="2001:db8::5"]').count() == 1
    assert {b.ip for b in admin.bans.active(time.time())} == {"198.51.100.30", "2001:db8::5"}
    await web_page.screenshot("admin-bans")

    async with page.expect_navigation():
        await page.click('tr[data-ip="198.51.100.30"] button')
    assert [b.ip for b in admin.bans.active(time.time())] == ["2001:db8::5"]

    # The public port has no admin pages, and does not know the session.
    web_page.allow(r"HTTP 404: .*/(admin|favicon\.ico)$")
    web_page.allow(r"console error: .* status of 404 \(Not Found\)")
    response = await page.goto(f"{admin.public}/admin")
    assert response is not None
    assert response.status == 404
