"""RPCClient against a real HTTP server on 127.0.0.1 that misbehaves on purpose.

The server answers like bitcoind (JSON-RPC 1.0 over HTTP with basic auth) but follows a
plan per request: drop the connection, answer 401, 500 with or without a JSON error, 503,
warm-up (-28), or stall. What the client must do is what a pool needs from it: retry the
transient failures, fail fast on the permanent ones, never resend a payment.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from hashfarm.errors import NodeAuthError, NodeError, NodeUnavailable, RPCError
from hashfarm.node.rpc import RPCClient
from realdata import load_block_bytes

Action = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]


def _reply(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def _echo(doc: Any) -> Any:
    """What a healthy server answers: each call's method and params, as its result."""
    if isinstance(doc, list):
        return [_echo(item) for item in doc]
    return {"result": {"method": doc["method"], "params": doc["params"]}, "error": None,
            "id": doc["id"]}  # fmt: skip


async def ok(_request: web.Request, doc: Any) -> web.StreamResponse:
    return _reply(_echo(doc))


def error(code: int, message: str, status: int = 500) -> Action:
    async def action(_request: web.Request, doc: Any) -> web.StreamResponse:
        return _reply({"result": None, "error": {"code": code, "message": message},
                       "id": doc["id"]}, status)  # fmt: skip

    return action


def http(status: int, text: str = "") -> Action:
    async def action(_request: web.Request, _doc: Any) -> web.StreamResponse:
        return web.Response(status=status, text=text)

    return action


async def drop(request: web.Request, _doc: Any) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.abort()  # the node dies mid-request: no status line at all
    return web.Response()


def stall(seconds: float) -> Action:
    async def action(_request: web.Request, doc: Any) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return _reply(_echo(doc))

    return action


@dataclass
class Seen:
    authorization: str | None
    peer_port: int
    doc: Any
    body: bytes = b""  # the request body as it arrived
    content_length: int | None = None


@dataclass
class MisbehavingNode:
    """The server's plan (one action per request; then healthy) and what it saw."""

    url: str = ""
    password: str = "secret"
    plan: deque[Action] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        doc = orjson.loads(body)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen = Seen(request.headers.get("Authorization"), peer[1] if peer else 0, doc, body)
        self.seen.append(replace(seen, content_length=request.content_length))
        expected = "Basic " + base64.b64encode(f"user:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        action = self.plan.popleft() if self.plan else ok
        return await action(request, doc)

    def methods(self) -> list[str]:
        return [s.doc["method"] if isinstance(s.doc, dict) else "batch" for s in self.seen]


@pytest.fixture
async def server() -> AsyncIterator[MisbehavingNode]:
    node = MisbehavingNode()
    app = web.Application(client_max_size=8 * 1024 * 1024)  # a mainnet block is ~2 MB hex
    app.router.add_post("/", node.handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    node.url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    try:
        yield node
    finally:
        await runner.cleanup()


@pytest.fixture
async def client(server: MisbehavingNode) -> AsyncIterator[RPCClient]:
    async with RPCClient(
        server.url, user="user", password="secret", timeout=2, backoff=0.001, retries=3
    ) as rpc:
        yield rpc


async def test_call_sends_json_rpc_with_basic_auth(
    client: RPCClient, server: MisbehavingNode
) -> None:
    assert await client.call("getblockhash", 7) == {"method": "getblockhash", "params": [7]}
    assert server.seen[0].doc["jsonrpc"] == "1.0"
    assert server.seen[0].authorization == "Basic " + base64.b64encode(b"user:secret").decode()


async def test_credentials_in_the_url_are_used_and_kept_out_of_it(server: MisbehavingNode) -> None:
    async with RPCClient(server.url.replace("//", "//user:secret@")) as rpc:
        assert rpc.url == server.url
        assert await rpc.call("getblockcount") == {"method": "getblockcount", "params": []}


async def test_keep_alive_reuses_one_connection(client: RPCClient, server: MisbehavingNode) -> None:
    for _ in range(20):
        await client.call("getbestblockhash")  # the echo server's result is not a hash
    assert len(server.seen) == 20
    assert len({s.peer_port for s in server.seen}) == 1


async def test_wrong_password_is_permanent(server: MisbehavingNode) -> None:
    async with RPCClient(server.url, user="user", password="nope", backoff=0.001) as rpc:
        with pytest.raises(NodeAuthError, match="401"):
            await rpc.call("getblockcount")
    assert len(server.seen) == 1  # no retries for a permanent failure


async def test_core_error_object_with_http_500_is_an_rpc_error(
    client: RPCClient, server: MisbehavingNode
) -> None:
    server.plan.append(error(-8, "Block height out of range"))
    with pytest.raises(RPCError) as info:
        await client.getblockhash(10**6)
    assert (info.value.code, info.value.message, info.value.method) == (
        -8, "Block height out of range", "getblockhash",
    )  # fmt: skip
    assert len(server.seen) == 1


async def test_bcoin_error_object_with_http_200_is_an_rpc_error(
    client: RPCClient, server: MisbehavingNode
) -> None:
    server.plan.append(error(-32601, "Method not found.", status=200))
    with pytest.raises(RPCError, match=r"\[-32601\] Method not found"):
        await client.call("nosuchmethod")


@pytest.mark.parametrize("code", [None, "abc", 1.5])
async def test_an_error_code_that_is_not_an_integer_is_still_an_rpc_error(
    client: RPCClient, server: MisbehavingNode, code: Any
) -> None:
    server.plan.append(error(code, "odd node"))
    with pytest.raises(RPCError) as info:
        await client.call("getblockcount")
    assert (info.value.code, info.value.message) == (-1, f"odd node (error code {code!r})")


async def test_warm_up_is_waited_out(
    client: RPCClient, server: MisbehavingNode, caplog: pytest.LogCaptureFixture
) -> None:
    server.plan.extend([error(-28, "Loading block index..."), error(-28, "Verifying blocks...")])
    with caplog.at_level(logging.INFO, logger="hashfarm.node.rpc"):
        assert await client.call("getblockcount") == {"method": "getblockcount", "params": []}
    assert len(server.seen) == 3
    assert "warming up" in caplog.text
    assert "again after 2 retries" in caplog.text  # the recovery is logged


async def test_endless_warm_up_gives_up_after_the_retries(
    client: RPCClient, server: MisbehavingNode
) -> None:
    server.plan.extend([error(-28, "Loading block index...")] * 10)
    with pytest.raises(NodeUnavailable, match="warming up"):
        await client.call("getblockcount")
    assert len(server.seen) == 1 + client.retries


async def test_html_500_and_503_are_transient(client: RPCClient, server: MisbehavingNode) -> None:
    server.plan.extend([http(500, "<html>proxy error</html>"), http(503, "Work queue depth")])
    assert await client.call("getmininginfo") == {"method": "getmininginfo", "params": []}
    assert len(server.seen) == 3


async def test_other_http_errors_without_json_are_permanent(
    client: RPCClient, server: MisbehavingNode
) -> None:
    server.plan.append(http(405, "Method Not Allowed"))
    with pytest.raises(NodeError, match="HTTP 405"):
        await client.call("getblockcount")
    assert len(server.seen) == 1


async def test_dropped_connection_is_retried_for_idempotent_calls(
    client: RPCClient, server: MisbehavingNode
) -> None:
    server.plan.extend([drop, drop])
    assert await client.submitblock("00") is not None
    assert server.methods() == ["submitblock"] * 3


async def test_a_payment_is_never_sent_twice(client: RPCClient, server: MisbehavingNode) -> None:
    server.plan.append(drop)
    with pytest.raises(NodeUnavailable, match="connection lost"):
        await client.sendtoaddress("rb1qexample", 1.0)
    assert server.methods() == ["sendtoaddress"]


async def test_slow_node_times_out_per_attempt(server: MisbehavingNode) -> None:
    server.plan.extend([stall(1.0), stall(1.0)])
    async with RPCClient(server.url, user="user", password="secret", timeout=0.2,
                         retries=1, backoff=0.001) as rpc:  # fmt: skip
        with pytest.raises(NodeUnavailable, match=r"no answer within 0.2s"):
            await rpc.getbestblockhash()
        assert len(server.seen) == 2
        # A longpoll may wait longer than the client's default, for that call only.
        server.plan.append(stall(0.3))
        template = await rpc.getblocktemplate(longpollid="abc", attempt_timeout=2)
    assert template["params"] == [{"rules": ["segwit"], "longpollid": "abc"}]


async def test_refused_connection_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        async with RPCClient(f"http://127.0.0.1:{port}/", retries=2, backoff=0.001) as rpc:
            with pytest.raises(NodeUnavailable, match="cannot connect"):
                await rpc.getblockcount()


async def test_batch_matches_answers_by_id(client: RPCClient, server: MisbehavingNode) -> None:
    async def reversed_answers(_request: web.Request, doc: Any) -> web.StreamResponse:
        answers = _echo(doc)[::-1]
        answers[0] = {"result": None, "error": {"code": -5, "message": "nope"},
                      "id": answers[0]["id"]}  # fmt: skip
        return _reply(answers)

    server.plan.extend([reversed_answers, reversed_answers])
    calls = ["getblockcount", ("getblockhash", [3]), ("getblock", ["ab", 0])]
    results = await client.batch(calls, return_exceptions=True)
    assert [r["method"] for r in results[:2]] == ["getblockcount", "getblockhash"]
    assert results[1]["params"] == [3]
    assert isinstance(results[2], RPCError)
    assert results[2].code == -5
    with pytest.raises(RPCError, match="getblock failed"):
        await client.batch(calls)
    assert await client.batch([]) == []
    assert len(server.seen) == 2


async def test_submitblock_reasons_read_alike(client: RPCClient, server: MisbehavingNode) -> None:
    async def answer(value: Any) -> Action:
        async def action(_request: web.Request, doc: Any) -> web.StreamResponse:
            return _reply({"result": value, "error": None, "id": doc["id"]})

        return action

    server.plan.extend([await answer(None), await answer("rejected: bad-txnmrklroot"),
                        await answer("high-hash")])  # fmt: skip
    assert await client.submitblock("00") is None
    assert await client.submitblock("00") == "bad-txnmrklroot"
    assert await client.submitblock("00") == "high-hash"


async def test_submitblock_sends_a_mainnet_block_as_the_exact_json_body(
    client: RPCClient, server: MisbehavingNode
) -> None:
    block_hex = load_block_bytes("mainnet-481829").hex()  # 2,020 txs: sent in slices
    await client.call("getblockcount")
    assert await client.submitblock(block_hex) is not None
    expected = orjson.dumps(
        {"jsonrpc": "1.0", "id": 2, "method": "submitblock", "params": [block_hex]}
    )
    assert server.seen[1].body == expected
    assert server.seen[1].content_length == len(expected)


async def test_a_large_body_is_sent_whole_again_after_a_dropped_connection(
    client: RPCClient, server: MisbehavingNode
) -> None:
    block_hex = load_block_bytes("mainnet-481829").hex()
    server.plan.extend([drop, drop])
    assert await client.submitblock(block_hex) is not None
    assert server.methods() == ["submitblock"] * 3
    assert server.seen[0].body == server.seen[1].body == server.seen[2].body
    assert server.seen[2].doc["params"] == [block_hex]


@pytest.mark.parametrize(
    ("result", "call", "message"),
    [
        (None, lambda c: c.getbestblockhash(), "getbestblockhash: expected a string, got 'None'"),
        (7, lambda c: c.getblockhash(7), "getblockhash: expected a string, got '7'"),
        ("zz", lambda c: c.getrawblock("00"), "getblock: not a hex block: 'zz'"),
        (None, lambda c: c.getrawmempool(), "getrawmempool: expected a list of strings"),
        ([1], lambda c: c.generatetoaddress(1, "x"), "generatetoaddress: expected a list"),
    ],
)
async def test_a_result_of_the_wrong_type_is_an_error(
    client: RPCClient, server: MisbehavingNode, result: Any, call: Any, message: str
) -> None:
    """A null or a number where a hash belongs must not become the string 'None' or '7'."""

    async def answer(_request: web.Request, doc: Any) -> web.StreamResponse:
        return _reply({"result": result, "error": None, "id": doc["id"]})

    server.plan.append(answer)
    with pytest.raises(NodeError, match=re.escape(message)):
        await call(client)


async def test_not_json_rpc_is_an_error(client: RPCClient, server: MisbehavingNode) -> None:
    async def weird(_request: web.Request, _doc: Any) -> web.StreamResponse:
        return _reply([1, 2, 3])

    server.plan.append(weird)
    with pytest.raises(NodeError, match="not a JSON-RPC answer"):
        await client.call("getblockcount")


async def test_cookie_is_read_again_when_the_node_restarts(
    server: MisbehavingNode, tmp_path: Path
) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text("user:first")
    server.password = "first"
    async with RPCClient(server.url, cookie_file=cookie, backoff=0.001) as rpc:
        await rpc.call("getblockcount")
        cookie.write_text("user:second")  # the node restarted and drew a new cookie
        server.password = "second"
        await rpc.call("getblockcount")
        server.password = "third"  # ...but this time the file does not say so
        with pytest.raises(NodeAuthError):
            await rpc.getblockcount()
    assert [s.authorization for s in server.seen].count(None) == 0
    assert len(server.seen) == 5  # ok, 401 + ok with the new cookie, 401 + 401


async def test_missing_cookie_means_node_not_started(tmp_path: Path) -> None:
    async with RPCClient("http://127.0.0.1:1/", cookie_file=tmp_path / ".cookie",
                         retries=1, backoff=0.001) as rpc:  # fmt: skip
        with pytest.raises(NodeUnavailable, match=r"cookie file .* not found"):
            await rpc.getblockcount()
