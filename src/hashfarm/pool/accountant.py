"""Pooled mode pays with one command: accounting inside the `hashfarm pool` process.

When `[accounting] enabled = true` (pooled mode), the pool process runs, beside the pool:

* a `JobTermsRecorder` (`pool/jobterms.py`), handed to `Pool`, recording the terms (and a
  TIDES job's coinbase plan) of every job the pool publishes, for PPS/FPPS and TIDES;
* the crediting service (`accounting.service.CreditingService`) on its own connection to
  the same database, following the node through the pool's RPC client: a pass every
  `poll_interval` seconds tracks found blocks, posts, matures and reverses their credits,
  and prices PPS/FPPS shares, exactly as `hashfarm accounts credit` does standalone.

Both use their own connection and thread, so neither ever waits on, nor holds, the share
path. A pass that fails (node away, database locked) is logged and retried at the next one;
`close()` ends the pass in flight and writes the job terms still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hashfarm.accounting.service import ChainView, CreditingService
from hashfarm.accounting.store import AccountingStore, open_store
from hashfarm.pool.jobterms import JobTermsRecorder
from hashfarm.pool.settings import PoolSettings

log = logging.getLogger(__name__)

POLL_INTERVAL = 5.0  # seconds between crediting passes in the pool process


class Accountant:
    """The job-terms recorder and the crediting service of one pool process."""

    def __init__(
        self, settings: PoolSettings, node: ChainView, *, poll_interval: float | None = None
    ) -> None:
        self.settings = settings
        self.node = node
        self.poll_interval = POLL_INTERVAL if poll_interval is None else poll_interval
        self.recorder = JobTermsRecorder(settings.storage.url, settings.network)
        self.service: CreditingService | None = None
        self._store: AccountingStore | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start recording job terms and crediting (after the pool's ledger has its tables)."""
        await self.recorder.start()
        self._store = await open_store(self.settings.storage.url, create=True)
        acct = self.settings.accounting
        self.service = CreditingService(
            self._store,
            self.node,
            acct.to_scheme(),
            poll_interval=self.poll_interval,
            reserve_warning_sats=acct.reserve_warning_sats,
        )
        self._task = asyncio.create_task(self.service.run(self._stop), name="crediting")
        log.info("accounting: %s, crediting every %.0f s", self.service.spec, self.poll_interval)

    async def close(self) -> None:
        """Stop crediting (the pass in flight ends), write queued job terms, close both."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.recorder.close()
        if self._store is not None:
            await self._store.close()
            self._store = None
