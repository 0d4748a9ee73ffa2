"""The fleet service's settings: one frozen `FleetSettings`, loaded from a TOML file <
`HASHFARM_FLEET_*` environment < command-line flags (the project's loader order).

Every key has one dotted name, written as a TOML table key in the fleet's own file (the pool's
file is the pool's), upper-cased with `_` for the environment, and named in every error:

    store = "sqlite:///hashfarm-fleet.db"    # fleet.store          HASHFARM_FLEET_STORE
    webhook_url = ""                         # fleet.webhook_url    (empty: no webhook)
    [scan]       ScanSettings: connect_timeout_s, probe_timeout_s, host_timeout_s, ...
    [poll]       PollSettings: interval_s, timeout_s, concurrency, backoff_rounds_max, ...
    [alerts]     AlertPolicy: raise_after, clear_after, repage_s, immediate = ["overheating"]
    [retention]  Retention: raw_s, five_min_s, hourly_s, alerts_s
    [faults]     FaultThresholds: chip_temp_max_c, fan_min_rpm, hashrate_min_ratio, ...

e.g. `[poll] interval_s = 60` is `HASHFARM_FLEET_POLL_INTERVAL_S=60`. Each part keeps its own
range checks (they raise ConfigError naming `fleet.<part>.<key>`); an unknown key or a value
of the wrong type is refused here, naming the key and where it came from.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hashfarm.errors import ConfigError
from hashfarm.fleet.alerts import ERROR_KINDS, AlertPolicy
from hashfarm.fleet.faults import FaultKind, FaultThresholds
from hashfarm.fleet.poller import PollSettings
from hashfarm.fleet.scan import ScanSettings
from hashfarm.fleet.store import Retention
from hashfarm.settings import ENV_PREFIX

__all__ = ["FleetSettings", "fleet_keys", "load_fleet_settings"]

ENV = f"{ENV_PREFIX}FLEET_"


@dataclasses.dataclass(frozen=True, slots=True)
class FleetSettings:
    """Everything `hashfarm fleet watch` runs with."""

    store: str = "sqlite:///hashfarm-fleet.db"  # fleet store URL (sqlite:/// or postgresql://)
    webhook_url: str = ""  # POST alerts here (empty: no webhook)
    scan: ScanSettings = dataclasses.field(default_factory=ScanSettings)
    poll: PollSettings = dataclasses.field(default_factory=PollSettings)
    alerts: AlertPolicy = dataclasses.field(default_factory=AlertPolicy)
    retention: Retention = dataclasses.field(default_factory=Retention)
    faults: FaultThresholds = dataclasses.field(default_factory=FaultThresholds)


_KINDS = frozenset(str(k) for k in FaultKind) | frozenset(ERROR_KINDS)


def fleet_keys() -> dict[str, Any]:
    """Every dotted key (`poll.interval_s`) with its type."""
    keys: dict[str, Any] = {}
    for f, kind in _fields(FleetSettings):
        if dataclasses.is_dataclass(kind):
            keys.update({f"{f.name}.{g.name}": k for g, k in _fields(kind)})
        else:
            keys[f.name] = kind
    return keys


def _fields(cls: Any) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _typed(key: str, kind: Any, value: object, where: str) -> object:
    """`value` (TOML-typed, or text from the environment) as `kind`, or ConfigError."""
    name = getattr(kind, "__name__", "list of kinds")
    bad = ConfigError(f"fleet.{key}: {value!r} from {where} is not a {name}")
    if kind is bool or isinstance(value, bool):
        raise bad
    if kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise bad
    if kind is float:
        try:
            return float(value) if isinstance(value, int | float | str) else _raise(bad)
        except ValueError:
            raise bad from None
    if kind is str:
        return value if isinstance(value, str) else _raise(bad)
    # frozenset[str]: alert kinds, a TOML list or comma-separated text
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise bad
    kinds = frozenset(i.strip() for i in items if i.strip())
    unknown = sorted(kinds - _KINDS)
    if unknown:
        raise ConfigError(f"fleet.{key}: unknown kind {unknown[0]!r} from {where}; "
                          f"known: {', '.join(sorted(_KINDS))}")  # fmt: skip
    return kinds


def _raise(exc: Exception) -> typing.NoReturn:
    raise exc


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, value in data.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", value))
    return out


def load_fleet_settings(
    config_file: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
) -> FleetSettings:
    """Settings from `config_file`, then `HASHFARM_FLEET_*` (default: os.environ), then
    `flags` (dotted key -> value; None means not given). ConfigError names the bad key."""
    keys = fleet_keys()
    values: dict[str, object] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read fleet config {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"fleet config {path} is not valid TOML: {exc}") from exc
        for key, value in _flatten(data):
            if key not in keys:
                raise ConfigError(f"unknown setting fleet.{key} in {path}")
            values[key] = _typed(key, keys[key], value, str(path))
    environ = os.environ if environ is None else environ
    env_names = {ENV + k.replace(".", "_").upper(): k for k in keys}
    for name, text in environ.items():
        if name.startswith(ENV):
            if name not in env_names:
                raise ConfigError(f"unknown setting {name} in the environment")
            values[env_names[name]] = _typed(env_names[name], keys[env_names[name]], text, name)
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = _typed(key, keys[key], value, "the command line")
    return _build(values)


def _build(values: Mapping[str, object]) -> FleetSettings:
    top = {k: v for k, v in values.items() if "." not in k}
    parts: dict[str, object] = {}
    for f, kind in _fields(FleetSettings):
        if dataclasses.is_dataclass(kind):
            mine = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(f"{f.name}.")}
            parts[f.name] = kind(**mine)  # type: ignore[operator]  # its own range checks
    return FleetSettings(**top, **parts)  # type: ignore[arg-type]
