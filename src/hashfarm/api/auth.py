"""Logins for the admin listener: hashed passwords, server-side sessions, CSRF, rate limits.

What changes the pool's state (bans, customers, bills) is served on a separate listener
(`http.admin_port`, 127.0.0.1 by default, off unless set); the public port never accepts a
session. Two ways in, both checked by `admin._Guard` on that listener:

* `Authorization: Bearer TOKEN` (the admin token file, as `hashfarm pool-bans` sends it): a
  browser never adds that header on its own, so it needs no CSRF token;
* a session cookie from `POST /admin/login`: `HttpOnly; SameSite=Strict`, an opaque random id
  whose SHA-256 keys the in-memory session table (bounded, idle and absolute expiry), and for
  every request that changes something the session's CSRF token in the form field `csrf` or
  the `X-CSRF-Token` header, and no foreign `Origin`. Missing or wrong: 403, nothing changed.

Passwords are stored as scrypt hashes (`hashlib.scrypt`, N=2^15, r=8, p=1, 16-byte salt, the
parameters inside the stored string), one `user:hash` line per operator in
`http.admin_password_file`, written by `hashfarm web passwd --file F`. The plain password is
never stored or logged. Checking one costs ~0.1 s and 32 MiB, so it runs on a thread, at most
`KDF_CONCURRENCY` at once, and login attempts are limited per address and overall before any
hash is computed (429 with Retry-After). An unknown user costs the same hash as a known one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import html
import logging
import os
import secrets
import stat
import tempfile
import time
import urllib.parse
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from hashfarm.errors import ConfigError

log = logging.getLogger("hashfarm.api.auth")

# scrypt: N=2^15, r=8 needs 128*r*N = 32 MiB; OpenSSL's default cap is 32 MiB, so raise it.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
SALT_BYTES, HASH_BYTES = 16, 32
PASSWORD_MIN_CHARS = 10  # what `hashfarm web passwd` accepts
PASSWORD_MAX_CHARS = 1024  # longer input is refused before hashing
USER_MAX_CHARS = 64

SESSION_COOKIE = "hashfarm_admin"
LOGIN_COOKIE = "hashfarm_login"  # the login form's CSRF value (double submit)
SESSION_IDLE_S = 30 * 60.0  # a session unused this long is gone
SESSION_MAX_S = 12 * 3600.0  # and any session after this long
SESSIONS_MAX = 256  # sessions held at once; the oldest is dropped to make room
LOGIN_FAILURES_PER_IP = 5  # failed logins one address may make per window
LOGIN_WINDOW_S = 300.0
LOGIN_ATTEMPTS_PER_MINUTE = 30  # attempts from all addresses together
TRACKED_IPS_MAX = 10_000  # addresses with failure counters; the oldest is forgotten
KDF_CONCURRENCY = 2  # password checks running at once
KDF_WAITING_MAX = 8  # more waiting than this: 429
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# -- password hashes ---------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The stored form of `password`: `scrypt$N$r$p$SALT$HASH` (base64)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=SCRYPT_MAXMEM, dklen=HASH_BYTES)  # fmt: skip


def parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """(N, r, p, salt, hash) of a stored hash; ValueError when it is not one."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not a scrypt$N$r$p$salt$hash string")
    n, r, p = (int(x) for x in parts[1:4])
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        raise ValueError(f"scrypt parameters out of range: N={n} r={r} p={p}")
    if 128 * r * n * p > SCRYPT_MAXMEM:
        raise ValueError(f"scrypt parameters need more than {SCRYPT_MAXMEM >> 20} MiB")
    salt, digest = (
        base64.b64decode(parts[4], validate=True),
        base64.b64decode(parts[5], validate=True),
    )
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("salt or hash too short")
    return n, r, p, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored` (constant-time compare of the digests)."""
    n, r, p, salt, digest = parse_hash(stored)
    if len(password) > PASSWORD_MAX_CHARS:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), digest)


@functools.cache
def _dummy() -> str:
    """A hash to check an unknown user's password against (the same cost as a real one)."""
    return hash_password(secrets.token_urlsafe(16))


def load_password_file(path: str | None) -> dict[str, str]:
    """`user -> stored hash` from `path` (`user:scrypt$...` lines; blank lines and `#`
    comments skipped); {} when no file is set. ConfigError naming `http.admin_password_file`
    and the line when it cannot be read or a line is not a user and a hash."""
    if path is None:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"http.admin_password_file: cannot read {path!r}: {exc}") from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, stored = line.partition(":")
        try:
            check_user(user)
            if not sep:
                raise ValueError("expected user:scrypt$...")
            parse_hash(stored)
        except ValueError as exc:
            raise ConfigError(
                f"http.admin_password_file: {path!r} line {number}: {exc} "
                "(write it with `hashfarm web passwd --file FILE`)"
            ) from None
        users[user] = stored
    if not users:
        raise ConfigError(f"http.admin_password_file: {path!r} holds no user "
                          "(add one with `hashfarm web passwd --file FILE`)")  # fmt: skip
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("admin password file %s is readable by others: chmod 600 it", path)
    return users


def check_user(user: str) -> str:
    """A user name: 1..64 of A-Z a-z 0-9 . _ - (ValueError otherwise)."""
    ok = 0 < len(user) <= USER_MAX_CHARS and all(c.isascii() and (c.isalnum() or c in "._-")
                                                 for c in user)  # fmt: skip
    if not ok:
        raise ValueError(f"user name {user[:USER_MAX_CHARS]!r}: use 1 to {USER_MAX_CHARS} "
                         "of A-Z a-z 0-9 . _ -")  # fmt: skip
    return user


def set_password(path: Path, user: str, password: str) -> bool:
    """Store `user`'s hash in `path` (made 0600, replaced atomically), keeping other users;
    True when the user was new. ValueError for a bad user name or password."""
    check_user(user)
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise ValueError(f"a password is {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters")
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    kept = [ln for ln in lines if ln.strip().partition(":")[0] != user]
    kept.append(f"{user}:{hash_password(password)}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(kept) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return len(kept) == len(lines) + 1


# -- sessions and login limits ----------------------------------------------------------------


@dataclass
class Session:
    """One logged-in operator."""

    user: str
    csrf: str  # the token forms and unsafe requests must carry
    created: float
    seen: float


class Sessions:
    """Server-side sessions keyed by the SHA-256 of the cookie's random id (a lookup never
    compares secrets byte by byte), bounded and expiring."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._by_key: OrderedDict[str, Session] = OrderedDict()
        self._clock = clock

    @staticmethod
    def _key(sid: str) -> str:
        return hashlib.sha256(sid.encode("utf-8", "surrogateescape")).hexdigest()

    def create(self, user: str) -> tuple[str, Session]:
        """A new session for `user`: (cookie value, session)."""
        now = self._clock()
        while len(self._by_key) >= SESSIONS_MAX:
            self._by_key.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), now, now)
        self._by_key[self._key(sid)] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        """The live session of cookie value `sid` (its idle clock restarted), or None."""
        if not sid or len(sid) > 128:
            return None
        key = self._key(sid)
        session = self._by_key.get(key)
        if session is None:
            return None
        now = self._clock()
        if now - session.seen > SESSION_IDLE_S or now - session.created > SESSION_MAX_S:
            del self._by_key[key]
            return None
        session.seen = now
        self._by_key.move_to_end(key)
        return session

    def drop(self, sid: str | None) -> None:
        if sid:
            self._by_key.pop(self._key(sid), None)

    def __len__(self) -> int:
        return len(self._by_key)


@dataclass
class LoginLimiter:
    """Failed logins per address in a sliding window, and all attempts per minute."""

    clock: Callable[[], float] = time.monotonic
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _attempts: deque[float] = field(default_factory=deque)

    def retry_after(self, ip: str) -> float:
        """Seconds until `ip` may try again (0: now), counting this attempt when allowed."""
        now = self.clock()
        while self._attempts and now - self._attempts[0] > 60.0:
            self._attempts.popleft()
        failures = self._failures.get(ip)
        if failures is not None:
            while failures and now - failures[0] > LOGIN_WINDOW_S:
                failures.popleft()
            if len(failures) >= LOGIN_FAILURES_PER_IP:
                return LOGIN_WINDOW_S - (now - failures[0])
        if len(self._attempts) >= LOGIN_ATTEMPTS_PER_MINUTE:
            return 60.0 - (now - self._attempts[0])
        self._attempts.append(now)
        return 0.0

    def failed(self, ip: str) -> None:
        failures = self._failures.pop(ip, None) or deque(maxlen=LOGIN_FAILURES_PER_IP)
        self._failures[ip] = failures  # most recent last
        failures.append(self.clock())
        while len(self._failures) > TRACKED_IPS_MAX:
            self._failures.popitem(last=False)

    def succeeded(self, ip: str) -> None:
        self._failures.pop(ip, None)


# -- the admin listener's authentication --------------------------------------------------------


class AdminAuth:
    """Users, sessions and limits of one admin listener; `check` is what `_Guard` asks."""

    def __init__(self, users: dict[str, str], clock: Callable[[], float] = time.monotonic) -> None:
        self.users = users
        self.sessions = Sessions(clock)
        self.limiter = LoginLimiter(clock)
        self._kdf = asyncio.Semaphore(KDF_CONCURRENCY)
        self._waiting = 0

    def session(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE))

    async def check(self, request: web.Request) -> web.Response | None:
        """None when `request` carries a live session (and, if it changes something, the
        session's CSRF token and no foreign Origin); else the refusal (401 or 403)."""
        session = self.session(request)
        if session is None:
            return _refused(401, "log in first: POST /admin/login (or send the admin token)")
        if request.method in UNSAFE_METHODS:
            return await csrf_refusal(request, session.csrf)
        return None

    async def verify(self, user: str, password: str) -> bool:
        """Whether `user`/`password` is right, computed on a thread, `KDF_CONCURRENCY` at once."""
        stored = self.users.get(user)
        if self._waiting >= KDF_WAITING_MAX:
            raise _Busy
        self._waiting += 1
        try:
            async with self._kdf:
                ok = await asyncio.to_thread(verify_password, password, stored or _dummy())
        finally:
            self._waiting -= 1
        return ok and stored is not None


class _Busy(Exception):
    """Too many password checks wait."""


AUTH_KEY = web.AppKey("admin_auth", AdminAuth)
# (request, status, message, csrf value, next path) -> the login page; the built-in one without
LoginPage = Callable[[web.Request, int, str, str, str], web.Response]
LOGIN_PAGE_KEY: web.AppKey[LoginPage] = web.AppKey("admin_login_page")


def _refused(status: int, message: str) -> web.Response:
    """`{"error": message}` with `status` (as `admin.error`, which imports this module)."""
    return web.json_response({"error": message}, status=status)


def _same_origin(request: web.Request) -> bool:
    """No Origin header (not a browser's cross-site request), or this listener's own host
    (compared without the scheme, so a TLS proxy in front still matches)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urllib.parse.urlsplit(origin).netloc == request.host


async def csrf_refusal(request: web.Request, expected: str) -> web.Response | None:
    """403 unless the request carries `expected` (header `X-CSRF-Token` or form field `csrf`)
    and, when it has an Origin header, comes from this listener's own origin."""
    if not _same_origin(request):
        log.warning("admin: cross-origin %s %r refused (Origin %r)", request.method, request.path,
                    request.headers.get("Origin"))  # fmt: skip
        return _refused(403, "cross-origin request refused")
    given = request.headers.get("X-CSRF-Token")
    if given is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()  # aiohttp keeps it: the handler reads the same form
        value = form.get("csrf")
        given = value if isinstance(value, str) else None
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        log.warning("admin: %s %r without a valid CSRF token refused (from %s)",
                    request.method, request.path, request.remote)  # fmt: skip
        return _refused(403, "missing or wrong CSRF token (reload the page and try again)")
    return None


def cookie_attrs(request: web.Request) -> dict[str, object]:
    return {"httponly": True, "samesite": "Strict", "secure": request.secure or None}


def safe_next(raw: str | None) -> str:
    """Where to go after logging in: a path on this listener, else /admin."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/admin"
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in raw):
        return "/admin"
    return raw


def login_redirect(request: web.Request) -> web.Response:
    """303 to the login page, coming back to this page afterwards."""
    target = "/admin/login?" + urllib.parse.urlencode({"next": request.path_qs})
    return web.Response(status=303, headers={"Location": target})


def add_routes(app: web.Application, auth: AdminAuth) -> None:
    """The admin listener's `GET/POST /admin/login`, `POST /admin/logout` and
    `GET /admin/session`, and its `AdminAuth` for `_Guard` and the admin pages."""
    app[AUTH_KEY] = auth
    app.router.add_get("/admin/login", _login_form)
    app.router.add_post("/admin/login", _login)
    app.router.add_post("/admin/logout", _logout)
    app.router.add_get("/admin/session", _session)


_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hashfarm admin: log in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:3rem auto;padding:0 1rem;
color:#111;background:#fff}}label{{display:block;margin-top:1rem}}input{{width:100%;
padding:.5rem;font-size:1rem;box-sizing:border-box}}button{{margin-top:1rem;padding:.5rem 1rem;
font-size:1rem}}.error{{color:#a00000}}</style></head>
<body><main><h1>hashfarm admin</h1>{message}
<form method="post" action="/admin/login">
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="{next}">
<label for="user">User</label><input id="user" name="user" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button></form></main></body></html>
"""


def _form_page(request: web.Request, status: int, message: str, next_path: str) -> web.Response:
    token = secrets.token_urlsafe(32)
    render = request.app.get(LOGIN_PAGE_KEY)
    if render is not None:  # the dashboard's own page (api/web/admin.py)
        resp = render(request, status, message, token, next_path)
    else:
        shown = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
        body = _FORM.format(message=shown, csrf=token, next=html.escape(next_path, quote=True))
        resp = web.Response(status=status, text=body, content_type="text/html")
    resp.headers["Cache-Control"] = "no-store"
    resp.set_cookie(LOGIN_COOKIE, token, path="/admin/login", max_age=600,
                    **cookie_attrs(request))  # type: ignore[arg-type]  # fmt: skip
    return resp


async def _login_form(request: web.Request) -> web.Response:
    return _form_page(request, 200, "", safe_next(request.query.get("next")))


async def _login(request: web.Request) -> web.Response:
    auth = request.app[AUTH_KEY]
    ip = request.remote or "?"
    form = await request.post()
    next_path = safe_next(_field(form, "next"))
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    given = _field(form, "csrf") or ""
    if (
        not _same_origin(request)
        or not cookie
        or not hmac.compare_digest(given.encode(), cookie.encode())
    ):
        log.warning("admin login without a valid CSRF token refused (from %s)", ip)
        return _form_page(request, 403, "The form expired or came from elsewhere: try again.",
                          next_path)  # fmt: skip
    wait = auth.limiter.retry_after(ip)
    if wait > 0:
        log.warning("admin login from %s refused: too many attempts", ip)
        resp = _form_page(request, 429, f"Too many attempts: try again in {wait:.0f} s.",
                          next_path)  # fmt: skip
        resp.headers["Retry-After"] = str(max(1, round(wait)))
        return resp
    user, password = _field(form, "user") or "", _field(form, "password") or ""
    try:
        ok = len(user) <= USER_MAX_CHARS and await auth.verify(user, password)
    except _Busy:
        resp = _form_page(request, 429, "Busy: try again in a second.", next_path)
        resp.headers["Retry-After"] = "1"
        return resp
    if not ok:
        auth.limiter.failed(ip)
        log.warning("admin login failed for user %r from %s", user[:USER_MAX_CHARS], ip)
        return _form_page(request, 401, "Wrong user or password.", next_path)
    auth.limiter.succeeded(ip)
    sid, _ = auth.sessions.create(user)
    log.warning("admin %r logged in from %s", user, ip)
    resp = web.Response(status=303, headers={"Location": next_path, "Cache-Control": "no-store"})
    resp.set_cookie(SESSION_COOKIE, sid, path="/", max_age=int(SESSION_MAX_S),
                    **cookie_attrs(request))  # type: ignore[arg-type]  # fmt: skip
    resp.del_cookie(LOGIN_COOKIE, path="/admin/login")
    return resp


async def _logout(request: web.Request) -> web.Response:
    auth = request.app[AUTH_KEY]
    refusal = await auth.check(request)
    if refusal is not None:
        return refusal
    auth.sessions.drop(request.cookies.get(SESSION_COOKIE))
    resp = web.Response(status=303, headers={"Location": "/admin/login"})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


async def _session(request: web.Request) -> web.Response:
    """`{"user", "csrf"}` of the caller's session (401 without one): what a script on the
    admin pages sends back as X-CSRF-Token. Same-origin only: no CORS header is ever set."""
    session = request.app[AUTH_KEY].session(request)
    if session is None:
        return _refused(401, "log in first: POST /admin/login")
    return web.json_response({"user": session.user, "csrf": session.csrf},
                             headers={"Cache-Control": "no-store"})  # fmt: skip


def _field(form: object, name: str) -> str | None:
    value = form.get(name) if hasattr(form, "get") else None
    return value if isinstance(value, str) else None
