"""Load `PoolSettings` from a TOML file < `HASHFARM_*` environment < command-line flags.

Every key has one dotted name (`stratum.port`), used verbatim in the TOML file (as
`[stratum] port = 3333`), upper-cased with `_` for the environment (`HASHFARM_STRATUM_PORT`)
and named in every error. Values are checked against the field's type (and `Literal`
choices) here and against the pool's own rules by `PoolSettings.validate()`, so a bad key or
value stops `hashfarm pool` at start with a message naming it. docs/configuration.md lists
every key. Messages never show a secret: a password key's value is hidden and a URL's
`user:password@` part is shown as `user:***@` (`redact_url`), here and wherever the pool logs
a storage or node URL.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hashfarm.chain.networks import get_network
from hashfarm.errors import ChainError, ConfigError
from hashfarm.pool.settings import PoolSettings
from hashfarm.settings import ENV_PREFIX

CONFIG_ENV = f"{ENV_PREFIX}CONFIG"  # names the TOML file when --config is not given
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    """One setting: its dotted name, its environment variable and its declared type."""

    dotted: str
    env: str
    kind: Any  # the resolved annotation (int, str | None, Literal[...], ...)


def config_keys() -> dict[str, Key]:
    """Every key of PoolSettings by dotted name, with its environment variable and type."""
    keys: dict[str, Key] = {}
    for f, kind in _fields(PoolSettings):
        if dataclasses.is_dataclass(kind):
            for g, sub_kind in _fields(kind):
                keys[f"{f.name}.{g.name}"] = _key(f"{f.name}.{g.name}", sub_kind)
        else:
            keys[f.name] = _key(f.name, kind)
    return keys


def load_settings(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
) -> PoolSettings:
    """Settings from the file (or $HASHFARM_CONFIG), then environment (default: os.environ),
    then flags.

    `flags` maps dotted keys to values already typed by the command line; None means "not
    given". Raises ConfigError naming the first bad key or value.
    """
    environ = os.environ if environ is None else environ
    keys = config_keys()
    values: dict[str, object] = {}
    path = config_file or environ.get(CONFIG_ENV)
    if path:
        values.update(_from_toml(Path(path), keys))
    values.update(_from_env(environ, keys))
    values.update(
        {k: _typed(keys[k], v, "flag") for k, v in (flags or {}).items() if v is not None}
    )
    settings = _build(values)
    _check_network(settings.network)
    return settings.validate()


def redact_url(url: str) -> str:
    """`url` with the password in its `user:password@` part replaced by `***`."""
    span = _password_span(url)
    return url if span is None else f"{url[: span[0]]}***{url[span[1] :]}"


def redact_message(text: str, url: str) -> str:
    """A driver's error `text` about `url` on one line, with the URL's password (as written
    and percent-decoded) replaced by `***` wherever the driver echoed it."""
    from urllib.parse import unquote

    span = _password_span(url)
    if span is not None and span[1] > span[0]:
        secret = url[span[0] : span[1]]
        for shown in sorted({secret, unquote(secret)}, key=len, reverse=True):
            text = text.replace(shown, "***")
    return " ".join(text.split())


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the password of `user:password@` lies in `url`, or None. It ends at the last
    "@", so an unescaped "@" or "/" in it is hidden too; in a mistyped URL with no "://"
    (`postgres:/u:pw@h`) all from the first ":" counts. Hiding too much is the safe side."""
    at = url.rfind("@")
    if at < 0:
        return None
    scheme = _SCHEME.match(url)
    colon = url.find(":", scheme.end() if scheme else 0, at)
    return None if colon < 0 else (colon + 1, at)


def _fields(cls: Any) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _key(dotted: str, kind: Any) -> Key:
    return Key(dotted, ENV_PREFIX + dotted.replace(".", "_").upper(), kind)


def _from_toml(path: Path, keys: Mapping[str, Key]) -> dict[str, object]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    out: dict[str, object] = {}
    for dotted, value in _flatten(data):
        if dotted not in keys:
            raise ConfigError(f"unknown setting {dotted} in {path}{_did_you_mean(dotted, keys)}")
        out[dotted] = _typed(keys[dotted], value, str(path))
    return out


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for name, value in data.items():
        if isinstance(value, dict):
            items.extend(_flatten(value, f"{prefix}{name}."))
        else:
            items.append((prefix + name, value))
    return items


def _from_env(environ: Mapping[str, str], keys: Mapping[str, Key]) -> dict[str, object]:
    by_env = {k.env: k for k in keys.values()}
    # Other hashfarm tools read HASHFARM_* too, so only a variable that names one of the pool's
    # sections (HASHFARM_STRATUM_PROT) can be recognised as a typo of ours.
    sections = {k.dotted.split(".")[0].upper() for k in keys.values() if "." in k.dotted}
    out: dict[str, object] = {}
    for name, raw in environ.items():
        key = by_env.get(name)
        if key is not None:
            out[key.dotted] = _typed(key, raw, f"${name}")
        elif name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX) :].split("_")[0] in sections:
            raise ConfigError(f"unknown setting in environment: {name}")
    return out


def _typed(key: Key, value: object, source: str) -> object:
    """`value` converted to the key's type (strings from the environment are parsed)."""
    try:
        return _convert(key.kind, value)
    except (TypeError, ValueError) as exc:
        shown = _shown(key, value)
        raise ConfigError(f"invalid setting {key.dotted} from {source}: {shown} ({exc})") from exc


def _shown(key: Key, value: object) -> str:
    """The value as an error message may show it: never a password."""
    if key.dotted.endswith("password"):
        return "(hidden)"
    return repr(redact_url(value)) if isinstance(value, str) else repr(value)


def _convert(kind: Any, value: object) -> object:
    args = typing.get_args(kind)
    if typing.get_origin(kind) is typing.Literal:
        if value not in args:
            raise ValueError("expected one of " + ", ".join(map(repr, args)))
        return value
    if isinstance(kind, types.UnionType):  # X | None: "" or "none" from the environment unset it
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        return _convert(next(a for a in args if a is not type(None)), value)
    return _scalar(kind, value)


def _scalar(kind: Any, value: object) -> object:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE and isinstance(value, str):
            return text in _TRUE
        raise ValueError("expected true or false")
    if kind is int:
        if isinstance(value, str):
            return _parse(int, value.strip(), "an integer")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError("expected an integer")
    if kind is float:
        if isinstance(value, str):
            return _parse(float, value, "a number")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise TypeError("expected a number")
    if kind is str and isinstance(value, str):
        return value
    raise TypeError(f"expected {getattr(kind, '__name__', kind)}")


def _parse(kind: type[int] | type[float], text: str, what: str) -> object:
    try:
        return int(text, 0) if kind is int else float(text)  # int: 0x1fffe000 works for masks
    except ValueError:
        raise ValueError(f"expected {what}") from None


def _build(values: Mapping[str, object]) -> PoolSettings:
    top = {k: v for k, v in values.items() if "." not in k}
    nested: dict[str, dict[str, object]] = {}
    for dotted, value in values.items():
        if "." in dotted:
            section, name = dotted.split(".", 1)
            nested.setdefault(section, {})[name] = value
    defaults = PoolSettings()
    for section, changes in nested.items():
        top[section] = dataclasses.replace(getattr(defaults, section), **changes)
    return dataclasses.replace(defaults, **top)  # type: ignore[arg-type]


def _check_network(name: str) -> None:
    try:
        get_network(name)
    except ChainError as exc:
        raise ConfigError(f"invalid setting network: {exc}") from exc


def _did_you_mean(dotted: str, keys: Mapping[str, Key]) -> str:
    import difflib

    close = difflib.get_close_matches(dotted, list(keys), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
