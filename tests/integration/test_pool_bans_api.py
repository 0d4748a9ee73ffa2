"""The ban list in the HTTP API and `hashfarm pool-bans`: first over a real `BanList` behind
a real API socket, then on a real pool on the regtest node, where junk lines on the wire get
127.0.0.1 banned, the ban shows in the API, only the admin token lifts it, and the address
can mine again."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hashfarm.api.admin import load_admin_token
from hashfarm.api.readmodel import PoolInfo, ReadModel
from hashfarm.api.server import MODEL_KEY, ApiServer
from hashfarm.cli.pool import running_pool
from hashfarm.errors import ConfigError
from hashfarm.node.bcoin import free_port
from hashfarm.pool.bans import BanList
from hashfarm.pool.jobs import PoolJob
from hashfarm.pool.settings import (
    BanSettings,
    HttpSettings,
    NodeSettings,
    PoolSettings,
    StorageSettings,
    StratumSettings,
    VardiffSettings,
)
from hashfarm.pool.stats import PoolStats
from hashfarm.pool.storage.sqlite import SQLiteLedger
from nodes import RegtestNode
from unit.pool.stratum_client import StratumTestMiner

TOKEN = "c0ffee" * 8  # 48 characters
NOW = time.time


class BannablePool:
    """The parts of a pool the API reads, around a real ban list."""

    def __init__(self) -> None:
        self.bans = BanList(BanSettings())

    def sessions(self) -> list[object]:
        return []

    def current_job(self) -> PoolJob | None:
        return None


async def _start_api(tmp_path: Path, token_file: str | None) -> tuple[ApiServer, SQLiteLedger]:
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3")
    await ledger.start()
    info = PoolInfo(network="regtest", mode="solo", stratum_port=3333, started=NOW())
    model = ReadModel(info, BannablePool(), PoolStats(), ledger)
    server = ApiServer(model, "127.0.0.1", 0, admin_token_file=token_file)
    await server.start()
    return server, ledger


@pytest.fixture
async def admin_api(tmp_path: Path) -> AsyncIterator[tuple[str, BanList]]:
    """An API with the admin token configured: (base URL, the pool's ban list)."""
    token_file = tmp_path / "admin.token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    server, ledger = await _start_api(tmp_path, str(token_file))
    yield f"http://127.0.0.1:{server.port}", server_bans(server)
    await server.stop()
    await ledger.close()


def server_bans(server: ApiServer) -> BanList:
    pool = server._runner.app[MODEL_KEY].pool  # the same object the routes change
    assert isinstance(pool, BannablePool)
    return pool.bans


async def call(
    method: str, url: str, *, token: str | None = TOKEN, body: Any = None, raw: bytes | None = None
) -> tuple[int, Any, dict[str, str]]:
    """One request; (status, decoded JSON, headers)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = raw if raw is not None else (None if body is None else json.dumps(body))
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, data=data, headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None), dict(resp.headers)


async def test_ban_routes_are_off_without_a_token_file(tmp_path: Path) -> None:
    server, ledger = await _start_api(tmp_path, None)
    bans = server_bans(server)
    bans.ban("198.51.100.4", "junk-lines", NOW())
    base = f"http://127.0.0.1:{server.port}"
    try:
        for method, path, body in (
            ("GET", "/api/bans", None),
            ("POST", "/api/bans", {"ip": "198.51.100.5"}),
            ("DELETE", "/api/bans/198.51.100.4", None),
        ):
            status, doc, _ = await call(method, base + path, body=body)
            assert status == 403, (method, doc)
            assert "set http.admin_token_file" in doc["error"]
        _, pool_doc, _ = await call("GET", f"{base}/api/pool", token=None)
    finally:
        await server.stop()
        await ledger.close()
    assert [b.ip for b in bans.active(NOW())] == ["198.51.100.4"]  # nothing changed
    assert pool_doc["bans"] == 1  # the public side shows how many, never which


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer é"],
)
async def test_a_missing_or_wrong_token_is_refused_and_changes_nothing(
    admin_api: Any, authorization: str | None
) -> None:
    base, bans = admin_api
    bans.ban("198.51.100.4", "invalid-shares", NOW())
    headers = {} if authorization is None else {"Authorization": authorization}
    async with aiohttp.ClientSession() as http:
        for method, path in (("GET", "/api/bans"), ("DELETE", "/api/bans/198.51.100.4")):
            async with http.request(method, base + path, headers=headers) as resp:
                assert resp.status == 401
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                assert "admin token" in (await resp.json())["error"]
        async with http.post(f"{base}/api/bans", json={"ip": "1.2.3.4"}, headers=headers) as r:
            assert r.status == 401
    assert [(b.ip, b.reason) for b in bans.active(NOW())] == [("198.51.100.4", "invalid-shares")]


async def test_an_admin_bans_lists_and_lifts(admin_api: Any) -> None:
    base, bans = admin_api
    bans.ban("198.51.100.4", "junk-lines", NOW() - 5)
    status, made, _ = await call("POST", f"{base}/api/bans", body={"ip": "2001:DB8::0001",
                                                                    "seconds": 120})  # fmt: skip
    assert status == 201
    assert (made["ip"], made["reason"]) == ("2001:db8::1", "manual")  # canonical form
    assert made["until"] - made["since"] == pytest.approx(120)
    status, listed, _ = await call("GET", f"{base}/api/bans")
    assert status == 200
    assert [(b["ip"], b["reason"]) for b in listed] == [
        ("198.51.100.4", "junk-lines"),  # the longest-running first
        ("2001:db8::1", "manual"),
    ]
    assert 110 < listed[1]["remaining"] <= 120
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
        text = await resp.text()
    assert 'hashfarm_pool_bans_active{reason="manual"} 1' in text.splitlines()
    assert 'hashfarm_pool_bans_active{reason="failed-authorize"} 0' in text.splitlines()
    status, lifted, _ = await call("DELETE", f"{base}/api/bans/2001:db8:0:0::1")
    assert (status, lifted) == (200, {"lifted": "2001:db8::1"})
    status, again, _ = await call("DELETE", f"{base}/api/bans/2001:db8::1")
    assert (status, again) == (404, {"error": "2001:db8::1 is not banned"})
    assert [b.ip for b in bans.active(NOW())] == ["198.51.100.4"]
    # A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; the pool bans them as a.b.c.d.
    status, lifted, _ = await call("DELETE", f"{base}/api/bans/::ffff:198.51.100.4")
    assert (status, lifted) == (200, {"lifted": "198.51.100.4"})
    assert bans.active(NOW()) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the body is not JSON"),
        (b"[]", "must be a JSON object, not list"),
        (b'{"ip": "1.2.3.4", "why": "x"}', "unknown field 'why'"),
        (b'{"seconds": 5}', 'needs an "ip" field'),
        (b'{"ip": "10.0.0.0/8"}', "one IPv4 or IPv6 address, not '10.0.0.0/8'"),
        (b'{"ip": "1.2.3.4\\nforged"}', "one IPv4 or IPv6 address"),
        (b'{"ip": 16909060}', "IP address as a string"),
        (b'{"ip": "1.2.3.4", "seconds": true}', "a number of seconds, not True"),
        (b'{"ip": "1.2.3.4", "seconds": "60"}', "a number of seconds"),
        (b'{"ip": "1.2.3.4", "seconds": 0}', "more than 0"),
        (b'{"ip": "1.2.3.4", "seconds": -5}', "more than 0"),
        (b'{"ip": "1.2.3.4", "seconds": 1e300}', "at most 3.1536e+07"),
        (b'{"ip": "1.2.3.4", "reason": "junk-lines"}', "reason must be 'manual'"),
    ],
)
async def test_a_bad_ban_request_is_a_400_and_bans_nobody(
    admin_api: Any, body: bytes, message: str
) -> None:
    base, bans = admin_api
    status, doc, _ = await call("POST", f"{base}/api/bans", raw=body)
    assert status == 400, doc
    assert message in doc["error"]
    assert bans.active(NOW()) == []


async def test_bad_addresses_and_oversize_bodies_are_refused_cleanly(admin_api: Any) -> None:
    base, bans = admin_api
    for path in ("/api/bans/not-an-ip", "/api/bans/1.2.3.4%0A", "/api/bans/%C2%B2"):
        status, doc, _ = await call("DELETE", base + path)
        assert status == 400, path
        assert "one IPv4 or IPv6 address" in doc["error"]
    status, doc, _ = await call("GET", f"{base}/api/bans?all=1")
    assert (status, doc["error"][:25]) == (400, "unknown query parameter '")
    status, doc, _ = await call("POST", f"{base}/api/bans", raw=b" " * 100_000)
    assert status == 413
    assert "error" in doc
    assert bans.active(NOW()) == []


def test_the_admin_token_file_must_exist_and_hold_a_long_token(tmp_path: Path) -> None:
    assert load_admin_token(None) is None
    with pytest.raises(ConfigError, match=r"http.admin_token_file: cannot read"):
        load_admin_token(str(tmp_path / "absent"))
    short = tmp_path / "short"
    short.write_text("hunter2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds 7 characters; use at least 16"):
        load_admin_token(str(short))
    for bad in (f"{TOKEN}\n{TOKEN}", f"{TOKEN} x", f"{TOKEN}é"):
        (tmp_path / "bad").write_text(bad, encoding="utf-8")
        with pytest.raises(ConfigError, match="one word of printable ASCII"):
            load_admin_token(str(tmp_path / "bad"))
    good = tmp_path / "good"
    good.write_text(f"  {TOKEN}\n", encoding="utf-8")
    assert load_admin_token(str(good)) == TOKEN.encode()


# -- on a real pool --------------------------------------------------------------------------


async def hashfarm_cli(*args: str) -> tuple[int, str]:
    """Run the real `hashfarm` command in its own process; (exit status, stdout+stderr).

    A proxy in the environment that nothing listens on: the command must not send the admin
    token through $http_proxy."""
    env = os.environ | {"http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from hashfarm.cli.main import main; main()", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def closed_by_pool(port: int, seconds: float = 10.0) -> bool:
    """Connect and subscribe; True when the pool closes the connection without an answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b'{"id": 1, "method": "mining.subscribe", "params": []}\n')
        await writer.drain()
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except ConnectionError:
        return True
    finally:
        writer.close()


async def test_the_command_lists_bans_and_says_why_it_fails(admin_api: Any, tmp_path: Path) -> None:
    """`hashfarm pool-bans` in its own process against a real API (no node needed)."""
    base, bans = admin_api
    bans.ban("2001:db8::7", "failed-authorize", NOW())
    good = tmp_path / "admin.token"  # written by the fixture
    wrong = tmp_path / "wrong.token"
    wrong.write_text("f" * 48, encoding="utf-8")
    rc, out = await hashfarm_cli("pool-bans", "--api", base, "--token-file", str(good), "list",
                                 "--json")  # fmt: skip
    assert rc == 0, out
    listed = [(b["ip"], b["reason"]) for b in json.loads(out)]
    assert listed == [("2001:db8::7", "failed-authorize")]
    rc, out = await hashfarm_cli("pool-bans", "--api", base, "--token-file", str(wrong), "list")
    assert rc == 1
    assert "the pool refused (401): this route needs the admin token" in out
    rc, out = await hashfarm_cli("pool-bans", "--api", base, "--token-file", str(good), "ban",
                                 "2001:db8::/32")  # fmt: skip
    assert rc == 2
    assert "is not an IPv4 or IPv6 address" in out
    rc, out = await hashfarm_cli("pool-bans", "--api", "file:///etc/passwd", "--token-file",
                                 str(good), "list")  # fmt: skip
    assert rc == 2
    assert "not an http:// or https:// URL" in out
    assert [b.ip for b in bans.active(NOW())] == ["2001:db8::7"]


@pytest.mark.node
async def test_junk_on_the_wire_bans_the_address_and_only_the_admin_lifts_it(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text(TOKEN, encoding="utf-8")
    token_file.chmod(0o600)
    http_port = free_port()
    settings = PoolSettings(
        node=NodeSettings(rpc_url=regtest_node.rpc_url, rpc_password=regtest_node.api_key),
        stratum=StratumSettings(port=0, raise_nofile=False),
        vardiff=VardiffSettings(initial=1e-11, enabled=False),
        storage=StorageSettings(url=f"sqlite:///{tmp_path / 'pool.sqlite3'}"),
        http=HttpSettings(port=http_port, admin_token_file=str(token_file)),
        bans=BanSettings(junk_lines=5, exempt_loopback=False),  # the test's miners are local
    )
    base = f"http://127.0.0.1:{http_port}"
    cli_args = ("pool-bans", "--api", base, "--token-file", str(token_file))
    address = await regtest_node.payout_address()
    async with running_pool(settings) as running:
        port = running.pool.stratum_port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n" + b"\xff\xfe junk\n" * 20)
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)  # returns once the pool has closed it
        writer.close()

        status, listed, _ = await call("GET", f"{base}/api/bans")
        assert status == 200
        assert [(b["ip"], b["reason"]) for b in listed] == [("127.0.0.1", "junk-lines")]
        assert 590 < listed[0]["remaining"] <= 600
        assert await closed_by_pool(port)  # refused at accept while banned

        rc, out = await hashfarm_cli(*cli_args, "list")
        assert rc == 0, out
        assert "127.0.0.1" in out
        assert "junk-lines" in out
        status, _, _ = await call("DELETE", f"{base}/api/bans/127.0.0.1", token=None)
        assert status == 401
        rc, out = await hashfarm_cli("pool-bans", "--api", base, "--token-file",
                                     str(tmp_path / "absent"), "lift", "127.0.0.1")  # fmt: skip
        assert rc == 2
        assert "cannot read" in out
        assert await closed_by_pool(port)  # still banned

        rc, out = await hashfarm_cli(*cli_args, "lift", "127.0.0.1")
        assert (rc, out.strip()) == (0, "lifted the ban on 127.0.0.1")
        miner = StratumTestMiner(port, f"{address}.after-lift")
        await miner.connect()
        await miner.start()  # subscribe + authorize answered: the address is welcome again
        share = await miner.mine_share()
        assert share.response.result is True
        await miner.close()

        rc, out = await hashfarm_cli(*cli_args, "ban", "127.0.0.1", "--seconds", "30")
        assert rc == 0, out
        assert out.startswith("banned 127.0.0.1 until")
        assert await closed_by_pool(port)
        rc, out = await hashfarm_cli(*cli_args, "lift", "127.0.0.1")
        assert rc == 0, out
        rc, out = await hashfarm_cli(*cli_args, "lift", "127.0.0.1")
        assert (rc, out.strip()) == (1, "Error: the pool refused (404): 127.0.0.1 is not banned")
    rc, out = await hashfarm_cli(*cli_args, "list")  # the pool has stopped
    assert rc == 1
    assert f"cannot reach the pool's API at {base}" in out
