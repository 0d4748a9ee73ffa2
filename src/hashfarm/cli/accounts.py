"""`hashfarm accounts list|show|statement|credit|payout|threshold`: the books, read and paid.

The commands open the database the pool writes (`--storage-url`, the pool's default SQLite
file unless told) and read the accounting ledger there (`hashfarm.accounting.statements`);
`credit` runs the crediting service (`hashfarm.accounting.service`) against it and the node,
once (`--once`) or until SIGINT/SIGTERM; `payout` runs one payout run
(`hashfarm.accounting.payoutservice`) through the node's wallet. Amounts are satoshis. A
missing database, a bad URL or an unreachable node exits 1 with one line saying which
(passwords never shown).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import click
import orjson

from hashfarm.accounting.payouts import (
    DEFAULT_MAX_OUTPUTS,
    DEFAULT_THRESHOLD_SATS,
    PayoutPlan,
    PayoutPolicy,
)
from hashfarm.accounting.payoutservice import (
    BROADCAST_WAIT,
    DEFAULT_CONFIRMATIONS,
    PayoutReport,
    PayoutService,
)
from hashfarm.accounting.payoutstore import (
    PayoutRecord,
    recent_payouts,
    set_threshold,
    thresholds,
)
from hashfarm.accounting.service import CreditingService, StepReport
from hashfarm.accounting.statements import (
    BlockLine,
    account_list,
    block_lines,
    day_json,
    day_lines,
    line_json,
    payout_json,
    payout_lines,
    statement_lines,
    summary,
)
from hashfarm.accounting.store import SqlStore, connect, open_store
from hashfarm.errors import HashfarmError
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.config import redact_message, redact_url
from hashfarm.pool.settings import (
    AccountingSettings,
    NodeSettings,
    PoolSettings,
    StorageSettings,
)

DEFAULT_STORAGE_URL = StorageSettings().url  # the pool's default ledger

_storage = click.option(
    "--storage-url",
    default=DEFAULT_STORAGE_URL,
    show_default=True,
    metavar="URL",
    help="The pool's ledger: sqlite:///PATH or postgresql://...",
)
_json = click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")


def _node_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """The node's RPC flags, as `credit` and `payout` take them (rules as `hashfarm pool`)."""
    for flag in reversed(
        (
            click.option(
                "--rpc-url", metavar="URL", help="The node's JSON-RPC URL [Core's for --network]."
            ),
            click.option("--rpc-user", metavar="U", help="RPC user name."),
            click.option(
                "--rpc-password-file", metavar="FILE", help="File holding the RPC password."
            ),
            click.option("--rpc-cookie", metavar="FILE", help="Bitcoin Core's .cookie file."),
        )
    ):
        command = flag(command)
    return command


@click.group("accounts")
def accounts() -> None:
    """The pool's accounting ledger: balances, statements, crediting found blocks, payouts."""


def _open(url: str) -> SqlStore:
    try:
        return connect(url)
    except HashfarmError as exc:
        raise click.ClickException(redact_message(str(exc), url)) from None


def _emit(rows: Any, as_json: bool, lines: list[str]) -> None:
    if as_json:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for line in lines:
        click.echo(line)


@accounts.command("list")
@_storage
@_json
def list_accounts(storage_url: str, as_json: bool) -> None:
    """Every miner account with its spendable and immature balance."""
    sql = _open(storage_url)
    try:
        rows = account_list(sql)
    finally:
        sql.close()
    out = [{"account": r.account, "spendable": r.spendable, "immature": r.immature} for r in rows]
    lines = [f"{'account':<24} {'spendable':>16} {'immature':>16}"]
    lines += [f"{r.account:<24} {r.spendable:>16,} {r.immature:>16,}" for r in rows]
    if not rows:
        lines.append("(no credited accounts yet)")
    _emit(out, as_json, lines)


@accounts.command("show")
@click.argument("account")
@_storage
@_json
def show(account: str, storage_url: str, as_json: bool) -> None:
    """One account's balances and its last credits."""
    sql = _open(storage_url)
    try:
        s = summary(sql, account)
        recent = block_lines(sql, account)[:10]
        paid = recent_payouts(sql, account)
        own_threshold = thresholds(sql).get(account)
    finally:
        sql.close()
    payouts = [_payout_of(p, account) for p in paid]
    out = {
        "account": account,
        "spendable": s.spendable,
        "immature": s.immature,
        "payout_threshold": own_threshold,
        "payouts": payouts,
        "recent": [
            {
                "height": b.height,
                "block": b.block_hash,
                "sats": b.sats,
                "state": b.state,
                "explanation": b.explanation,
            }
            for b in recent
        ],
    }
    lines = [f"account {account}: {s.spendable:,} sats spendable, {s.immature:,} immature"]
    lines += [f"  block {b.height:,} {b.state:<9} {b.sats:>14,}  {b.explanation}" for b in recent]
    if own_threshold is not None:
        lines.append(f"  own payout threshold: {own_threshold:,} sats")
    lines += [
        f"  payout {p['id']} {p['state']:<10} {p['amount']:>14,}  to {p['address']}"
        f"{'  tx ' + p['txid'] if p['txid'] else ''}"
        f"{' (' + str(p['confirmations']) + ' conf.)' if p['txid'] else ''}"
        for p in payouts
    ]
    _emit(out, as_json, lines)


def _payout_of(record: PayoutRecord, account: str) -> dict[str, Any]:
    """One payout as `show` prints it for `account`."""
    item = next(i for i in record.items if i.account == account)
    return {
        "id": record.id,
        "state": record.state,
        "debit": item.debit_sats,
        "amount": item.amount_sats,
        "address": item.address,
        "txid": record.txid,
        "confirmations": record.confirmations,
        "created_at": record.created_at,
    }


@accounts.command("statement")
@click.argument("account")
@click.option("--day", "by_day", is_flag=True, help="One line per UTC day.")
@click.option("--block", "by_block", is_flag=True, help="One line per block (the default).")
@click.option("--payouts", "by_payout", is_flag=True, help="One line per payout that paid it.")
@_storage
@_json
def statement(
    account: str, by_day: bool, by_block: bool, by_payout: bool, storage_url: str, as_json: bool
) -> None:
    """What the account was credited, per block and PPS batch (explained), what payouts took
    from it (--payouts), or both per day."""
    if by_day + by_block + by_payout > 1:
        raise click.UsageError("choose one of --day, --block or --payouts, not both")
    sql = _open(storage_url)
    try:
        if by_payout:
            paid = payout_lines(sql, account)
            out: Any = [payout_json(p) for p in paid]
            lines = [f"{'payout':>9} {'state':<10} {'sats':>14}  what"]
            lines += [
                f"{p.payout_id:>9} {p.state:<10} {p.sats:>14,}  {p.explanation}" for p in paid
            ]
        elif by_day:
            days = day_lines(sql, account)
            out = [day_json(d) for d in days]
            heads = ("earned", "reversed", "matured", "pps", "paid", "in coinbase")
            lines = [f"{'day (UTC)':<12}" + "".join(f" {h:>14}" for h in heads)]
            lines += [
                f"{d.day:<12}"
                + "".join(
                    f" {v:>14,}"
                    for v in (d.earned, d.reversed, d.matured, d.pps, d.paid, d.coinbase)
                )
                + (f"  other {d.other:,}" if d.other else "")
                for d in days
            ]
        else:
            found = statement_lines(sql, account)
            out = [line_json(b) for b in found]
            lines = [f"{'height':>9} {'state':<9} {'sats':>14}  why"]
            for b in found:
                if isinstance(b, BlockLine):
                    lines.append(
                        f"{b.height:>9,} {b.state:<9} {b.sats:>14,}  {b.explanation}"
                        + (
                            "  (reversed: the block left the chain)"
                            if b.state == "orphaned"
                            else ""
                        )
                    )
                else:
                    lines.append(
                        f"{'-':>9} {'credited':<9} {b.sats:>14,}  {b.explanation}  "
                        f"[shares {b.batch}]"
                    )
    finally:
        sql.close()
    if not out and not as_json:
        lines.append(
            f"(no payout to {account})" if by_payout else f"(nothing credited to {account})"
        )
    _emit(out, as_json, lines)


@accounts.command("credit")
@_storage
@click.option("--network", default="regtest", show_default=True, help="For the node's defaults.")
@_node_flags
@click.option(
    "--scheme",
    type=click.Choice(["pplns", "prop", "solo", "tides", "pps", "fpps"]),
    required=True,
    help="As the pool's [accounting] scheme (TIDES/PPS/FPPS need the pool to record jobs).",
)
@click.option(
    "--fee-bps",
    type=click.IntRange(0, 10_000),
    default=0,
    show_default=True,
    help="Pool fee in basis points (100 = 1%).",
)
@click.option(
    "--pplns-factor",
    type=click.FloatRange(min=0, min_open=True),
    default=2.0,
    show_default=True,
    help="PPLNS window in network difficulties.",
)
@click.option(
    "--tides-factor",
    type=click.FloatRange(min=0, min_open=True),
    default=8.0,
    show_default=True,
    help="TIDES window in network difficulties.",
)
@click.option(
    "--dust-sats",
    type=click.IntRange(min=1),
    default=1_048_576,
    show_default=True,
    help="TIDES: payments below this are held.",
)
@click.option(
    "--max-outputs",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="TIDES: coinbase outputs at most.",
)
@click.option(
    "--reserve-warning-sats",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="PPS/FPPS: warn when the reserve falls below this.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between passes.",
)
@click.option("--once", is_flag=True, help="One pass, then exit.")
def credit(
    storage_url: str,
    network: str,
    rpc_url: str | None,
    rpc_user: str | None,
    rpc_password_file: str | None,
    rpc_cookie: str | None,
    scheme: str,
    fee_bps: int,
    pplns_factor: float,
    tides_factor: float,
    dust_sats: int,
    max_outputs: int,
    reserve_warning_sats: int,
    poll_interval: float,
    once: bool,
) -> None:
    """Credit found blocks from the pool's ledger, following the node (see docs/accounting.md).

    The RPC password may also come from $HASHFARM_NODE_RPC_PASSWORD.
    """
    import os

    from hashfarm.cli.pool import node_access  # the pool's rules for the node's credentials

    chosen = AccountingSettings(  # the pool's own rule, so both note the same scheme
        scheme=scheme,  # type: ignore[arg-type]
        fee_bps=fee_bps,
        pplns_factor=pplns_factor,
        tides_factor=tides_factor,
        dust_sats=dust_sats,
        max_outputs=max_outputs,
    ).to_scheme()
    node = NodeSettings(
        rpc_url=rpc_url,
        rpc_user=rpc_user,
        rpc_password_file=rpc_password_file,
        rpc_password=os.environ.get("HASHFARM_NODE_RPC_PASSWORD"),
        rpc_cookie=rpc_cookie,
    )
    try:
        access = node_access(PoolSettings(network=network, node=node))
    except HashfarmError as exc:
        raise click.UsageError(str(exc)) from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def go() -> StepReport | None:
        rpc = RPCClient(
            access.url, user=access.user, password=access.password, cookie_file=access.cookie
        )
        store = await open_store(storage_url)
        try:
            service = CreditingService(
                store,
                rpc,
                chosen,
                poll_interval=poll_interval,
                reserve_warning_sats=reserve_warning_sats,
            )
            if once:
                return await service.step()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            await service.run(stop)
            return None
        finally:
            await store.close()
            await rpc.close()

    try:
        report = asyncio.run(go())
    except HashfarmError as exc:
        msg = redact_message(redact_message(str(exc), storage_url), access.url)
        raise click.ClickException(msg) from None
    if report is not None:
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        click.echo(
            f"{when} tip {report.tip}: tracked {report.tracked}, posted {report.posted}, "
            f"credited {report.credited}, orphaned {report.orphaned} "
            f"(reversed {report.reversed}), waiting {len(report.waiting)}, "
            f"PPS shares priced {report.priced} ({report.pps_credited} sats)"
            + (f", reserve {report.reserve.reserve}" if report.reserve else "")
            + ("" if report.unpriced is None else f", unpriced from {report.unpriced.share_id}")
            + (f", skipped {report.skipped} (no job terms)" if report.skipped else "")
            + f"; ledger {redact_url(storage_url)}"
        )


@accounts.command("threshold")
@click.argument("account")
@click.argument("sats", type=click.IntRange(min=1), required=False)
@click.option("--clear", is_flag=True, help="Remove the account's own threshold.")
@_storage
def threshold(account: str, sats: int | None, clear: bool, storage_url: str) -> None:
    """Set ACCOUNT's own payout threshold to SATS (or --clear it: the payout run's
    --threshold-sats applies). A threshold below the run's payout fee plus the smallest
    output (546 sats) is raised to that."""
    if clear == (sats is not None):
        raise click.UsageError("give SATS or --clear")
    sql = _open(storage_url)
    try:
        set_threshold(sql, account, sats, time.time())
    except HashfarmError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        sql.close()
    said = "cleared" if sats is None else f"{sats:,} sats"
    click.echo(f"payout threshold of {account}: {said}")


PAUSE_ENV = "HASHFARM_PAYOUT_PAUSE_AT"  # test hook: planned | signed | broadcast


def _pause_hook(point_wanted: str | None) -> Callable[[str], Awaitable[None]]:
    """The payout service's pause hook: at the point named by $HASHFARM_PAYOUT_PAUSE_AT,
    say so on stderr and stop there (for ever), so a test can kill -9 the process at exactly
    that point of a payout (tests/integration/test_payouts_regtest.py)."""

    async def pause(point: str) -> None:
        if point != point_wanted:
            return
        click.echo(f"paused at {point} ({PAUSE_ENV})", err=True)
        sys.stderr.flush()
        while True:  # blocking on purpose: nothing else of the run may go on
            time.sleep(3600)  # noqa: ASYNC251

    return pause


@accounts.command("payout")
@_storage
@click.option(
    "--network",
    default="regtest",
    show_default=True,
    help="Addresses and the node's defaults (regtest-bcoin: bcoin's address flavour).",
)
@_node_flags
@click.option(
    "--wallet",
    "wallet_kind",
    type=click.Choice(["core", "bcoin"]),
    default="core",
    show_default=True,
    help="Which node's wallet pays.",
)
@click.option(
    "--wallet-url",
    metavar="URL",
    help="Core: the wallet's RPC URL [--rpc-url, plus wallet/NAME with "
    "--wallet-name]; bcoin: its wallet server (required).",
)
@click.option(
    "--wallet-name", metavar="NAME", help="Core's wallet name; bcoin's wallet id [primary]."
)
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    help="The pool's TOML settings: [accounting] payout_threshold_sats is the default threshold.",
)
@click.option(
    "--threshold-sats",
    type=click.IntRange(min=1),
    help=f"Pay an account once its spendable balance reaches this "
    f"[--config's accounting.payout_threshold_sats, else {DEFAULT_THRESHOLD_SATS:,}].",
)
@click.option(
    "--max-outputs",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_OUTPUTS,
    show_default=True,
    help="Payments per transaction (the largest first).",
)
@click.option(
    "--payout-fee-sats",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Pool's fee per payment, taken from it.",
)
@click.option(
    "--fee-rate",
    type=click.IntRange(min=1),
    metavar="SAT/VB",
    help="Network fee rate [the wallet's estimate]; the pool's wallet pays it.",
)
@click.option(
    "--confirmations",
    type=click.IntRange(min=1),
    default=DEFAULT_CONFIRMATIONS,
    show_default=True,
    help="Depth at which a payout is final.",
)
@click.option(
    "--broadcast-wait",
    type=click.FloatRange(min=0),
    default=BROADCAST_WAIT,
    show_default=True,
    help="Seconds a broadcast transaction has to show up in the mempool.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be paid; write and send nothing.")
@click.option(
    "--abandon",
    "abandon_id",
    type=int,
    metavar="ID",
    help="Give a conflicted payout's balances back to its miners.",
)
@_json
def payout(
    storage_url: str,
    network: str,
    rpc_url: str | None,
    rpc_user: str | None,
    rpc_password_file: str | None,
    rpc_cookie: str | None,
    wallet_kind: str,
    wallet_url: str | None,
    wallet_name: str | None,
    config_file: str | None,
    threshold_sats: int | None,
    max_outputs: int,
    payout_fee_sats: int,
    fee_rate: int | None,
    confirmations: int,
    broadcast_wait: float,
    dry_run: bool,
    abandon_id: int | None,
    as_json: bool,
) -> None:
    """Pay spendable balances at or above the threshold in one transaction of the node's
    wallet; then drive earlier payouts on (broadcast, confirmations). See docs/accounting.md.

    Run it on a schedule (cron, a timer): each run finishes what earlier runs left (a crash
    anywhere pays nobody twice), then pays who is due. The RPC password may also come from
    $HASHFARM_NODE_RPC_PASSWORD.
    """
    import os

    from hashfarm.cli.pool import node_access
    from hashfarm.node.bcoin import BcoinWallet

    if threshold_sats is None:
        threshold_sats = DEFAULT_THRESHOLD_SATS
        if config_file is not None:
            from hashfarm.pool.config import load_settings

            try:
                threshold_sats = load_settings(
                    config_file=config_file
                ).accounting.payout_threshold_sats
            except HashfarmError as exc:
                raise click.UsageError(str(exc)) from exc
    try:
        policy = PayoutPolicy(threshold_sats, max_outputs, payout_fee_sats)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if wallet_kind == "bcoin" and not wallet_url:
        raise click.UsageError("--wallet bcoin needs --wallet-url (bcoin's wallet server)")
    node = NodeSettings(
        rpc_url=rpc_url,
        rpc_user=rpc_user,
        rpc_password_file=rpc_password_file,
        rpc_password=os.environ.get("HASHFARM_NODE_RPC_PASSWORD"),
        rpc_cookie=rpc_cookie,
    )
    try:
        access = node_access(PoolSettings(network=network, node=node))
    except HashfarmError as exc:
        raise click.UsageError(str(exc)) from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    pause = _pause_hook(os.environ.get(PAUSE_ENV))

    async def go() -> PayoutReport | PayoutPlan | PayoutRecord:
        rpc = RPCClient(
            access.url, user=access.user, password=access.password, cookie_file=access.cookie
        )
        wallet: Any
        if wallet_kind == "bcoin":
            assert wallet_url is not None
            wallet = BcoinWallet(
                wallet_url, access.password or "", wallet_id=wallet_name or "primary"
            )
        else:
            url = wallet_url or (
                access.url.rstrip("/") + f"/wallet/{wallet_name}" if wallet_name else access.url
            )
            wallet = RPCClient(
                url, user=access.user, password=access.password, cookie_file=access.cookie
            )
        store = await open_store(storage_url)
        try:
            service = PayoutService(
                store, rpc, wallet, policy, network,
                confirmations=confirmations, fee_rate=fee_rate, pause=pause,
                broadcast_wait=broadcast_wait,
            )  # fmt: skip
            if dry_run:
                return await service.dry_run()
            if abandon_id is not None:
                return await service.abandon(abandon_id)
            return await service.step()
        finally:
            await store.close()
            await rpc.close()
            await wallet.close()

    try:
        result = asyncio.run(go())
    except (HashfarmError, ValueError) as exc:
        msg = redact_message(redact_message(str(exc), storage_url), access.url)
        raise click.ClickException(msg) from None
    if isinstance(result, PayoutPlan):
        _emit(
            _plan_json(result),
            as_json,
            ["dry run: nothing written, nothing sent", *_plan_lines(result)],
        )
    elif isinstance(result, PayoutRecord):
        click.echo(
            f"payout {result.id} abandoned: {result.total_sats:,} sats back to "
            f"{len(result.items)} accounts"
        )
    else:
        _emit(_report_json(result), as_json, _report_lines(result, storage_url))


def _plan_json(plan: PayoutPlan) -> dict[str, Any]:
    return {
        "items": [
            {"account": i.account, "address": i.address, "debit": i.debit_sats,
             "amount": i.amount_sats}
            for i in plan.items
        ],
        "total_amount": plan.total_amount,
        "total_fee": plan.total_fee,
        "deferred": list(plan.deferred),
        "unpayable": list(plan.unpayable),
    }  # fmt: skip


def _plan_lines(plan: PayoutPlan) -> list[str]:
    lines = [f"{'account':<44} {'balance':>14} {'output':>14}"]
    lines += [f"{i.account:<44} {i.debit_sats:>14,} {i.amount_sats:>14,}" for i in plan.items]
    lines.append(
        f"{len(plan.items)} payments, {plan.total_amount:,} sats in outputs, "
        f"{plan.total_fee:,} sats payout fees"
    )
    if plan.deferred:
        lines.append(f"deferred to the next run (max outputs): {', '.join(plan.deferred)}")
    if plan.unpayable:
        lines.append(f"not paid (the account is no address): {', '.join(plan.unpayable)}")
    return lines


def _report_json(report: PayoutReport) -> dict[str, Any]:
    return {
        "planned": report.planned,
        "signed": report.signed,
        "sent": report.sent,
        "confirmed": report.confirmed,
        "conflicted": report.conflicted,
        "waiting": report.waiting,
        "blocked": report.blocked,
        "plan": None if report.plan is None else _plan_json(report.plan),
    }


def _report_lines(report: PayoutReport, storage_url: str) -> list[str]:
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    lines = []
    if report.planned is not None and report.plan is not None:
        lines.append(f"payout {report.planned} planned:")
        lines += [f"  {ln}" for ln in _plan_lines(report.plan)]
    elif report.blocked:
        lines.append("no new payout: an earlier one is not on the network yet (see below)")
    elif report.plan is not None:
        lines.append("nobody is due a payout")
        lines += [ln for ln in _plan_lines(report.plan)[-2:] if ln.startswith(("deferred", "not"))]
    lines += [f"payout {i} sent (seen on the network)" for i in report.sent]
    lines += [f"payout {i} confirmed" for i in report.confirmed]
    lines += [
        f"payout {i} CONFLICTED: see `accounts payout --abandon {i}`" for i in report.conflicted
    ]
    lines += [f"payout {w}" for w in report.waiting]
    lines.append(f"{when} ledger {redact_url(storage_url)}")
    return lines
