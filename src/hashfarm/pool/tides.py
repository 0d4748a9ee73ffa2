"""TIDES in the pool: each job's coinbase pays the miners of the window, built off the loop.

With `[accounting] enabled = true` in pooled mode, and TIDES the scheme *in force* (below),
every job's coinbase pays `accounting.tides.plan_coinbase` over the share window at the moment
its plan was computed: the pool's own output (fee, held earnings; left out when 0 sats), one
output per paid miner (the account, i.e. the user name before the ".", is the miner's address),
and the witness commitment. Outputs + pool output == the template's coinbase value exactly.

**Off the new-tip path.** Reading the window and splitting a coinbase over 10,000 accounts
takes ~10-60 ms (docs/accounting.md), far over the 5 ms a new tip may wait for its notify. So
plans are computed in a separate process (`PlanWorker`, its own database connection, its own
GIL: a thread would stall the event loop's socket writes behind its CPU work), and the pool
never waits for one at a new tip:

1. after each template the worker also computes the plan for the *next* height's empty block
   (value = that height's subsidy, no transactions: known before the tip arrives);
2. at a new tip the first job is that empty block, built from the precomputed plan (the
   coinbase is serialized on the loop: 0.1-0.5 ms for 500 outputs);
3. the full template's plan follows from the worker, as a non-clean job a few ms later.

A precomputed plan is used only for the height and network bits it was computed for, and
never after the pool found a block while a scheme switch was pending (that block is the
boundary: the scheme in force may have changed). An empty block's plan pays no held balance
(`held` is left out), so a plan computed before the pool's previous block was recorded can
never pay a held balance that block already paid; held balances are paid by full-template
plans, computed after the tip, net of the balances that blocks the pool found and the books
have not posted yet still pay (`reserved`, tracked here from each block's plan).

**In force.** The operator's scheme switches are the rows of `acct_scheme_switches` (noted by
the crediting service); a switch takes effect at the first block the pool found after it was
requested, which is still paid the old way (docs/accounting.md, "Switching scheme"). With no
row yet the configured scheme applies from the ledger's start. The window is cut at the
epoch's first share: shares up to the boundary block's finding share never count.

**Bounds.** `accounting.max_outputs` (outputs in all) and `accounting.coinbase_max_bytes` (the
whole non-witness coinbase, for miner firmware: docs/accounting.md, "Firmware limits"): the
byte budget gives `outputs_within_budget`, assuming every output is as large as a standard
one can be (43 bytes: P2TR/P2WSH), and the smaller bound is the plan's `max_outputs`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.process
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from operator import itemgetter
from typing import Any

import numpy as np

from hashfarm.accounting.crediting import format_spec, parse_spec
from hashfarm.accounting.fastwindow import fast_pplns_window
from hashfarm.accounting.schemes import Tides
from hashfarm.accounting.store import SqlStore, connect
from hashfarm.accounting.tides import CoinbasePlan, plan_coinbase
from hashfarm.accounting.window import window_size
from hashfarm.chain.address import address_to_script
from hashfarm.chain.coinbase import MAX_STANDARD_OUTPUT
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.chain.subsidy import block_subsidy
from hashfarm.chain.tx import TxOut
from hashfarm.errors import HashfarmError
from hashfarm.node.template import Template

log = logging.getLogger(__name__)

_CHUNK = 100_000  # shares read per query when the window reaches further back
_MARGIN = 1.0 + 1e-6  # float sums of a million shares err by ~1e-10, relatively
_KEEP = 2.0  # the cache keeps shares worth up to this many windows, then drops the oldest
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)


def parse_tides_spec(text: str) -> Tides | None:
    """The Tides scheme a spec describes (`crediting.format_spec`); None for other schemes."""
    try:
        scheme = parse_spec(text)
    except (ValueError, KeyError):
        return None
    return scheme if isinstance(scheme, Tides) else None


def outputs_within_budget(budget: int, fixed: int) -> int:
    """How many outputs of the largest standard size fit in `budget` bytes after `fixed`."""
    return max(0, (budget - fixed) // MAX_STANDARD_OUTPUT)


@dataclass(frozen=True, slots=True)
class InForce:
    """The scheme in force now, and where its epoch starts."""

    spec: str | None  # None: nothing noted yet (the configured scheme applies)
    epoch_after: int  # shares with id <= this belong to earlier schemes (-1: none)
    switch_pending: bool  # a noted switch waits for the next found block


def in_force(sql: SqlStore) -> InForce:
    """The boundary rule over `acct_scheme_switches` and the pool's accepted blocks."""
    rows = sql.q("SELECT requested_at, params FROM acct_scheme_switches ORDER BY id")
    if not rows:
        return InForce(None, -1, False)
    blocks = sql.q(
        "SELECT b.time, (SELECT min(s.id) FROM shares s WHERE s.block_hash = b.hash "
        "AND s.accepted) FROM blocks b WHERE b.accepted_by_node"
    )
    switches = [(float(t), str(p)) for t, p in rows]
    return epoch_in_force(switches, [(int(s), float(t)) for t, s in blocks if s is not None])


def epoch_in_force(
    switches: Sequence[tuple[float, str]], found: Sequence[tuple[int, float]]
) -> InForce:
    """`switching.plan_epochs`' last epoch, on spec texts: `switches` are (requested_at,
    spec) in the order noted, the first applying from the ledger's start; `found` are the
    pool's accepted blocks as (finding share id, time)."""
    if not switches:
        return InForce(None, -1, False)
    effective, after, i = switches[0][1], -1, 0
    pending = sorted(switches[1:], key=lambda sw: sw[0])
    for share_id, when in sorted(found):
        target = None
        while i < len(pending) and pending[i][0] < when:
            target = pending[i][1]  # the last request before this block wins
            i += 1
        if target is not None and target != effective:
            effective, after = target, share_id
    waiting = [spec for _, spec in pending[i:]]
    return InForce(effective, after, bool(waiting) and waiting[-1] != effective)


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What the worker needs to plan one coinbase."""

    height: int
    value: int  # the coinbase value to split (subsidy + the template's fees)
    bits: int  # the template's network bits (the window is factor x its difficulty)
    fixed_bytes: int  # the coinbase's size without outputs (coinbase_fixed_size)
    pay_held: bool  # False: held balances are not paid (precomputed empty-block plans)
    # block hash -> held balances that block's coinbase paid, while the books may not have
    # posted it yet (the worker drops the blocks that are posted, refused or orphaned)
    reserved: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlanResult:
    """A computed plan, or None in `plan` when TIDES is not the scheme in force."""

    request: PlanRequest
    plan: CoinbasePlan | None
    spec: str | None  # the in-force TIDES spec the plan follows
    outputs: tuple[tuple[bytes, int], ...]  # (script, sats) in coinbase order, pool's first
    epoch_after: int
    switch_pending: bool
    newest_share_id: int | None  # the newest share the window read
    window_total: Fraction  # counted difficulty (exact)
    window_size: Fraction
    cpu_ms: float  # the worker's CPU time for this plan
    settled: tuple[str, ...] = ()  # reserved blocks now in the books (stop reserving them)
    extra: dict[str, object] = field(default_factory=dict)  # the window, for the books

    def summary(self) -> str:
        """A short description for the log."""
        if self.plan is None:
            return "not in force"
        return (
            f"{len(self.plan.outputs)} outputs, pool {self.plan.pool_sats} sats, "
            f"planned in {self.cpu_ms:.1f} ms CPU"
        )

    def txouts(self) -> list[TxOut]:
        """The outputs for `build_coinbase` (before the witness commitment)."""
        return [TxOut(sats, script) for script, sats in self.outputs]


class ShareCache:
    """The newest accepted shares of the epoch, in ledger order, read incrementally.

    Arrays (numpy) of share id, account index and difficulty; new shares are read after the
    newest held, older ones (backwards, `_CHUNK` at a time) until the window is covered, and
    shares beyond `_KEEP` windows are dropped.
    """

    def __init__(self, floor: int = -1) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.accounts = np.zeros(0, dtype=np.int64)  # index into self.names
        self.diffs = np.zeros(0, dtype=np.float64)
        self.total = 0.0  # float sum of self.diffs (coverage decisions only, with a margin)
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.floor = floor  # no share at or below this id belongs here (the epoch start)
        self.complete = False  # True: every share of the epoch after `floor` is held

    def _idx(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            i = self.index[name] = len(self.names)
            self.names.append(name)
        return i

    def _columns(self, rows: list[tuple[Any, ...]]) -> tuple[Any, Any, Any]:
        ids = np.fromiter(map(_FIRST, rows), dtype=np.int64, count=len(rows))
        idx = self._idx
        acc = np.fromiter((idx(str(a)) for a in map(_SECOND, rows)), np.int64, len(rows))
        diffs = np.fromiter(map(_THIRD, rows), dtype=np.float64, count=len(rows))
        return ids, acc, diffs

    def update(self, sql: SqlStore, floor: int, size: float) -> None:
        """Read shares newer than the newest held; older ones until `size` is covered."""
        if floor != self.floor:
            self.__init__(floor)  # type: ignore[misc]  # a new epoch: nothing carries over
        if self.ids.size or self.complete:  # (complete and empty: no share after the floor yet)
            newest = int(self.ids[-1]) if self.ids.size else self.floor
            while True:
                rows = sql.q(
                    "SELECT id, account, difficulty FROM shares WHERE accepted AND id > ? "
                    "ORDER BY id LIMIT ?",
                    (newest, _CHUNK),
                )
                if not rows:
                    break
                ids, acc, diffs = self._columns(rows)
                self.ids = np.concatenate((self.ids, ids))
                self.accounts = np.concatenate((self.accounts, acc))
                self.diffs = np.concatenate((self.diffs, diffs))
                self.total += math.fsum(diffs.tolist())
                newest = int(ids[-1])
                if len(rows) < _CHUNK:
                    break
            self._trim(size)
        self.extend_back(sql, size * _MARGIN)

    def extend_back(self, sql: SqlStore, need: float) -> None:
        """Read older shares until their float sum reaches `need` or the epoch runs out."""
        while not self.complete and self.total < need:
            oldest = int(self.ids[0]) if self.ids.size else 1 << 62
            rows = sql.q(
                "SELECT id, account, difficulty FROM shares WHERE accepted AND id > ? "
                "AND id < ? ORDER BY id DESC LIMIT ?",
                (self.floor, oldest, _CHUNK),
            )
            if rows:
                rows.reverse()
                ids, acc, diffs = self._columns(rows)
                self.ids = np.concatenate((ids, self.ids))
                self.accounts = np.concatenate((acc, self.accounts))
                self.diffs = np.concatenate((diffs, self.diffs))
                self.total += math.fsum(diffs.tolist())
            if len(rows) < _CHUNK:
                self.complete = True

    def _trim(self, size: float) -> None:
        """Drop the oldest shares beyond `_KEEP` windows (they can no longer count)."""
        if self.total <= size * _KEEP:
            return
        newest_first = np.cumsum(self.diffs[::-1])
        keep = int(np.searchsorted(newest_first, size * _KEEP, side="left")) + 1
        drop = self.diffs.size - keep
        if drop > 0:
            self.ids, self.accounts = self.ids[drop:], self.accounts[drop:]
            self.diffs = self.diffs[drop:]
            self.total = math.fsum(self.diffs.tolist())
            self.complete = False


class TidesPlanner:
    """Plans coinbases from the pool's database (runs inside the worker process)."""

    def __init__(self, sql: SqlStore, configured: Tides | None, network: str, budget: int) -> None:
        self.sql = sql
        self.configured = configured
        self.network = network
        self.budget = budget
        self.cache = ShareCache()
        self.oldest_counted: int | None = None  # oldest share of the last window
        self._scripts: dict[str, bytes | None] = {}

    def script(self, account: str) -> bytes | None:
        """The account's scriptPubKey (None: the account is not an address here)."""
        if account not in self._scripts:
            try:
                self._scripts[account] = address_to_script(account, self.network)
            except HashfarmError:
                self._scripts[account] = None
        return self._scripts[account]

    def plan(self, req: PlanRequest) -> PlanResult:
        """The plan for `req` (plan None when TIDES is not in force)."""
        started = time.process_time()
        settled = tuple(settled_blocks(self.sql, list(req.reserved)))
        now = in_force(self.sql)
        scheme = self.configured if now.spec is None else parse_tides_spec(now.spec)
        if scheme is None:
            return PlanResult(
                req, None, None, (), now.epoch_after, now.switch_pending, None,
                Fraction(0), Fraction(0), (time.process_time() - started) * 1000.0, settled,
            )  # fmt: skip
        bound = min(scheme.max_outputs, outputs_within_budget(self.budget, req.fixed_bytes))
        if bound < 1:
            raise HashfarmError(
                f"accounting.coinbase_max_bytes {self.budget} leaves no room for an output "
                f"(the coinbase without outputs is {req.fixed_bytes} bytes)"
            )
        size = window_size(scheme.factor, bits_to_difficulty(req.bits))
        self.cache.update(self.sql, now.epoch_after, float(size))
        weights, denominator, total, newest = self._window(size)
        held = self._held(req, settled) if req.pay_held else {}
        plan = plan_coinbase(req.value, weights, replace(scheme, max_outputs=bound), held)
        outputs: list[tuple[bytes, int]] = []
        if plan.pool_sats:
            outputs.append((b"", plan.pool_sats))  # b"": the pool's script, filled in by the pool
        for account, sats in plan.outputs:
            script = self.script(account)
            assert script is not None  # only addresses are weighted (_window)
            outputs.append((script, sats))
        return PlanResult(
            req, plan, format_spec(scheme), tuple(outputs), now.epoch_after,
            now.switch_pending, newest, total, size,
            (time.process_time() - started) * 1000.0, settled,
            {
                "weights": {a: f"{w}/{denominator}" for a, w in weights.items()},
                "window_size": str(size),
                "window_total": str(total),
                "oldest_share_id": self.oldest_counted,
                "newest_share_id": newest,
                "epoch_after": now.epoch_after,
                "network_difficulty": bits_to_difficulty(req.bits),
            },
        )  # fmt: skip

    def _window(self, size: Fraction) -> tuple[dict[str, int], int, Fraction, int | None]:
        """Integer weights per account over one denominator, the total, the newest id."""
        c = self.cache
        self.oldest_counted = None
        if not c.ids.size:
            return {}, 1, Fraction(0), None
        fast = fast_pplns_window(c.accounts, c.diffs, size)
        need = float(size) * _MARGIN
        while Fraction(fast.total, fast.denominator) < size and not c.complete:
            need *= 2  # the float sum said covered, the exact one says not: read further back
            c.extend_back(self.sql, need)
            fast = fast_pplns_window(c.accounts, c.diffs, size)
        weights: dict[str, int] = {}
        for idx, w in fast.weights.items():
            name = c.names[idx]
            if self.script(name) is not None:  # work under a non-address name is not paid here
                weights[name] = w
        self.oldest_counted = int(c.ids[fast.start]) if fast.start < c.ids.size else None
        return weights, fast.denominator, Fraction(fast.total, fast.denominator), int(c.ids[-1])

    def _held(self, req: PlanRequest, settled: Sequence[str]) -> dict[str, int]:
        """Held balances (`miner:<account>`, mature), less what unposted blocks still pay."""
        reserved: dict[str, int] = {}
        for block_hash, used in req.reserved.items():
            if block_hash not in settled:
                for account, sats in used.items():
                    reserved[account] = reserved.get(account, 0) + sats
        rows = self.sql.q(
            "SELECT account, balance FROM acct_balances WHERE account LIKE ? "
            "AND account NOT LIKE ? AND currency = 'SAT' AND balance > 0",
            ("miner:%", "%:immature"),  # as parameters: psycopg reads a literal % as a placeholder
        )
        held: dict[str, int] = {}
        for account, balance in rows:
            name = str(account)[len("miner:") :]
            left = int(balance) - reserved.get(name, 0)
            if left > 0 and self.script(name) is not None:
                held[name] = left
        return held


# -- the worker process -------------------------------------------------------------------

_PLANNER: TidesPlanner | None = None


def _worker_init(url: str, configured: Tides | None, network: str, budget: int) -> None:
    global _PLANNER
    _PLANNER = TidesPlanner(connect(url), configured, network, budget)


def _worker_plan(req: PlanRequest) -> PlanResult:
    assert _PLANNER is not None, "worker not initialised"
    return _PLANNER.plan(req)


def settled_blocks(sql: SqlStore, hashes: Sequence[str]) -> list[str]:
    """Of `hashes` (blocks the pool found), those whose held payments need no reserving any
    more: posted in the books (found:<hash>), refused by the node, or orphaned."""
    done: list[str] = []
    for h in hashes:
        posted = sql.q("SELECT 1 FROM acct_transactions WHERE key = ?", (f"found:{h}",))
        refused = sql.q("SELECT 1 FROM blocks WHERE hash = ? AND NOT accepted_by_node", (h,))
        orphan = sql.q("SELECT 1 FROM acct_blocks WHERE hash = ? AND state = 'orphaned'", (h,))
        if posted or refused or orphan:
            done.append(h)
    return done


class PlanWorker:
    """One worker process that plans coinbases; `await plan(req)` from the event loop."""

    def __init__(self, url: str, configured: Tides | None, network: str, budget: int) -> None:
        self._args = (url, configured, network, budget)
        self._exec = self._start()

    def _start(self) -> concurrent.futures.ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")  # the pool has threads: never fork it
        return concurrent.futures.ProcessPoolExecutor(
            1, mp_context=ctx, initializer=_worker_init, initargs=self._args
        )

    def restart_if_broken(self, error: BaseException) -> bool:
        """A new worker process if `error` says the old one died (killed, out of memory)."""
        if not isinstance(error, concurrent.futures.process.BrokenProcessPool):
            return False
        log.error("the TIDES plan worker died: starting a new one")
        self._exec.shutdown(wait=False, cancel_futures=True)
        self._exec = self._start()
        return True

    async def plan(self, req: PlanRequest) -> PlanResult:
        """The plan for `req`, computed in the worker."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._exec, _worker_plan, req)

    async def pid(self) -> int:
        """The worker process's id (it is started by the first call)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._exec, os.getpid)

    def close(self) -> None:
        """Stop the worker (a plan in flight is abandoned)."""
        self._exec.shutdown(wait=False, cancel_futures=True)


def empty_template(template: Template, network: str) -> Template:
    """The empty block on `template`'s tip: no transactions, value = the subsidy alone."""
    return replace(
        template,
        coinbase_value=block_subsidy(template.height, network),
        transactions=(),
        witness_commitment=None,
        transactions_hex="",
    )


@dataclass
class Reservations:
    """Held balances that blocks the pool found still pay, until the books post them."""

    by_block: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, block_hash: str, held_used: Mapping[str, int]) -> None:
        """A block paying `held_used` was found (idempotent per block)."""
        if held_used:
            self.by_block[block_hash] = dict(held_used)

    def drop(self, hashes: Sequence[str]) -> None:
        """These blocks' payments are in the books (or will never be): stop reserving."""
        for h in hashes:
            self.by_block.pop(h, None)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """A copy for a plan request."""
        return {h: dict(used) for h, used in self.by_block.items()}
