"""A front end's share flow: accepted shares and blocks to the broker, with their ids.

A Stratum front end (`cluster.role = "stratum"`) keeps no database. Its ledger is a
`BrokerLedger`: an accepted share is encoded (`encode_share`) and published durably through
`hashfarm.broker.Publisher`; the miner is answered `true` only in the publisher's
`done(None)`, which comes once the broker acknowledged the message or, while the broker is
away, once the front end's local spool has fsynced it. The ledger role (`pool/ledgerrole.py`)
consumes both subjects into PostgreSQL.

The share id is the share's header hash (display-order hex, as block hashes are shown): the
judge has already computed it (`Verdict.hash`), it is the same for the same header on any
front end, and no two different shares have it. It is the broker's message id (JetStream drops
a re-published id within its dedup window) and the `shares.share_id` unique key (the ledger
skips an id it already holds), so a replay after a crash, a redelivery and one header sent to
two front ends are each credited once.

The wire format is a JSON array, version first: small (~210 bytes), cheap to build (orjson), and
readable with `nats stream view` when an operator needs to look. Only accepted shares travel:
rejected ones are counted by the front end's statistics, as before.
"""

from __future__ import annotations

import asyncio
import logging
import math
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from hashfarm.errors import HashfarmError
from hashfarm.pool.records import BlockRecord, ShareRecord, new_share_record
from hashfarm.pool.storage.base import LedgerBacklogFull

log = logging.getLogger(__name__)

SHARE_FORMAT = 1  # first element of an encoded share: a reader refuses other versions
BLOCK_FORMAT = 1
BLOCKS_KEPT = 1000  # blocks a front end keeps in memory for its API (the ledger keeps all)

Done = Callable[[BaseException | None], None]


class ShareFlowError(HashfarmError):
    """A broker message that is not a share or block this version can read."""


class SpoolFull(LedgerBacklogFull):
    """Neither the broker nor the front end's spool took the share: it is not acknowledged."""


class PublisherLike(Protocol):
    """What a front end needs of `hashfarm.broker.Publisher` (its interface, structurally)."""

    async def start(self) -> None: ...

    def publish(self, subject: str, msg_id: str, payload: bytes, done: Done) -> None: ...

    async def close(self) -> None: ...

    def stats(self) -> Any: ...


def subjects(prefix: str) -> tuple[str, str]:
    """(shares subject, blocks subject) under `cluster.subject_prefix`."""
    return f"{prefix}.shares", f"{prefix}.blocks"


# -- the share id and the codec ------------------------------------------------------------


def share_id(rec: ShareRecord) -> str:
    """The share's id: its header hash, display-order hex (ShareFlowError when it has none)."""
    if rec.header_hash is None or len(rec.header_hash) != 32:
        raise ShareFlowError("a share without its header hash has no id")
    return rec.header_hash[::-1].hex()


def block_msg_id(rec: BlockRecord) -> str:
    """The block record's message id: its hash and verdict (a block is recorded when it is
    submitted and again with the node's final word; both must reach the ledger)."""
    verdict = zlib.crc32((rec.node_verdict or "").encode()) if rec.node_verdict else 0
    return f"b{rec.hash_hex}{'a' if rec.accepted_by_node else 'r'}{verdict:08x}"


def encode_share(rec: ShareRecord, sid: str | None = None) -> bytes:
    """An accepted share as the broker carries it (`sid`: its `share_id`, if known)."""
    return orjson.dumps(
        [
            SHARE_FORMAT,
            rec.worker,
            rec.account,
            rec.job_id,
            rec.height,
            rec.difficulty,
            rec.share_difficulty,
            rec.time,
            rec.extranonce1_hex,
            rec.block_hash_hex,
            share_id(rec) if sid is None else sid,
        ]
    )


def decode_share(payload: bytes) -> ShareRecord:
    """The accepted share `encode_share` made (ShareFlowError for anything else)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ShareFlowError(f"share message is not JSON: {exc}") from exc
    if not isinstance(doc, list) or len(doc) != 11 or doc[0] != SHARE_FORMAT:
        raise ShareFlowError("not a version-1 share message")
    _, worker, account, job_id, height, diff, share_diff, when, en1, block, sid = doc
    _check(all(isinstance(v, str) for v in (worker, account, job_id, en1, sid)), "strings")
    _check(type(height) is int and 0 <= height < 1 << 32, "height")
    _check(all(_finite(v) for v in (diff, share_diff, when)), "numbers")
    _check(block is None or (isinstance(block, str) and _hash_hex(block)), "block hash")
    _check(_hash_hex(sid), "share id")
    return new_share_record(
        worker,
        account,
        job_id,
        height,
        float(diff),
        float(share_diff),
        True,
        None,
        float(when),
        en1,
        block,
        bytes.fromhex(sid)[::-1],
    )


def encode_block(rec: BlockRecord) -> bytes:
    """A submitted block (and the node's verdict) as the broker carries it."""
    return orjson.dumps(
        [
            BLOCK_FORMAT,
            rec.height,
            rec.hash_hex,
            rec.reward_sats,
            rec.finder_worker,
            rec.finder_account,
            rec.time,
            rec.accepted_by_node,
            rec.node_verdict,
        ]
    )


def decode_block(payload: bytes) -> BlockRecord:
    """The block record `encode_block` made (ShareFlowError for anything else)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ShareFlowError(f"block message is not JSON: {exc}") from exc
    if not isinstance(doc, list) or len(doc) != 9 or doc[0] != BLOCK_FORMAT:
        raise ShareFlowError("not a version-1 block message")
    _, height, hash_hex, reward, worker, account, when, ok, verdict = doc
    _check(type(height) is int and 0 <= height < 1 << 32, "height")
    _check(isinstance(hash_hex, str) and _hash_hex(hash_hex), "block hash")
    _check(type(reward) is int and reward >= 0, "reward")
    _check(isinstance(worker, str) and isinstance(account, str), "finder")
    _check(_finite(when) and isinstance(ok, bool), "time/verdict")
    _check(verdict is None or isinstance(verdict, str), "node verdict")
    return BlockRecord(height, hash_hex, reward, worker, account, float(when), ok, verdict)


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ShareFlowError(f"malformed message: {what}")


def _finite(v: object) -> bool:
    return type(v) in (int, float) and math.isfinite(v)  # type: ignore[arg-type]


def _hash_hex(text: str) -> bool:
    """64 lowercase hex digits (bytes.fromhex would also take spaces and uppercase)."""
    if len(text) != 64 or not text.isascii() or not text.isalnum() or text != text.lower():
        return False
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


# -- the front end's ledger ----------------------------------------------------------------


class BrokerLedger:
    """A front end's `ShareLedger`: shares and blocks to the broker, acknowledged when it (or
    the spool) holds them. Pool's share path calls `enqueue_share` (no task, coroutine or
    future per share, as with the group-commit ledger)."""

    def __init__(self, publisher: PublisherLike, subject_prefix: str) -> None:
        self.publisher = publisher
        self.shares_subject, self.blocks_subject = subjects(subject_prefix)
        self._blocks: deque[BlockRecord] = deque(maxlen=BLOCKS_KEPT)
        self._refusing = False  # spool full: logged once until a share is taken again
        self.shares_published = 0  # acknowledged by the broker or the spool
        self.shares_refused = 0

    async def start(self) -> None:
        """Connect to the broker (or start spooling while it is away)."""
        await self.publisher.start()

    def enqueue_share(self, rec: ShareRecord, done: Done) -> None:
        """Publish one accepted share; `done(None)` once it is durable, `done(SpoolFull)`
        when neither the broker nor the spool took it. Raises ShareFlowError at once (done
        never called) for a share without its header hash."""
        msg_id = share_id(rec)
        payload = encode_share(rec, msg_id)

        def published(error: BaseException | None) -> None:
            if error is None:
                self.shares_published += 1
                if self._refusing:
                    self._refusing = False
                    log.info("the broker or the spool takes shares again")
                done(None)
                return
            self.shares_refused += 1
            if not self._refusing:
                self._refusing = True
                log.error("shares refused: neither the broker nor the spool takes them (%s)",
                          error)  # fmt: skip
            done(SpoolFull(f"share not durable: {error}"))

        self.publisher.publish(self.shares_subject, msg_id, payload, published)

    async def record_share(self, rec: ShareRecord) -> None:
        """Publish one share; return once it is durable (raises SpoolFull otherwise)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.enqueue_share(rec, lambda error: _settle(future, error))
        await future

    async def record_block(self, rec: BlockRecord) -> None:
        """Publish one block record; return once it is durable."""
        self._blocks.appendleft(rec)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.publisher.publish(
            self.blocks_subject, block_msg_id(rec), encode_block(rec),
            lambda error: _settle(future, error),
        )  # fmt: skip
        await future

    async def close(self) -> None:
        """Flush what the broker takes, fsync the rest into the spool."""
        await self.publisher.close()

    async def recent_blocks(self, limit: int = 50) -> list[BlockRecord]:
        """This front end's blocks, newest first (the ledger's database holds every one)."""
        return list(self._blocks)[:limit]


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(
            error if isinstance(error, HashfarmError) else SpoolFull(f"not durable: {error}")
        )
