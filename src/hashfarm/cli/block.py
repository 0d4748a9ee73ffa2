"""`hashfarm block inspect FILE|HEX`: decode a block and run the checks a node would.

For pool operators debugging a rejected block: it prints the height, hash, PoW, merkle and
witness-commitment verdicts (named by Bitcoin Core's reject reasons) and the coinbase outputs.
Exit status: 0 every check passed, 1 some check failed, 2 the input is not a readable block.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from hashfarm.chain import (
    HEADER_SIZE,
    Block,
    Network,
    bits_to_difficulty,
    block_subsidy,
    check_block,
    classify_script,
    get_network,
    script_to_address,
)
from hashfarm.errors import ChainError, DecodeError
from hashfarm.units import sats_to_btc

_HEX_DIGITS = frozenset(string.hexdigits)


def _hex_to_bytes(text: str, source: str) -> bytes:
    cleaned = "".join(text.split())
    if cleaned.startswith(("0x", "0X")):
        cleaned = cleaned[2:]
    bad = next((c for c in cleaned if c not in _HEX_DIGITS), None)
    if bad is not None or len(cleaned) % 2:
        why = f"character {bad!r}" if bad is not None else "an odd number of digits"
        raise click.BadParameter(f"{source} is not valid hex ({why})", param_hint="FILE|HEX")
    return bytes.fromhex(cleaned)


def _read_input(arg: str) -> bytes:
    """Raw bytes from a file (binary or hex text) or from a hex argument."""
    looks_hex = bool(arg) and set(arg) <= _HEX_DIGITS
    if looks_hex and len(arg) >= 2 * HEADER_SIZE:  # too long to be a file name anyway
        return _hex_to_bytes(arg, "the argument")
    path = Path(arg)
    try:
        is_file = path.is_file()
    except OSError:  # e.g. a name too long for the file system
        is_file = False
    if is_file:
        return _file_bytes(path)
    if looks_hex:
        return _hex_to_bytes(arg, "the argument")
    raise click.BadParameter(f"{arg!r} is neither a readable file nor hex", param_hint="FILE|HEX")


def _file_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:  # no permission, an I/O error, a special file
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return data  # a binary block
    compact = "".join(text.split())
    if compact and set(compact) <= _HEX_DIGITS:  # hex text, e.g. saved `getblock HASH 0`
        return _hex_to_bytes(compact, f"file {path}")
    return data


def _outputs(block: Block, network: Network) -> list[dict[str, Any]]:
    rows = []
    for index, out in enumerate(block.coinbase.outputs):
        rows.append(
            {
                "index": index,
                "type": classify_script(out.script_pubkey),
                "address": script_to_address(out.script_pubkey, network),
                "value_sats": out.value,
                "script_hex": out.script_pubkey.hex(),
            }
        )
    return rows


def inspect_report(block: Block, network: Network) -> dict[str, Any]:
    """Everything `inspect` shows, as plain JSON-ready data."""
    checks = check_block(block, network)
    height: int | None
    try:
        height = block.height_from_coinbase()
    except DecodeError:
        height = None
    subsidy = block_subsidy(height, network) if height is not None else None
    verdict = {c.reason: c.passed for c in checks}
    return {
        "network": network.name,
        "height": height,
        "hash": block.hash_hex(),
        "prev_hash": block.header.prev_hash[::-1].hex(),
        "version": block.header.version,
        "time": block.header.time,
        "bits": f"{block.header.bits:08x}",
        "difficulty": bits_to_difficulty(block.header.bits),
        "nonce": block.header.nonce,
        "tx_count": len(block.transactions),
        "size": len(block.serialize()),
        "weight": block.weight(),
        "pow_valid": verdict["high-hash"],
        "merkle_valid": verdict["bad-txnmrklroot"],
        "witness_commitment_valid": _witness_verdict(verdict),
        "subsidy_sats": subsidy,
        "coinbase_total_sats": block.coinbase.total_out(),
        "coinbase_outputs": _outputs(block, network),
        "checks": [{"reason": c.reason, "passed": c.passed, "detail": c.detail} for c in checks],
    }


def _witness_verdict(verdict: dict[str, bool | None]) -> bool | None:
    for reason in ("bad-witness-merkle-match", "bad-witness-nonce-size"):
        if reason in verdict:
            return verdict[reason]
    return verdict.get("unexpected-witness")


def _mark(value: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[bold red]NO[/]", None: "[dim]n/a[/]"}[value]


def _render(report: dict[str, Any], console: Console) -> None:
    summary = Table(title=f"block {report['hash']}", show_header=False)
    summary.add_column("field", style="bold")
    summary.add_column("value", overflow="fold")
    summary.add_row("network", report["network"])
    summary.add_row("height", str(report["height"]))
    summary.add_row("hash", report["hash"])
    summary.add_row("prev hash", report["prev_hash"])
    summary.add_row("bits / difficulty", f"{report['bits']} / {report['difficulty']:,.2f}")
    summary.add_row("txs / size / weight", f"{report['tx_count']} / {report['size']} / "
                    f"{report['weight']}")  # fmt: skip
    summary.add_row("PoW valid", _mark(report["pow_valid"]))
    summary.add_row("merkle valid", _mark(report["merkle_valid"]))
    summary.add_row("witness commitment valid", _mark(report["witness_commitment_valid"]))
    console.print(summary)
    console.print(_checks_table(report))
    console.print(_outputs_table(report))


def _checks_table(report: dict[str, Any]) -> Table:
    table = Table(title="checks (Bitcoin Core reject reasons)")
    for name in ("reason", "ok", "detail"):
        table.add_column(name, overflow="fold")
    for check in report["checks"]:
        table.add_row(check["reason"], _mark(check["passed"]), check["detail"])
    return table


def _outputs_table(report: dict[str, Any]) -> Table:
    subsidy = report["subsidy_sats"]
    caption = f"total {sats_to_btc(report['coinbase_total_sats']):.8f} BTC" + (
        f", subsidy {sats_to_btc(subsidy):.8f} BTC" if subsidy is not None else ""
    )
    table = Table(title="coinbase outputs", caption=caption)
    for name, justify in (("#", "right"), ("type", "left"), ("address", "left"), ("BTC", "right")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for out in report["coinbase_outputs"]:
        where = out["address"] or f"[dim]{out['script_hex'][:40]}[/]"
        table.add_row(
            str(out["index"]), out["type"], where, f"{sats_to_btc(out['value_sats']):.8f}"
        )
    return table


@click.group("block")
def block() -> None:
    """Decode and check blocks."""


@block.command("inspect")
@click.argument("source", metavar="FILE|HEX")
@click.option(
    "--network",
    default="mainnet",
    show_default=True,
    help="mainnet, testnet, testnet4, signet, regtest or regtest-bcoin.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for machines.")
def inspect(source: str, network: str, as_json: bool) -> None:  # fmt: skip
    """Decode a block (raw file, hex file or hex) and check it as a node would.

    Exit status: 0 every check passed, 1 a check failed, 2 unreadable input.
    """
    try:
        net = get_network(network)
    except ChainError as exc:
        raise click.BadParameter(str(exc), param_hint="--network") from None
    raw = _read_input(source)
    try:
        parsed = Block.parse(raw)
    except DecodeError as exc:
        raise click.UsageError(f"not a valid block ({len(raw)} bytes): {exc}") from None
    report = inspect_report(parsed, net)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _render(report, Console())
    if any(check["passed"] is False for check in report["checks"]):
        raise SystemExit(1)
