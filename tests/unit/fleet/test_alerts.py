"""Alerts: the pure hysteresis engine (time passed in), with a Hypothesis check of its rules
against a plain reference, and the sinks: the log, and a webhook against a real HTTP server
on 127.0.0.1 (retries, a hung receiver, a full queue)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from hashfarm.errors import ConfigError
from hashfarm.fleet.alerts import (
    AlertEngine,
    AlertEvent,
    AlertPolicy,
    AlertService,
    LogSink,
    Severity,
    WebhookSink,
)
from hashfarm.fleet.faults import Fault, FaultKind
from hashfarm.fleet.poller import Machine, Round, Sample

FAN = Fault(FaultKind.DEAD_FAN, "3 of 4 fans spin (fan 2 at 0 rpm)")
HOT = Fault(FaultKind.OVERHEATING, "chip 97 °C", board=3)
SENSOR = Fault(FaultKind.BAD_SENSOR, "temp2_7=-83", board=7)


def actions(events: list[AlertEvent]) -> list[tuple[str, str, bool]]:
    return [(e.action, e.alert.kind, e.alert.notified) for e in events]


def test_raise_after_k_polls_clear_after_m() -> None:
    engine = AlertEngine(AlertPolicy(raise_after=2, clear_after=3))
    assert engine.observe("m1", 0, [FAN]) == []
    [raised] = engine.observe("m1", 30, [FAN])
    assert (raised.action, raised.alert.kind, raised.alert.severity) == (
        "raised", "dead_fan", Severity.CRITICAL)  # fmt: skip
    assert raised.alert.raised_at == 30
    assert engine.observe("m1", 60, [FAN]) == []  # still there: no new event
    assert engine.observe("m1", 90, []) == []
    assert engine.observe("m1", 120, []) == []
    assert [a.kind for a in engine.active()] == ["dead_fan"]
    [cleared] = engine.observe("m1", 150, [])
    assert cleared.action == "cleared"
    assert cleared.alert.cleared_at == 150
    assert engine.active() == []


def test_severe_raises_at_once_and_carries_the_board() -> None:
    engine = AlertEngine()
    [raised] = engine.observe("m1", 0, [HOT])
    assert (raised.alert.kind, raised.alert.board, raised.alert.detail) == (
        "overheating", 3, "chip 97 °C")  # fmt: skip


def test_flapping_sensor_pages_once_per_window() -> None:
    engine = AlertEngine(AlertPolicy(raise_after=2, clear_after=3, repage_s=3600))
    events: list[AlertEvent] = []
    t = 0.0
    for _ in range(100):  # 2 bad polls, 3 good, for ~4 hours at 30 s
        for faults in ([SENSOR], [SENSOR], [], [], []):
            events += engine.observe("m1", t, faults)
            t += 30
    raised = [e for e in events if e.action == "raised"]
    assert len(raised) == 100  # the state follows the sensor (the API shows it)...
    paged = [e.at for e in raised if e.alert.notified]
    assert paged == [30, 3630, 7230, 10830, 14430]  # ...but it paged once per hour
    cleared = [e for e in events if e.action == "cleared"]
    assert sum(e.alert.notified for e in cleared) == 5  # a clear pages only if its raise did


def test_one_bad_poll_in_between_never_pages() -> None:
    engine = AlertEngine(AlertPolicy(raise_after=2))
    events = []
    for i in range(200):
        events += engine.observe("m1", i * 30.0, [SENSOR] if i % 2 else [])
    assert events == []


def test_poll_errors_are_alerts_and_do_not_clear_faults() -> None:
    engine = AlertEngine(AlertPolicy(raise_after=2, clear_after=2))
    engine.observe("m1", 0, [FAN])
    engine.observe("m1", 30, [FAN])
    down = "unreachable: 10.0.0.7:4028: stats: no complete reply within 5 s"
    assert engine.observe("m1", 60, error=down) == []
    assert actions(engine.observe("m1", 90, error=down)) == [("raised", "unreachable", True)]
    assert engine.observe("m1", 120, error=down) == []
    # two failed polls did not count as "fan fine"; one good poll is not enough to clear
    assert {a.kind for a in engine.active()} == {"dead_fan", "unreachable"}
    assert engine.observe("m1", 150, [FAN]) == []
    assert actions(engine.observe("m1", 180, [FAN])) == [("cleared", "unreachable", True)]
    garbage = "bad_reply: 10.0.0.7:4028: stats: not JSON"
    engine.observe("m1", 210, error=garbage)
    [raised] = engine.observe("m1", 240, error=garbage)
    assert raised.alert.kind == "bad_reply"
    assert raised.alert.severity is Severity.WARNING


def test_memory_is_bounded_by_what_is_wrong() -> None:
    engine = AlertEngine(AlertPolicy(repage_s=0))
    for i in range(1000):
        engine.observe(f"m{i}", 0, [SENSOR])
        engine.observe(f"m{i}", 30, [])
    assert engine._tracks == {}


def test_policy_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"fleet\.alerts\.raise_after"):
        AlertPolicy(raise_after=0)


@settings(max_examples=200, deadline=None)
@given(
    polls=st.lists(st.booleans(), max_size=80),
    k=st.integers(1, 4),
    m=st.integers(1, 4),
    window=st.sampled_from([0, 60, 300, 3600]),
)
def test_rules_match_a_plain_reference(polls: list[bool], k: int, m: int, window: int) -> None:
    """A reference written from the rules: raise on the k-th bad poll in a row, clear on
    the m-th good one in a row, notify only when the last page is `window` old."""
    engine = AlertEngine(
        AlertPolicy(raise_after=k, clear_after=m, repage_s=window, immediate=frozenset())
    )
    got, want = [], []
    bad = good = 0
    active = False
    paged_at: float | None = None
    raised_notified = False
    for i, is_bad in enumerate(polls):
        at = i * 30.0
        got += actions(engine.observe("m", at, [SENSOR] if is_bad else []))
        bad, good = (bad + 1, 0) if is_bad else (0, good + 1)
        if is_bad and not active and bad >= k:
            active = True
            raised_notified = paged_at is None or at - paged_at >= window
            paged_at = at if raised_notified else paged_at
            want.append(("raised", "bad_sensor", raised_notified))
        elif not is_bad and active and good >= m:
            active = False
            want.append(("cleared", "bad_sensor", raised_notified))
    assert got == want
    pages = [a for a in got if a[0] == "raised" and a[2]]
    if window:
        assert len(pages) <= len(polls) * 30 // window + 1


async def test_service_records_everything_and_pages_only_notified(caplog) -> None:
    recorded: list[AlertEvent] = []

    class Recorder:
        async def record_alerts(self, events):
            recorded.extend(events)

    class Broken:
        async def send(self, events):
            raise OSError("disk full")

    service = AlertService(
        AlertEngine(AlertPolicy(raise_after=1, clear_after=1, repage_s=3600)),
        recorder=Recorder(), sinks=[LogSink(), Broken()],
    )  # fmt: skip
    machine = Machine("10.0.0.7", 4028, "bmminer")
    with caplog.at_level(logging.INFO, "hashfarm.fleet.alerts"):
        for i, faults in enumerate(([FAN], [], [FAN])):
            await service(Round(i * 30.0, 0.1, (Sample(machine, i * 30.0, 0.1, faults=faults),)))
    assert [(e.action, e.alert.notified) for e in recorded] == [
        ("raised", True), ("cleared", True), ("raised", False)]  # fmt: skip
    assert caplog.text.count("fleet alert raised: 10.0.0.7:4028 dead_fan") == 1
    assert caplog.text.count("fleet alert cleared") == 1
    assert caplog.text.count("sink Broken failed") == 3


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict], list[str]]]:
    """A real webhook receiver: /ok stores bodies, /flaky fails twice, /hang never answers."""
    bodies: list[dict] = []
    script = ["500", "503"]
    release = asyncio.Event()

    async def ok(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.Response(status=204)

    async def flaky(request: web.Request) -> web.Response:
        if script:
            return web.Response(status=int(script.pop(0)))
        return await ok(request)

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/flaky", flaky)
    app.router.add_post("/hang", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", bodies, script
    release.set()
    await runner.cleanup()


def event(kind: str = "dead_fan") -> AlertEvent:
    engine = AlertEngine(AlertPolicy(raise_after=1))
    [e] = engine.observe("10.0.0.7:4028", 1000.0, [Fault(FaultKind(kind), "detail")])
    return e


async def test_webhook_posts_the_alert(receiver) -> None:
    url, bodies, _ = receiver
    sink = WebhookSink(f"{url}/ok")
    await sink.send([event()])
    await sink.drain()
    await sink.close()
    assert bodies == [{"event": "raised", "at": 1000.0, "alert": {
        "machine_id": "10.0.0.7:4028", "kind": "dead_fan", "board": None,
        "severity": "critical", "detail": "detail", "raised_at": 1000.0, "notified": True,
        "cleared_at": None}}]  # fmt: skip
    assert (sink.delivered, sink.failed) == (1, 0)


async def test_webhook_retries_with_backoff(receiver) -> None:
    url, bodies, script = receiver
    sink = WebhookSink(f"{url}/flaky", retries=3, backoff_s=0.01)
    await sink.send([event()])
    await sink.drain()
    await sink.close()
    assert script == []  # two refusals, then delivered
    assert len(bodies) == 1
    assert (sink.delivered, sink.failed) == (1, 0)


async def test_webhook_hung_receiver_is_bounded_and_the_next_event_goes_out(receiver) -> None:
    url, bodies, _ = receiver
    hung = WebhookSink(f"{url}/hang", timeout_s=0.2, retries=1, backoff_s=0.01)
    await hung.send([event()])
    await asyncio.wait_for(hung.drain(), 5)  # 2 attempts x 0.2 s, not forever
    assert (hung.delivered, hung.failed) == (0, 1)
    await hung.close()
    full = WebhookSink(f"{url}/ok", queue_max=1)
    await full.send([event("dead_fan"), event("overheating")])
    await full.drain()
    await full.close()
    assert (full.delivered, full.dropped) == (1, 1)
    assert [b["alert"]["kind"] for b in bodies] == ["dead_fan"]
    with pytest.raises(ConfigError, match="webhook_url"):
        WebhookSink("ftp://x")


def test_restored_alerts_stay_open_without_a_second_page() -> None:
    before = AlertEngine(AlertPolicy(raise_after=1, clear_after=2))
    [raised] = before.observe("m1", 0, [FAN])
    after = AlertEngine(AlertPolicy(raise_after=1, clear_after=2))  # a restart
    after.restore([raised.alert, replace(raised.alert, kind="idle", cleared_at=10.0)])
    assert after.active() == [raised.alert]  # a cleared one is not taken back
    assert after.observe("m1", 30, [FAN]) == []  # still wrong: no new page
    assert after.observe("m1", 60, []) == []
    [cleared] = after.observe("m1", 90, [])
    assert (cleared.action, cleared.alert.raised_at, cleared.alert.notified) == ("cleared", 0, True)
