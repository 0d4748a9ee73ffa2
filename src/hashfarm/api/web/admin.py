"""The admin pages of the admin listener: the login form and the ban list (log in first).

Mounted by `api/server.py` on the admin listener's app only (never on the public port; it is
not a `pages_*` module, which every app gets). Every page needs a live session
(`api/auth.py`); without one a page sends the browser to the login form, which comes back
after. Every form that changes something carries the session's CSRF token in a hidden `csrf`
field, checked before the change (403 without it), and answers with a redirect
(POST-redirect-GET), so a reload never repeats a ban. The JSON routes behind the same changes
(`/api/bans`) take the session with an `X-CSRF-Token` header, or the admin token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from hashfarm.api.admin import BAN_SECONDS_MAX, MANUAL_REASON
from hashfarm.api.auth import AUTH_KEY, LOGIN_PAGE_KEY, Session, csrf_refusal, login_redirect
from hashfarm.api.params import BadRequest, ip_arg, seconds_arg
from hashfarm.api.web.site import Site

log = logging.getLogger("hashfarm.api.web.admin")

Page = Callable[[web.Request, Session], Awaitable[web.Response]]
Handler = Callable[[web.Request], Awaitable[web.Response]]


def add_routes(app: web.Application, site: Site) -> None:
    """The admin pages on the admin listener's `app` (which holds `auth.AUTH_KEY`)."""

    def login_page(request: web.Request, status: int, message: str, csrf: str,
                   next_path: str) -> web.Response:  # fmt: skip
        return site.render(request, "admin/login.html", status=status, title="Log in",
                           message=message, csrf=csrf, next_path=next_path)  # fmt: skip

    async def bans(request: web.Request, session: Session) -> web.Response:
        return _bans_page(request, session, site)

    async def ban(request: web.Request, session: Session) -> web.Response:
        form = await request.post()
        try:
            ip = ip_arg(_field(form, "ip").strip())
            raw = _field(form, "seconds").strip()
            seconds = None
            if raw:
                if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
                    raise BadRequest(f"seconds must be a whole number, not {raw[:20]!r}")
                seconds = seconds_arg(int(raw), "seconds", BAN_SECONDS_MAX)
        except BadRequest as exc:
            return _bans_page(request, session, site, status=400, message=str(exc))
        made = site.model(request).pool.bans.ban(ip, MANUAL_REASON, time.time(), seconds)
        log.warning("admin %r banned %s until %s (from %s)", session.user, ip, made.until,
                    request.remote)  # fmt: skip
        return _see("/admin")

    async def lift(request: web.Request, session: Session) -> web.Response:
        form = await request.post()
        try:
            ip = ip_arg(_field(form, "ip").strip())
        except BadRequest as exc:
            return _bans_page(request, session, site, status=400, message=str(exc))
        if not site.model(request).pool.bans.lift(ip):
            return _bans_page(request, session, site, status=404, message=f"{ip} is not banned")
        log.warning("admin %r lifted the ban on %s (from %s)", session.user, ip, request.remote)
        return _see("/admin")

    app[LOGIN_PAGE_KEY] = login_page
    site.page("/admin", _logged_in(bans), nav="Admin", order=90)
    app.router.add_post("/admin/bans", _logged_in(ban, change=True))
    app.router.add_post("/admin/bans/lift", _logged_in(lift, change=True))


def _logged_in(page: Page, *, change: bool = False) -> Handler:
    """`page` for a logged-in operator only; a change also needs the session's CSRF token."""

    async def handler(request: web.Request) -> web.Response:
        session = request.app[AUTH_KEY].session(request)
        if session is None:
            if change:
                return web.json_response({"error": "log in first: /admin/login"}, status=401)
            return login_redirect(request)
        if change:
            refusal = await csrf_refusal(request, session.csrf)
            if refusal is not None:
                return refusal
        return await page(request, session)

    return handler


def _bans_page(request: web.Request, session: Session, site: Site, *, status: int = 200,
               message: str = "") -> web.Response:  # fmt: skip
    bans = site.model(request).bans_json(time.time())
    return site.render(request, "admin/bans.html", status=status, title="Admin", bans=bans,
                       user=session.user, csrf=session.csrf, message=message,
                       seconds_max=int(BAN_SECONDS_MAX))  # fmt: skip


def _see(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _field(form: object, name: str) -> str:
    value = form.get(name) if hasattr(form, "get") else None
    return value if isinstance(value, str) else ""
