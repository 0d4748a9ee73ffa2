"""The hosting pages: customers, their contracts and machines, and their bills (admin only).

Customers' bills are private. The pages are served behind the same guard as the hosting JSON
routes (`api/hosting.py`, `admin._Guard`): on the admin listener a logged-in session (or the
admin token) opens them and anyone else is sent to the login page; elsewhere (the public
port) they refuse, saying where they live. They only read: the bill run and an invoice's
issue/pay transitions stay the JSON routes' (POST, with the session's CSRF token).

Every figure is read from the hosting store the JSON routes read (`HOSTING_KEY`: the same
worker thread) and shaped by the same functions (`brief_json`, `invoice_json`), so the pages
equal `/api/admin/hosting/customers[/{id}]` and `/api/admin/hosting/invoices/{number}`.
Without a hosting store the page says so. Money is integer cents, shown with two decimals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hashfarm.api.admin import _Guard
from hashfarm.api.auth import AUTH_KEY, login_redirect
from hashfarm.api.hosting import HOSTING_KEY, brief_json, invoice_json
from hashfarm.api.params import BadRequest, query_args
from hashfarm.api.web.site import Site
from hashfarm.hosting.period import fmt_time
from hashfarm.hosting.store import HostingStore

__all__ = ["add_routes", "cents", "customer_view"]

PREFIX = "/admin/hosting"
NO_STORE = ("No hosting store: this server was started without one. Start it with the "
            "hosting database (`hashfarm farm serve --db sqlite:///hosting.db`) to see "
            "customers and bills here.")  # fmt: skip
PUBLIC = ("Customers and bills are admin data: open them on the admin listener "
          "(`http.admin_port`) and log in.")  # fmt: skip

Page = Callable[[web.Request, Site], Awaitable[web.Response]]


def cents(value: int | None) -> str:
    """Integer cents as money text: 123456 -> "1,234.56"; a dash for None."""
    if value is None:
        return "—"
    sign = "-" if value < 0 else ""
    whole, part = divmod(abs(value), 100)
    return f"{sign}{whole:,}.{part:02d}"


def customer_view(s: HostingStore, cid: str) -> dict[str, Any] | None:
    """One customer as `/api/admin/hosting/customers/{id}` gives it, or None."""
    c = s.customer(cid)
    if c is None:
        return None
    spans = [{"machine": a.machine_id, "contract": a.contract_id, "from": fmt_time(a.start),
              "to": None if a.end is None else fmt_time(a.end)}
             for a in s.assignments() if a.customer_id == cid]  # fmt: skip
    return {
        "id": c.id, "name": c.name, "email": c.email,
        "prepaid_available_cents": s.prepaid_available(cid),
        "contracts": [{"id": k.id, "method": k.terms.method.value, "terms": k.terms.describe()}
                      for k in s.contracts(cid)],
        "assignments": spans,
        "invoices": [brief_json(r) for r in s.invoices(customer_id=cid)],
    }  # fmt: skip


def _guarded(page: Page, site: Site, token: bytes | None) -> Callable[..., Any]:
    """`page` behind the admin guard, refusals as pages: to the login page on the admin
    listener, an explanation elsewhere."""
    guard = _Guard(token)

    async def handler(request: web.Request) -> web.Response:
        async def inner(req: web.Request) -> web.Response:
            return await page(req, site)

        resp = await guard(inner)(request)
        if resp.status in (401, 403) and resp.content_type == "application/json":
            if AUTH_KEY in request.app and "Authorization" not in request.headers:
                return login_redirect(request)
            return site.render(request, "error.html", status=resp.status, title="Admin only",
                               message=PUBLIC)  # fmt: skip
        return resp

    return handler


async def _call(request: web.Request, site: Site, fn: Any) -> tuple[Any, web.Response | None]:
    try:
        return await request.app[HOSTING_KEY].call(fn), None
    except web.HTTPException as exc:  # the worker's 503 (database away) or 422
        message = f"The hosting database cannot be read: {exc.reason}"
        page = site.render(request, "error.html", status=exc.status, title="Hosting",
                           message=message)  # fmt: skip
        return None, page


def _no_store(request: web.Request, site: Site) -> web.Response | None:
    if HOSTING_KEY in request.app:
        return None
    return site.render(request, "hosting.html", title="Customers and bills", available=False,
                       message=NO_STORE, customers=[], invoices=[], cents=cents)  # fmt: skip


async def _customers(request: web.Request, site: Site) -> web.Response:
    query_args(request.query.items(), ())
    if (off := _no_store(request, site)) is not None:
        return off

    def read(s: HostingStore) -> tuple[list[Any], list[dict[str, Any]]]:
        return s.customers(), [brief_json(r) for r in s.invoices()]

    found, failed = await _call(request, site, read)
    if failed is not None:
        return failed
    customers, invoices = found
    return site.render(request, "hosting.html", title="Customers and bills", available=True,
                       message="" if customers else "No customer yet.", customers=customers,
                       invoices=invoices, cents=cents)  # fmt: skip


async def _customer(request: web.Request, site: Site) -> web.Response:
    query_args(request.query.items(), ())
    if (off := _no_store(request, site)) is not None:
        return off
    cid = request.match_info["id"]
    if len(cid) > 100:
        raise BadRequest("a customer id is at most 100 characters")
    doc, failed = await _call(request, site, lambda s: customer_view(s, cid))
    if failed is not None:
        return failed
    if doc is None:
        return site.not_found(request, f"No customer {cid!r}.")
    return site.render(request, "hosting_customer.html", title=f"Customer {doc['name']}",
                       customer=doc, cents=cents)  # fmt: skip


async def _invoice(request: web.Request, site: Site) -> web.Response:
    query_args(request.query.items(), ())
    if (off := _no_store(request, site)) is not None:
        return off
    number = request.match_info["number"]
    if len(number) > 100:
        raise BadRequest("an invoice number is at most 100 characters")

    def read(s: HostingStore) -> dict[str, Any] | None:
        rec = s.invoice(number)
        return None if rec is None else invoice_json(rec)

    doc, failed = await _call(request, site, read)
    if failed is not None:
        return failed
    if doc is None:
        return site.not_found(request, f"No invoice {number!r}.")
    return site.render(request, "hosting_invoice.html", title=f"Invoice {doc['number']}",
                       invoice=doc, cents=cents)  # fmt: skip


def add_routes(app: web.Application, site: Site, token: bytes | None = None) -> None:
    """The hosting pages, behind the admin guard (`token`: the admin token, as the hosting
    JSON routes take it). Listed in the navigation on the admin listener only; elsewhere
    they answer with where to find them."""
    admin = AUTH_KEY in app  # make_app adds the login routes before the pages
    site.page(PREFIX, _guarded(_customers, site, token), nav="Customers" if admin else None,
              order=70)  # fmt: skip
    site.page(f"{PREFIX}/customers/{{id}}", _guarded(_customer, site, token))
    site.page(f"{PREFIX}/invoices/{{number}}", _guarded(_invoice, site, token))
