"""The accounting side of the API: balances, explained statements, block credits, payouts.

Public and read-only like the pool's other read routes, and safe on an open port:

* the ledger is opened read-only (`statements.connect_readonly`: SQLite `mode=ro`, a
  PostgreSQL session READ ONLY with a statement timeout), so no request can write the books;
* every read runs on one thread of its own (`AccountsSource`), never on the pool's event
  loop, in one consistent snapshot; at most `QUEUE_MAX` reads wait for it, more get a 503;
* every list is a page: `limit` (1..`LIMIT_MAX`) and `offset` (ASCII digits, at most nine),
  parsed strictly (`api/params.py`); an account name is printable and at most
  `ACCOUNT_MAX` characters (the pool's own rule for user names), a block hash 64 hex digits.

Amounts are integer satoshis as JSON integers (every bitcoin amount fits in 2^53, so
JavaScript reads them exactly); a part of a window is an exact fraction as text ("2/3") with
its explanation ("66.67% of the round of block 100 (prop)"), the same lines as
`hashfarm accounts statement --json`.

Routes: `GET /api/accounting`, `/api/accounts`, `/api/accounts/{account}`,
`/api/accounts/{account}/statement?by=block|day|payout`, `/api/blocks/{hash}/credits`,
`/api/payouts`. A ledger on which accounting has not run (no accounting tables) is not an
error: `/api/accounting` says so (`available: false` and the reason), the two lists are
empty with the same reason, and a lookup is a 404 naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

from hashfarm.accounting import statements as st
from hashfarm.accounting.store import SqlStore, guarded
from hashfarm.api.admin import error, respond
from hashfarm.api.params import BadRequest, int_arg, query_args, shown
from hashfarm.errors import ConfigError, LedgerError, TransientLedgerError

T = TypeVar("T")
_log = logging.getLogger("hashfarm.api.accounts")

LIMIT_MAX = 1000  # most items one page may hold
OFFSET_MAX = 999_999_999  # int_arg reads at most nine digits
SHOW_DEFAULT = 10  # credits and payouts /api/accounts/{account} shows unless told
ACCOUNT_MAX = 256  # characters of an account name (the pool's MAX_WORKER_NAME)
QUEUE_MAX = 64  # reads waiting for the ledger thread before more are refused (503)
_HASH = re.compile(r"[0-9a-fA-F]{64}")
NO_LEDGER = "this API was started without the pool's ledger, so it serves no accounting"


class Unavailable(Exception):
    """The books cannot be read here (no accounting tables yet); the message says why."""


class Busy(Exception):
    """Too many reads wait for the ledger thread."""


class AccountsSource:
    """The ledger at `url`, read-only, on one thread of its own.

    The connection is opened on first use and opened again after a lost connection, so the
    API starts whether or not the database answers and recovers when it does.
    """

    def __init__(self, url: str, *, reserve_warning_sats: int = 0) -> None:
        self.url = url
        self.reserve_warning_sats = reserve_warning_sats
        self._sql: SqlStore | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="api-accounts")
        self._waiting = 0  # reads queued or running on the thread
        self._count_lock = threading.Lock()  # counted up on the loop, down on the thread

    async def read(self, fn: Callable[[SqlStore], T]) -> T:
        """`fn(sql)` in one read snapshot on the thread; raises Unavailable, Busy, LedgerError.

        A read counts until the thread has finished it (or dropped it unstarted), not until
        its request went away: clients that disconnect at once cannot pile work up behind
        the bound."""
        with self._count_lock:
            if self._waiting >= QUEUE_MAX:
                raise Busy
            self._waiting += 1
        job = self._thread.submit(self._run, fn)
        job.add_done_callback(self._finished)  # also when cancelled before it started
        return await asyncio.wrap_future(job)

    def _finished(self, _job: object) -> None:
        with self._count_lock:
            self._waiting -= 1

    def _run(self, fn: Callable[[SqlStore], T]) -> T:
        """On the thread (the only one that touches the connection)."""
        if self._sql is None:
            self._sql = st.connect_readonly(self.url)
        try:
            return guarded(self._sql, lambda sql: _in_snapshot(sql, fn))
        except TransientLedgerError:
            self._drop()  # a lost connection: the next read opens a new one
            raise

    def _drop(self) -> None:
        sql, self._sql = self._sql, None
        if sql is not None:
            with contextlib.suppress(Exception):  # a broken connection may not close cleanly
                sql.close()

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._drop)
        self._thread.shutdown(wait=True)


class _NoLedger(AccountsSource):
    """The source of an API started without the ledger's URL: every read is Unavailable."""

    def __init__(self) -> None:
        self.url = ""
        self.reserve_warning_sats = 0

    async def read(self, fn: Callable[[SqlStore], T]) -> T:
        raise Unavailable(NO_LEDGER)

    async def close(self) -> None:
        return None


def _in_snapshot(sql: SqlStore, fn: Callable[[SqlStore], T]) -> T:
    with st.snapshot(sql):
        reason = st.unavailable(sql)
        if reason is not None:
            raise Unavailable(reason)
        return fn(sql)


SOURCE_KEY = web.AppKey("accounts", AccountsSource)


def add_routes(app: web.Application, source: AccountsSource | None) -> None:
    """Register the accounting routes; with no source they say that accounting is off."""
    if source is not None:
        app[SOURCE_KEY] = source
    app.router.add_get("/api/accounting", _guard(_accounting, lists=True))
    app.router.add_get("/api/accounts", _guard(_accounts, lists=True))
    app.router.add_get("/api/accounts/{account}", _guard(_account))
    app.router.add_get("/api/accounts/{account}/statement", _guard(_statement))
    app.router.add_get("/api/blocks/{hash}/credits", _guard(_block_credits))
    app.router.add_get("/api/payouts", _guard(_payouts, lists=True))


Route = Callable[[web.Request, AccountsSource], Any]


def _guard(route: Route, *, lists: bool = False) -> Callable[[web.Request], Any]:
    """The route with the source's failures as answers: no accounting yet (an empty list or
    a 404, with the reason), a busy or unreadable ledger (503)."""

    async def handler(request: web.Request) -> web.Response:
        source = request.app.get(SOURCE_KEY) or _NoLedger()
        try:
            return await route(request, source)  # type: ignore[no-any-return]
        except Unavailable as exc:
            if lists:
                return respond(_empty(request.path, str(exc)))
            return error(404, str(exc))
        except Busy:
            return error(503, "the ledger is busy; try again", headers={"Retry-After": "1"})
        except (LedgerError, ConfigError) as exc:  # ConfigError: psycopg missing, say
            # %r: the message may quote a client's account name
            _log.warning("API %r: %r", request.path, str(exc))
            return error(503, "the ledger cannot be read right now; try again")

    return handler


def _empty(path: str, reason: str) -> dict[str, Any]:
    """What a list route answers while accounting has not run: nothing, and why."""
    if path == "/api/accounting":
        return {"available": False, "reason": reason}
    key = "accounts" if path == "/api/accounts" else "payouts"
    return {"available": False, "reason": reason, "total": 0, key: []}


def _page(args: dict[str, str], default: int = 100) -> tuple[int, int]:
    return (
        int_arg(args, "limit", default, 1, LIMIT_MAX),
        int_arg(args, "offset", 0, 0, OFFSET_MAX),
    )


def account_arg(raw: str) -> str:
    """An account name from the path: printable, 1..ACCOUNT_MAX characters."""
    if not raw or len(raw) > ACCOUNT_MAX or not raw.isprintable():
        raise BadRequest(
            f"an account name is 1 to {ACCOUNT_MAX} printable characters, not {shown(raw)}"
        )
    return raw


def hash_arg(raw: str) -> str:
    """A block hash from the path: 64 hex digits (as the node shows it), lower case."""
    if _HASH.fullmatch(raw) is None:
        raise BadRequest(f"a block hash is 64 hex digits, not {shown(raw)}")
    return raw.lower()


# -- the routes -------------------------------------------------------------------------------


async def _accounting(request: web.Request, source: AccountsSource) -> web.Response:
    query_args(request.query.items(), ())
    warn = source.reserve_warning_sats

    def read(sql: SqlStore) -> dict[str, Any]:
        scheme = st.scheme_status(sql)
        reserve = st.reserve_status(sql, warn)
        return {
            "available": True,
            "scheme": _scheme_json(scheme.spec, scheme.since, scheme.boundary_block),
            "pending_switch": None
            if scheme.pending_spec is None
            else _scheme_json(scheme.pending_spec, scheme.pending_since, None),
            "pool_fees": st.pool_fees(sql),
            "reserve": {
                "applies": (scheme.spec or "").split(":", 1)[0] in ("pps", "fpps"),
                "reserve": reserve.reserve,
                "immature_reserve": reserve.immature_reserve,
                "owed_to_miners": reserve.owed_to_miners,
                "warning_below": warn,
                "warning": reserve.warning,
            },
        }

    return respond(await source.read(read))


def _scheme_json(spec: str | None, since: float | None, boundary: str | None) -> Any:
    """A scheme spec ("pplns:fee=100/10000:factor=2/1") as its name and parameters."""
    if spec is None:
        return None
    name, *fields = spec.split(":")
    params = dict(f.split("=", 1) for f in fields if "=" in f)
    return {
        "spec": spec,
        "name": name,
        "fee": params.pop("fee", None),  # the fraction of each block's reward, as text
        "params": params,
        "since": since,  # when the crediting service noted it (0: the ledger's start)
        "boundary_block": boundary,  # the last block credited the previous way
    }


async def _accounts(request: web.Request, source: AccountsSource) -> web.Response:
    limit, offset = _page(query_args(request.query.items(), ("limit", "offset")))
    total, rows = await source.read(lambda sql: st.account_page(sql, limit, offset))
    return respond(
        {
            "available": True,
            "total": total,
            "limit": limit,
            "offset": offset,
            "accounts": [
                {
                    "account": a.account,
                    "spendable": a.spendable,
                    "immature": a.immature,
                    "paid": a.paid,
                }
                for a in rows
            ],
        }
    )


async def _account(request: web.Request, source: AccountsSource) -> web.Response:
    args = query_args(request.query.items(), ("limit",))
    limit = int_arg(args, "limit", SHOW_DEFAULT, 1, LIMIT_MAX)
    account = account_arg(request.match_info["account"])

    def read(sql: SqlStore) -> dict[str, Any] | None:
        totals = st.account_totals(sql, account)
        if totals is None:
            return None
        return {
            "account": account,
            "spendable": totals.spendable,
            "immature": totals.immature,
            "paid": totals.paid,
            "credits": {
                "total": st.block_line_count(sql, account),
                "lines": [block_line_json(b) for b in st.block_lines(sql, account, limit)],
            },
            "payouts": [
                {
                    "payout": p.payout_id,
                    "sats": p.sats,
                    "created_at": p.created_at,
                    "state": p.state,
                    "txid": p.txid,
                    "confirmations": p.confirmations,
                }
                for p in st.account_payouts(sql, account, limit)
            ],
        }

    doc = await source.read(read)
    return respond(doc) if doc is not None else _no_account(account)


async def _statement(request: web.Request, source: AccountsSource) -> web.Response:
    args = query_args(request.query.items(), ("by", "limit", "offset"))
    by = args.get("by", "block")
    if by not in ("block", "day", "payout"):
        raise BadRequest(f"by must be 'block', 'day' or 'payout', not {shown(by)}")
    limit, offset = _page(args)
    account = account_arg(request.match_info["account"])

    def read(sql: SqlStore) -> dict[str, Any] | None:
        if st.account_totals(sql, account) is None:
            return None
        lines: list[dict[str, Any]]
        if by == "block":
            total = st.statement_line_count(sql, account)
            lines = [st.line_json(b) for b in st.statement_lines(sql, account, limit, offset)]
        elif by == "payout":
            total = st.payout_line_count(sql, account)
            lines = [st.payout_json(p) for p in st.payout_lines(sql, account, limit, offset)]
        else:
            days = st.day_lines(sql, account)
            total = len(days)
            lines = [st.day_json(d) for d in days[offset : offset + limit]]
        return {
            "account": account,
            "by": by,
            "total": total,
            "limit": limit,
            "offset": offset,
            "lines": lines,
        }

    doc = await source.read(read)
    return respond(doc) if doc is not None else _no_account(account)


def block_line_json(b: st.BlockLine) -> dict[str, Any]:
    """A per-block statement line, as `hashfarm accounts statement --json` writes it."""
    return {
        "height": b.height,
        "block": b.block_hash,
        "scheme": b.scheme,
        "state": b.state,
        "sats": b.sats,
        "part": str(b.part),
        "explanation": b.explanation,
    }


async def _block_credits(request: web.Request, source: AccountsSource) -> web.Response:
    limit, offset = _page(query_args(request.query.items(), ("limit", "offset")))
    block_hash = hash_arg(request.match_info["hash"])
    found = await source.read(lambda sql: st.block_credits(sql, block_hash, limit, offset))
    if found is None:
        return error(404, f"accounting tracks no block {block_hash}")
    return respond(
        {
            "block": found.block_hash,
            "height": found.height,
            "state": found.state,
            "scheme": found.scheme,
            "reward": found.reward_sats,
            "confirmations": found.confirmations,
            "found_time": found.found_time,
            "posted": found.posted,
            "fee": found.fee_sats,
            "finder": found.finder_account,
            "network_difficulty": found.network_difficulty,
            "window_size": found.window_size,
            "window_total": found.window_total,
            "credited": found.credited_sats,
            "total": found.accounts,
            "limit": limit,
            "offset": offset,
            "credits": [
                {
                    "account": p.account,
                    "sats": p.sats,
                    "part": str(p.part),
                    "explanation": p.explanation,
                }
                for p in found.parts
            ],
        }
    )


async def _payouts(request: web.Request, source: AccountsSource) -> web.Response:
    limit, offset = _page(query_args(request.query.items(), ("limit", "offset")))
    total, runs = await source.read(lambda sql: st.payout_runs(sql, limit, offset))
    return respond(
        {
            "available": True,
            "total": total,
            "limit": limit,
            "offset": offset,
            "payouts": [
                {
                    "id": r.id,
                    "created_at": r.created_at,
                    "state": r.state,
                    "total": r.total_sats,
                    "txid": r.txid,
                    "confirmations": r.confirmations,
                    "accounts": r.accounts,
                }
                for r in runs
            ],
        }
    )


def _no_account(account: str) -> web.Response:
    return error(404, f"no account named {shown(account)} in the books")
