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
  (`reverse:found:<hash>`) if it was posted, and the block is `orphaned` for good.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from operator import itemgetter

import numpy as np

from hashfarm.accounting.entries import block_found, block_matured, found_key, reversal
from hashfarm.accounting.fastwindow import fast_pplns_window
from hashfarm.accounting.inputs import FoundBlock
from hashfarm.accounting.ledger import AccountingError
from hashfarm.accounting.lifecycle import BlockState
from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import (
    BlockCredit,
    Pplns,
    Prop,
    Solo,
    credit_block,
    credit_weights,
)
from hashfarm.accounting.store import SqlStore
from hashfarm.accounting.window import Window, window_size

CustodialScheme = Solo | Prop | Pplns
_CHUNK = 100_000  # shares read per query while walking a PPLNS window back
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)
_ALL = Fraction(10**300)  # a window no round of shares fills (still a finite float)


def format_spec(scheme: CustodialScheme) -> str:
    """The canonical text of a scheme and its parameters ("pplns:fee=100/10000:factor=2/1")."""
    text = f"{scheme.name}:fee={scheme.fee.numerator}/{scheme.fee.denominator}"
    if isinstance(scheme, Pplns):
        text += f":factor={scheme.factor.numerator}/{scheme.factor.denominator}"
    return text


def parse_spec(text: str) -> CustodialScheme:
    """The scheme `format_spec` wrote (ValueError for anything else)."""
    name, *fields = text.split(":")
    params = dict(f.split("=", 1) for f in fields)
    num, den = (int(x) for x in params["fee"].split("/"))
    fee = Fee(num, den)
    if name == "solo":
        return Solo(fee)
    if name == "prop":
        return Prop(fee)
    if name == "pplns":
        fnum, fden = (int(x) for x in params["factor"].split("/"))
        return Pplns(fee, Fraction(fnum, fden))
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


def note_scheme(sql: SqlStore, spec: str, now: float) -> bool:
    """Record the operator's scheme when it differs from the last noted; True if recorded."""
    with sql.tx():
        last = sql.q("SELECT params FROM acct_scheme_switches ORDER BY id DESC LIMIT 1")
        if last and str(last[0][0]) == spec:
            return False
        when = now if last else 0.0  # the first scheme applies from the ledger's start
        sql.q(
            "INSERT INTO acct_scheme_switches (requested_at, scheme, params) VALUES (?, ?, ?)",
            (when, spec.split(":", 1)[0], spec),
        )
        return True


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

    Shares are read newest first, `_CHUNK` at a time, until their float sum passes the
    window (with a margin far above float error) or they run out; the exact window is then
    `fastwindow.fast_pplns_window` (numpy, exact integers). Should the exact total still fall
    short while shares remain, more are read.
    """
    ids: list[int] = []
    names: list[str] = []
    diffs: list[float] = []  # newest first, as read
    upper, exhausted, running = until, False, 0.0
    need = float(size) * (1 + 1e-6)  # float sums of 10^6 shares err by ~1e-10, relatively
    while True:
        while not exhausted and running < need:
            rows = sql.q(
                "SELECT id, account, difficulty FROM shares "
                "WHERE accepted AND id > ? AND id <= ? ORDER BY id DESC LIMIT ?",
                (after, upper, _CHUNK),
            )
            if rows:  # columns at C speed: this loop carries up to a million shares
                ids.extend(map(_FIRST, rows))
                names.extend(map(_SECOND, rows))
                diffs.extend(map(_THIRD, rows))
                running += math.fsum(map(_THIRD, rows))
                upper = int(rows[-1][0]) - 1  # the next read starts below the oldest read
            exhausted = len(rows) < _CHUNK
        window = _exact_window(ids[::-1], names[::-1], diffs[::-1], size)
        if window.full or exhausted:
            return window
        need *= 2


def _exact_window(ids: list[int], names: list[str], diffs: list[float], size: Fraction) -> Window:
    """`window.pplns_window`'s result for these shares (oldest first), computed with numpy."""
    if not ids:
        return Window({}, size, Fraction(0), None, None, Fraction(1))
    by_index = list(dict.fromkeys(map(str, names)))  # each account once, in first-seen order
    index = {name: i for i, name in enumerate(by_index)}
    accounts = np.fromiter(map(index.__getitem__, names), dtype=np.int64, count=len(names))
    fast = fast_pplns_window(accounts, np.asarray(diffs, dtype=np.float64), size)
    weights = {by_index[a]: Fraction(w, fast.denominator) for a, w in fast.weights.items()}
    total = Fraction(fast.total, fast.denominator)
    return Window(weights, size, total, int(ids[fast.start]), int(ids[-1]), fast.edge_fraction)


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
    if isinstance(scheme, Solo):
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
    else:
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
