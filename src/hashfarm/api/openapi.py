"""The OpenAPI 3.0 description of the JSON API, served at `GET /api/openapi.json`.

Written by hand beside the routes (api/server.py, accounts.py, admin.py, fleet.py,
hosting.py, calc.py) and checked two ways by the tests: every route the app registers under
/api/ and /metrics is described here (and nothing else is), and a schemathesis run against the
real app on a socket finds every answer conforming to it and no 500
(tests/integration/test_openapi_api.py). Query parameters are described as strictly as the
routes parse them (`api/params.py`: ASCII digits, bounds), so what the description allows the
route accepts. Error answers are `{"error": text}`.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import orjson
from aiohttp import web

from hashfarm.api import calc
from hashfarm.api.params import query_args
from hashfarm.api.web.feed import RANGES
from hashfarm.economics import catalog

Schema = dict[str, Any]

_ERROR: Schema = {"$ref": "#/components/schemas/Error"}
_NUM: Schema = {"type": "number"}
_INT: Schema = {"type": "integer"}
_STR: Schema = {"type": "string"}
_IP: Schema = {
    "oneOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]
}
_BOOL: Schema = {"type": "boolean"}


def _nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def _obj(
    props: dict[str, Schema], required: list[str] | None = None, *, more: bool = True
) -> Schema:
    doc: Schema = {"type": "object", "properties": props,
                   "required": list(props) if required is None else required}  # fmt: skip
    if not more:
        doc["additionalProperties"] = False
    return doc


def _arr(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_RATES: Schema = {"type": "object", "additionalProperties": _NUM}
_RATES_TEXT: Schema = {"type": "object", "additionalProperties": _STR}
_COUNTS: Schema = {"type": "object", "additionalProperties": _INT}

SCHEMAS: dict[str, Schema] = {
    "Error": _obj({"error": _STR}),
    "Job": _nullable(
        _obj(
            {
                "job_id": _STR,
                "height": _INT,
                "prev_hash": _STR,
                "bits": _STR,
                "network_difficulty": _NUM,
                "transactions": _INT,
                "coinbase_value": _INT,
            }
        )
    ),
    "Pool": _obj(
        {
            "network": _STR,
            "mode": {"type": "string", "enum": ["solo", "pooled"]},
            "stratum_port": _INT,
            "uptime": _NUM,
            "connections": _INT,
            "workers": _INT,
            "hashrate": _RATES,
            "hashrate_text": _RATES_TEXT,
            "shares": _obj({"accepted": _INT, "rejected": _COUNTS}),
            "best_share": _NUM,
            "blocks": _obj({"found": _INT, "rejected": _INT}),
            "last_share": _nullable(_NUM),
            "bans": _INT,
            "job": _ref("Job"),
        }
    ),
    "Worker": _obj(
        {
            "name": _STR,
            "account": _STR,
            "hashrate": _RATES,
            "hashrate_text": _RATES_TEXT,
            "shares_accepted": _INT,
            "shares_rejected": _COUNTS,
            "best_share": _NUM,
            "last_share": _nullable(_NUM),
            "blocks_found": _INT,
        }
    ),
    "WorkerPage": _obj(
        {
            "total": _INT,
            "limit": _INT,
            "offset": _INT,
            "workers": _arr(_ref("Worker")),
        },
        ["total", "limit", "offset", "workers"],
    ),
    "Block": _obj(
        {
            "height": _INT,
            "hash_hex": _STR,
            "reward_sats": _INT,
            "finder_worker": _STR,
            "finder_account": _STR,
            "time": _NUM,
            "accepted_by_node": _BOOL,
            "node_verdict": _nullable(_STR),
        }
    ),
    "Ban": _obj({"ip": _STR, "reason": _STR, "since": _NUM, "until": _NUM, "remaining": _NUM}),
    "BanRequest": _obj(
        {
            "ip": _IP,
            "seconds": {
                "type": "number",
                "nullable": True,  # null: the pool's default (bans.seconds)
                "exclusiveMinimum": True,
                "minimum": 0,
                "maximum": 31_536_000,
            },
            "reason": {"type": "string", "enum": ["manual"]},
        },
        ["ip"],
        more=False,
    ),
    "Unavailable": _obj(
        {"available": {"type": "boolean", "enum": [False]}, "reason": _STR}, ["available", "reason"]
    ),
    "Accounting": {
        "oneOf": [
            _obj(
                {
                    "available": {"type": "boolean", "enum": [True]},
                    "scheme": _nullable({"type": "object"}),
                    "pending_switch": _nullable({"type": "object"}),
                    "pool_fees": _INT,
                    "reserve": {"type": "object"},
                }
            ),
            _ref("Unavailable"),
        ]
    },
    "AccountPage": _obj(
        {
            "available": _BOOL,
            "total": _INT,
            "limit": _INT,
            "offset": _INT,
            "accounts": _arr(
                _obj({"account": _STR, "spendable": _INT, "immature": _INT, "paid": _INT})
            ),
            "reason": _STR,
        },
        ["available", "total", "accounts"],
    ),
    "Account": _obj(
        {
            "account": _STR,
            "spendable": _INT,
            "immature": _INT,
            "paid": _INT,
            "credits": _obj({"total": _INT, "lines": _arr({"type": "object"})}),
            "payouts": _arr({"type": "object"}),
        }
    ),
    "Statement": _obj(
        {
            "account": _STR,
            "by": {"type": "string", "enum": ["block", "day", "payout"]},
            "total": _INT,
            "limit": _INT,
            "offset": _INT,
            "lines": _arr({"type": "object"}),
        }
    ),
    "BlockCredits": _obj(
        {
            "block": _STR,
            "height": _INT,
            "state": _STR,
            "scheme": _nullable(_STR),
            "reward": _INT,
            "total": _INT,
            "limit": _INT,
            "offset": _INT,
            "credits": _arr(
                _obj({"account": _STR, "sats": _INT, "part": _STR, "explanation": _STR})
            ),
        }
    ),
    "PayoutPage": _obj(
        {
            "available": _BOOL,
            "total": _INT,
            "limit": _INT,
            "offset": _INT,
            "payouts": _arr(
                _obj(
                    {
                        "id": _INT,
                        "created_at": _NUM,
                        "state": _STR,
                        "total": _INT,
                        "txid": _nullable(_STR),
                        "confirmations": _nullable(_INT),
                        "accounts": _INT,
                    },
                    ["id", "state", "total"],
                )
            ),
            "reason": _STR,
        },
        ["available", "total", "payouts"],
    ),
    "Machine": _obj({"id": _STR, "ok": _BOOL, "faults": _arr(_STR)}),
    "MachineDetail": _obj(
        {
            "id": _STR,
            "ok": _BOOL,
            "faults": _arr(_STR),
            "history": _arr({"type": "object"}),
            "alerts": _arr({"type": "object"}),
            "resolution": {"type": "integer", "enum": [0, 300, 3600]},
        }
    ),
    "Alerts": _obj({"active_only": _BOOL, "alerts": _arr({"type": "object"})}),
    "Customer": _obj({"id": _STR, "name": _STR, "email": _nullable(_STR)}),
    "InvoiceBrief": _obj(
        {
            "number": _STR,
            "customer": _STR,
            "period": _STR,
            "kind": _STR,
            "revision": _INT,
            "state": _STR,
            "total_cents": _INT,
            "total_sats": _nullable(_INT),
        }
    ),
}
SCHEMAS["CustomerDetail"] = _obj({
    **SCHEMAS["Customer"]["properties"], "prepaid_available_cents": _INT,
    "contracts": _arr({"type": "object"}), "assignments": _arr({"type": "object"}),
    "invoices": _arr(_ref("InvoiceBrief")),
})  # fmt: skip
SCHEMAS["Invoice"] = _obj({
    **SCHEMAS["InvoiceBrief"]["properties"], "currency": _STR,
    "lines": _arr({"type": "object"}), "usage": _arr({"type": "object"}),
})  # fmt: skip


def _param(name: str, where: str, schema: Schema, doc: str, required: bool = False) -> Schema:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema, "description": doc}  # fmt: skip


def _digits(low: int, high: int) -> Schema:
    return {"type": "integer", "minimum": low, "maximum": high}


_LIMIT = _param("limit", "query", _digits(1, 1000), "items per page (1..1000)")
_OFFSET = _param("offset", "query", _digits(0, 999_999_999), "items to skip")
_ACCOUNT = _param("account", "path", {"type": "string", "pattern": "^[!-~]{1,256}$"},
                  "account name (printable; 1 to 256 characters)")  # fmt: skip
_NUMBER = _param("number", "path", {"type": "string", "minLength": 1, "maxLength": 100},
                 "invoice number")  # fmt: skip
_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$"}
_PERIOD = {"type": "string", "pattern": "^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"}


def _json(schema: Schema, doc: str = "OK") -> Schema:
    return {"description": doc, "content": {"application/json": {"schema": schema}}}


def _err(doc: str) -> Schema:
    return _json(_ERROR, doc)


_COMMON = {"400": _err("a parameter breaks the route's contract (named in the message)")}
_ADMIN = {"401": _err("no or wrong admin token (or no session on the admin listener)"),
          "403": _err("admin routes are off (no token configured), or a session's request "
                      "without its CSRF token")}  # fmt: skip


def _op(summary: str, ok: Schema, params: list[Schema] | None = None, *, tag: str,
        errors: dict[str, Schema] | None = None, admin: bool = False,
        body: Schema | None = None, status: str = "200") -> Schema:  # fmt: skip
    op: Schema = {"summary": summary, "tags": [tag], "parameters": params or [],
                  "responses": {status: ok, **_COMMON, **(errors or {})}}  # fmt: skip
    if admin:
        op["security"] = [{"adminToken": []}, {"session": []}]
        op["responses"].update(_ADMIN)
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


_503 = {"503": _err("the database cannot be read right now")}
_TEXT = {"description": "Prometheus text format 0.0.4",
         "content": {"text/plain": {"schema": {"type": "string"}}}}  # fmt: skip


def _calc_params() -> list[Schema]:
    """The calculator's query (`api/calc.py`): each number in its documented range."""
    names = [m.model for m in catalog.machine_models() if m.complete]
    one = "(" + "|".join(re.escape(n) for n in names) + ")(=[0-9]{1,6})?"
    pct = "(-[0-6]?[0-9]|[0-9]{1,2})(\\.[0-9]{1,2})?"  # -69.99 to 99.99
    params = [
        _param(
            "model",
            "query",
            {"type": "string", "enum": names},
            "a catalog model (GET /api/calc/models)",
        ),
        _param(
            "compare",
            "query",
            {"type": "string", "pattern": f"^({one}(,{one}){{0,4}})?$"},
            "machines beside the first: MODEL[=PRICE], comma separated (at most 5)",
        ),
        _param(
            "difficulty_path",
            "query",
            {"type": "string", "pattern": f"^({pct}(,{pct}){{0,99}})?$"},
            "difficulty growth per epoch in percent (-75 to 300), comma separated",
        ),
    ]
    for name, (low, high, what) in calc.PARAMS.items():
        params.append(
            _param(name, "query", {"type": "number", "minimum": low, "maximum": high}, what)
        )
    for name, (ilow, ihigh) in calc.INTS.items():
        params.append(_param(name, "query", _digits(ilow, ihigh), name.replace("_", " ")))
    return params


def _paths() -> dict[str, Schema]:
    h = "/api/admin/hosting"
    invoice_404 = {"404": _err("no such invoice")}
    return {
        "/api/openapi.json": {
            "get": _op("This description", _json({"type": "object"}), tag="meta")
        },
        "/api/pool": {
            "get": _op(
                "The pool now: hashrate, workers, shares, blocks, job",
                _json(_ref("Pool")),
                tag="pool",
            )
        },
        "/api/workers": {
            "get": _op(
                "A page of the workers, busiest (5-minute hashrate) first, and how many there "
                "are in all (`total`): the ranking is shared for 2 s, so pages asked within "
                "that time fit together; never the whole list at once",
                _json(_ref("WorkerPage")),
                [
                    _param("limit", "query", _digits(1, 1000), "workers per page (1..1000, 100)"),
                    _OFFSET,
                ],
                tag="pool",
            )
        },
        "/api/workers/{name}": {
            "get": _op(
                "One worker",
                _json(_ref("Worker")),
                [_param("name", "path", _STR, "full Stratum user name (address.worker)")],
                tag="pool",
                errors={"404": _err("no worker of that name has sent a share")},
            )
        },
        "/api/blocks": {
            "get": _op(
                "Blocks the pool submitted, newest first, with the node's verdict",
                _json(_arr(_ref("Block"))),
                [_LIMIT],
                tag="pool",
                errors=_503,
            )
        },
        "/api/pool/hashrate": {
            "get": _op(
                "The pool's hashrate history for a chart (the overview page's)",
                _json(
                    _obj(
                        {
                            "range": _STR,
                            "step_s": _NUM,
                            "points_max": _INT,
                            "window": _STR,
                            "points": _arr(_arr(_NUM)),
                        }
                    )
                ),
                [
                    _param(
                        "range",
                        "query",
                        {"type": "string", "enum": list(RANGES)},
                        "how far back (default 1h)",
                    )
                ],
                tag="pool",
            )
        },
        "/api/miners/{address}": {
            "get": _op(
                "A miner's page by address: its workers, sums, rejects, blocks and solo odds",
                _json(
                    _obj(
                        {
                            "account": _STR,
                            "seen": _BOOL,
                            "workers": _arr(_ref("Worker")),
                            "hashrate": _RATES,
                            "shares_accepted": _INT,
                            "best_share": _NUM,
                            "blocks": _nullable(_arr({"type": "object"})),
                            "odds": _nullable({"type": "object"}),
                        },
                        ["account", "seen", "workers", "hashrate"],
                    )
                ),
                [
                    _param(
                        "address",
                        "path",
                        {"type": "string", "pattern": "^[!-\\-0-~]{1,256}(\\.[!-~]*)?$"},
                        "a payout address or user name: the part before the first '.', 1 to 256 "
                        "printable characters (the pool's rule for user names), no '/'",
                    )
                ],
                tag="pool",
            )
        },
        "/api/blocks/{hash}": {
            "get": _op(
                "One block the pool submitted: the node's view and its coinbase outputs",
                _json(_obj({"height": _INT}, [])),
                [
                    _param(
                        "hash",
                        "path",
                        {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                        "block hash (64 hex digits)",
                    )
                ],
                tag="pool",
                errors={"404": _err("the pool has not submitted that block"), **_503},
            )
        },
        "/health": {
            "get": _op(
                "Whether this process does its job (503 when it cannot: node or broker away)",
                _json(
                    _obj(
                        {
                            "status": {"type": "string", "enum": ["ok", "degraded", "down"]},
                            "role": _STR,
                        }
                    ),
                    "healthy or degraded",
                ),
                tag="meta",
                errors={"503": _json(_obj({"status": _STR, "role": _STR}), "down")},
            )
        },
        "/api/calc": {
            "get": _op(
                "Payback with P10/P50/P90 bands, machines compared, halvings, the difficulty "
                "scenario (the /calc page's data)",
                _json(
                    _obj(
                        {
                            "network": {"type": "object"},
                            "currency": _STR,
                            "btc_price": _NUM,
                            "horizon_days": _INT,
                            "halving_days": _arr(_NUM),
                            "machines": _arr({"type": "object"}),
                            "monte_carlo": _nullable({"type": "object"}),
                            "chart": {"type": "object"},
                        },
                        ["machines", "chart"],
                    )
                ),
                _calc_params(),
                tag="calculator",
                errors={"503": _err("the calculator is busy; try again")},
            )
        },
        "/api/calc/models": {
            "get": _op(
                "The machine catalog",
                _json(
                    _obj({"models": _arr(_obj({"model": _STR, "vendor": _STR, "complete": _BOOL}))})
                ),
                tag="calculator",
            )
        },
        "/metrics": {"get": _op("Prometheus metrics of the pool", _TEXT, tag="metrics")},
        "/api/bans": {
            "get": _op("Bans in force (admin)", _json(_arr(_ref("Ban"))), tag="admin", admin=True),
            "post": _op(
                "Ban an address (admin)",
                _json(_ref("Ban"), "banned"),
                tag="admin",
                admin=True,
                body=_ref("BanRequest"),
                status="201",
            ),
        },
        "/api/bans/{ip}": {
            "delete": _op(
                "Lift a ban (admin)",
                _json(_obj({"lifted": _STR})),
                [_param("ip", "path", _IP, "IPv4 or IPv6 address")],
                tag="admin",
                admin=True,
                errors={"404": _err("not banned")},
            )
        },
        "/api/accounting": {
            "get": _op(
                "The payout scheme, fees and reserve",
                _json(_ref("Accounting")),
                tag="accounting",
                errors=_503,
            )
        },
        "/api/accounts": {
            "get": _op(
                "Accounts' balances, a page",
                _json(_ref("AccountPage")),
                [_LIMIT, _OFFSET],
                tag="accounting",
                errors=_503,
            )
        },
        "/api/accounts/{account}": {
            "get": _op(
                "One account: balances, recent credits and payouts",
                _json(_ref("Account")),
                [_ACCOUNT, _LIMIT],
                tag="accounting",
                errors={"404": _err("no such account, or no accounting yet"), **_503},
            )
        },
        "/api/accounts/{account}/statement": {
            "get": _op(
                "An account's explained statement",
                _json(_ref("Statement")),
                [
                    _ACCOUNT,
                    _param(
                        "by",
                        "query",
                        {"type": "string", "enum": ["block", "day", "payout"]},
                        "group lines by block, day or payout",
                    ),
                    _LIMIT,
                    _OFFSET,
                ],
                tag="accounting",
                errors={"404": _err("no such account"), **_503},
            )
        },
        "/api/blocks/{hash}/credits": {
            "get": _op(
                "Who a block credited, and why",
                _json(_ref("BlockCredits")),
                [
                    _param(
                        "hash",
                        "path",
                        {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                        "block hash (64 hex digits)",
                    ),
                    _LIMIT,
                    _OFFSET,
                ],
                tag="accounting",
                errors={"404": _err("accounting tracks no such block"), **_503},
            )
        },
        "/api/payouts": {
            "get": _op(
                "Payout runs, newest first",
                _json(_ref("PayoutPage")),
                [_LIMIT, _OFFSET],
                tag="accounting",
                errors=_503,
            )
        },
        "/api/fleet/machines": {
            "get": _op(
                "Every machine's latest state, worst first",
                _json(_obj({"machines": _arr(_ref("Machine"))})),
                tag="fleet",
                errors=_503,
            )
        },
        "/api/fleet/machines/{id}": {
            "get": _op(
                "One machine, its boards and its series",
                _json(_ref("MachineDetail")),
                [
                    _param("id", "path", _STR, "host:port"),
                    _param("history", "query", _digits(0, 365 * 86_400), "seconds of series"),
                    _param(
                        "resolution",
                        "query",
                        {"type": "integer", "enum": [0, 300, 3600]},
                        "0 raw polls, 300 or 3600 rollups",
                    ),
                ],
                tag="fleet",
                errors={"404": _err("no such machine polled"), **_503},
            )
        },
        "/api/fleet/alerts": {
            "get": _op(
                "Open alerts (or the newest of all)",
                _json(_ref("Alerts")),
                [
                    _param("active", "query", {"type": "integer", "enum": [0, 1]}, "1: open only"),
                    _LIMIT,
                ],
                tag="fleet",
                errors=_503,
            )
        },
        "/metrics/fleet": {"get": _op("Prometheus metrics of the fleet", _TEXT, tag="metrics")},
        f"{h}/customers": {
            "get": _op(
                "Hosting customers (admin)",
                _json(_obj({"customers": _arr(_ref("Customer"))})),
                tag="hosting",
                admin=True,
                errors=_503,
            )
        },
        f"{h}/customers/{{id}}": {
            "get": _op(
                "One customer: contracts, machines, prepayment, invoices (admin)",
                _json(_ref("CustomerDetail")),
                [_param("id", "path", _STR, "customer id")],
                tag="hosting",
                admin=True,
                errors={"404": _err("no such customer"), **_503},
            )
        },
        f"{h}/invoices": {
            "get": _op(
                "Invoices (admin)",
                _json(_obj({"invoices": _arr(_ref("InvoiceBrief"))})),
                [
                    _param("period", "query", _PERIOD, "YYYY-MM"),
                    _param("customer", "query", _ID, "customer id"),
                ],
                tag="hosting",
                admin=True,
                errors=_503,
            )
        },
        f"{h}/invoices/{{number}}": {
            "get": _op(
                "One invoice: lines and usage (admin)",
                _json(_ref("Invoice")),
                [_NUMBER],
                tag="hosting",
                admin=True,
                errors={**invoice_404, **_503},
            )
        },
        f"{h}/invoices/{{number}}.csv": {
            "get": _op(
                "One invoice as CSV (admin)",
                {"description": "CSV", "content": {"text/csv": {"schema": _STR}}},
                [_NUMBER],
                tag="hosting",
                admin=True,
                errors={**invoice_404, **_503},
            )
        },
        f"{h}/invoices/{{number}}/issue": {
            "post": _op(
                "Issue a draft invoice (admin)",
                _json(_ref("Invoice")),
                [_NUMBER],
                tag="hosting",
                admin=True,
                errors={**invoice_404, "409": _err("not allowed in its state"), **_503},
            )
        },
        f"{h}/invoices/{{number}}/pay": {
            "post": _op(
                "Mark an issued invoice paid (admin)",
                _json(_ref("Invoice")),
                [_NUMBER],
                tag="hosting",
                admin=True,
                errors={**invoice_404, "409": _err("not allowed in its state"), **_503},
            )
        },
        f"{h}/bill-runs": {
            "post": _op(
                "Bill a month, idempotently (admin)",
                _json(
                    _obj(
                        {
                            "period": _STR,
                            "written": _arr(_STR),
                            "unchanged": _arr(_STR),
                            "closed": _arr(_STR),
                            "errors": {"type": "object", "additionalProperties": _STR},
                        }
                    )
                ),
                tag="hosting",
                admin=True,
                body=_obj({"period": _PERIOD}, more=False),
                errors={
                    "422": _err("bad inputs; nothing written"),
                    "503": _err("no power source, or the database cannot be used"),
                },
            )
        },
        f"{h}/report": {
            "get": _op(
                "The seller's promise against reality (admin)",
                _json(
                    _obj(
                        {
                            "as_of": _STR,
                            "earned_from": _STR,
                            "machines": _arr({"type": "object"}),
                            "charts": {"type": "object"},
                        }
                    )
                ),
                [
                    _param(
                        "as_of",
                        "query",
                        {"type": "string", "format": "date"},
                        "the day it runs up to (exclusive)",
                        required=True,
                    ),
                    _param("customer", "query", _ID, "customer id"),
                    _param("machine", "query", _ID, "machine id"),
                    _param("life_days", "query", _digits(1, 50 * 365), "machine life in days"),
                ],
                tag="hosting",
                admin=True,
                errors={"422": _err("bad inputs"), "503": _err("the report is off here")},
            )
        },
    }


# (from operation, its response's JSON pointer) -> (to operation, its parameter): what a client
# (and schemathesis' stateful phase) may follow from a list to one of its items.
LINKS = [
    ("GET /api/workers", "workers/0/name", "GET /api/workers/{name}", "name"),
    ("GET /api/accounts", "accounts/0/account", "GET /api/accounts/{account}", "account"),
    ("GET /api/accounts", "accounts/0/account", "GET /api/accounts/{account}/statement",
     "account"),
    ("GET /api/blocks", "0/hash_hex", "GET /api/blocks/{hash}/credits", "hash"),
    ("GET /api/blocks", "0/hash_hex", "GET /api/blocks/{hash}", "hash"),
    ("GET /api/workers", "workers/0/account", "GET /api/miners/{address}", "address"),
    ("GET /api/fleet/machines", "machines/0/id", "GET /api/fleet/machines/{id}", "id"),
    ("GET /api/admin/hosting/customers", "customers/0/id", "GET /api/admin/hosting/customers/{id}",
     "id"),
    ("GET /api/admin/hosting/invoices", "invoices/0/number",
     "GET /api/admin/hosting/invoices/{number}", "number"),
    ("GET /api/admin/hosting/invoices", "invoices/0/number",
     "GET /api/admin/hosting/invoices/{number}.csv", "number"),
    ("GET /api/admin/hosting/invoices", "invoices/0/number",
     "POST /api/admin/hosting/invoices/{number}/issue", "number"),
    ("GET /api/admin/hosting/invoices", "invoices/0/number",
     "POST /api/admin/hosting/invoices/{number}/pay", "number"),
]  # fmt: skip


def _operation_id(label: str) -> str:
    method, path = label.split(" ", 1)
    return method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_")


def _with_links(paths: dict[str, Schema]) -> dict[str, Schema]:
    for path, ops in paths.items():
        for method, op in ops.items():
            op["operationId"] = _operation_id(f"{method.upper()} {path}")
    for source, pointer, target, param in LINKS:
        method, path = source.split(" ", 1)
        ok = paths[path][method.lower()]["responses"]["200"]
        name = _operation_id(target)
        ok.setdefault("links", {})[name] = {
            "operationId": name,
            "parameters": {param: f"$response.body#/{pointer}"},
        }
    return paths


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "hashfarm API",
            "version": "1",
            "description": "The pool's JSON API. Public routes are read-only; admin routes "
            "need `Authorization: Bearer TOKEN` (http.admin_token_file) or, on the admin "
            "listener only, a login session and its CSRF token (X-CSRF-Token). Errors are "
            '`{"error": text}`. See docs/web.md and docs/security.md.',
        },
        "paths": _with_links(_paths()),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "hashfarm_admin"},
            },
        },
    }


def add_routes(app: web.Application) -> None:
    """Serve the description at /api/openapi.json."""
    app.router.add_get("/api/openapi.json", _serve)


async def _serve(request: web.Request) -> web.Response:
    query_args(request.query.items(), ())
    return web.Response(body=_body(), content_type="application/json")


@functools.cache
def _body() -> bytes:
    return orjson.dumps(document())
