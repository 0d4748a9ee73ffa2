"""The fleet pages in Debian's chromium, over a real fleet store filled by the real poller from
replay machines on loopback (the captured bytes of real firmware): machines in the order of
`/api/fleet/machines` (worst first) with what is wrong in words, a heat map whose boards are
coloured by their hottest chip, one machine's page equal to `/api/fleet/machines/{id}`, and a
plain notice when the server has no fleet store. No console error, screenshots kept,
axe-core clean, no sideways scrolling on a phone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest

from browser import PHONE, WebPage, get_json
from fleet_replay import ReplayFarm, capture, s19pro
from hashfarm.api.server import make_app
from hashfarm.api.web import SITE_KEY
from hashfarm.api.web.pages_fleet import NO_STORE
from hashfarm.fleet.alerts import AlertEngine, AlertPolicy, AlertService
from hashfarm.fleet.faults import FaultThresholds
from hashfarm.fleet.poller import Machine, Poller, PollSettings
from hashfarm.fleet.store import FleetStore, open_fleet_store
from idle_pool import idle_model, serve

T0 = 1_700_002_800.0


@pytest.fixture
async def farm(tmp_path) -> AsyncIterator[tuple[FleetStore, dict[str, str]]]:
    """Three machines polled twice into a SQLite fleet store: healthy, overheating, hung."""
    store = await open_fleet_store(f"sqlite:///{tmp_path / 'fleet.db'}")
    async with ReplayFarm() as replay:
        await replay.add(1, "cgminer", s19pro())
        hot = s19pro() | {"stats": capture("antminer-s19pro-bmminer-stats-overheating.json")}
        await replay.add(2, "cgminer", hot)
        await replay.add(3, "cgminer", {}, behaviour="hang")
        machines = [Machine(f"{replay.prefix}.{i}", replay.cgminer_port, "bmminer")
                    for i in (1, 2, 3)]  # fmt: skip
        alerts = AlertService(AlertEngine(AlertPolicy(raise_after=2)), recorder=store)
        clock = iter([T0, T0 + 30])
        poller = Poller(machines, PollSettings(timeout_s=0.3), sinks=[store, alerts],
                        clock=lambda: next(clock))  # fmt: skip
        await poller.poll_round()
        await poller.poll_round()
        await poller.close()
    ids = {name: m.id for name, m in zip(("good", "hot", "hung"), machines, strict=True)}
    yield store, ids
    await store.close()


async def test_fleet_pages_equal_the_api(web_page: WebPage, farm) -> None:
    store, ids = farm
    app = make_app(idle_model(), fleet_store=store)
    async for base in serve(app):
        api = (await get_json(f"{base}/api/fleet/machines"))["machines"]
        page = await web_page.open(f"{base}/fleet")
        rows = page.locator("#fleet-table tbody tr")
        assert [await r.get_attribute("data-machine") for r in await rows.all()] == [
            m["id"] for m in api
        ]  # worst first, as the API sorts them
        assert [m["id"] for m in api] == [ids["hung"], ids["hot"], ids["good"]]
        for row, m in zip(await rows.all(), api, strict=True):
            live = await row.locator("[data-live-hs]").get_attribute("data-live-hs")
            assert live == ("" if m["live_hs"] is None else repr(m["live_hs"]))
        wrong = {await r.get_attribute("data-machine"): await r.locator("td.wrong").inner_text()
                 for r in await rows.all()}  # fmt: skip
        assert wrong[ids["hung"]].startswith("not answering:")
        assert "overheating" in wrong[ids["hot"]]
        assert wrong[ids["good"]] == "nothing"
        assert await web_page.text("#fleet-machines dd") == "3"

        # heat map: each board by its hottest chip against the fault limit
        limit = FaultThresholds().chip_temp_max_c
        hot = await get_json(f"{base}/api/fleet/machines/{quote(ids['hot'], safe='')}")
        cells = page.locator(f'#fleet-heatmap li[data-machine="{ids["hot"]}"] ol li')
        assert await cells.count() == len(hot["boards"])
        for cell, board in zip(await cells.all(), hot["boards"], strict=True):
            level = await cell.get_attribute("data-level")
            temp = board["chip_temp_max_c"]
            if not board["present"]:
                assert level == "absent"
            elif temp is not None and temp >= limit:
                assert level == "hot"
                assert f"{temp:g} °C" in (await cell.get_attribute("aria-label") or "")
            else:
                assert level in ("cool", "warm", "unknown")
        assert "hot" in [await c.get_attribute("data-level") for c in await cells.all()]
        await web_page.screenshot("fleet")
        assert await web_page.axe() == []

        # live: an alert on the pages' event stream refreshes the table without a reload
        async with page.expect_response(lambda r: "/fleet/fragments/table" in r.url) as got:
            app[SITE_KEY].hub.publish("alert", {"level": "critical", "message": "board 3 hot"})
        assert (await got.value).status == 200
        assert "Alert: board 3 hot" in await web_page.text("#live-log")
        await page.wait_for_selector("#fleet-table")
        assert [await r.get_attribute("data-machine") for r in await rows.all()] == [
            m["id"] for m in api
        ]
        await page.set_viewport_size(PHONE)
        assert not await web_page.overflows_horizontally()
        await web_page.screenshot("fleet-phone")

        # one machine
        await page.set_viewport_size({"width": 1280, "height": 900})
        page = await web_page.open(f"{base}/fleet/machines/{quote(ids['hot'], safe='')}")
        boards = page.locator("#machine-boards tbody tr")
        assert await boards.count() == len(hot["boards"])
        alerts = await web_page.text("#machine-alerts")
        for alert in hot["alerts"]:
            assert alert["kind"].replace("_", " ") in alerts
        assert "overheating" in await web_page.text("#machine-wrong")
        await web_page.screenshot("fleet-machine")
        assert await web_page.axe() == []


async def test_without_a_fleet_store_the_page_says_so(web_page: WebPage) -> None:
    async for base in serve(make_app(idle_model())):
        await web_page.open(f"{base}/fleet")
        assert await web_page.text("main .notice") == NO_STORE
        assert await web_page.axe() == []
