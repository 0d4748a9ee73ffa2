"""getblocktemplate's `rules` per network, sent by the real RPC client to a real HTTP server.

The server on 127.0.0.1 answers like Bitcoin Core on signet: a request whose rules lack
"signet" gets Core's own refusal (RPC error -8, HTTP 500), any other a template-shaped reply.
It records every request body as it arrived on the socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from hashfarm.errors import RPCError
from hashfarm.node.rpc import RPCClient
from hashfarm.node.template import gbt_rules
from rpc_server import SIGNET_REFUSAL, json_rpc_server


class SignetCore:
    """The recorded request bodies (parsed) and Core's answers on signet."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Any] = []

    async def handle(self, request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        self.requests.append(doc)
        rules = doc["params"][0].get("rules", []) if doc["params"] else []
        if doc["method"] == "getblocktemplate" and "signet" not in rules:
            error = {"code": -8, "message": SIGNET_REFUSAL}
            return _reply({"result": None, "error": error, "id": doc["id"]}, status=500)
        return _reply({"result": {"rules": rules, "longpollid": "x"}, "error": None,
                       "id": doc["id"]})  # fmt: skip


def _reply(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


@pytest.fixture
async def core() -> AsyncIterator[SignetCore]:
    node = SignetCore()
    async with json_rpc_server(node.handle) as node.url:
        yield node


@pytest.mark.parametrize(
    ("network", "rules"),
    [
        ("signet", ("segwit", "signet")),
        ("mainnet", ("segwit",)),
        ("testnet4", ("segwit",)),
        ("regtest", ("segwit",)),
        ("regtest-bcoin", ("segwit",)),
    ],
)
def test_rules_per_network(network: str, rules: tuple[str, ...]) -> None:
    assert gbt_rules(network) == rules


async def test_a_signet_client_names_the_signet_rule_on_the_wire(core: SignetCore) -> None:
    async with RPCClient(core.url, gbt_rules=gbt_rules("signet"), retries=0) as rpc:
        assert (await rpc.getblocktemplate())["rules"] == ["segwit", "signet"]
        await rpc.getblocktemplate(longpollid="x", attempt_timeout=5)  # the longpoll too
    assert [r["params"] for r in core.requests] == [
        [{"rules": ["segwit", "signet"]}],
        [{"rules": ["segwit", "signet"], "longpollid": "x"}],
    ]


async def test_without_the_signet_rule_core_refuses(core: SignetCore) -> None:
    # what the pool did on signet before it asked by network
    async with RPCClient(core.url, retries=0) as rpc:
        with pytest.raises(RPCError, match="signet rule set") as info:
            await rpc.getblocktemplate()
    assert info.value.code == -8
    assert core.requests[0]["params"] == [{"rules": ["segwit"]}]


async def test_explicit_rules_still_win(core: SignetCore) -> None:
    async with RPCClient(core.url, gbt_rules=gbt_rules("signet"), retries=0) as rpc:
        await rpc.getblocktemplate(rules=("segwit", "signet", "taproot"))
    assert core.requests[0]["params"] == [{"rules": ["segwit", "signet", "taproot"]}]
