"""Blocks: the list (`/blocks`) and one block (`/blocks/{hash}`).

The list is `/api/blocks` (the ledger, newest first) with confirmations counted from the
tip the pool works on. One block is checked against the node: whether the active chain still
holds it at its height (confirmations, or "replaced"), and its coinbase outputs read from the
raw block, each with its address and whether it pays the finder. `/api/blocks/{hash}` is the
same document as JSON.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Protocol

from aiohttp import web

from hashfarm.api.admin import error, respond
from hashfarm.api.params import int_arg, query_args
from hashfarm.api.readmodel import ReadModel
from hashfarm.api.web.feed import LiveFeed
from hashfarm.api.web.site import Site
from hashfarm.chain.address import address_to_script, script_to_address
from hashfarm.chain.block import Block
from hashfarm.errors import HashfarmError, LedgerError

log = logging.getLogger("hashfarm.api.web")

LIST_DEFAULT = 50
LIST_MAX = 1000  # the ledger's own limit per /api/blocks request
HASH_RE = re.compile(r"[0-9a-f]{64}")
NODE_TIMEOUT = 10.0  # seconds one block page waits for the node


class BlockReads(Protocol):
    """The node reads one block page makes (`hashfarm.node.rpc.RPCClient` has them)."""

    async def getblockhash(self, height: int) -> str: ...
    async def getrawblock(self, block_hash: str) -> bytes: ...


def add_routes(app: web.Application, site: Site) -> None:
    """Register the block list, one block, the list's fragment and one block's JSON."""

    async def listing(request: web.Request) -> web.Response:
        args = query_args(request.query.items(), ("limit",))
        limit = int_arg(args, "limit", LIST_DEFAULT, 1, LIST_MAX)
        ctx = await _list(site.model(request), site.feed, limit)
        return site.render(request, "blocks.html", title="Blocks", limit=limit, **ctx)

    async def fragment(request: web.Request) -> web.Response:
        args = query_args(request.query.items(), ("limit",))
        limit = int_arg(args, "limit", LIST_DEFAULT, 1, LIST_MAX)
        ctx = await _list(site.model(request), site.feed, limit)
        return site.render(request, "blocks_table.html", **ctx)

    async def one(request: web.Request) -> web.Response:
        query_args(request.query.items(), ())
        block_hash = request.match_info["hash"].lower()
        if not HASH_RE.fullmatch(block_hash):
            return site.not_found(request, "A block hash is 64 hexadecimal digits.")
        try:
            doc = await block_json(site.model(request), site.feed, block_hash)
        except LedgerError:
            message = "The ledger cannot be read right now; try again."
            return site.render(
                request, "error.html", status=503, title="Ledger unavailable", message=message
            )
        if doc is None:
            return site.not_found(request, f"The pool has not submitted block {block_hash}.")
        return site.render(request, "block.html", title=f"Block {doc['height']}", block=doc)

    async def api(request: web.Request) -> web.Response:
        query_args(request.query.items(), ())
        block_hash = request.match_info["hash"].lower()
        if not HASH_RE.fullmatch(block_hash):
            return error(400, "hash: 64 hexadecimal digits")
        try:
            doc = await block_json(site.model(request), site.feed, block_hash)
        except LedgerError:
            return error(503, "the ledger cannot be read right now; try again")
        if doc is None:
            return error(404, f"the pool has not submitted block {block_hash}")
        return respond(doc)

    site.page("/blocks", listing, nav="Blocks", order=30)
    site.page("/blocks/{hash}", one)
    app.router.add_get("/blocks/fragments/list", fragment)
    app.router.add_get("/api/blocks/{hash}", api)


async def _list(model: ReadModel, feed: LiveFeed, limit: int) -> dict[str, Any]:
    try:
        blocks = await feed.recent_blocks(model, limit)
    except LedgerError as exc:
        log.warning("web: blocks: %s", exc)
        return {"blocks": [], "blocks_error": "The ledger cannot be read right now."}
    return {"blocks": [feed.block_view(b) for b in blocks], "blocks_error": None}


async def block_json(model: ReadModel, feed: LiveFeed, block_hash: str) -> dict[str, Any] | None:
    """One block the pool submitted, checked against the node; None when the ledger's newest
    `LIST_MAX` blocks do not hold it."""
    newest = await feed.recent_blocks(model, LIST_MAX)
    found = [b for b in newest if b["hash_hex"] == block_hash]
    if not found:
        return None
    doc = feed.block_view(found[0]) | {"in_chain": None, "coinbase": None, "node_error": None}
    node: BlockReads | None = getattr(model.pool, "rpc", None)
    if node is None or not doc["accepted_by_node"]:
        return doc
    try:
        async with asyncio.timeout(NODE_TIMEOUT):
            in_chain = await node.getblockhash(doc["height"]) == block_hash
            raw = await node.getrawblock(block_hash)
    except (HashfarmError, TimeoutError) as exc:
        return doc | {"node_error": f"the node did not answer: {exc}"}
    if not in_chain:
        doc["confirmations"] = 0
    coinbase = Block.parse(raw).transactions[0]
    network = model.info.network
    finder = _script_of(doc["finder_account"], network)
    doc["in_chain"] = in_chain
    doc["coinbase"] = [
        {
            "index": i,
            "value_sats": out.value,
            "address": script_to_address(out.script_pubkey, network),
            "script_hex": out.script_pubkey.hex(),
            "pays_finder": finder is not None and out.script_pubkey == finder,
        }
        for i, out in enumerate(coinbase.outputs)
    ]
    return doc


def _script_of(account: str, network: str) -> bytes | None:
    try:
        return address_to_script(account, network)
    except HashfarmError:  # pooled mode: an account name, not an address
        return None
