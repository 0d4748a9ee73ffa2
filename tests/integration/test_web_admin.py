"""The admin listener on real sockets: logins with a password file written by `hashfarm web
passwd`, sessions, CSRF, login rate limits, and the public port that never takes a session.

The pool side is a real `BanList` behind `ApiServer`, as in test_pool_bans_api.py; the admin
listener is `ApiServer(admin_port=...)`, as `hashfarm pool --admin-port` starts it."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from hashfarm.api.auth import LOGIN_FAILURES_PER_IP, SESSION_COOKIE
from hashfarm.api.readmodel import PoolInfo, ReadModel
from hashfarm.api.server import MODEL_KEY, ApiServer
from hashfarm.cli.main import cli
from hashfarm.cli.pool import running_pool
from hashfarm.errors import ConfigError
from hashfarm.node.bcoin import free_port
from hashfarm.pool.bans import BanList
from hashfarm.pool.config import load_settings
from hashfarm.pool.stats import PoolStats
from hashfarm.pool.storage.sqlite import SQLiteLedger
from integration.test_pool_bans_api import TOKEN, BannablePool
from nodes import RegtestNode

PASSWORD = "correct horse battery staple"
_CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Admin:
    public: str  # the public port's base URL
    admin: str  # the admin listener's
    bans: BanList
    password_file: Path


def _passwd(path: Path, user: str, password: str) -> str:
    """`hashfarm web passwd` as an operator runs it (the password on stdin)."""
    result = CliRunner().invoke(cli, ["web", "passwd", "--file", str(path), "--user", user,
                                      "--password-stdin"], input=password + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output


async def _server(tmp_path: Path, **kwargs: object) -> tuple[ApiServer, SQLiteLedger]:
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3")
    await ledger.start()
    info = PoolInfo(network="regtest", mode="solo", stratum_port=3333, started=time.time())
    model = ReadModel(info, BannablePool(), PoolStats(), ledger)
    server = ApiServer(model, "127.0.0.1", 0, **kwargs)  # type: ignore[arg-type]
    await server.start()
    return server, ledger


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    token_file = tmp_path / "admin.token"
    token_file.write_text(TOKEN, encoding="utf-8")
    password_file = tmp_path / "admin.passwd"
    assert "added the password of alice" in _passwd(password_file, "alice", PASSWORD)
    server, ledger = await _server(tmp_path, admin_token_file=str(token_file),
                                   admin_port=free_port(),
                                   admin_password_file=str(password_file))  # fmt: skip
    pool = server._runner.app[MODEL_KEY].pool
    assert isinstance(pool, BannablePool)
    try:
        yield Admin(f"http://127.0.0.1:{server.port}", f"http://127.0.0.1:{server.admin_port}",
                    pool.bans, password_file)  # fmt: skip
    finally:
        await server.stop()
        await ledger.close()


def _browser() -> aiohttp.ClientSession:
    """A client that keeps cookies as a browser does (also for an IP address host)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _login(http: aiohttp.ClientSession, base: str, user: str, password: str,
                 next_path: str = "/admin") -> aiohttp.ClientResponse:  # fmt: skip
    async with http.get(f"{base}/admin/login", params={"next": next_path}) as resp:
        assert resp.status == 200
        csrf = _CSRF_FIELD.search(await resp.text())
    assert csrf is not None
    form = {"user": user, "password": password, "csrf": csrf.group(1), "next": next_path}
    async with http.post(f"{base}/admin/login", data=form, allow_redirects=False) as resp:
        await resp.read()
        return resp


async def _csrf(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/admin/session") as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["user"] == "alice"
    return str(doc["csrf"])


async def test_a_login_round_trip_with_csrf(admin: Admin) -> None:
    async with _browser() as http:
        async with http.get(f"{admin.admin}/api/bans") as resp:
            assert resp.status == 401  # no login, no token
        resp = await _login(http, admin.admin, "alice", "wrong password here")
        assert resp.status == 401
        assert SESSION_COOKIE not in resp.cookies
        resp = await _login(http, admin.admin, "alice", PASSWORD, "/admin?x=1")
        assert (resp.status, resp.headers["Location"]) == (303, "/admin?x=1")
        cookie = resp.cookies[SESSION_COOKIE]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"
        assert PASSWORD not in admin.password_file.read_text()  # a hash, never the secret

        async with http.get(f"{admin.admin}/api/bans") as resp:
            assert (resp.status, await resp.json()) == (200, [])
        # A change without the session's CSRF token is refused and changes nothing.
        async with http.post(f"{admin.admin}/api/bans", json={"ip": "198.51.100.7"}) as resp:
            assert resp.status == 403
            assert "CSRF" in (await resp.json())["error"]
        csrf = await _csrf(http, admin.admin)
        async with http.post(f"{admin.admin}/api/bans", json={"ip": "198.51.100.7"},
                             headers={"X-CSRF-Token": csrf + "x"}) as resp:  # fmt: skip
            assert resp.status == 403
        async with http.post(f"{admin.admin}/api/bans", json={"ip": "198.51.100.7"},
                             headers={"X-CSRF-Token": csrf,
                                      "Origin": "http://evil.example"}) as resp:  # fmt: skip
            assert resp.status == 403
        assert admin.bans.active(time.time()) == []
        async with http.post(f"{admin.admin}/api/bans", json={"ip": "198.51.100.7"},
                             headers={"X-CSRF-Token": csrf}) as resp:  # fmt: skip
            assert resp.status == 201
        assert [b.ip for b in admin.bans.active(time.time())] == ["198.51.100.7"]

        # The public port never takes the session: the same cookie there is no login.
        sid = cookie.value
        async with http.get(f"{admin.public}/api/bans",
                            cookies={SESSION_COOKIE: sid}) as resp:  # fmt: skip
            assert resp.status == 401
        async with http.get(f"{admin.public}/admin/login") as resp:
            assert resp.status == 404

        # Logging out needs the token too; afterwards the session is gone.
        async with http.post(f"{admin.admin}/admin/logout", allow_redirects=False) as resp:
            assert resp.status == 403
        async with http.post(f"{admin.admin}/admin/logout", data={"csrf": csrf},
                             allow_redirects=False) as resp:  # fmt: skip
            assert (resp.status, resp.headers["Location"]) == (303, "/admin/login")
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{admin.admin}/api/bans", cookies={SESSION_COOKIE: sid}) as resp,
    ):
        assert resp.status == 401


async def test_the_admin_token_still_works_on_both_ports(admin: Admin) -> None:
    """`hashfarm pool-bans` sends the bearer token; it needs no session or CSRF token."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        for base in (admin.public, admin.admin):
            async with http.post(f"{base}/api/bans", json={"ip": "203.0.113.9"},
                                 headers=auth) as resp:  # fmt: skip
                assert resp.status == 201
            async with http.delete(f"{base}/api/bans/203.0.113.9", headers=auth) as resp:
                assert resp.status == 200
            async with http.get(
                f"{base}/api/bans", headers={"Authorization": "Bearer wrong-token-0123456789"}
            ) as r:
                assert r.status == 401


async def test_a_login_without_its_csrf_value_is_403(admin: Admin) -> None:
    async with _browser() as http:
        form = {"user": "alice", "password": PASSWORD}
        async with http.post(f"{admin.admin}/admin/login", data=form,
                             allow_redirects=False) as resp:  # fmt: skip
            assert resp.status == 403
            assert SESSION_COOKIE not in resp.cookies
        async with http.get(f"{admin.admin}/admin/login") as resp:  # the cookie, not the field
            assert resp.status == 200
        async with http.post(f"{admin.admin}/admin/login", data=form | {"csrf": "guess"},
                             allow_redirects=False) as resp:  # fmt: skip
            assert resp.status == 403
        async with http.get(f"{admin.admin}/admin/session") as resp:
            assert resp.status == 401


async def test_failed_logins_are_rate_limited_per_address(admin: Admin) -> None:
    async with _browser() as http:
        for _ in range(LOGIN_FAILURES_PER_IP):
            resp = await _login(http, admin.admin, "alice", "not the password")
            assert resp.status == 401
        resp = await _login(http, admin.admin, "alice", PASSWORD)  # right, but too late
        assert resp.status == 429
        assert 0 < int(resp.headers["Retry-After"]) <= 300
        assert SESSION_COOKIE not in resp.cookies


async def test_a_second_user_and_a_changed_password(admin: Admin) -> None:
    assert "added the password of bob" in _passwd(admin.password_file, "bob", "bob's passphrase")
    assert "changed the password of alice" in _passwd(admin.password_file, "alice", "new one 1234")
    lines = admin.password_file.read_text().splitlines()
    assert sorted(ln.split(":")[0] for ln in lines) == ["alice", "bob"]
    assert admin.password_file.stat().st_mode & 0o777 == 0o600
    result = CliRunner().invoke(cli, ["web", "passwd", "--file", str(admin.password_file),
                                      "--password-stdin"], input="short\n")  # fmt: skip
    assert result.exit_code == 2
    assert "10 to 1024 characters" in result.output


def test_the_admin_listener_needs_users_and_logins_need_it(tmp_path: Path) -> None:
    password_file = tmp_path / "admin.passwd"
    _passwd(password_file, "alice", PASSWORD)
    info = PoolInfo(network="regtest", mode="solo", stratum_port=3333, started=time.time())
    model = ReadModel(info, BannablePool(), PoolStats(), None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"set http\.admin_port too"):
        ApiServer(model, "127.0.0.1", 0, admin_password_file=str(password_file))
    with pytest.raises(ConfigError, match="needs users"):
        ApiServer(model, "127.0.0.1", 0, admin_port=free_port())
    password_file.write_text("alice:plaintext-password\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1: not a scrypt"):
        ApiServer(model, "127.0.0.1", 0, admin_port=free_port(),
                  admin_password_file=str(password_file))  # fmt: skip


async def test_the_admin_pages_need_a_login_and_their_forms_the_csrf_field(admin: Admin) -> None:
    admin.bans.ban("198.51.100.20", "junk-lines", time.time())
    async with _browser() as http:
        async with http.get(f"{admin.admin}/admin", allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/admin/login?next=%2Fadmin"
        async with http.post(f"{admin.admin}/admin/bans", data={"ip": "198.51.100.21"},
                             allow_redirects=False) as resp:  # fmt: skip
            assert resp.status == 401
        async with http.get(f"{admin.public}/admin") as resp:
            assert resp.status == 404  # the public port has no admin pages
        resp = await _login(http, admin.admin, "alice", PASSWORD)
        assert resp.status == 303
        async with http.get(f"{admin.admin}/admin") as resp:
            assert resp.status == 200
            page = await resp.text()
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert 'data-ip="198.51.100.20"' in page
        assert "logged in as alice" in page
        csrf = _CSRF_FIELD.search(page)
        assert csrf is not None
        form = {"ip": "198.51.100.21", "seconds": "600"}
        async with http.post(f"{admin.admin}/admin/bans", data=form,
                             allow_redirects=False) as resp:  # fmt: skip
            assert resp.status == 403  # no csrf field
        assert [b.ip for b in admin.bans.active(time.time())] == ["198.51.100.20"]
        async with http.post(f"{admin.admin}/admin/bans", data=form | {"csrf": csrf.group(1)},
                             allow_redirects=False) as resp:  # fmt: skip
            assert (resp.status, resp.headers["Location"]) == (303, "/admin")
        made = {b.ip: b for b in admin.bans.active(time.time())}
        assert made["198.51.100.21"].reason == "manual"
        assert made["198.51.100.21"].until - made["198.51.100.21"].since == pytest.approx(600)
        async with http.post(
            f"{admin.admin}/admin/bans", data={"ip": "10.0.0.0/8", "csrf": csrf.group(1)}
        ) as resp:
            assert resp.status == 400
            assert "one IPv4 or IPv6 address" in await resp.text()
        async with http.post(f"{admin.admin}/admin/bans/lift",
                             data={"ip": "198.51.100.20", "csrf": csrf.group(1)},
                             allow_redirects=False) as resp:  # fmt: skip
            assert resp.status == 303
        assert [b.ip for b in admin.bans.active(time.time())] == ["198.51.100.21"]


@pytest.mark.node
async def test_hashfarm_pool_opens_the_admin_listener_from_its_settings(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    """The settings path `hashfarm pool` takes (`--admin-port`, `http.admin_password_file`)
    up to a login on the real pool's admin listener."""
    password_file = tmp_path / "admin.passwd"
    _passwd(password_file, "alice", PASSWORD)
    admin_port, http_port = free_port(), free_port()
    settings = load_settings(
        environ={"HASHFARM_HTTP_ADMIN_PASSWORD_FILE": str(password_file)},
        flags={
            "node.rpc_url": regtest_node.rpc_url,
            "node.rpc_password": regtest_node.api_key,
            "stratum.port": 0,
            "storage.url": f"sqlite:///{tmp_path / 'pool.sqlite3'}",
            "http.port": http_port,
            "http.admin_port": admin_port,
        },
    )
    settings = replace(settings, stratum=replace(settings.stratum, raise_nofile=False))
    async with running_pool(settings) as running:
        assert running.api is not None
        assert running.api.admin_port == admin_port
        base = f"http://127.0.0.1:{admin_port}"
        async with _browser() as http:
            resp = await _login(http, base, "alice", PASSWORD)
            assert resp.status == 303
            async with http.get(f"{base}/admin") as page:
                assert page.status == 200
                assert "logged in as alice" in await page.text()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{http_port}/admin") as resp,
        ):
            assert resp.status == 404
