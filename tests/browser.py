"""A real browser for the web dashboard's tests: Debian's chromium driven by Playwright.

Importable from any test (pytest `pythonpath = ["tests"]`), like `nodes.py`. Use:

    from browser import browser, web_page  # noqa: F401  (the fixtures)

    async def test_page(web_page: WebPage) -> None:
        page = await web_page.open(f"{base}/", "pool")     # no console error allowed
        ...compare page.locator(...) texts with the JSON API's answer...
        await web_page.screenshot("pool")                   # kept, checked non-empty
        assert await web_page.axe() == []                   # axe-core: WCAG 2 A/AA rules

* `browser` (session): chromium from /usr/bin/chromium, never a downloaded build; the test
  skips with the reason when it is missing (fails under HASHFARM_REQUIRE_SERVICES=1).
* `web_page`: a fresh browser context and page per test, recording console errors, page
  errors and failed requests; at the end of the test it fails when any was recorded
  (`web_page.allow(pattern)` first for an error a test provokes on purpose).
* Screenshots go to `$HASHFARM_TEST_ARTEFACTS/web/` (default `out/test-artefacts/web/`, a
  gitignored folder the CI keeps), one PNG per page, checked to be a non-blank image.
* `running_web_pool(node, tmp_path)`: the real pool (`hashfarm.cli.pool.running_pool`) on a
  regtest node with its HTTP API and pages on a free port: `(base_url, RunningPool)`.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hashfarm.cli.pool import RunningPool, running_pool
from hashfarm.node.bcoin import BcoinNode, free_port
from hashfarm.pool.settings import (
    HttpSettings,
    NodeSettings,
    PoolSettings,
    StorageSettings,
    StratumSettings,
)
from nodes import service_missing

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("HASHFARM_CHROMIUM", "/usr/bin/chromium"))
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTEFACTS = Path(os.environ.get("HASHFARM_TEST_ARTEFACTS", ROOT / "out" / "test-artefacts"))
PHONE = {"width": 390, "height": 844}  # a phone's CSS viewport (iPhone 12..15)
DESKTOP = {"width": 1280, "height": 900}
AXE_TAGS = ("wcag2a", "wcag2aa")  # labels, names, contrast (the "basic" a11y)


def chromium_problem() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if not CHROMIUM.exists():
        return (
            f"{CHROMIUM} is missing: `make setup` installs Debian's chromium as root "
            "(apt-get install -y chromium)"
        )
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """Debian's chromium, headless, for the whole session."""
    if problem := chromium_problem():
        service_missing(problem)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


class WebPage:
    """One page in a fresh context, with what went wrong in it recorded."""

    def __init__(self, page: Any, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.errors: list[str] = []
        self._allowed: list[re.Pattern[str]] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("requestfailed", self._on_failed)
        page.on("response", self._on_response)

    def _on_console(self, msg: Any) -> None:
        if msg.type == "error":
            self.errors.append(f"console error: {msg.text}")

    def _on_failed(self, request: Any) -> None:
        failure = request.failure or ""
        if "ERR_ABORTED" in failure:  # navigation away, or an EventSource closed by us
            return
        self.errors.append(f"request failed: {request.url} {failure}")

    def _on_response(self, response: Any) -> None:
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status}: {response.url}")

    def allow(self, pattern: str) -> None:
        """Errors matching `pattern` (a regular expression) are expected by this test."""
        self._allowed.append(re.compile(pattern))

    def unexpected_errors(self) -> list[str]:
        """Errors recorded so far that no `allow` pattern covers."""
        return [e for e in self.errors if not any(p.search(e) for p in self._allowed)]

    async def open(self, url: str, *, wait_live: bool = True) -> Any:
        """Go to `url`, wait until it has loaded (and its live stream is on); the page."""
        response = await self.page.goto(url, wait_until="load")
        assert response is not None, f"no response for {url}"
        assert response.status == 200, f"{url}: HTTP {response.status}"
        if wait_live:
            await self.page.wait_for_selector('#live-status[data-state="on"]', timeout=10_000)
        return self.page

    async def screenshot(self, name: str) -> Path:
        """A full-page PNG kept under the artefacts folder; fails if empty or blank."""
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        check_png(path)
        return path

    async def axe(self, tags: tuple[str, ...] = AXE_TAGS) -> list[dict[str, Any]]:
        """axe-core's violations of `tags` rules on the page as it is now (empty: none)."""
        if not AXE_JS.exists():
            pytest.fail(f"{AXE_JS} is missing: `make setup` installs axe-core from npm")
        # evaluate() runs through DevTools, which the page's CSP does not restrict.
        await self.page.evaluate(AXE_JS.read_text(encoding="utf-8") + "\n;true")
        result: list[dict[str, Any]] = await self.page.evaluate(
            """async (tags) => {
                const r = await axe.run(document, {runOnly: {type: "tag", values: tags}});
                return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}));
            }""",
            list(tags),
        )
        return result

    async def overflows_horizontally(self) -> bool:
        """True when the page is wider than the viewport (a phone would scroll sideways)."""
        await self.page.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
        return bool(
            await self.page.evaluate(
                "document.documentElement.scrollWidth > document.documentElement.clientWidth"
            )
        )

    async def text(self, selector: str) -> str:
        """The visible text of the first element matching `selector`, stripped."""
        return (await self.page.locator(selector).first.inner_text()).strip()


@pytest.fixture
async def web_page(browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[WebPage]:
    """A fresh page (desktop viewport); fails the test on any unexpected browser error."""
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    web = WebPage(page, ARTEFACTS / "web" / module)
    try:
        yield web
    finally:
        await context.close()
    problems = web.unexpected_errors()
    assert not problems, "browser errors:\n" + "\n".join(problems)


def check_png(path: Path) -> None:
    """Fail unless `path` is a PNG with a real size and more than one colour in it."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 300, f"{path}: {width} pixels wide is too small"
    assert height >= 200, f"{path}: {height} pixels high is too small"
    idat = b"".join(_chunks(data, b"IDAT"))
    pixels = zlib.decompress(idat)
    assert len(set(pixels[: min(len(pixels), 4_000_000)])) > 8, f"{path} looks blank"


def _chunks(data: bytes, kind: bytes) -> list[bytes]:
    out, i = [], 8
    while i < len(data):
        (size,) = struct.unpack(">I", data[i : i + 4])
        if data[i + 4 : i + 8] == kind:
            out.append(data[i + 8 : i + 8 + size])
        i += 12 + size
    return out


@contextlib.asynccontextmanager
async def running_web_pool(
    node: BcoinNode, tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[str, RunningPool]]:
    """The real pool on `node` (solo, SQLite in `tmp_path`) with its HTTP API and pages on a
    free port: yields the pages' base URL and the running pool. `settings` override fields
    of `PoolSettings`."""
    config = PoolSettings(
        network="regtest",
        node=NodeSettings(rpc_url=node.rpc_url, rpc_password=node.api_key),
        stratum=StratumSettings(port=0),
        storage=StorageSettings(url=f"sqlite:///{tmp_path}/web-pool.sqlite3"),
        http=HttpSettings(port=free_port()),
        **settings,
    )
    async with running_pool(config) as running:
        yield f"http://127.0.0.1:{config.http.port}", running


async def get_json(url: str) -> Any:
    """GET `url` and decode its JSON (fails on a status other than 200)."""
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, f"{url}: HTTP {resp.status} {await resp.text()}"
        return await resp.json()
