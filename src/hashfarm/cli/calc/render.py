"""What a `hashfarm calc` command prints, and how: Rich tables, `--json` or `--csv`.

A command body returns one `Output`; the `command` decorator parses `--fx`, turns hashfarm
errors into clean CLI errors and hands the Output to `emit`.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import sys
from collections.abc import Callable
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from hashfarm.economics import report
from hashfarm.economics.hashprice import Currency
from hashfarm.errors import HashfarmError

__all__ = ["F", "Output", "command", "emit"]

F = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Output:
    """What a command prints: a titled summary and optional rows."""

    title: str
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    rows_title: str = ""


def emit(out: Output, fmt: str, currency: str) -> None:
    """Print `out` as Rich tables, JSON or CSV."""
    if fmt == "json":
        doc = {k: report.plain(v, k) for k, v in out.summary.items()}
        if out.rows:
            doc["rows"] = [{k: report.plain(v, k) for k, v in row.items()} for row in out.rows]
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "csv":
        rows = out.rows or [{"key": k, "value": report.plain(v, k)} for k, v in out.summary.items()]
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: report.plain(v, k) for k, v in row.items()} for row in rows)
    else:
        console = Console(width=None if sys.stdout.isatty() else 200)  # pipes: no wrapping
        table = Table(title=out.title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(justify="right")
        for key, value in out.summary.items():
            table.add_row(report.label(key, currency), report.format_value(key, value))
        console.print(table)
        if out.rows:
            grid = Table(title=out.rows_title, title_justify="left")
            for key in out.rows[0]:
                grid.add_column(report.label(key, currency), justify="right")
            for row in out.rows:
                grid.add_row(*(report.format_value(k, v) for k, v in row.items()))
            console.print(grid)


def command(f: F) -> F:
    """Run a command body, turning hashfarm errors into clean CLI errors, then print."""

    @functools.wraps(f)
    def wrapper(**kw: Any) -> None:
        try:
            currency = Currency.parse(kw.pop("fx", "USD"))
            fmt = kw.get("fmt") or "table"
            out = f(currency=currency, **kw)
        except HashfarmError as exc:
            raise click.ClickException(str(exc)) from exc
        emit(out, fmt, currency.code)

    return wrapper
