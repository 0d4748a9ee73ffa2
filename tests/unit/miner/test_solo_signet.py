"""`hashfarm miner --solo` on signet names the signet rule, as Core requires.

A real HTTP server on 127.0.0.1 answers like Bitcoin Core on signet (getblockchaininfo says
"signet"; a getblocktemplate without the "signet" rule gets Core's refusal, RPC error -8),
and the real RPC client and solo miner talk to it.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from hashfarm.miner.display import Reporter
from hashfarm.miner.settings import MinerSettings
from hashfarm.miner.solo import SoloMiner
from hashfarm.miner.stats import MinerStats
from hashfarm.node.rpc import RPCClient
from rpc_server import SIGNET_REFUSAL, json_rpc_server

# A signet P2WPKH address (the BIP 173 test vector's program, tb prefix)
SIGNET_ADDRESS = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"


class SignetCore:
    """Records each request; refuses a template request that lacks the signet rule."""

    def __init__(self) -> None:
        self.url = ""
        self.templates: list[list[str]] = []  # the rules of each getblocktemplate request
        self.asked = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        if doc["method"] == "getblockchaininfo":
            return _reply({"result": {"chain": "signet"}, "error": None, "id": doc["id"]})
        if doc["method"] == "getblocktemplate":
            rules = doc["params"][0].get("rules", [])
            self.templates.append(rules)
            self.asked.set()
            if "signet" not in rules:
                error = {"code": -8, "message": SIGNET_REFUSAL}
                return _reply({"result": None, "error": error, "id": doc["id"]}, status=500)
        error = {"code": -1, "message": "not served by this test node"}
        return _reply({"result": None, "error": error, "id": doc["id"]}, status=500)


def _reply(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


@pytest.fixture
async def core() -> AsyncIterator[SignetCore]:
    node = SignetCore()
    async with json_rpc_server(node.handle) as node.url:
        yield node


async def test_solo_miner_asks_signet_for_a_template_with_the_signet_rule(
    core: SignetCore,
) -> None:
    settings = MinerSettings(output="quiet")
    stats = MinerStats(settings.backend, settings.threads, time.monotonic())
    reporter = Reporter(stats, "quiet", stream=io.StringIO())
    async with RPCClient(core.url) as rpc:
        miner = SoloMiner(settings, rpc, SIGNET_ADDRESS, stats, reporter)
        task = asyncio.create_task(miner.run())
        try:
            await asyncio.wait_for(core.asked.wait(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert core.templates[0] == ["segwit", "signet"]
