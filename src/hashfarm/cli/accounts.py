"""`hashfarm accounts list|show|statement|credit`: the pool's books, read and credited.

The commands open the database the pool writes (`--storage-url`, the pool's default SQLite
file unless told) and read the accounting ledger there (`hashfarm.accounting.statements`);
`credit` runs the crediting service (`hashfarm.accounting.service`) against it and the node,
once (`--once`) or until SIGINT/SIGTERM. Amounts are satoshis. A missing database, a bad URL
or an unreachable node exits 1 with one line saying which (passwords never shown).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
from fractions import Fraction
from typing import Any

import click
import orjson

from hashfarm.accounting.crediting import CustodialScheme
from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import Pplns, Prop, Solo
from hashfarm.accounting.service import CreditingService, StepReport
from hashfarm.accounting.statements import account_list, block_lines, day_lines, summary
from hashfarm.accounting.store import SqlStore, connect, open_store
from hashfarm.errors import HashfarmError
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.config import redact_message, redact_url
from hashfarm.pool.settings import NodeSettings, PoolSettings, StorageSettings

DEFAULT_STORAGE_URL = StorageSettings().url  # the pool's default ledger

_storage = click.option(
    "--storage-url",
    default=DEFAULT_STORAGE_URL,
    show_default=True,
    metavar="URL",
    help="The pool's ledger: sqlite:///PATH or postgresql://...",
)
_json = click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")


@click.group("accounts")
def accounts() -> None:
    """The pool's accounting ledger: balances, statements, crediting found blocks."""


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
    finally:
        sql.close()
    out = {
        "account": account,
        "spendable": s.spendable,
        "immature": s.immature,
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
    _emit(out, as_json, lines)


@accounts.command("statement")
@click.argument("account")
@click.option("--day", "by_day", is_flag=True, help="One line per UTC day.")
@click.option("--block", "by_block", is_flag=True, help="One line per block (the default).")
@_storage
@_json
def statement(account: str, by_day: bool, by_block: bool, storage_url: str, as_json: bool) -> None:
    """What the account was credited, per block (explained) or per day."""
    if by_day and by_block:
        raise click.UsageError("choose --day or --block, not both")
    sql = _open(storage_url)
    try:
        if by_day:
            days = day_lines(sql, account)
            out: Any = [
                {"day": d.day, "earned": d.earned, "reversed": d.reversed, "matured": d.matured}
                for d in days
            ]
            lines = [f"{'day (UTC)':<12} {'earned':>14} {'reversed':>14} {'matured':>14}"]
            lines += [
                f"{d.day:<12} {d.earned:>14,} {d.reversed:>14,} {d.matured:>14,}" for d in days
            ]
        else:
            blocks = block_lines(sql, account)
            out = [
                {
                    "height": b.height,
                    "block": b.block_hash,
                    "scheme": b.scheme,
                    "state": b.state,
                    "sats": b.sats,
                    "part": str(b.part),
                    "explanation": b.explanation,
                }
                for b in blocks
            ]
            lines = [f"{'height':>9} {'state':<9} {'sats':>14}  why"]
            lines += [
                f"{b.height:>9,} {b.state:<9} {b.sats:>14,}  {b.explanation}"
                + ("  (reversed: the block left the chain)" if b.state == "orphaned" else "")
                for b in blocks
            ]
    finally:
        sql.close()
    if not out and not as_json:
        lines.append(f"(nothing credited to {account})")
    _emit(out, as_json, lines)


@accounts.command("credit")
@_storage
@click.option("--network", default="regtest", show_default=True, help="For the node's defaults.")
@click.option("--rpc-url", metavar="URL", help="The node's JSON-RPC URL [Core's for --network].")
@click.option("--rpc-user", metavar="U", help="RPC user name.")
@click.option("--rpc-password-file", metavar="FILE", help="File holding the RPC password.")
@click.option("--rpc-cookie", metavar="FILE", help="Bitcoin Core's .cookie file.")
@click.option("--scheme", type=click.Choice(["pplns", "prop", "solo"]), required=True)
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
    poll_interval: float,
    once: bool,
) -> None:
    """Credit found blocks from the pool's ledger, following the node (see docs/accounting.md).

    The RPC password may also come from $HASHFARM_NODE_RPC_PASSWORD.
    """
    import os

    from hashfarm.cli.pool import node_access  # the pool's rules for the node's credentials

    fee = Fee.bps(fee_bps)
    chosen: CustodialScheme = Solo(fee)
    if scheme == "prop":
        chosen = Prop(fee)
    elif scheme == "pplns":  # nearest fraction, denominator <= 10^6 (2.5 -> 5/2)
        chosen = Pplns(fee, Fraction(pplns_factor).limit_denominator(1_000_000))
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
            service = CreditingService(store, rpc, chosen, poll_interval=poll_interval)
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
            f"(reversed {report.reversed}), waiting {len(report.waiting)}; "
            f"ledger {redact_url(storage_url)}"
        )
