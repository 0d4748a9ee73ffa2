"""The stream hashfarm creates is bounded by a message count, never by bytes with discard new
(nats-server before 2.10.5 deletes the oldest unconsumed messages to keep such a byte bound:
tests/integration/test_broker_nats.py shows it on the local server), and an operator's
stream configured that way is named as a risk."""

from __future__ import annotations

import pytest

pytest.importorskip("nats", reason="the broker needs the cluster extra (nats-py)")

from nats.js import api

from hashfarm.broker.stream import (
    StreamLimits,
    loss_risk,
    stream_config,
)


def test_the_created_stream_refuses_by_count_and_keeps_no_byte_bound() -> None:
    config = stream_config("S", ["S.shares"], StreamLimits(max_msgs=1234))
    assert config.discard == api.DiscardPolicy.NEW
    assert config.retention == api.RetentionPolicy.WORK_QUEUE
    assert config.max_msgs == 1234
    assert config.max_bytes is None  # the server's default: no byte bound
    assert loss_risk(config, (2, 9, 10)) is None


@pytest.mark.parametrize(
    ("discard", "max_bytes", "version", "risky"),
    [
        (api.DiscardPolicy.NEW, 1 << 30, (2, 9, 10), True),
        (api.DiscardPolicy.NEW, 1 << 30, (2, 10, 4), True),
        (api.DiscardPolicy.NEW, 1 << 30, None, True),  # unknown: assume the worst
        (api.DiscardPolicy.NEW, 1 << 30, (2, 10, 5), False),
        (api.DiscardPolicy.NEW, 1 << 30, (2, 11, 0), False),
        (api.DiscardPolicy.NEW, -1, (2, 9, 10), False),  # no byte bound
    ],
)
def test_an_operators_byte_bound_is_named_where_the_server_would_delete_messages(
    discard: api.DiscardPolicy, max_bytes: int, version: tuple[int, int, int] | None, risky: bool
) -> None:
    config = api.StreamConfig(name="S", subjects=["S.x"], discard=discard, max_bytes=max_bytes)
    problem = loss_risk(config, version)
    assert (problem is not None) == risky
    if problem:
        assert "max_msgs" in problem
        assert "4771" in problem
        assert str(max_bytes) in problem


@pytest.mark.parametrize("bound", [{"max_bytes": 1 << 30}, {"max_msgs": 1000}])
def test_a_discard_old_stream_is_named_whatever_the_server(bound: dict[str, int]) -> None:
    config = api.StreamConfig(name="S", discard=api.DiscardPolicy.OLD, **bound)
    problem = loss_risk(config, (2, 11, 0))
    assert problem is not None
    assert "discard new" in problem
    unbounded = api.StreamConfig(name="S", discard=api.DiscardPolicy.OLD)
    assert loss_risk(unbounded, (2, 11, 0)) is None  # nothing to be full of (max_age aside)
