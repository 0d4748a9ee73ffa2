"""`hashfarm pool-bans list|ban IP|lift IP`: the running pool's ban list, over its HTTP API.

The command talks to the pool's admin routes (`GET/POST /api/bans`, `DELETE /api/bans/{ip}`)
with the token from `--token-file` (the same file as the pool's `http.admin_token_file`),
so it works wherever the API is reachable and never touches the pool's process or database.
Standard library HTTP only: the command needs no event loop and starts fast. An unreachable
pool, a refused token or a bad address exits 1 with one line saying which.
"""

from __future__ import annotations

import datetime
import ipaddress
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click
import orjson

DEFAULT_API = "http://127.0.0.1:8080"  # the pool's default http.host and http.port
TIMEOUT = 10.0  # seconds before an API call is given up


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would carry the token to another address."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No proxies from the environment ($http_proxy would see the token) and no redirects.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


class Api:
    """The pool's admin routes at `base`, authorized with `token`."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/")
        self._token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request; return the decoded JSON answer or raise ClickException."""
        data = None if body is None else orjson.dumps(body)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with _OPENER.open(req, timeout=TIMEOUT) as resp:
                return orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise click.ClickException(f"the pool refused ({exc.code}): {_reason(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", exc)
            raise click.ClickException(
                f"cannot reach the pool's API at {self.base}: {why} (is `hashfarm pool` "
                "running there with http.port set?)"
            ) from None
        except orjson.JSONDecodeError:
            raise click.ClickException(
                f"{self.base} did not answer JSON: is it the pool's API?"
            ) from None


def _reason(exc: urllib.error.HTTPError) -> str:
    """The `error` of the pool's JSON answer, or the HTTP reason when it sent none."""
    try:
        doc = orjson.loads(exc.read())
    except (orjson.JSONDecodeError, OSError):
        return str(exc.reason)
    return str(doc.get("error", exc.reason)) if isinstance(doc, dict) else str(exc.reason)


def _ip(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IPv4 or IPv6 address") from None


def _token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(
            f"cannot read {path!r}: {exc}", param_hint="--token-file"
        ) from None
    if not token:
        raise click.BadParameter(f"{path!r} is empty", param_hint="--token-file")
    return token


@click.group("pool-bans")
@click.option("--api", "base", envvar="HASHFARM_API_URL", default=DEFAULT_API,
              show_default=True, metavar="URL", help="The pool's HTTP API.")  # fmt: skip
@click.option("--token-file", envvar="HASHFARM_HTTP_ADMIN_TOKEN_FILE", required=True,
              metavar="FILE", help="File holding the admin token (the pool's "
              "http.admin_token_file).")  # fmt: skip
@click.pass_context
def pool_bans(ctx: click.Context, base: str, token_file: str) -> None:
    """List, add or lift bans on the running pool's Stratum port (needs the admin token)."""
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise click.BadParameter(f"{base!r} is not an http:// or https:// URL", param_hint="--api")
    ctx.obj = Api(base, _token(token_file))


@pool_bans.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON list.")
@click.pass_obj
def list_bans(api: Api, as_json: bool) -> None:
    """Bans in force now: address, reason, and until when."""
    bans = api.call("GET", "/api/bans")
    if as_json:
        click.echo(orjson.dumps(bans, option=orjson.OPT_INDENT_2).decode())
        return
    if not bans:
        click.echo("no bans in force")
        return
    click.echo(f"{'address':<40} {'reason':<17} {'until (UTC)':<20} remaining")
    for ban in bans:
        click.echo(f"{ban['ip']:<40} {ban['reason']:<17} {_utc(ban['until']):<20} "
                   f"{_duration(ban['remaining'])}")  # fmt: skip


@pool_bans.command("ban")
@click.argument("ip", callback=_ip)
@click.option("--seconds", type=click.FloatRange(min=0.0, min_open=True), metavar="S",
              help="How long (default: the pool's bans.seconds).")  # fmt: skip
@click.pass_obj
def ban(api: Api, ip: str, seconds: float | None) -> None:
    """Refuse IP's Stratum connections (and close its open ones) for a while."""
    body: dict[str, Any] = {"ip": ip, "reason": "manual"}
    if seconds is not None:
        body["seconds"] = seconds
    doc = api.call("POST", "/api/bans", body)
    click.echo(f"banned {doc['ip']} until {_utc(doc['until'])} UTC")


@pool_bans.command("lift")
@click.argument("ip", callback=_ip)
@click.pass_obj
def lift(api: Api, ip: str) -> None:
    """End the ban on IP now: it may connect again at once."""
    doc = api.call("DELETE", f"/api/bans/{urllib.parse.quote(ip, safe='')}")
    click.echo(f"lifted the ban on {doc['lifted']}")


def _utc(ts: float | None) -> str:
    if ts is None:  # JSON has no infinity
        return "never"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "forever"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
