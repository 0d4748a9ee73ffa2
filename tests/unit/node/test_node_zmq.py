"""hashblock_stream against a real ZMQ PUB socket on 127.0.0.1 speaking Core's format."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import zmq
import zmq.asyncio

from hashfarm.errors import NodeError
from hashfarm.node.zmq import hashblock_stream

# Mainnet blocks 1 and 2, display order, as Core's hashblock carries them.
BLOCK_1 = "00000000839a8e6886ab5951d76f411475428afc90947ee320161bbf18eb6048"
BLOCK_2 = "000000006a625f06636b8bb6ac7b960a8d03705d1ace08b1a19da3fdcc99ddbd"
PING = "ff" * 32  # sent until the subscription is live; a late copy may still arrive


class Publisher:
    """Core's side: a PUB socket sending [topic, hash, sequence] messages."""

    def __init__(self, context: zmq.asyncio.Context) -> None:
        self.socket = context.socket(zmq.PUB)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.url = f"tcp://127.0.0.1:{port}"
        self.sequence = 0  # Core numbers each topic's messages from 0

    async def send(self, block_hex: str, topic: bytes = b"hashblock") -> None:
        body = bytes.fromhex(block_hex)
        await self.socket.send_multipart([topic, body, self.sequence.to_bytes(4, "little")])
        self.sequence += topic == b"hashblock"  # (a real node counts each topic apart)


async def next_block(stream: AsyncIterator[str]) -> str:
    """The next announced hash other than a PING."""
    while (block_hash := await asyncio.wait_for(anext(stream), 5)) == PING:
        pass
    return block_hash


@pytest.fixture
def context() -> Iterator[zmq.asyncio.Context]:
    ctx = zmq.asyncio.Context()
    yield ctx
    ctx.term()


@pytest.fixture
def publisher(context: zmq.asyncio.Context) -> Iterator[Publisher]:
    pub = Publisher(context)
    yield pub
    pub.socket.close(linger=0)


@contextlib.asynccontextmanager
async def subscribed(
    publisher: Publisher, context: zmq.asyncio.Context
) -> AsyncIterator[AsyncIterator[str]]:
    """A stream whose subscription has reached the publisher (ZMQ's slow joiner)."""
    stream = hashblock_stream(publisher.url, context=context)
    first = asyncio.ensure_future(anext(stream))
    while not first.done():  # PUB drops messages until the SUB's subscription arrives
        await publisher.send(PING)
        await asyncio.sleep(0.01)
    assert first.result() == PING
    try:
        yield stream
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_yields_display_hex_hashes_in_order(
    publisher: Publisher, context: zmq.asyncio.Context
) -> None:
    async with subscribed(publisher, context) as stream:
        await publisher.send(BLOCK_2)
        await publisher.send(BLOCK_1)
        assert await next_block(stream) == BLOCK_2
        assert await next_block(stream) == BLOCK_1


async def test_malformed_messages_are_skipped(
    publisher: Publisher, context: zmq.asyncio.Context, caplog: pytest.LogCaptureFixture
) -> None:
    async with subscribed(publisher, context) as stream:
        await publisher.socket.send_multipart([b"hashblock", b"\x00" * 31, b"\x01\x00\x00\x00"])
        await publisher.socket.send_multipart([b"hashblock"])
        await publisher.send(BLOCK_2)
        with caplog.at_level(logging.WARNING, logger="hashfarm.node.zmq"):
            assert await next_block(stream) == BLOCK_2
    assert caplog.text.count("not hashblock") == 2


async def test_other_topics_are_not_received(
    publisher: Publisher, context: zmq.asyncio.Context
) -> None:
    async with subscribed(publisher, context) as stream:
        await publisher.send(BLOCK_1, topic=b"rawtx")  # filtered out by the subscription
        await publisher.send(BLOCK_2)
        assert await next_block(stream) == BLOCK_2


async def test_sequence_gaps_are_logged(
    publisher: Publisher, context: zmq.asyncio.Context, caplog: pytest.LogCaptureFixture
) -> None:
    async with subscribed(publisher, context) as stream:
        with caplog.at_level(logging.WARNING, logger="hashfarm.node.zmq"):
            publisher.sequence += 3  # three notifications never arrive
            await publisher.send(BLOCK_2)
            assert await next_block(stream) == BLOCK_2
    assert "3 hashblock notification(s) missed" in caplog.text


async def test_bad_endpoint_is_a_node_error(context: zmq.asyncio.Context) -> None:
    stream = hashblock_stream("tcp://nowhere:notaport", context=context)
    with pytest.raises(NodeError, match="cannot be used"):
        await anext(stream)
