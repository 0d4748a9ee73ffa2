"""`hashfarm web passwd --file F [--user NAME]`: add or change an admin login of the dashboard.

The file is what `http.admin_password_file` names: one `user:scrypt$...` line per operator
(`api/auth.py`), written atomically with mode 0600; other users' lines are kept. The password
is asked twice without echo, or read from the first line of stdin with `--password-stdin`
(for scripts); it is never taken as an argument, which `ps` would show. The pool reads the
file at start, so restart it after a change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hashfarm.api.auth import PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS, set_password


@click.group("web")
def web() -> None:
    """The web dashboard's admin logins."""


@web.command("passwd")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The http.admin_password_file to write (created when missing).")  # fmt: skip
@click.option("--user", default="admin", show_default=True, help="Login name (A-Z a-z 0-9 . _ -).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
def passwd(path: Path, user: str, password_stdin: bool) -> None:
    """Set USER's password in FILE (stored as an scrypt hash, never as text)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise click.UsageError(
            f"a password is {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"
        )
    try:
        new = set_password(path, user, password)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
    click.echo(f"{'added' if new else 'changed'} the password of {user} in {path} "
               "(restart the pool to use it)")  # fmt: skip
