"""The HTTP JSON API and Prometheus `/metrics` (aiohttp) over a `ReadModel`.

Public, read-only routes: `/api/pool`, `/api/workers?limit=N&offset=M` (a page, busiest
first, with the total), `/api/workers/{name}`, `/api/blocks?limit=N` and `/metrics`, and the
accounting routes (`api/accounts.py`: balances, statements, block credits, payouts, over
the ledger opened read-only); the ban routes need the admin token (`api/admin.py`), as do
the hosting routes (`api/hosting.py`, served when `make_app` is given a `hosting_store`).
Every answer that is not a success is JSON `{"error": "..."}` with the fitting status: input
that breaks a route's contract is a 400 naming the parameter (`api/params.py`), an unknown
route 404, a wrong method 405, and anything unexpected a logged 500 that shows no internals.
aiohttp never leaks out of this module (start/stop raise nothing but OSError for a port in
use, and ConfigError for an unusable admin token or password file).

The admin listener (`http.admin_port`, on `http.admin_host` = 127.0.0.1; none by default)
serves the same routes plus the login (`api/auth.py`) and the admin pages; there a logged-in
session may change what the token may. The public port never accepts a session.
`/api/openapi.json` describes every JSON route (`api/openapi.py`).
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from hashfarm.api import accounts, admin, auth, fleet, health, hosting, metrics, openapi
from hashfarm.api import web as dashboard
from hashfarm.api.admin import error, respond
from hashfarm.api.params import BadRequest, int_arg, query_args, shown
from hashfarm.api.readmodel import WORKERS_LIMIT, WORKERS_LIMIT_MAX, ReadModel
from hashfarm.api.web import admin as admin_pages
from hashfarm.errors import ConfigError, LedgerError
from hashfarm.fleet.store import FleetStore

log = logging.getLogger("hashfarm.api")

MODEL_KEY = web.AppKey("model", ReadModel)
BLOCKS_LIMIT_MAX = 1000  # most blocks one /api/blocks request may ask for
BODY_MAX = 16_384  # bytes of request body accepted (the largest legitimate one is ~100)


def make_app(
    model: ReadModel,
    admin_token: bytes | None = None,
    ledger: accounts.AccountsSource | None = None,
    fleet_store: FleetStore | None = None,
    hosting_store: hosting.HostingSource | None = None,
    login: auth.AdminAuth | None = None,
) -> web.Application:
    """The aiohttp application serving `model`; ban routes open to `admin_token` only;
    the accounting routes read `ledger` (without it they say that accounting is off);
    the fleet routes (`api/fleet.py`) are served when a `fleet_store` is given, and the
    hosting routes (`api/hosting.py`, admin token too) when a `hosting_store` is.
    With `login` it is the admin listener's app: login routes, admin pages, and sessions
    accepted wherever the admin token is."""
    app = web.Application(middlewares=[_json_errors], client_max_size=BODY_MAX)
    app[MODEL_KEY] = model
    if login is not None:
        auth.add_routes(app, login)
        app.on_response_prepare.append(_admin_headers)
    openapi.add_routes(app)
    health.add_routes(app, MODEL_KEY)  # /health per role (scale-out: api/health.py)
    app.router.add_get("/api/pool", _pool)
    app.router.add_get("/api/workers", _workers)
    app.router.add_get("/api/workers/{name}", _worker)
    app.router.add_get("/api/blocks", _blocks)
    app.router.add_get("/metrics", _metrics)
    admin.add_routes(app, MODEL_KEY, admin_token)
    accounts.add_routes(app, ledger)
    if fleet_store is not None:
        fleet.add_routes(app, fleet_store)
    if hosting_store is not None:
        hosting.add_routes(app, hosting_store, admin_token)
    dashboard.add_routes(app, MODEL_KEY)  # the web pages (api/web/), on this same listener
    if login is not None:
        admin_pages.add_routes(app, app[dashboard.SITE_KEY])  # login form, bans (api/web/admin.py)
    return app


class ApiServer:
    """The API bound to host:port; `port` is the bound one (0 asks for an ephemeral port).

    `admin_token_file` is read here, so a missing or too short token stops the pool at start.
    `ledger_url` (the pool's `storage.url`) is what the accounting routes read, read-only;
    `reserve_warning_sats` (`accounting.reserve_warning_sats`) is where they warn of the reserve.
    `admin_port` (0: none) opens the admin listener on `admin_host` for the users of
    `admin_password_file` (and the token); `admin_port` is the bound one after `start`.
    """

    def __init__(
        self,
        model: ReadModel,
        host: str,
        port: int,
        *,
        admin_token_file: str | None = None,
        ledger_url: str | None = None,
        reserve_warning_sats: int = 0,
        admin_host: str = "127.0.0.1",
        admin_port: int = 0,
        admin_password_file: str | None = None,
    ) -> None:
        self._ledger = (
            None
            if ledger_url is None
            else accounts.AccountsSource(ledger_url, reserve_warning_sats=reserve_warning_sats)
        )
        token = admin.load_admin_token(admin_token_file)
        users = auth.load_password_file(admin_password_file)
        if users and not admin_port:
            raise ConfigError("http.admin_password_file: logins are served on the admin "
                              "listener only: set http.admin_port too (e.g. 8081)")  # fmt: skip
        app = make_app(model, token, self._ledger)
        self._runner = web.AppRunner(app, access_log=None)
        self._host, self.port = host, port
        self._admin = admin_token_file is not None
        self._admin_runner: web.AppRunner | None = None
        self.admin_host, self.admin_port = admin_host, admin_port
        if admin_port:
            if not users and token is None:
                raise ConfigError("http.admin_port: the admin listener needs users "
                                  "(http.admin_password_file, written by `hashfarm web passwd`) "
                                  "or http.admin_token_file")  # fmt: skip
            admin_app = make_app(model, token, self._ledger, login=auth.AdminAuth(users))
            self._admin_runner = web.AppRunner(admin_app, access_log=None)

    async def start(self) -> int:
        """Listen; return the bound port."""
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self.port).start()
        self.port = self._runner.addresses[0][1]  # the bound port when 0 was asked for
        log.info("HTTP API on http://%s:%d/api/pool and /metrics (admin routes %s)",
                 self._host, self.port, "on" if self._admin else "off")  # fmt: skip
        if self._admin_runner is not None:
            await self._admin_runner.setup()
            await web.TCPSite(self._admin_runner, self.admin_host, self.admin_port).start()
            self.admin_port = self._admin_runner.addresses[0][1]
            log.info("admin listener on http://%s:%d/admin", self.admin_host, self.admin_port)
            if not _loopback(self.admin_host):
                log.warning("the admin listener is on %s, not loopback: put TLS in front of "
                            "it (docs/security.md)", self.admin_host)  # fmt: skip
        return self.port

    async def stop(self) -> None:
        """Close the listeners and every open request, then the accounting reader."""
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        await self._runner.cleanup()
        if self._ledger is not None:
            await self._ledger.close()


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _admin_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The admin listener's pages are never framed (clickjacking), cached or sniffed."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error; one bad request never leaves a traceback page."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return error(400, str(exc))
    except web.HTTPException as exc:  # aiohttp's own: no route, wrong method, body too large
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k == "Allow"}
        return error(exc.status, exc.reason, headers=headers)
    except Exception:
        log.exception("API %s %r failed", request.method, request.path)
        return error(500, "internal error (logged by the pool)")


async def _pool(request: web.Request) -> web.Response:
    query_args(request.query.items(), ())
    return respond(request.app[MODEL_KEY].pool_json())


async def _workers(request: web.Request) -> web.Response:
    """A page of the workers (busiest first): `limit` (1..1000, 100) from `offset`, with the
    total. Never the whole list: at 10,000 workers that held the event loop for 0.5 s a
    request, for anyone who asked (docs/web.md, Benchmark)."""
    args = query_args(request.query.items(), ("limit", "offset"))
    limit = int_arg(args, "limit", WORKERS_LIMIT, 1, WORKERS_LIMIT_MAX)
    offset = int_arg(args, "offset", 0, 0, accounts.OFFSET_MAX)
    body = request.app[MODEL_KEY].workers_page(limit, offset)
    return web.Response(body=body, content_type="application/json")


async def _worker(request: web.Request) -> web.Response:
    query_args(request.query.items(), ())
    name = request.match_info["name"]
    doc = request.app[MODEL_KEY].worker_json(name)
    if doc is None:
        return error(404, f"no worker named {shown(name)} has sent a share")
    return respond(doc)


async def _blocks(request: web.Request) -> web.Response:
    args = query_args(request.query.items(), ("limit",))
    limit = int_arg(args, "limit", 50, 1, BLOCKS_LIMIT_MAX)
    try:
        return respond(await request.app[MODEL_KEY].blocks_json(limit))
    except LedgerError as exc:  # the database is away: the pool lives on, say so
        log.warning("API /api/blocks: %s", exc)
        return error(503, "the ledger cannot be read right now; try again")


async def _metrics(request: web.Request) -> web.Response:
    query_args(request.query.items(), ())
    text = metrics.render(request.app[MODEL_KEY])
    return web.Response(text=text, headers={"Content-Type": metrics.CONTENT_TYPE})
