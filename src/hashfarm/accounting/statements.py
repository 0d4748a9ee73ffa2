"""Statements: what each account holds and why, read from the ledger tables (synchronous).

Every function takes a `store.SqlStore` and only reads. Amounts are integer satoshis.

* `account_list`: every miner account with its spendable and immature balances;
* `block_lines`: per block, what the account was credited and why ("41.25% of the window of
  block 912,345"), with the block's state (immature, credited, orphaned: reversed);
* `pps_lines`: per PPS/FPPS pricing batch (`pps:<first>-<last>`), what the account was
  credited and why ("PPS: 3 shares (difficulty 3 in all) at network difficulty 256, subsidy
  312,500,000, less the 1% pool fee: 3,625,488 sats"), from the batch row, the account's
  shares in its range and the job terms each share answered (as crediting priced them);
* `statement_lines`: the per-block statement: `block_lines`, then `pps_lines` (each newest
  first), paged as one list; `line_json` / `day_json` are the JSON both the CLI and the API
  write;
* `payout_lines`: each payout that debited the account ("payout #3 tx abcdef01…89abcdef
  confirmed (3 conf.): 123,456,789 sats from the balance, ..."), `payout_json` its JSON;
* `day_lines`: per UTC day, what was earned (credits posted), reversed (orphans), made
  spendable (matured), credited by PPS/FPPS, paid out (payouts, and held TIDES balances paid
  in a coinbase, net of payouts given back), other movements (operator postings), and what a
  TIDES coinbase paid the account straight from a block (never held in the books); so
  earned - reversed + pps - paid + other is the day's change of the account's two balances;
* for the HTTP API (bounded pages, one consistent read): `account_page` (balances and what
  was paid out), `block_credits` (each account's part of one block), `payout_runs` and
  `account_payouts` (the payout tables, read directly), `scheme_status` and
  `reserve_status`; `connect_readonly` opens the ledger so that nothing can be written
  through it, and `unavailable` says why the books cannot be read (no accounting yet).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from hashfarm.accounting.crediting import TermsIndex, parse_spec
from hashfarm.accounting.ledger import (
    PAYOUTS,
    PAYOUTS_COINBASE,
    POOL_FEES,
    POOL_RESERVE,
    POOL_RESERVE_IMMATURE,
    ReserveStatus,
    immature_account,
    miner_account,
)
from hashfarm.accounting.store import POSTGRES_PREFIXES, SQLITE_PREFIX, SqlStore, _secrets_of
from hashfarm.errors import ConfigError, LedgerError

_IMMATURE = ":immature"


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """A miner account's balances."""

    account: str
    spendable: int  # miner:<id>: credited from mature blocks (or TIDES held dust)
    immature: int  # miner:<id>:immature: credits of blocks not yet 100 deep


@dataclass(frozen=True, slots=True)
class BlockLine:
    """One block's credit to one account, explained."""

    height: int
    block_hash: str
    scheme: str  # the block's scheme spec ("pplns:fee=100/10000:factor=2/1")
    state: str  # found | immature | credited | orphaned
    sats: int  # credited by the block (reversed when the block is orphaned)
    part: Fraction  # the account's part of the window/round (1 for SOLO's finder)
    explanation: str


@dataclass(frozen=True, slots=True)
class DayLine:
    """One UTC day of an account's ledger."""

    day: str  # YYYY-MM-DD (UTC)
    earned: int  # credits posted for found blocks (immature)
    reversed: int  # credits taken back from orphaned blocks
    matured: int  # credits made spendable
    pps: int = 0  # PPS/FPPS credits (spendable at once)
    paid: int = 0  # taken from the balance by payouts and TIDES coinbases, net of give-backs
    other: int = 0  # any other posting to the account (operator capital, say)
    coinbase: int = 0  # block earnings a TIDES coinbase paid out directly (net of orphans)

    @property
    def change(self) -> int:
        """The day's change of spendable + immature."""
        return self.earned - self.reversed + self.pps - self.paid + self.other


def account_list(sql: SqlStore) -> list[AccountSummary]:
    """Every miner account with a non-zero balance, by account id."""
    spendable: dict[str, int] = {}
    immature: dict[str, int] = {}
    for name, value in sql.balances("miner:").items():
        ident = name.removeprefix("miner:")
        if ident.endswith(_IMMATURE):
            immature[ident.removesuffix(_IMMATURE)] = value
        else:
            spendable[ident] = value
    return [
        AccountSummary(a, spendable.get(a, 0), immature.get(a, 0))
        for a in sorted(spendable.keys() | immature.keys())
    ]


def summary(sql: SqlStore, account: str) -> AccountSummary:
    """One account's balances (zeros when unknown)."""
    return AccountSummary(
        account, sql.balance(miner_account(account)), sql.balance(immature_account(account))
    )


def explain(scheme: str, height: int, part: Fraction, total: Fraction) -> str:
    """ "41.25% of the window of block 912,345" (the round for PROP; SOLO: the finder)."""
    name = scheme.split(":", 1)[0]
    if name == "solo":
        return f"finder of block {height:,} (solo)"
    if total == 0:
        return f"finder of block {height:,} (no recorded work in its {name} window)"
    what = "round" if name == "prop" else "window"
    return f"{float(part * 100):.4g}% of the {what} of block {height:,} ({name})"


def block_lines(
    sql: SqlStore, account: str, limit: int | None = None, offset: int = 0
) -> list[BlockLine]:
    """Every block that credited `account`, newest first (`limit` lines from `offset`)."""
    page = "" if limit is None else f" LIMIT {int(limit)} OFFSET {int(offset)}"
    rows = sql.q(
        "SELECT a.height, a.hash, a.scheme, a.state, p.sats, p.weight, w.window_total "
        "FROM acct_block_parts p JOIN acct_block_windows w ON w.block_hash = p.block_hash "
        "JOIN acct_blocks a ON a.hash = p.block_hash WHERE p.account = ? "
        "ORDER BY a.height DESC, a.hash" + page,
        (account,),
    )
    out: list[BlockLine] = []
    for height, hash_hex, scheme, state, sats, weight, total_text in rows:
        total = Fraction(str(total_text))
        part = Fraction(str(weight)) / total if total else Fraction(1)
        out.append(
            BlockLine(
                int(height),
                str(hash_hex),
                str(scheme),
                str(state),
                int(sats),
                part,
                explain(str(scheme), int(height), part, total),
            )
        )
    return out


def day_lines(sql: SqlStore, account: str) -> list[DayLine]:
    """The account's ledger per UTC day, oldest first.

    Each posting to the account's two balances is sorted by the event it belongs to: a
    reversal counts against what it reverses (an orphan's credits as `reversed`, a payout
    given back or a TIDES coinbase that left the chain as less `paid`)."""
    rows = sql.q(
        "SELECT t.time, t.kind, t.reverses, p.account, p.amount FROM acct_postings p "
        "JOIN acct_transactions t ON t.key = p.txn_key WHERE p.account IN (?, ?) "
        "AND p.currency = 'SAT' ORDER BY t.time",
        (miner_account(account), immature_account(account)),
    )
    days: dict[str, list[int]] = {}

    def line(when: object) -> list[int]:
        day = dt.datetime.fromtimestamp(float(str(when)), dt.UTC).date().isoformat()
        return days.setdefault(day, [0] * 7)

    for when, kind, reverses, name, amount in rows:
        row = line(when)
        value = int(amount)
        held = str(name).endswith(_IMMATURE)
        event = str(kind)
        if event == "reverse" and reverses is not None:
            event = str(reverses).split(":", 1)[0]
            if event == "found" and held:
                row[1] -= value  # an orphan's credits taken back
                continue
        if event == "found" and held:
            row[0] += value
        elif event == "mature":
            if not held:
                row[2] += value
        elif event == "pps":
            row[3] += value
        elif event in ("payout", "found"):  # found: held balance paid in a TIDES coinbase
            row[4] -= value
        else:
            row[5] += value
    for when, kind, sats in sql.q(
        "SELECT t.time, t.kind, bp.sats FROM acct_block_parts bp JOIN acct_transactions t "
        "ON t.block_hash = bp.block_hash AND t.kind IN ('found', 'reverse') "
        "WHERE bp.account = ? AND bp.sats > 0 AND EXISTS (SELECT 1 FROM acct_postings c "
        "WHERE c.txn_key = t.key AND c.account = ?) AND NOT EXISTS (SELECT 1 FROM "
        "acct_postings h WHERE h.txn_key = t.key AND h.account = ?)",
        (account, PAYOUTS_COINBASE, immature_account(account)),
    ):
        line(when)[6] += int(sats) if kind == "found" else -int(sats)
    return [DayLine(d, *v) for d, v in sorted(days.items())]


@dataclass(frozen=True, slots=True)
class PpsLine:
    """One PPS/FPPS pricing batch's credit to one account, explained."""

    batch: str  # "<first>-<last>": the share ids priced (the key `pps:<batch>`)
    scheme: str  # the epoch's spec ("pps:fee=100/10000")
    time: float  # when it was credited
    sats: int  # credited (whole satoshis; the fraction owed carries to the next batch)
    shares: int  # the account's shares priced in the batch
    difficulty: float  # their difficulty, summed
    value: Fraction  # their exact value at their jobs' terms, less the pool fee
    terms: tuple[tuple[float, int, int], ...]  # (network difficulty, subsidy, fees) priced at
    explanation: str


StatementLine = BlockLine | PpsLine


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.8g}"


def explain_pps(
    spec: str, sats: int, shares: int, difficulty: float, value: Fraction, terms: tuple[Any, ...]
) -> str:
    """ "PPS: 3 shares (difficulty 3 in all) at network difficulty 256, subsidy 312,500,000,
    less the 1% pool fee: 3,625,488 sats" (the value's fraction named when it has one)."""
    name, fee = spec.split(":", 1)[0], parse_spec(spec).fee.rate
    if len(terms) == 1:
        nd, subsidy, fees = terms[0]
        at = f"network difficulty {_num(nd)}, subsidy {subsidy:,}"
        at += f", fees {fees:,}" if name == "fpps" else ""
    else:
        at = f"{len(terms)} jobs' terms"
    noun = "share" if shares == 1 else "shares"
    text = f"{name.upper()}: {shares:,} {noun} (difficulty {_num(difficulty)} in all) at {at}"
    if fee:
        text += f", less the {float(fee * 100):.4g}% pool fee"
    text += f": {sats:,} sats"
    if value.denominator != 1:
        text += (
            f" (worth {float(value):,.2f}; whole satoshis are credited, "
            "the fraction carries to the next batch)"
        )
    return text


def _pps_line(sql: SqlStore, account: str, key: str, when: float, sats: int) -> PpsLine:
    batch = key.removeprefix("pps:")
    until = int(batch.rsplit("-", 1)[1])
    found = sql.q("SELECT after_id, scheme FROM acct_pps_batches WHERE until_id = ?", (until,))
    if not found:  # a settlement with no batch row: say so rather than guess
        return PpsLine(batch, "", when, sats, 0, 0.0, Fraction(0), (), "PPS credit (no batch row)")
    after, spec = int(found[0][0]), str(found[0][1])
    scheme = parse_spec(spec)
    shares = sql.q(
        "SELECT difficulty, time, height, job_id FROM shares WHERE accepted AND id > ? "
        "AND id <= ? AND account = ?",
        (after, until, account),
    )
    count, total, value = 0, 0.0, Fraction(0)
    terms: set[tuple[float, int, int]] = set()
    if shares:
        index = TermsIndex.load(sql, min(int(r[2]) for r in shares), max(int(r[2]) for r in shares))
        keep = 1 - scheme.fee.rate
        full = spec.startswith("fpps")
        for difficulty, at, height, job_id in shares:
            job = index.find(int(height), str(job_id), float(at))
            if job is None:  # judged before any job was recorded: not priced
                continue
            t = job.terms
            base = t.subsidy_sats + (t.fees_sats if full else 0)
            count += 1
            total += float(difficulty)
            value += Fraction(float(difficulty)) / Fraction(t.network_difficulty) * base * keep
            terms.add((t.network_difficulty, t.subsidy_sats, t.fees_sats if full else 0))
    ordered = tuple(sorted(terms))
    return PpsLine(
        batch,
        spec,
        when,
        sats,
        count,
        total,
        value,
        ordered,
        explain_pps(spec, sats, count, total, value, ordered),
    )


_PPS_POSTINGS = (
    "FROM acct_postings p JOIN acct_transactions t ON t.key = p.txn_key "
    "WHERE p.account = ? AND t.kind = 'pps' AND p.currency = 'SAT'"
)


def pps_line_count(sql: SqlStore, account: str) -> int:
    """How many PPS/FPPS batches credited `account`."""
    return int(sql.q(f"SELECT count(*) {_PPS_POSTINGS}", (miner_account(account),))[0][0])


def pps_lines(
    sql: SqlStore, account: str, limit: int | None = None, offset: int = 0
) -> list[PpsLine]:
    """Every PPS/FPPS batch that credited `account`, newest first (`limit` from `offset`)."""
    page = "" if limit is None else f" LIMIT {int(limit)} OFFSET {int(offset)}"
    rows = sql.q(
        f"SELECT t.key, t.time, p.amount {_PPS_POSTINGS} ORDER BY t.time DESC, t.key" + page,
        (miner_account(account),),
    )
    return [_pps_line(sql, account, str(k), float(w), int(v)) for k, w, v in rows]


def statement_line_count(sql: SqlStore, account: str) -> int:
    """The length of the account's per-block statement (blocks and PPS batches)."""
    return block_line_count(sql, account) + pps_line_count(sql, account)


def statement_lines(
    sql: SqlStore, account: str, limit: int | None = None, offset: int = 0
) -> list[StatementLine]:
    """The per-block statement: every block that credited `account` (newest first), then
    every PPS/FPPS batch (newest first); `limit` lines from `offset` of that one list."""
    if limit is None:
        return [*block_lines(sql, account), *pps_lines(sql, account)]
    out: list[StatementLine] = []
    blocks = block_line_count(sql, account)
    if offset < blocks:
        out += block_lines(sql, account, limit, offset)
    if len(out) < limit:
        out += pps_lines(sql, account, limit - len(out), max(0, offset - blocks))
    return out


@dataclass(frozen=True, slots=True)
class PayoutLine:
    """One payout's debit of one account, explained."""

    payout_id: int
    created_at: float
    state: str  # planned | signed | sent | confirmed | conflicted | abandoned
    txid: str | None
    confirmations: int
    sats: int  # taken from the balance (the output plus the payout fee); given back if abandoned
    amount: int | None  # the output paid (None: a row from before outputs were recorded)
    address: str | None
    explanation: str


def explain_payout(
    pid: int, state: str, txid: str | None, conf: int, sats: int, amount: int | None, to: str | None
) -> str:
    """ "payout #3 tx abcdef01…89abcdef confirmed (3 conf.): 123,456,789 sats from the balance,
    123,455,789 to bcrt1q…" (abandoned: given back)."""
    tx = f" tx {txid[:8]}…{txid[-8:]}" if txid else ""
    text = f"payout #{pid}{tx} {state}" + (f" ({conf:,} conf.)" if txid else "")
    text += f": {sats:,} sats from the balance"
    if amount is not None:
        text += f", {amount:,} to {to or 'its address'}"
        if sats > amount:
            text += f" ({sats - amount:,} payout fee)"
    if state == "abandoned":
        text += "; abandoned: given back to the balance"
    return text


def payout_lines(
    sql: SqlStore, account: str, limit: int | None = None, offset: int = 0
) -> list[PayoutLine]:
    """Every payout that pays `account`, newest first (`limit` from `offset`)."""
    page = "" if limit is None else f" LIMIT {int(limit)} OFFSET {int(offset)}"
    rows = sql.q(
        "SELECT p.id, p.created_at, p.state, p.txid, p.confirmations, i.sats, i.amount_sats, "
        "i.address FROM acct_payout_items i JOIN acct_payouts p ON p.id = i.payout_id "
        "WHERE i.account = ? ORDER BY p.id DESC" + page,
        (account,),
    )
    out: list[PayoutLine] = []
    for pid, at, state, txid, conf, sats, amount, address in rows:
        tx = None if txid is None else str(txid)
        amt = None if amount is None else int(amount)
        to = None if address is None else str(address)
        out.append(
            PayoutLine(
                int(pid),
                float(at),
                str(state),
                tx,
                int(conf),
                int(sats),
                amt,
                to,
                explain_payout(int(pid), str(state), tx, int(conf), int(sats), amt, to),
            )
        )
    return out


def payout_line_count(sql: SqlStore, account: str) -> int:
    """How many payouts pay `account`."""
    rows = sql.q("SELECT count(*) FROM acct_payout_items WHERE account = ?", (account,))
    return int(rows[0][0])


def payout_json(line: PayoutLine) -> dict[str, Any]:
    """A payout statement line as the CLI's --json and the API write it."""
    return {
        "kind": "payout",
        "payout": line.payout_id,
        "created_at": line.created_at,
        "state": line.state,
        "txid": line.txid,
        "confirmations": line.confirmations,
        "sats": line.sats,
        "amount": line.amount,
        "address": line.address,
        "explanation": line.explanation,
    }


def line_json(line: StatementLine) -> dict[str, Any]:
    """A per-block statement line as `hashfarm accounts statement --json` and the API write it."""
    if isinstance(line, BlockLine):
        return {
            "height": line.height,
            "block": line.block_hash,
            "scheme": line.scheme,
            "state": line.state,
            "sats": line.sats,
            "part": str(line.part),
            "explanation": line.explanation,
        }
    return {
        "kind": "pps",
        "batch": line.batch,
        "scheme": line.scheme,
        "state": "credited",
        "time": line.time,
        "sats": line.sats,
        "shares": line.shares,
        "difficulty": line.difficulty,
        "value": str(line.value),
        "terms": [{"network_difficulty": nd, "subsidy": s, "fees": f} for nd, s, f in line.terms],
        "explanation": line.explanation,
    }


def day_json(d: DayLine) -> dict[str, Any]:
    """A per-day statement line as the CLI's --json and the API write it."""
    return {
        "day": d.day,
        "earned": d.earned,
        "reversed": d.reversed,
        "matured": d.matured,
        "pps": d.pps,
        "paid": d.paid,
        "other": d.other,
        "coinbase": d.coinbase,
        "change": d.change,
    }


# -- for the HTTP API: bounded pages, read-only ------------------------------------------------

READ_VERSION = 2  # the accounting schema version whose tables these functions read
_SQLITE_BUSY_MS = 2000  # a read waits this long for a lock (WAL readers rarely wait at all)
_PG_STATEMENT_TIMEOUT_MS = 10_000  # one query of the API's may run this long on PostgreSQL


def connect_readonly(url: str) -> SqlStore:
    """A `SqlStore` on the ledger at `url` through which nothing can be written (blocking).

    SQLite is opened with `mode=ro` (the file must exist; no migration is applied: a ledger
    without accounting stays without it); PostgreSQL sessions are READ ONLY, REPEATABLE READ
    (one snapshot per `snapshot`) with a statement timeout. psycopg is imported only here.
    """
    if url.startswith(SQLITE_PREFIX):
        path = Path(url[len(SQLITE_PREFIX) :])
        if not path.name:
            raise ConfigError(f"storage URL {url!r} names no file")
        if not path.is_file():
            raise LedgerError(f"no ledger database at {path}")
        try:
            conn = sqlite3.connect(
                path.resolve().as_uri() + "?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,  # opened on the caller's thread, used on one other
            )
            conn.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
        except sqlite3.Error as exc:
            raise LedgerError(f"sqlite {path}: {exc}") from exc
        return SqlStore(conn, "sqlite", str(path))
    if not url.startswith(POSTGRES_PREFIXES):
        raise ConfigError("storage URL must be sqlite:///PATH or postgresql://...")
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigError(
            "a PostgreSQL ledger needs psycopg, which is not installed: "
            "pip install 'hashfarm[postgres]'"
        ) from exc
    try:
        conn_pg = psycopg.connect(url, autocommit=True, application_name="hashfarm-api")
        conn_pg.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        conn_pg.execute(f"SET statement_timeout = {_PG_STATEMENT_TIMEOUT_MS}")
        conn_pg.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    except psycopg.Error as exc:
        said = " ".join(str(exc).split())
        for secret in _secrets_of(url):  # libpq may echo the URL it was given
            said = said.replace(secret, "***")
        raise LedgerError(f"postgresql: cannot open the ledger for reading: {said}") from exc
    return SqlStore(conn_pg, "postgresql", "postgresql")


@contextlib.contextmanager
def snapshot(sql: SqlStore) -> Iterator[None]:
    """One read transaction: every query inside sees the same state of the books."""
    if sql.dialect == "postgresql":
        with sql.conn.transaction():
            yield
        return
    sql.conn.execute("BEGIN")  # deferred: a read lock only, taken by the first read
    try:
        yield
    except BaseException:
        if sql.conn.in_transaction:  # SQLite may have ended it already (an interrupt)
            sql.conn.execute("ROLLBACK")
        raise
    sql.conn.execute("COMMIT")


def unavailable(sql: SqlStore) -> str | None:
    """Why the accounting books cannot be read here (None: they can)."""
    if sql.dialect == "postgresql":
        rows = sql.q(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_name = 'accounting_schema_version'"
        )
    else:
        rows = sql.q(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name = 'accounting_schema_version'"
        )
    if not rows:
        return "accounting has not run on this ledger yet (no accounting tables)"
    version = sql.q("SELECT max(version) FROM accounting_schema_version")[0][0]
    if version is None or int(version) < READ_VERSION:
        return f"the accounting tables are at version {version}; {READ_VERSION} is needed"
    return None


@dataclass(frozen=True, slots=True)
class AccountTotals:
    """A miner account's balances and what payout transactions paid it."""

    account: str
    spendable: int
    immature: int
    paid: int  # taken from miner:<id> by payouts (outputs and payout fees), net of any given back


def _paid_by_account(sql: SqlStore, accounts: list[str]) -> dict[str, int]:
    """What payouts took from these miners' spendable balances, net of payouts given back:
    their legs in transactions that move money to `payouts` or `payouts:*` (a payout when it
    is planned, a TIDES coinbase paying held balances). Reads only these accounts' postings."""
    if not accounts:
        return {}
    marks = ", ".join("?" for _ in accounts)
    rows = sql.q(
        "SELECT p.account, sum(p.amount) FROM acct_postings p WHERE p.currency = 'SAT' "
        f"AND p.account IN ({marks}) AND EXISTS (SELECT 1 FROM acct_postings q "
        "WHERE q.txn_key = p.txn_key AND (q.account = ? OR q.account LIKE ?)) "
        "GROUP BY p.account",
        [*(miner_account(a) for a in accounts), PAYOUTS, PAYOUTS + ":%"],
    )
    return {str(name).removeprefix("miner:"): -int(amount) for name, amount in rows}


def _miner_rows(sql: SqlStore) -> str:
    """The miner balance rows as (ident, immature 0/1, balance), in the dialect's SQL: the
    grouping runs in the database (no Python per row, and the driver lets go of the GIL)."""
    suffix = "right(account, 9)" if sql.dialect == "postgresql" else "substr(account, -9)"
    immature = f"(length(account) >= 15 AND {suffix} = ':immature')"
    return (
        f"SELECT CASE WHEN {immature} THEN substr(account, 7, length(account) - 15) "
        f"ELSE substr(account, 7) END AS ident, CASE WHEN {immature} THEN 1 ELSE 0 END AS imm, "
        "balance FROM acct_balances WHERE currency = 'SAT' AND substr(account, 1, 6) = 'miner:'"
    )


def account_page(sql: SqlStore, limit: int, offset: int) -> tuple[int, list[AccountTotals]]:
    """(how many accounts, `limit` of them from `offset` by account id): every account that
    was ever credited, also those at zero (paid out), with what payouts paid each.

    Ordered by code point, as Python sorts (`account_list`): SQLite's BINARY collation on
    UTF-8, PostgreSQL's "C"."""
    rows_sql = _miner_rows(sql)
    (total,) = sql.q(f"WITH m AS ({rows_sql}) SELECT count(DISTINCT ident) FROM m")[0]
    order = 'ident COLLATE "C"' if sql.dialect == "postgresql" else "ident"
    rows = sql.q(
        f"WITH m AS ({rows_sql}) SELECT ident, "
        "sum(CASE WHEN imm = 0 THEN balance ELSE 0 END), "
        "sum(CASE WHEN imm = 1 THEN balance ELSE 0 END) "
        f"FROM m GROUP BY ident ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}"
    )
    page = [(str(a), int(sp), int(im)) for a, sp, im in rows]
    paid = _paid_by_account(sql, [a for a, _, _ in page])
    return int(total), [AccountTotals(a, sp, im, paid.get(a, 0)) for a, sp, im in page]


def account_totals(sql: SqlStore, account: str) -> AccountTotals | None:
    """One account's balances and payouts; None when the books never mention it."""
    known = sql.q(
        "SELECT 1 FROM acct_balances WHERE account IN (?, ?) UNION ALL "
        "SELECT 1 FROM acct_block_parts WHERE account = ? UNION ALL "
        "SELECT 1 FROM acct_payout_items WHERE account = ? LIMIT 1",
        (miner_account(account), immature_account(account), account, account),
    )
    if not known:
        return None
    s = summary(sql, account)
    return AccountTotals(
        account, s.spendable, s.immature, _paid_by_account(sql, [account]).get(account, 0)
    )


def block_line_count(sql: SqlStore, account: str) -> int:
    """How many blocks credited `account` (the length of its per-block statement)."""
    rows = sql.q(
        "SELECT count(*) FROM acct_block_parts p JOIN acct_block_windows w "
        "ON w.block_hash = p.block_hash JOIN acct_blocks a ON a.hash = p.block_hash "
        "WHERE p.account = ?",
        (account,),
    )
    return int(rows[0][0])


@dataclass(frozen=True, slots=True)
class BlockPart:
    """One account's part of one block."""

    account: str
    sats: int
    part: Fraction
    explanation: str


@dataclass(frozen=True, slots=True)
class BlockCredits:
    """A tracked block and (a page of) what it credited to each account."""

    block_hash: str
    height: int
    state: str
    scheme: str
    reward_sats: int
    confirmations: int
    found_time: float
    posted: bool  # credits posted (the block was seen on the chain); False: nothing yet
    fee_sats: int | None  # None until posted
    finder_account: str | None
    network_difficulty: float | None
    window_size: str | None  # exact fractions as text, like the statements
    window_total: str | None
    credited_sats: int  # sum over every account (not only the page)
    accounts: int  # how many accounts the block credited
    parts: list[BlockPart]  # the page, the largest credit first (ties by account id)


def block_credits(sql: SqlStore, block_hash: str, limit: int, offset: int) -> BlockCredits | None:
    """What the tracked block `block_hash` credited, `limit` accounts from `offset`; None
    when accounting does not track it."""
    rows = sql.q(
        "SELECT a.height, a.state, a.scheme, a.reward_sats, a.confirmations, a.found_time, "
        "w.fee_sats, w.finder_account, w.network_difficulty, w.window_size, w.window_total "
        "FROM acct_blocks a LEFT JOIN acct_block_windows w ON w.block_hash = a.hash "
        "WHERE a.hash = ?",
        (block_hash,),
    )
    if not rows:
        return None
    height, state, scheme, reward, conf, found, fee, finder, nd, size, total_text = rows[0]
    count, credited = 0, 0
    parts: list[BlockPart] = []
    if total_text is not None:
        total = Fraction(str(total_text))
        count_rows = sql.q(
            "SELECT count(*), coalesce(sum(sats), 0) FROM acct_block_parts WHERE block_hash = ?",
            (block_hash,),
        )
        count, credited = int(count_rows[0][0]), int(count_rows[0][1])
        by = 'account COLLATE "C"' if sql.dialect == "postgresql" else "account"
        for account, weight, sats in sql.q(
            "SELECT account, weight, sats FROM acct_block_parts WHERE block_hash = ? "
            f"ORDER BY sats DESC, {by} LIMIT {int(limit)} OFFSET {int(offset)}",
            (block_hash,),
        ):
            part = Fraction(str(weight)) / total if total else Fraction(1)
            parts.append(
                BlockPart(
                    str(account), int(sats), part, explain(str(scheme), int(height), part, total)
                )
            )
    return BlockCredits(
        block_hash,
        int(height),
        str(state),
        str(scheme),
        int(reward),
        int(conf),
        float(found),
        total_text is not None,
        None if fee is None else int(fee),
        None if finder is None else str(finder),
        None if nd is None else float(nd),
        None if size is None else str(size),
        None if total_text is None else str(total_text),
        credited,
        count,
        parts,
    )


@dataclass(frozen=True, slots=True)
class PayoutRun:
    """One payout (a batched transaction) as `acct_payouts` records it."""

    id: int
    created_at: float
    state: str
    total_sats: int
    txid: str | None
    confirmations: int
    accounts: int  # how many accounts it pays


@dataclass(frozen=True, slots=True)
class PayoutItem:
    """What one payout pays one account."""

    payout_id: int
    sats: int
    created_at: float
    state: str
    txid: str | None
    confirmations: int


def payout_runs(sql: SqlStore, limit: int, offset: int) -> tuple[int, list[PayoutRun]]:
    """(how many payouts, `limit` of them from `offset`, newest first)."""
    total = int(sql.q("SELECT count(*) FROM acct_payouts")[0][0])
    rows = sql.q(
        "SELECT p.id, p.created_at, p.state, p.total_sats, p.txid, p.confirmations, "
        "(SELECT count(*) FROM acct_payout_items i WHERE i.payout_id = p.id) "
        f"FROM acct_payouts p ORDER BY p.id DESC LIMIT {int(limit)} OFFSET {int(offset)}"
    )
    return total, [
        PayoutRun(int(i), float(c), str(s), int(t), None if x is None else str(x), int(n), int(a))
        for i, c, s, t, x, n, a in rows
    ]


def account_payouts(sql: SqlStore, account: str, limit: int) -> list[PayoutItem]:
    """The newest `limit` payouts that pay `account`."""
    rows = sql.q(
        "SELECT p.id, i.sats, p.created_at, p.state, p.txid, p.confirmations "
        "FROM acct_payout_items i JOIN acct_payouts p ON p.id = i.payout_id "
        f"WHERE i.account = ? ORDER BY p.id DESC LIMIT {int(limit)}",
        (account,),
    )
    return [
        PayoutItem(int(i), int(s), float(c), str(st), None if x is None else str(x), int(n))
        for i, s, c, st, x, n in rows
    ]


@dataclass(frozen=True, slots=True)
class SchemeStatus:
    """The scheme the crediting service credits found blocks under, and a switch to come."""

    spec: str | None  # "pplns:fee=100/10000:factor=2/1"; None before the service ran
    since: float | None  # when it was noted (0.0: from the ledger's start)
    boundary_block: str | None  # the block at which it took effect (None for the first)
    pending_spec: str | None  # a switch noted but not yet in effect (the next found block)
    pending_since: float | None


def scheme_status(sql: SqlStore) -> SchemeStatus:
    """The scheme in effect by `switching`'s rule: the first noted, then the last switch
    whose boundary block was found; a later one waits for the next found block."""
    rows = sql.q(
        "SELECT requested_at, params, boundary_block FROM acct_scheme_switches ORDER BY id"
    )
    if not rows:
        return SchemeStatus(None, None, None, None, None)
    spec, since, boundary = str(rows[0][1]), float(rows[0][0]), None
    pending: tuple[str, float] | None = None
    for at, params, bound in rows[1:]:
        if bound is not None:
            spec, since, boundary, pending = str(params), float(at), str(bound), None
        else:
            pending = (str(params), float(at))  # several before one block: the last wins
    if pending is not None and pending[0] == spec:
        pending = None
    return SchemeStatus(
        spec,
        since,
        boundary,
        None if pending is None else pending[0],
        None if pending is None else pending[1],
    )


def reserve_status(sql: SqlStore, warning_sats: int) -> ReserveStatus:
    """The PPS/FPPS reserve against what miners are owed (`Ledger.reserve_status` in SQL)."""
    owed = sum(sql.balances("miner:").values())
    reserve = sql.balance(POOL_RESERVE)
    return ReserveStatus(
        reserve, sql.balance(POOL_RESERVE_IMMATURE), owed, warning=reserve < warning_sats
    )


def pool_fees(sql: SqlStore) -> int:
    """The pool's fee income so far (`pool:fees`)."""
    return sql.balance(POOL_FEES)
