"""The admin side of the API: the ban list, who may read it and who may change it.

Miners' addresses are personal data and lifting a ban changes what the pool accepts, so all
three routes need the admin token (`Authorization: Bearer TOKEN`), read once at start from
`http.admin_token_file` and compared in constant time. With no token configured they answer
403 and say how to turn them on; a missing or wrong token gets 401. The public side shows
only how many bans are in force (`/api/pool`, `/metrics`).

On the admin listener (`http.admin_port`, `api/auth.py`) a logged-in session may use them too,
with its CSRF token for a change; the public port accepts the token only.

Routes: `GET /api/bans`, `POST /api/bans` `{"ip", "seconds"?, "reason"?}`,
`DELETE /api/bans/{ip}`.
"""

from __future__ import annotations

import hmac
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from aiohttp import web

from hashfarm.api.auth import AUTH_KEY
from hashfarm.api.params import BadRequest, ip_arg, json_object, query_args, seconds_arg
from hashfarm.api.readmodel import ReadModel, ban_json
from hashfarm.errors import ConfigError

log = logging.getLogger("hashfarm.api.admin")

TOKEN_MIN_CHARS = 16  # shortest admin token accepted (`openssl rand -hex 32` gives 64)
BAN_SECONDS_MAX = 365 * 86_400.0  # longest manual ban one request may set
MANUAL_REASON = "manual"  # the only reason an operator's ban may carry

Handler = Callable[[web.Request], Awaitable[web.Response]]


def load_admin_token(path: str | None) -> bytes | None:
    """The token in `path` (surrounding whitespace dropped), or None when no file is set.

    Raises ConfigError naming `http.admin_token_file` when the file cannot be read or holds
    a token too short to resist guessing; warns when others may read it.
    """
    if path is None:
        return None
    try:
        raw = Path(path).read_bytes()
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"http.admin_token_file: cannot read {path!r}: {exc}") from None
    token = raw.strip()
    if not all(0x21 <= b <= 0x7E for b in token):  # it must fit in one HTTP header value
        raise ConfigError(
            f"http.admin_token_file: {path!r} must hold one word of printable ASCII "
            "(no spaces, line breaks or other characters)"
        )
    if len(token) < TOKEN_MIN_CHARS:
        raise ConfigError(
            f"http.admin_token_file: {path!r} holds {len(token)} characters; use at least "
            f"{TOKEN_MIN_CHARS} (e.g. `openssl rand -hex 32 > {path}`)"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("admin token file %s is readable by others: chmod 600 it", path)
    return token


def add_routes(app: web.Application, model_key: web.AppKey[ReadModel], token: bytes | None) -> None:
    """Register the ban routes on `app`, each behind the admin token."""
    guard = _Guard(token)
    app.router.add_get("/api/bans", guard(lambda r: _list(r, r.app[model_key])))
    app.router.add_post("/api/bans", guard(lambda r: _ban(r, r.app[model_key])))
    app.router.add_delete("/api/bans/{ip}", guard(lambda r: _lift(r, r.app[model_key])))


class _Guard:
    """Wraps a handler so that it runs only for a request bearing the admin token or, on the
    admin listener (an app holding `auth.AUTH_KEY`), a logged-in session with its CSRF token."""

    def __init__(self, token: bytes | None) -> None:
        self._token = token

    def __call__(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.Response:
            refusal = await self._refusal(request)
            return refusal if refusal is not None else await handler(request)

        return guarded

    async def _refusal(self, request: web.Request) -> web.Response | None:
        login = request.app.get(AUTH_KEY)
        header = request.headers.get("Authorization")
        if login is not None and header is None:
            return await login.check(request)  # the admin listener: a session will do
        if self._token is None:
            if login is not None:
                return error(401, "no admin token is configured here: log in at /admin/login")
            return error(403, "admin routes are disabled: set http.admin_token_file "
                              "(a file holding the token) and restart the pool")  # fmt: skip
        scheme, _, given = (header or "").partition(" ")
        # Compared as bytes: compare_digest refuses non-ASCII str, and a header may hold any.
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, self._token):
            # %r: a path may hold a decoded newline, which must not forge a log line
            log.warning("admin request refused from %s: %s %r", request.remote,
                        request.method, request.path)  # fmt: skip
            return error(401, "this route needs the admin token: Authorization: Bearer TOKEN",
                         headers={"WWW-Authenticate": 'Bearer realm="hashfarm"'})  # fmt: skip
        return None


async def _list(request: web.Request, model: ReadModel) -> web.Response:
    query_args(request.query.items(), ())
    return respond(model.bans_json(time.time()))


async def _ban(request: web.Request, model: ReadModel) -> web.Response:
    query_args(request.query.items(), ())
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    doc = json_object(body, ("ip", "seconds", "reason"))
    if "ip" not in doc:
        raise BadRequest('the body needs an "ip" field')
    ip = ip_arg(doc["ip"])
    seconds = seconds_arg(doc.get("seconds"), "seconds", BAN_SECONDS_MAX)
    if doc.get("reason", MANUAL_REASON) != MANUAL_REASON:
        raise BadRequest(f"reason must be {MANUAL_REASON!r}: the pool sets the others itself")
    now = time.time()
    ban = model.pool.bans.ban(ip, MANUAL_REASON, now, seconds)
    log.warning("admin banned %s until %s (request from %s)", ip, ban.until, request.remote)
    return respond(ban_json(ban, now), status=201)


async def _lift(request: web.Request, model: ReadModel) -> web.Response:
    query_args(request.query.items(), ())
    ip = ip_arg(request.match_info["ip"])
    if not model.pool.bans.lift(ip):
        return error(404, f"{ip} is not banned")
    log.warning("admin lifted the ban on %s (request from %s)", ip, request.remote)
    return respond({"lifted": ip})


def respond(doc: object, status: int = 200) -> web.Response:
    """`doc` as a JSON response."""
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """`{"error": message}` with `status`."""
    body = orjson.dumps({"error": message})
    return web.Response(body=body, status=status, content_type="application/json",
                        headers=headers)  # fmt: skip
