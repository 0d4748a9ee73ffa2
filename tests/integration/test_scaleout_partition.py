"""Issue 14's fault "partition one front end from the broker for a minute", on real parts.

Three `hashfarm pool --role stratum` processes, one `--role ledger`, the NATS JetStream server,
PostgreSQL and the session's regtest node (test_scaleout.py's cluster). Front end 1 reaches
the broker only through a TCP forwarder the test cuts for 60 s while every miner submits at a
steady pace: the other front ends' miners keep getting shares accepted during the whole
minute, front end 1 keeps acknowledging from its fsynced spool (and its frontend_id lease,
which expires during the cut, is taken again after it), and afterwards every acknowledged
share is in PostgreSQL exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest
from test_scaleout import (  # the cluster, the forwarder and the share bookkeeping
    FRONT_ENDS,
    Cluster,
    Cuttable,
    check_exactly_once,
    cluster,
    nats_url,
    prepare,
    start_all,
    until,
)

from hashfarm.chain.pow import bits_to_difficulty
from loadgen import Miner, Share, connect_many

pytestmark = [pytest.mark.node, pytest.mark.services, pytest.mark.slow]
__all__ = ["cluster", "nats_url"]  # fixtures, used by name

PARTITION_S = 60.0
PER_FRONT_END = 2  # miners per front end
RATE = 15.0  # shares per second per miner, all through the test
TICK = 0.2  # seconds between a miner's bursts


class Paced:
    """One miner submitting its prepared shares at RATE, and what it was told."""

    def __init__(self, miner: Miner, shares: list[Share], ids: dict[int, str]) -> None:
        self.miner, self.shares, self.ids = miner, shares, ids

    def accepted(self) -> int:
        return sum(1 for k, a in self.miner.answers.items() if a.ok and k in self.ids)

    def answered(self) -> int:
        return sum(1 for k in self.miner.answers if k in self.ids)

    def acked(self) -> set[str]:
        return {self.ids[k] for k, a in self.miner.answers.items() if a.ok and k in self.ids}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        per_tick = max(1, round(RATE * TICK))
        start, sent = loop.time(), 0
        while sent < len(self.shares):
            chunk = self.shares[sent : sent + per_tick]
            await self.miner.submit(chunk, burst=per_tick)
            sent += len(chunk)
            await asyncio.sleep(max(0.0, start + TICK * sent / per_tick - loop.time()))


async def test_one_front_end_cut_off_from_the_broker_for_a_minute(cluster: Cluster) -> None:
    try:
        await _partition_for_a_minute(cluster)
    finally:  # the front ends' lease bucket (`<stream>-frontends`) goes with the stream
        await delete_lease_bucket(cluster.nats_url, f"{cluster.tag}-frontends")


async def delete_lease_bucket(nats_url: str, bucket: str) -> None:
    import nats

    nc = await nats.connect(nats_url)
    try:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_key_value(bucket)
    finally:
        await nc.close()


async def _partition_for_a_minute(cluster: Cluster) -> None:
    link = Cuttable()
    await link.mend()
    await start_all(cluster, {1: f"nats://127.0.0.1:{link.port}"})
    cut_off = cluster.front_ends[1]
    user = await cluster.node.payout_address()
    total_s = PARTITION_S + 8.0  # a few seconds before the cut, the minute, a few after
    paced: list[Paced] = []
    for fid, fe in enumerate(cluster.front_ends):
        users = [f"{user}.fe{fid}w{i}" for i in range(PER_FRONT_END)]
        for m in await connect_many("127.0.0.1", fe.stratum_port, users):
            assert m.job is not None
            low, high = m.difficulty or 0.0, bits_to_difficulty(m.job.bits)
            shares, ids = prepare(m, int(RATE * total_s), lambda d: low <= d < high)  # noqa: B023
            paced.append(Paced(m, shares, ids))
    tasks = [asyncio.ensure_future(p.run()) for p in paced]
    survivors = [p for i, p in enumerate(paced) if i // PER_FRONT_END != 1]
    isolated = [p for i, p in enumerate(paced) if i // PER_FRONT_END == 1]

    def accepted(group: list[Paced]) -> int:
        return sum(p.accepted() for p in group)

    await until(lambda: accepted(isolated) >= 50, 30, "front end 1's first acknowledgements")
    await link.cut()  # partitioned: front end 1 reaches the node and its miners, not the broker
    loop = asyncio.get_running_loop()
    cut_at = loop.time()
    samples = [(accepted(survivors), accepted(isolated))]
    for _ in range(6):  # every 10 s of the minute: both sides still mining
        await asyncio.sleep(cut_at + 10.0 * len(samples) - loop.time())
        samples.append((accepted(survivors), accepted(isolated)))
    status, doc = await cut_off.health()
    await link.mend()
    minimum = int(0.5 * RATE * 10.0)  # per miner per 10 s, with room for a slow machine
    for (s0, i0), (s1, i1) in itertools.pairwise(samples):
        assert s1 - s0 >= minimum * len(survivors), samples  # the others kept mining
        assert i1 - i0 >= minimum * len(isolated), samples  # and so did front end 1's
    assert status == 200  # still serving: acknowledged from its spool
    assert doc["broker_connected"] is False
    assert doc["status"] == "degraded"
    assert isinstance(doc["spool_messages"], int)
    assert doc["spool_messages"] >= minimum * len(isolated) * 5

    await asyncio.gather(*tasks)
    for p in paced:
        await p.miner.close()
    answers = [p.answered() for p in paced]
    assert answers == [len(p.shares) for p in paced], answers  # every share answered
    acked: set[str] = set().union(*(p.acked() for p in paced))
    assert len(acked) == sum(p.accepted() for p in paced)  # distinct headers
    assert len(acked) >= 0.95 * sum(answers), "shares refused"
    await cluster.drained(wait_s=120.0)
    stored = await cluster.stored()
    check_exactly_once(acked, stored)  # acknowledged shares lost = 0, credited twice = 0
    assert len(stored) == len(acked)
    # front end 1's frontend_id lease expired during the minute and was taken again
    assert cut_off.popen is not None
    assert cut_off.popen.poll() is None, cut_off.tail()
    await until(lambda: "taken again" in cut_off.log.read_text(), 30, "the lease taken again")
    _, doc = await cut_off.health()
    assert doc["broker_connected"] is True
    assert len(cluster.front_ends) == FRONT_ENDS
