"""The link to hosting: which customer each machine mines for, from hosting's assignments.

`hashfarm proxy --hosting-db URL` reads `hosting_assignments` (the store of `hashfarm contract
assign`): a machine whose assignment is in force now mines for that assignment's customer, and
the machine's worker name is its hosting machine id (so the stored work, exported, is keyed by
the ids `hashfarm farm report --work` and the bills use). A worker name with no assignment in
force is refused at authorize. The map is read again every `--hosting-every` seconds (a machine
moved to another customer on a date follows from its next authorize).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from hashfarm.hosting.store import Assignment, connect

log = logging.getLogger(__name__)


def customers_at(assignments: list[Assignment], now: int) -> dict[str, str]:
    """machine id -> customer id of the assignment in force at `now` ([start, end))."""
    out: dict[str, str] = {}
    for a in assignments:
        if a.start <= now and (a.end is None or now < a.end):
            out[a.machine_id] = a.customer_id
    return out


def read_customers(url: str, now: int | None = None) -> dict[str, str]:
    """Open the hosting store at `url` and read the machines' customers at `now` (default:
    the clock). Blocking: call it in a thread from the event loop."""
    store = connect(url)
    try:
        return customers_at(store.assignments(), int(time.time()) if now is None else now)
    finally:
        store.close()


async def keep_reading(url: str, every: float, apply: Callable[[dict[str, str]], None]) -> None:
    """Every `every` seconds read the map again (in a worker thread) and `apply` it; a failed
    read is logged and the previous map kept."""
    while True:
        await asyncio.sleep(every)
        try:
            customers = await asyncio.to_thread(read_customers, url)
        except Exception as exc:  # any store error: a reload must not stop the proxy
            log.warning("hosting assignments not read again (%s): keeping the last ones", exc)
            continue
        apply(customers)
