"""The accounting pages: the scheme, balances and payouts; one account's credits and payouts.

`/accounts` and `/accounts/{account}` read the ledger through the same read-only source as the
JSON routes (`api/accounts.py`: `AccountsSource` at `SOURCE_KEY`, its own thread, one snapshot
per read, a bounded queue) with the same statement functions, so every figure equals
`/api/accounting`, `/api/accounts`, `/api/payouts` and `/api/accounts/{account}`. Amounts are
integer satoshis shown as BTC with eight decimals. Pages of `PAGE_SIZE` rows take `offset`.

The figures, balances and payouts are also served alone (`/accounts/fragments/tables`), which
the page fetches again on every new block (the live `block` event) and every 60 s.

Where accounting is not there the page says which way: the pool was started without its
ledger (accounting off), or the ledger has no accounting tables yet (the reason from
`statements.unavailable`), or the ledger cannot be read right now (503).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hashfarm.accounting import statements as st
from hashfarm.accounting.ledger import ReserveStatus
from hashfarm.accounting.store import SqlStore
from hashfarm.api.accounts import (
    NO_LEDGER,
    SHOW_DEFAULT,
    SOURCE_KEY,
    Busy,
    Unavailable,
    account_arg,
)
from hashfarm.api.params import BadRequest, int_arg, query_args
from hashfarm.api.web.site import Site
from hashfarm.errors import ConfigError, LedgerError

__all__ = ["AccountsOverview", "add_routes", "scheme_parts"]

PAGE_SIZE = 50  # accounts and payout runs per page
OFFSET_MAX = 999_999_999
OFF = ("Accounting is off: this pool was started without its ledger "
       "(`storage.url`), so there are no balances or payouts to show.")  # fmt: skip


@dataclass(frozen=True, slots=True)
class AccountsOverview:
    """What `/accounts` shows, read in one snapshot."""

    scheme: st.SchemeStatus
    pool_fees: int
    reserve: ReserveStatus
    total_accounts: int
    accounts: list[st.AccountTotals]
    total_payouts: int
    payouts: list[st.PayoutRun]


def scheme_parts(spec: str | None) -> dict[str, Any] | None:
    """A scheme spec ("pplns:fee=100/10000:factor=2/1") as its name, fee and parameters, as
    `/api/accounting` gives it."""
    if spec is None:
        return None
    name, *fields = spec.split(":")
    params = dict(f.split("=", 1) for f in fields if "=" in f)
    return {"spec": spec, "name": name, "fee": params.pop("fee", None), "params": params}


async def _read(request: web.Request, fn: Any) -> tuple[Any, str | None, int]:
    """(result, None, 200), or (None, why not, status) when the books cannot be read."""
    source = request.app.get(SOURCE_KEY)
    if source is None:
        return None, OFF, 200
    try:
        return await source.read(fn), None, 200
    except Unavailable as exc:
        text = str(exc)
        return None, OFF if text == NO_LEDGER else f"No accounting yet: {text}.", 200
    except Busy:
        return None, "The ledger is busy; reload in a moment.", 503
    except (LedgerError, ConfigError):
        return None, "The ledger cannot be read right now; try again.", 503


def _offset(request: web.Request, name: str) -> int:
    return int_arg(request.query, name, 0, 0, OFFSET_MAX)


async def _overview(request: web.Request) -> tuple[dict[str, Any], int]:
    """What `/accounts` and its live fragment show, and the status to answer with."""
    query_args(request.query.items(), ("offset", "payouts_offset"))
    offset, payouts_offset = _offset(request, "offset"), _offset(request, "payouts_offset")
    warn = request.app[SOURCE_KEY].reserve_warning_sats if SOURCE_KEY in request.app else 0

    def read(sql: SqlStore) -> AccountsOverview:
        total, rows = st.account_page(sql, PAGE_SIZE, offset)
        runs_total, runs = st.payout_runs(sql, PAGE_SIZE, payouts_offset)
        return AccountsOverview(st.scheme_status(sql), st.pool_fees(sql),
                                st.reserve_status(sql, warn), total, rows, runs_total,
                                runs)  # fmt: skip

    view, message, status = await _read(request, read)
    scheme = None if view is None else scheme_parts(view.scheme.spec)
    context = {"title": "Accounts and payouts", "view": view, "message": message,
               "scheme": scheme, "offset": offset, "payouts_offset": payouts_offset,
               "page": PAGE_SIZE}  # fmt: skip
    return context, status


async def _accounts(request: web.Request, site: Site) -> web.Response:
    try:
        context, status = await _overview(request)
    except BadRequest as exc:
        return site.render(request, "error.html", status=400, title="Bad request",
                           message=str(exc))  # fmt: skip
    return site.render(request, "accounts.html", status=status, **context)


async def _tables(request: web.Request, site: Site) -> web.Response:
    """The figures, balances and payouts alone: what the page swaps in on a new block."""
    context, status = await _overview(request)  # a BadRequest is the API's JSON 400
    template = "accounts_empty.html" if context["view"] is None else "accounts_tables.html"
    return site.render(request, template, status=status, **context)


@dataclass(frozen=True, slots=True)
class AccountPage:
    """What `/accounts/{account}` shows."""

    totals: st.AccountTotals
    credits_total: int
    credits: list[st.BlockLine]
    payouts: list[st.PayoutItem]


async def _account(request: web.Request, site: Site) -> web.Response:
    try:
        query_args(request.query.items(), ())
        account = account_arg(request.match_info["account"])
    except BadRequest as exc:
        return site.render(request, "error.html", status=400, title="Bad request",
                           message=str(exc))  # fmt: skip

    def read(sql: SqlStore) -> AccountPage | None:
        totals = st.account_totals(sql, account)
        if totals is None:
            return None
        return AccountPage(totals, st.block_line_count(sql, account),
                           st.block_lines(sql, account, SHOW_DEFAULT),
                           st.account_payouts(sql, account, SHOW_DEFAULT))  # fmt: skip

    view, message, status = await _read(request, read)
    if view is None and message is None:
        return site.not_found(request, f"No account named {account!r} in the books.")
    return site.render(request, "accounts_account.html", status=status,
                       title=f"Account {account}", account=account, view=view,
                       message=message, shown=SHOW_DEFAULT)  # fmt: skip


def add_routes(app: web.Application, site: Site) -> None:
    """The accounting pages (always listed: when accounting is off the page says so)."""
    site.page("/accounts", functools.partial(_accounts, site=site), nav="Accounts", order=50)
    site.page("/accounts/{account}", functools.partial(_account, site=site))
    app.router.add_get("/accounts/fragments/tables", functools.partial(_tables, site=site))
