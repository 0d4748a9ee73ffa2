"""`hashfarm pool` as a process, as a first-time operator meets it: no node yet, Core's
defaults, a signal while it waits, a password that must not leak.

Each test starts the real `hashfarm pool` executable. Where a node must answer, a small
HTTP server in the test (127.0.0.1) plays Bitcoin Core: it checks the Authorization header,
records every request body, refuses a signet template request without the signet rule as
Core does (RPC error -8), and otherwise answers "warming up" (-28), so the pool stays in its
start-up wait until the test stops it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from hashfarm.node.bcoin import free_port
from nodes import RegtestNode
from rpc_server import SIGNET_REFUSAL, json_rpc_server

HASHFARM = Path(sys.executable).parent / "hashfarm"
START_LIMIT = 30.0  # seconds for a busy machine to import and start the process
EXIT_LIMIT = 5.0  # seconds a signalled pool may take to exit (it takes ~0.2 s)
COOKIE_PASSWORD = "5f" * 32


class FakeCore:
    """Bitcoin Core's RPC, as far as a starting pool sees it; records what arrives."""

    def __init__(self, password: str, *, signet: bool) -> None:
        self.expected = "Basic " + base64.b64encode(f"__cookie__:{password}".encode()).decode()
        self.password = password
        self.signet = signet
        self.url = ""
        self.requests: list[tuple[str | None, Any]] = []  # (Authorization, body)

    def accepts(self, authorization: str | None) -> bool:
        if authorization is None or not authorization.startswith("Basic "):
            return False
        _, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        return password == self.password  # Core checks user and password; bcoin the password

    async def handle(self, request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        authorization = request.headers.get("Authorization")
        self.requests.append((authorization, doc))
        if not self.accepts(authorization):
            return web.Response(status=401)
        rules = doc["params"][0].get("rules", []) if doc["params"] else []
        if self.signet and doc["method"] == "getblocktemplate" and "signet" not in rules:
            error = {"code": -8, "message": SIGNET_REFUSAL}
        else:
            error = {"code": -28, "message": "Loading block index…"}
        body = orjson.dumps({"result": None, "error": error, "id": doc["id"]})
        return web.Response(body=body, status=500, content_type="application/json")

    def templates(self) -> list[tuple[str | None, Any]]:
        return [(a, d) for a, d in self.requests if d["method"] == "getblocktemplate"]


@pytest.fixture
async def signet_core() -> AsyncIterator[FakeCore]:
    core = FakeCore(COOKIE_PASSWORD, signet=True)
    async with json_rpc_server(core.handle) as core.url:
        yield core


class PoolProcess:
    """One `hashfarm pool` process whose output goes to a file."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for_line(self, needle: str, limit: float = START_LIMIT) -> None:
        deadline = time.monotonic() + limit
        while needle not in self.text():
            assert self.proc.returncode is None, f"the pool exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {needle!r} in the log:\n{self.text()}"
            await asyncio.sleep(0.1)

    async def stop_with(self, sig: signal.Signals) -> tuple[int, float]:
        """Send `sig`; the exit status and how long the exit took (fails past EXIT_LIMIT)."""
        sent = time.monotonic()
        self.proc.send_signal(sig)
        try:
            status = await asyncio.wait_for(self.proc.wait(), EXIT_LIMIT)
        except TimeoutError:
            raise AssertionError(
                f"the pool ignored {sig.name} for {EXIT_LIMIT}s:\n{self.text()[-3000:]}"
            ) from None
        return status, time.monotonic() - sent

    async def exit_status(self, limit: float = START_LIMIT) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), limit)
        except TimeoutError:
            raise AssertionError(f"the pool did not exit:\n{self.text()[-3000:]}") from None


@pytest.fixture
async def start_pool(tmp_path: Path) -> AsyncIterator[Any]:
    """`await start_pool(*args, env=...)`: the process runs in tmp_path with HOME=tmp_path
    (so Core's default data directory is tmp_path/.bitcoin); killed at the end if alive."""
    started: list[PoolProcess] = []

    async def start(*args: str, env: dict[str, str] | None = None) -> PoolProcess:
        log = tmp_path / f"pool-{len(started)}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("HASHFARM_")}
        environ.update({"HOME": str(tmp_path), **(env or {})})
        base = ["--stratum-port", "0", "--http-port", "0",
                "--db", f"sqlite:///{tmp_path / 'pool.sqlite3'}"]  # fmt: skip
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                str(HASHFARM), "pool", *base, *args, stdout=out, stderr=out, env=environ,
                cwd=tmp_path,
            )  # fmt: skip
        started.append(PoolProcess(proc, log))
        return started[-1]

    try:
        yield start
    finally:
        for pool in started:
            if pool.proc.returncode is None:
                pool.proc.kill()
                await pool.proc.wait()


def write_cookie(home: Path, relative: str, password: str = COOKIE_PASSWORD) -> Path:
    path = home / ".bitcoin" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"__cookie__:{password}")
    return path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_a_pool_still_waiting_for_its_node(
    start_pool: Any, sig: signal.Signals
) -> None:
    # Before: the signal only set an event read once the pool was up, so a pool waiting for
    # a node that is not there ignored it for the whole wait (~88 s).
    pool = await start_pool("--rpc-url", f"http://127.0.0.1:{free_port()}/")
    await pool.wait_for_line("cannot connect")
    await asyncio.sleep(2.0)  # well into the wait
    status, took = await pool.stop_with(sig)
    text = pool.text()
    assert status == 0, text
    assert took < EXIT_LIMIT
    assert "stopped before the pool was ready" in text
    assert "Traceback" not in text


async def test_mainnet_reaches_cores_port_with_the_cookie_core_writes(
    start_pool: Any, tmp_path: Path
) -> None:
    cookie = write_cookie(tmp_path, ".cookie")
    pool = await start_pool("--network", "mainnet")
    await pool.wait_for_line("hashfarm.cli.pool: node:")
    text = pool.text()
    assert f"node: http://127.0.0.1:8332/, auth: cookie file {cookie}" in text
    assert "use --stratum-host 0.0.0.0" in text  # a Bitaxe on the LAN could not connect
    if pool.proc.returncode is None:  # (unless this machine runs a real mainnet node)
        status, _ = await pool.stop_with(signal.SIGTERM)
        assert status == 0


async def test_signet_sends_the_signet_rule_and_finds_the_signet_cookie(
    start_pool: Any, tmp_path: Path, signet_core: FakeCore
) -> None:
    cookie = write_cookie(tmp_path, "signet/.cookie")
    write_cookie(tmp_path, ".cookie", "mainnet-cookie-is-not-ours")
    pool = await start_pool("--network", "signet", "--rpc-url", signet_core.url)
    await pool.wait_for_line("waiting for the node")  # Core said "warming up": rules were fine
    status, _ = await pool.stop_with(signal.SIGTERM)
    assert status == 0, pool.text()
    assert f"auth: cookie file {cookie}" in pool.text()
    templates = signet_core.templates()
    assert templates
    for authorization, doc in templates:
        assert authorization == signet_core.expected
        assert doc["params"][0]["rules"] == ["segwit", "signet"]


@pytest.mark.parametrize("via", ["file", "environment", "flag"])
async def test_the_rpc_password_can_stay_out_of_ps(
    start_pool: Any, tmp_path: Path, via: str
) -> None:
    secret = "pw-" + os.urandom(8).hex()
    core = FakeCore(secret, signet=False)
    async with json_rpc_server(core.handle) as core.url:
        args = ["--rpc-url", core.url, "--rpc-user", "hashfarm"]
        env: dict[str, str] = {}
        if via == "file":
            (tmp_path / "rpc.secret").write_text(secret + "\n")
            args += ["--rpc-password-file", str(tmp_path / "rpc.secret")]
        elif via == "environment":
            env["HASHFARM_NODE_RPC_PASSWORD"] = secret
        else:
            args += ["--rpc-password", secret]
        pool = await start_pool(*args, env=env)
        await pool.wait_for_line("waiting for the node")  # past auth: the node said warming up
        status, _ = await pool.stop_with(signal.SIGTERM)
    text = pool.text()
    assert status == 0, text
    assert all(core.accepts(a) for a, _ in core.requests)
    assert secret not in text
    warned = "--rpc-password is visible to every user" in text
    assert warned == (via == "flag")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://pool:s3cr3t@127.0.0.1:{port}/pool?sslmod=require",  # a mistyped option
        "postgresql://pool:s3 cr3t@127.0.0.1:{port}/pool",  # libpq quotes this part back
        "postgresq://pool:s3cr3t@127.0.0.1:{port}/pool",  # a mistyped scheme
        "postgresql://pool:s3cr3t@127.0.0.1:{port}/pool",  # nothing listens there
    ],
)
async def test_a_bad_storage_url_fails_in_one_line_without_its_password(
    start_pool: Any, url: str
) -> None:
    pool = await start_pool("--db", url.format(port=free_port()), "--rpc-password", "x")
    assert await pool.exit_status() == 1
    text = pool.text()
    assert "s3cr3t" not in text
    assert "s3 cr3t" not in text
    assert "Traceback" not in text
    (error,) = [line for line in text.splitlines() if " ERROR " in line]
    assert "storage.url" in error or "postgresql" in error
    assert "pool:***@127.0.0.1" in text  # the start-up line shows the URL, redacted


async def test_a_refused_cookie_is_one_error_line_naming_the_file(
    start_pool: Any, tmp_path: Path, signet_core: FakeCore
) -> None:
    cookie = write_cookie(tmp_path, "signet/.cookie", "a-stale-cookie")  # the node restarted
    pool = await start_pool("--network", "signet", "--rpc-url", signet_core.url)
    assert await pool.exit_status() == 1
    text = pool.text()
    (error,) = [line for line in text.splitlines() if " ERROR " in line]
    assert f"refused the credentials (cookie file {cookie})" in error
    assert "a-stale-cookie" not in text
    assert "Traceback" not in text
    assert len(signet_core.requests) == 2  # the cookie is read again once, then no retries


@pytest.mark.node
async def test_a_ready_pool_on_a_real_node_still_stops_cleanly_on_sigterm(
    start_pool: Any, regtest_node: RegtestNode
) -> None:
    env = {"HASHFARM_NODE_RPC_PASSWORD": regtest_node.api_key}
    pool = await start_pool("--rpc-url", regtest_node.rpc_url, env=env)
    await pool.wait_for_line("pool ready")
    status, _ = await pool.stop_with(signal.SIGTERM)
    text = pool.text()
    assert status == 0, text
    assert "stopping" in text
    assert "stopped before the pool was ready" not in text
    assert regtest_node.api_key not in text
