"""Crediting events as database transactions (synchronous: they run on the store's thread).

Each function here is one event of a found block's life and writes it in ONE transaction, so
a crash leaves the books either before or after the event, never between:

* `track`: a block the pool recorded (`blocks`, accepted by the node) enters `acct_blocks`
  with the scheme in effect for it (the boundary rule of `switching`, below);
* `post_found`: first seen on the active chain: its credits are computed from the pool's
  `shares` and posted (key `found:<hash>`) with the window that explains them;
* `post_mature`: 100 confirmations: immature credits become spendable (`mature:<hash>`) and
  the block is `credited`;
* `post_orphan`: it left the chain before maturing: its found transaction is reversed
  (`reverse:found:<hash>`) if it was posted, and the block is `orphaned` for good;
* `post_pps_batch`: the next shares of a PPS/FPPS epoch (`next_pps_batch`), each priced at
  the terms of the job it answered, credited from the reserve (`pps:<first>-<last>`).

Each event also moves `acct_blocks.state`, and the ledger keys make a replay a no-op, so
running these any number of times over the same database credits every block once.

**Schemes and switches.** `acct_blocks.scheme` holds the block's full scheme spec
(`format_spec`). The operator's scheme is noted in `acct_scheme_switches` (`note_scheme`);
a switch noted at time t takes effect at the first block found after t, which is still
credited under the old scheme (its row gets `boundary_block`). A block's epoch starts after
the newest earlier block credited under another spec, so no window reaches across a switch.

**Which shares.** Accepted `shares` rows with `id` up to the block's finding share (the
accepted share whose `block_hash` is the block's): PROP from the previous tracked block (or
the epoch start); PPLNS walking back until the window of `factor x D` is full, D from the
block's own header bits. Share ids are the pool's commit order (one writer), so the shares a
block may count are all committed before its finding share and never change: a replayed
computation gives the same credits, and `SqlStore.post` refuses any that would differ.

**Per scheme.** SOLO/PROP/PPLNS: from the shares, as above. PPS/FPPS: the block's whole
reward goes to the reserve (`pool:reserve:immature`, then `pool:reserve`); the shares are
paid one by one instead. TIDES: the coinbase already paid the miners, so a block found on a
job with a recorded coinbase plan (`acct_coinbase_plans`, written by the pool with the job's
terms) posts exactly that plan, whatever the spec (paying it again would pay twice); a
TIDES-spec block whose job has none (the pool was not building TIDES coinbases: its reward
went to the pool's output) is credited custodially over the TIDES window (PPLNS rule, factor
x D) with the TIDES fee.

**Job terms.** The pool writes one `acct_job_terms` row per published job
(`pool/jobterms.py`). Job ids restart with each pool process, so a share answered the row
with its (height, job_id) published last at or before the share's time (`job_of_share`).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from hashfarm.accounting.entries import (
    block_found,
    block_matured,
    found_key,
    pps_settlement,
    reversal,
    tides_block_found,
)
from hashfarm.accounting.inputs import FoundBlock, JobTerms
from hashfarm.accounting.ledger import POOL_RESERVE, POOL_RESERVE_IMMATURE, AccountingError
from hashfarm.accounting.lifecycle import BlockState
from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import (
    BlockCredit,
    Pplns,
    Pps,
    Prop,
    Scheme,
    Solo,
    Tides,
    credit_block,
    credit_weights,
)
from hashfarm.accounting.store import SqlStore
from hashfarm.accounting.tides import CoinbasePlan
from hashfarm.accounting.window import Window, window_size
from hashfarm.accounting.windowread import read_window

CustodialScheme = Solo | Prop | Pplns  # credited from the shares when a block is found
_CHUNK = 32_768  # share ids per query while walking a PPLNS window back (windowread)
_ALL = Fraction(10**300)  # a window no round of shares fills (still a finite float)


def format_spec(scheme: Scheme) -> str:
    """The canonical text of a scheme and its parameters ("pplns:fee=100/10000:factor=2/1",
    "tides:fee=0/1:factor=8/1:dust=1048576:max=500", "fpps:fee=200/10000")."""
    text = f"{scheme.name}:fee={scheme.fee.numerator}/{scheme.fee.denominator}"
    if isinstance(scheme, Pplns | Tides):
        text += f":factor={scheme.factor.numerator}/{scheme.factor.denominator}"
    if isinstance(scheme, Tides):
        text += f":dust={scheme.dust_sats}:max={scheme.max_outputs}"
    return text


def parse_spec(text: str) -> Scheme:
    """The scheme `format_spec` wrote (ValueError for anything else)."""
    name, *fields = text.split(":")
    params = dict(f.split("=", 1) for f in fields)
    num, den = (int(x) for x in params["fee"].split("/"))
    fee = Fee(num, den)
    if name == "solo":
        return Solo(fee)
    if name == "prop":
        return Prop(fee)
    if name in ("pps", "fpps"):
        return Pps(fee, full=name == "fpps")
    fnum, fden = (int(x) for x in params["factor"].split("/"))
    if name == "pplns":
        return Pplns(fee, Fraction(fnum, fden))
    if name == "tides":
        factor = Fraction(fnum, fden)
        return Tides(fee, factor, int(params["dust"]), int(params["max"]))
    raise ValueError(f"scheme {name!r} is not credited by this service")


@dataclass(frozen=True, slots=True)
class PoolBlock:
    """A block row the pool wrote, with the id of its finding share (None: not yet seen)."""

    hash_hex: str
    height: int
    reward_sats: int
    finder_account: str
    time: float
    found_share_id: int | None


@dataclass(frozen=True, slots=True)
class OpenBlock:
    """A tracked block (acct_blocks + the pool's finder), as the events need it."""

    hash_hex: str
    height: int
    reward_sats: int
    spec: str
    state: BlockState
    confirmations: int
    found_share_id: int
    found_time: float
    changed_at: float
    finder_account: str


_UNTRACKED = (
    "SELECT b.hash, b.height, b.reward_sats, b.finder_account, b.time, "
    "(SELECT min(s.id) FROM shares s WHERE s.block_hash = b.hash AND s.accepted) "
    "FROM blocks b WHERE b.accepted_by_node "
    "AND NOT EXISTS (SELECT 1 FROM acct_blocks a WHERE a.hash = b.hash)"
)
_OPEN = (
    "SELECT a.hash, a.height, a.reward_sats, a.scheme, a.state, a.confirmations, "
    "a.found_share_id, a.found_time, a.changed_at, b.finder_account "
    "FROM acct_blocks a JOIN blocks b ON b.hash = a.hash "
    "WHERE a.state IN ('found', 'immature', 'mature') ORDER BY a.found_share_id"
)


def untracked_blocks(sql: SqlStore) -> list[PoolBlock]:
    """Blocks the node accepted that accounting does not track yet, in found order."""
    out = [
        PoolBlock(str(h), int(ht), int(r), str(f), float(t), None if s is None else int(s))
        for h, ht, r, f, t, s in sql.q(_UNTRACKED)
    ]
    return sorted(out, key=lambda b: (b.found_share_id is None, b.found_share_id or 0, b.time))


def open_blocks(sql: SqlStore) -> list[OpenBlock]:
    """Tracked blocks not yet final, in found order."""
    return [
        OpenBlock(
            str(h),
            int(ht),
            int(r),
            str(sp),
            BlockState(str(st)),
            int(c),
            int(fs),
            float(ft),
            float(ch),
            str(f),
        )
        for h, ht, r, sp, st, c, fs, ft, ch, f in sql.q(_OPEN)
    ]


def note_scheme(sql: SqlStore, spec: str, now: float) -> bool | str:
    """Record the operator's scheme when it differs from the last noted: False when it does
    not, True when it is the first, else the spec it switches from."""
    with sql.tx():
        last = sql.q("SELECT params FROM acct_scheme_switches ORDER BY id DESC LIMIT 1")
        if last and str(last[0][0]) == spec:
            return False
        when = now if last else 0.0  # the first scheme applies from the ledger's start
        sql.q(
            "INSERT INTO acct_scheme_switches (requested_at, scheme, params) VALUES (?, ?, ?)",
            (when, spec.split(":", 1)[0], spec),
        )
        return str(last[0][0]) if last else True


def track(sql: SqlStore, block: PoolBlock, now: float) -> str:
    """Start tracking `block` under the scheme in effect for it; the spec it got."""
    if block.found_share_id is None:
        raise ValueError(f"block {block.hash_hex}: its finding share is not in the ledger")
    with sql.tx():
        rows = sql.q(
            "SELECT id, requested_at, params, boundary_block FROM acct_scheme_switches ORDER BY id"
        )
        if not rows:
            raise AccountingError("no scheme noted: call note_scheme first")
        effective = str(rows[0][2])
        for _, _, params, boundary in rows[1:]:
            if boundary is not None:
                effective = str(params)  # the last row that took effect wins
        pending = [int(i) for i, at, _, b in rows[1:] if b is None and float(at) < block.time]
        sql.q(
            "INSERT INTO acct_blocks (hash, height, reward_sats, scheme, state, confirmations, "
            "found_share_id, found_time, changed_at) VALUES (?, ?, ?, ?, 'found', 0, ?, ?, ?)",
            (
                block.hash_hex,
                block.height,
                block.reward_sats,
                effective,
                block.found_share_id,
                block.time,
                now,
            ),
        )
        for row_id in pending:  # this block is their boundary: the next block pays the new way
            sql.q(
                "UPDATE acct_scheme_switches SET boundary_block = ? WHERE id = ?",
                (block.hash_hex, row_id),
            )
    return effective


def _epoch_after(sql: SqlStore, block: OpenBlock) -> int:
    rows = sql.q(
        "SELECT max(found_share_id) FROM acct_blocks WHERE found_share_id < ? AND scheme <> ?",
        (block.found_share_id, block.spec),
    )
    return -1 if rows[0][0] is None else int(rows[0][0])


def _pplns_window(sql: SqlStore, after: int, until: int, size: Fraction) -> Window:
    """The PPLNS window of `size` ending at share `until`, not reaching back to `after`.

    `windowread.read_window`: exact (`fastwindow`), `_CHUNK` shares per query; on SQLite
    each chunk comes back as one row of aggregates rather than a row per share.
    """
    return read_window(sql, after, until, size, _CHUNK)


def compute_credit(
    sql: SqlStore, block: OpenBlock, network_difficulty: float
) -> tuple[BlockCredit, int]:
    """What `block` credits under its scheme, and its epoch's start (share id, exclusive)."""
    scheme = parse_spec(block.spec)
    found = FoundBlock(
        block.hash_hex,
        block.height,
        block.reward_sats,
        block.finder_account,
        block.found_share_id,
        block.found_time,
        network_difficulty,
    )
    after = _epoch_after(sql, block)
    if isinstance(scheme, Solo | Pps):  # PPS/FPPS: the whole reward to the reserve
        return credit_block(scheme, found, []), after
    if isinstance(scheme, Prop):
        prev = sql.q(
            "SELECT max(found_share_id) FROM acct_blocks WHERE found_share_id < ?",
            (block.found_share_id,),
        )[0][0]
        start = after if prev is None else max(after, int(prev))
        # the whole round: a "window" larger than any round, so every share counts whole
        everything = _pplns_window(sql, start, block.found_share_id, _ALL)
        window = replace(everything, size=everything.total)  # as `window.prop_round` states it
    else:  # PPLNS; TIDES here only for a block whose job has no coinbase plan (post_found)
        window = _pplns_window(
            sql, after, block.found_share_id, window_size(scheme.factor, network_difficulty)
        )
    paid = credit_weights(found, scheme.name, scheme.fee, window.weights)
    return replace(paid, window=window), after


def _set_state(sql: SqlStore, hash_hex: str, state: BlockState, conf: int, now: float) -> None:
    sql.q(
        "UPDATE acct_blocks SET state = ?, confirmations = ?, changed_at = ? WHERE hash = ?",
        (state.value, conf, now, hash_hex),
    )


def post_found(
    sql: SqlStore, block: OpenBlock, network_difficulty: float, confirmations: int, now: float
) -> BlockCredit:
    """The block is on the active chain: post its credits (immature) and their explanation.

    The credit is computed before the write transaction opens: reading a big window takes
    seconds, and on SQLite an open write transaction would hold the pool's share writes
    that long. Its inputs (shares up to the finding share, the tracked blocks before it)
    do not change, and `post` refuses a different result under the same key.
    """
    job = job_of_share(sql, block.found_share_id)
    plan = None if job is None else coinbase_plan(sql, job.ref)
    if plan is not None:  # the coinbase paid the miners: post exactly that, whatever the spec
        return _post_tides(sql, block, plan, job, network_difficulty, confirmations, now)
    try:
        credit, after = compute_credit(sql, block, network_difficulty)
    except ValueError as exc:  # a share row no pool writes (difficulty NaN, 0...)
        raise AccountingError(f"block {block.hash_hex}: cannot credit: {exc}") from exc
    with sql.tx():
        sql.post(block_found(credit, block.found_time))
        w = credit.window
        sql.q(
            "INSERT INTO acct_block_windows (block_hash, scheme, finder_account, "
            "network_difficulty, fee_sats, window_size, window_total, oldest_share_id, "
            "newest_share_id, epoch_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (block_hash) DO NOTHING",
            (
                block.hash_hex,
                block.spec,
                block.finder_account,
                network_difficulty,
                credit.fee,
                str(w.size),
                str(w.total),
                w.oldest_share_id,
                w.newest_share_id,
                after,
            ),
        )
        sql.many(
            "INSERT INTO acct_block_parts (block_hash, account, weight, sats) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (block_hash, account) DO NOTHING",
            [
                (block.hash_hex, a, str(w.weights.get(a, Fraction(1))), sats)
                for a, sats in sorted(credit.credits.items())
            ],
        )
        _set_state(sql, block.hash_hex, BlockState.IMMATURE, confirmations, now)
    return credit


def post_mature(sql: SqlStore, block: OpenBlock, confirmations: int, now: float) -> None:
    """100 confirmations: the block's credits become spendable; the block is credited."""
    with sql.tx():
        found = sql.transaction(found_key(block.hash_hex))
        if found is None:
            raise AccountingError(f"block {block.hash_hex} matured but was never posted")
        sql.post(block_matured(found, now))
        _set_state(sql, block.hash_hex, BlockState.CREDITED, confirmations, now)


def post_orphan(sql: SqlStore, block: OpenBlock, now: float) -> bool:
    """The block left the chain: reverse its credits (if posted); True when reversed."""
    with sql.tx():
        found = sql.transaction(found_key(block.hash_hex))
        reversed_ = found is not None and sql.post(reversal(found, now))
        _set_state(sql, block.hash_hex, BlockState.ORPHANED, 0, now)
    return reversed_


def set_confirmations(sql: SqlStore, updates: list[tuple[str, int]]) -> None:
    """Record confirmations of blocks whose state did not change (one transaction)."""
    if not updates:
        return
    with sql.tx():
        sql.many(
            "UPDATE acct_blocks SET confirmations = ? WHERE hash = ?",
            [(c, h) for h, c in updates],
        )


# -- job terms: what each published job was worth (written by the pool, pool/jobterms.py) --


@dataclass(frozen=True, slots=True)
class JobRow:
    """One `acct_job_terms` row: the terms of a job the pool published."""

    ref: int  # acct_job_terms.id
    published_at: float
    terms: JobTerms


_TERMS_COLUMNS = "id, published_at, network_difficulty, subsidy_sats, fees_sats"


def _job_row(row: tuple[Any, ...]) -> JobRow:
    ref, at, nd, subsidy, fees = row
    return JobRow(
        int(ref),
        float(at),
        JobTerms(float(nd), int(subsidy), int(fees)),
    )


def job_of_share(sql: SqlStore, share_id: int) -> JobRow | None:
    """The terms of the job share `share_id` answered: the row with the share's (height,
    job_id) published last at or before the share's time (job ids restart with each pool
    process, so the same pair can name jobs of several runs); None when none is recorded."""
    share = sql.q("SELECT height, job_id, time FROM shares WHERE id = ?", (share_id,))
    if not share:
        return None
    height, job_id, at = share[0]
    rows = sql.q(
        f"SELECT {_TERMS_COLUMNS} FROM acct_job_terms WHERE height = ? AND job_id = ? "
        "AND published_at <= ? ORDER BY published_at DESC, id DESC LIMIT 1",
        (height, job_id, at),
    )
    return _job_row(rows[0]) if rows else None


def _published(row: JobRow) -> tuple[float, int]:
    return row.published_at, row.ref


class TermsIndex:
    """The job terms rows of a range of heights, to find each share's job in memory."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        by_job: dict[tuple[int, str], list[JobRow]] = {}
        for row in rows:
            height, job_id = int(row[0]), str(row[1])
            by_job.setdefault((height, job_id), []).append(_job_row(row[2:]))
        self._rows = {
            k: sorted(v, key=lambda r: (r.published_at, r.ref)) for k, v in by_job.items()
        }
        self._times = {k: [r.published_at for r in v] for k, v in self._rows.items()}

    @classmethod
    def load(cls, sql: SqlStore, low: int, high: int) -> TermsIndex:
        """Every row with low <= height <= high."""
        return cls(
            sql.q(
                f"SELECT height, job_id, {_TERMS_COLUMNS} FROM acct_job_terms "
                "WHERE height >= ? AND height <= ?",
                (low, high),
            )
        )

    def find(self, height: int, job_id: str, at: float) -> JobRow | None:
        """The row a share (height, job_id, time) answered, as `job_of_share` says."""
        times = self._times.get((height, job_id))
        if not times:
            return None
        i = bisect.bisect_right(times, at)
        return self._rows[(height, job_id)][i - 1] if i else None


# -- TIDES: a found block posts the coinbase plan of the job it was found on --------------


def plan_to_json(plan: CoinbasePlan, extra: Mapping[str, object] | None = None) -> str:
    """`acct_coinbase_plans.plan` for `plan` (the pool writes it with the job's terms).

    `extra` may add the window that explains the earnings: "weights" ({account: "n/d"},
    exact), "window_size" and "window_total" ("n/d"), "oldest_share_id", "newest_share_id".
    """
    body: dict[str, object] = {
        "earnings": plan.earnings,
        "outputs": [[a, v] for a, v in plan.outputs],
        "held_used": plan.held_used,
        "held_before": plan.held_before,
    }
    body.update(extra or {})
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _sats(mapping: object) -> dict[str, int]:
    if not isinstance(mapping, dict):
        raise ValueError("a coinbase plan field is not an object")
    return {str(k): int(v) for k, v in mapping.items()}


def plan_from_row(
    value: int, fee: int, pool_sats: int, text: str
) -> tuple[CoinbasePlan, dict[str, Any]]:
    """A `CoinbasePlan` back from its row (and the JSON body, for the window it explains)."""
    body = json.loads(text)
    plan = CoinbasePlan(
        value=int(value),
        fee=int(fee),
        earnings=_sats(body["earnings"]),
        outputs=tuple((str(a), int(v)) for a, v in body["outputs"]),
        pool_sats=int(pool_sats),
        held_used=_sats(body.get("held_used", {})),
        held_before=_sats(body.get("held_before", {})),
    )
    if sum(plan.earnings.values()) + plan.fee != plan.value:
        raise ValueError("the plan's earnings and fee do not add up to its value")
    return plan, body


def coinbase_plan(sql: SqlStore, job_ref: int) -> tuple[CoinbasePlan, dict] | None:  # type: ignore[type-arg]
    """The coinbase plan recorded with job `job_ref` (None: that job paid no miner outputs)."""
    rows = sql.q(
        "SELECT value, fee, pool_sats, plan FROM acct_coinbase_plans WHERE job_ref = ?",
        (job_ref,),
    )
    if not rows:
        return None
    value, fee, pool, text = rows[0]
    try:
        return plan_from_row(int(value), int(fee), int(pool), str(text))
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise AccountingError(f"job {job_ref}: unreadable coinbase plan: {exc}") from exc


def _post_tides(
    sql: SqlStore,
    block: OpenBlock,
    recorded: tuple[CoinbasePlan, dict[str, Any]],
    job: JobRow | None,
    network_difficulty: float,
    confirmations: int,
    now: float,
) -> BlockCredit:
    """A block found on a TIDES job: its coinbase already paid the outputs; post the plan."""
    plan, body = recorded
    if plan.value != block.reward_sats:
        raise AccountingError(
            f"block {block.hash_hex}: its job's coinbase plan is worth {plan.value} sats, "
            f"the block {block.reward_sats}"
        )
    credit = BlockCredit(block.hash_hex, "tides", plan.value, plan.fee, dict(plan.earnings), 0)
    weights = {str(k): Fraction(str(v)) for k, v in dict(body.get("weights", {})).items()}
    if not weights:  # no window recorded: the earnings themselves explain the parts
        weights = {a: Fraction(v) for a, v in plan.earnings.items()}
    total = Fraction(str(body.get("window_total", sum(weights.values()))))
    size = str(body.get("window_size", total))
    after = _epoch_after(sql, block)
    with sql.tx():
        sql.post(tides_block_found(block.hash_hex, plan, block.found_time))
        sql.q(
            "INSERT INTO acct_block_windows (block_hash, scheme, finder_account, "
            "network_difficulty, fee_sats, window_size, window_total, oldest_share_id, "
            "newest_share_id, epoch_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (block_hash) DO NOTHING",
            (
                block.hash_hex,
                block.spec,
                block.finder_account,
                job.terms.network_difficulty if job else network_difficulty,
                plan.fee,
                size,
                str(total),
                body.get("oldest_share_id"),
                body.get("newest_share_id"),
                after,
            ),
        )
        sql.many(
            "INSERT INTO acct_block_parts (block_hash, account, weight, sats) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (block_hash, account) DO NOTHING",
            [
                (block.hash_hex, a, str(weights.get(a, Fraction(0))), sats)
                for a, sats in sorted(plan.earnings.items())
            ],
        )
        _set_state(sql, block.hash_hex, BlockState.IMMATURE, confirmations, now)
    return credit


# -- scheme epochs over share ids (switching's boundary rule, from acct_scheme_switches) --


@dataclass(frozen=True, slots=True)
class SpecEpoch:
    """Accepted shares with after < id <= until (None: open) belong to `spec`."""

    after: int
    until: int | None
    spec: str


def scheme_epochs(sql: SqlStore) -> tuple[list[SpecEpoch], bool]:
    """The epochs the noted switches made so far, and whether a switch is still pending
    (requested, its boundary block not found yet: the open epoch's end is not known)."""
    rows = sql.q(
        "SELECT s.params, s.boundary_block, b.found_share_id FROM acct_scheme_switches s "
        "LEFT JOIN acct_blocks b ON b.hash = s.boundary_block ORDER BY s.id"
    )
    if not rows:
        return [], False
    bounds: dict[int, str] = {}
    pending = False
    for params, boundary, found_share in rows[1:]:
        if boundary is None:
            pending = True
        else:
            bounds[int(found_share)] = str(params)  # rows in id order: the last one wins
    epochs: list[SpecEpoch] = []
    after, spec = -1, str(rows[0][0])
    for found_share in sorted(bounds):
        epochs.append(SpecEpoch(after, found_share, spec))
        after, spec = found_share, bounds[found_share]
    epochs.append(SpecEpoch(after, None, spec))
    return epochs, pending


# -- PPS/FPPS: shares priced in batches at their jobs' terms (`pps:<first>-<last>`) -------

PPS_BATCH = 50_000  # shares priced per batch (one transaction)
_IN_CHUNK = 500  # accounts per `IN (...)` read of their accrual rows


@dataclass(frozen=True, slots=True)
class PpsBatch:
    """A range of one PPS epoch's shares, priced (exact values per account)."""

    cursor: int  # the pricing cursor this batch follows (max until_id before it)
    after: int  # exclusive
    first: int  # the first share priced
    until: int  # inclusive: the last share priced
    spec: str
    shares: int  # shares priced
    values: dict[str, Fraction]  # exact value of the batch's shares per account
    skipped: int = 0  # shares judged before the pool recorded any job's terms: not priced

    @property
    def key(self) -> str:
        """The batch id in its settlement's key `pps:<first>-<last>`."""
        return f"{self.first}-{self.until}"


@dataclass(frozen=True, slots=True)
class PpsWait:
    """Pricing stops before share `share_id`: its job's terms are not (yet) recorded."""

    share_id: int
    time: float
    reason: str


def pps_cursor(sql: SqlStore) -> int:
    """Every PPS share with an id up to this has been priced (-1: none yet)."""
    rows = sql.q("SELECT max(until_id) FROM acct_pps_batches")
    return -1 if rows[0][0] is None else int(rows[0][0])


def next_pps_batch(sql: SqlStore, limit: int = PPS_BATCH) -> PpsBatch | PpsWait | None:
    """Price the next unpriced shares of a PPS/FPPS epoch (read only; None: nothing to do).

    Shares are priced in id order, at most `limit` at a time, within one epoch; the open
    epoch only while no switch is pending (its end is the pending switch's boundary block,
    not yet known) and only up to the newest accepted share. A share is priced only once the
    pool has recorded a job published at or after its time (`acct_job_terms` rows are written
    in order by one writer, so the share's own job is then committed too): until then, or
    when its job has no terms at all, pricing waits before it (`PpsWait`). A share judged
    before the first job the pool ever recorded (a ledger from before `[accounting]` was
    enabled) can never be matched to its job: it is passed over, counted in `skipped`.
    """
    epochs, pending = scheme_epochs(sql)
    cursor = pps_cursor(sql)
    for epoch in epochs:
        scheme = parse_spec(epoch.spec)
        if not isinstance(scheme, Pps) or (epoch.until is not None and epoch.until <= cursor):
            continue
        if epoch.until is None:
            if pending:
                return None
            top = sql.q("SELECT max(id) FROM shares WHERE accepted")[0][0]
            if top is None:
                return None
            high = int(top)
        else:
            high = epoch.until
        low = max(cursor, epoch.after)
        if high <= low:
            continue
        rows = sql.q(
            "SELECT id, account, difficulty, time, height, job_id FROM shares "
            "WHERE accepted AND id > ? AND id <= ? ORDER BY id LIMIT ?",
            (low, high, limit),
        )
        if not rows:
            continue
        return _price(sql, scheme, epoch.spec, cursor, low, rows)
    return None


def _price(
    sql: SqlStore,
    scheme: Pps,
    spec: str,
    cursor: int,
    low: int,
    rows: list[tuple[Any, ...]],
) -> PpsBatch | PpsWait:
    oldest, newest = sql.q("SELECT min(published_at), max(published_at) FROM acct_job_terms")[0]
    heights = [int(r[4]) for r in rows]
    index = TermsIndex.load(sql, min(heights), max(heights))
    groups: dict[tuple[str, int, float], int] = {}  # (account, job, difficulty) -> shares
    jobs: dict[int, JobTerms] = {}
    until, first, skipped = low, low, 0
    for share_id, account, difficulty, at, height, job_id in rows:
        sid, when = int(share_id), float(at)
        if oldest is not None and when < float(oldest):  # before the pool recorded any job:
            skipped += 1  # no row can ever match it (a ledger from before [accounting])
            until = sid
            first = first if first > low else sid
            continue
        job = index.find(int(height), str(job_id), when)
        reason = None
        if newest is None or when > float(newest):
            reason = "no job recorded after it yet (its own job's terms may still be on the way)"
        elif job is None:
            reason = f"no terms recorded for job {job_id} at height {height}"
        if reason is not None:
            if until == low:
                return PpsWait(sid, when, reason)
            break
        assert job is not None
        jobs[job.ref] = job.terms
        key = (str(account), job.ref, float(difficulty))
        groups[key] = groups.get(key, 0) + 1
        until = sid
        first = first if first > low else sid
    try:
        values = _values(groups, jobs, scheme)
    except ValueError as exc:  # a share row no pool writes (difficulty NaN, 0...)
        raise AccountingError(f"PPS shares after {low}: cannot price: {exc}") from exc
    return PpsBatch(cursor, low, first, until, spec, sum(groups.values()), values, skipped)


def _values(
    groups: Mapping[tuple[str, int, float], int], jobs: Mapping[int, JobTerms], scheme: Pps
) -> dict[str, Fraction]:
    """Each account's exact value of its shares, `sum(count x share_value(d, job terms))`.

    The same sum as one `schemes.share_value` per share, in integers: each difficulty d is
    p / 2^k exactly (`float.as_integer_ratio`), so over the batch's largest 2^K,
    `d x base / D x (1 - fee) = p 2^(K-k) x base x D_den x keep_num /
    (2^K x D_num x keep_den)`; per account and network difficulty the numerators add up as
    integers and a single `Fraction` is made (a handful of big-integer products per group
    instead of several Fraction operations per share).
    """
    ratios: dict[float, tuple[int, int]] = {}
    for _, _, d in groups:
        if d not in ratios:
            if not math.isfinite(d) or d <= 0:
                raise ValueError(f"share difficulty {d!r} is not a positive finite number")
            ratios[d] = d.as_integer_ratio()
    scale = max((q for _, q in ratios.values()), default=1)  # 2^K: every q divides it
    keep = 1 - scheme.fee.rate
    sums: dict[tuple[str, float], int] = {}  # (account, network difficulty) -> numerator
    for (account, ref, d), count in groups.items():
        terms = jobs[ref]
        base = terms.subsidy_sats + (terms.fees_sats if scheme.full else 0)
        p, q = ratios[d]
        key = (account, terms.network_difficulty)
        sums[key] = sums.get(key, 0) + count * p * (scale // q) * base
    values: dict[str, Fraction] = {}
    for (account, network), numerator in sums.items():
        nd_num, nd_den = network.as_integer_ratio()
        value = Fraction(numerator * nd_den * keep.numerator, scale * nd_num * keep.denominator)
        values[account] = values.get(account, Fraction(0)) + value
    return values


def post_pps_batch(sql: SqlStore, batch: PpsBatch, now: float) -> dict[str, int]:
    """Credit a priced batch (one transaction): per account, whatever makes its credits so
    far `floor(exact value of its priced shares)` (`schemes.PpsAccrual`'s rule), from the
    reserve (`pps:<first>-<last>`). Refused when another pass priced meanwhile."""
    with sql.tx():
        if pps_cursor(sql) != batch.cursor:
            raise AccountingError("PPS shares were priced meanwhile (two crediting services?)")
        credits: dict[str, int] = {}
        updates: list[tuple[Any, ...]] = []
        inserts: list[tuple[Any, ...]] = []
        accounts = sorted(batch.values)
        known: dict[str, tuple[Any, ...]] = {}
        for i in range(0, len(accounts), _IN_CHUNK):  # one query per chunk, not per account
            part = accounts[i : i + _IN_CHUNK]
            for r in sql.q(
                "SELECT account, owed_numerator, owed_denominator, credited_sats "
                f"FROM acct_pps_accrual WHERE account IN ({', '.join('?' * len(part))})",
                part,
            ):
                known[str(r[0])] = r[1:]
        for account in accounts:
            value = batch.values[account]
            row = known.get(account)
            old = Fraction(int(row[0]), int(row[1])) if row else Fraction(0)
            credited = int(row[2]) if row else 0
            owed = old + value
            due = math.floor(owed) - credited
            if due > 0:
                credits[account] = due
            fields = (str(owed.numerator), str(owed.denominator), credited + max(due, 0))
            if row:
                updates.append((*fields, batch.until, account))
            else:
                inserts.append((account, *fields, batch.until))
        sql.many(
            "UPDATE acct_pps_accrual SET owed_numerator = ?, owed_denominator = ?, "
            "credited_sats = ?, last_share_id = ? WHERE account = ?",
            updates,
        )
        sql.many(
            "INSERT INTO acct_pps_accrual (account, owed_numerator, owed_denominator, "
            "credited_sats, last_share_id) VALUES (?, ?, ?, ?, ?)",
            inserts,
        )
        if credits:
            sql.post(pps_settlement(batch.key, credits, now))
        sql.q(
            "INSERT INTO acct_pps_batches (after_id, until_id, scheme, shares, credited_sats, "
            "time) VALUES (?, ?, ?, ?, ?, ?)",
            (batch.after, batch.until, batch.spec, batch.shares, sum(credits.values()), now),
        )
    return credits


def reserve_balances(sql: SqlStore) -> tuple[int, int, int]:
    """(pool:reserve, pool:reserve:immature, sum of every miner balance)."""
    owed = sum(sql.balances("miner:").values())
    return sql.balance(POOL_RESERVE), sql.balance(POOL_RESERVE_IMMATURE), owed
