"""The `hashfarm` command: one click group; each subcommand lives in its own module."""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute"; imported lazily so `hashfarm calc` never pays for numba or zmq.
SUBCOMMANDS: dict[str, str] = {
    "block": "hashfarm.cli.block:block",
    "calc": "hashfarm.cli.calc:calc",
    "miner": "hashfarm.cli.miner:miner",
    "bench": "hashfarm.cli.bench:bench",
    "pool": "hashfarm.cli.pool:pool",
    "pool-bans": "hashfarm.cli.bans:pool_bans",
    "web": "hashfarm.cli.web:web",
    "accounts": "hashfarm.cli.accounts:accounts",
    "customer": "hashfarm.cli.hosting:customer",
    "contract": "hashfarm.cli.hosting:contract",
    "meter": "hashfarm.cli.hosting:meter",
    "bill": "hashfarm.cli.bill:bill",
    "farm": "hashfarm.cli.farm:farm",
    "demo": "hashfarm.cli.demo:demo",
    "fleet": "hashfarm.cli.fleet:fleet",
    "proxy": "hashfarm.cli.proxy:proxy",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in SUBCOMMANDS if self._load(n) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # not written yet; hide it
                return None
            raise
        command: click.Command = getattr(module, attr)
        return command


@click.group(cls=LazyGroup)
@click.version_option(package_name="hashfarm")
def cli() -> None:
    """hashfarm: a Bitcoin mining stack (pool, miner, farm manager, payback calculator)."""


def main() -> None:
    """Console-script entry point."""
    cli()
