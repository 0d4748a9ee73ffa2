"""A light install (`pip install hashfarm`, no extras) imports and runs; asking for an extra's
feature without it gives one clear line naming the extra, never an ImportError traceback.

Each test runs hashfarm in a fresh interpreter with an import hook that refuses the optional
libraries, as if they had never been installed (they are, for the rest of the suite).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from realdata import REPO_DIR

# Top-level modules of the optional extras (numba pulls llvmlite) and of the codec we dropped.
OPTIONAL = ("matplotlib", "psycopg", "psycopg_binary", "numba", "llvmlite", "base58_bech32")

BLOCKER = textwrap.dedent(
    """
    import sys

    BLOCKED = set(sys.argv.pop(1).split(","))

    class NotInstalled:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    """
)


def _run(
    code: str, *args: str, blocked: tuple[str, ...] = OPTIONAL
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code), ",".join(blocked), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`hashfarm ARGS` without the optional libraries."""
    return _run("from hashfarm.cli.main import main\nsys.argv[0] = 'hashfarm'\nmain()\n", *args)


def test_the_heavy_libraries_are_extras_and_dev_has_them_all() -> None:
    project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]
    base = {Requirement(r).name for r in project["dependencies"]}
    extras = {
        k: {Requirement(r).name for r in v} for k, v in project["optional-dependencies"].items()
    }
    assert not base & {"matplotlib", "psycopg", "numba", "base58-bech32"}, base
    assert extras["plot"] == {"matplotlib"}
    assert extras["postgres"] == {"psycopg"}
    assert extras["numba"] == {"numba"}
    assert extras["plot"] | extras["postgres"] | extras["numba"] <= extras["dev"]  # make test


def test_the_blocker_really_blocks() -> None:
    """Guard for the tests below: with the hook, the libraries are not importable."""
    done = _run("import matplotlib\n")
    assert done.returncode == 1
    assert "ModuleNotFoundError: No module named 'matplotlib'" in done.stderr


def test_pool_miner_and_cli_import_without_the_extras() -> None:
    done = _run(
        """
        import hashfarm.pool.service, hashfarm.cli.main, hashfarm.cli.pool, hashfarm.cli.calc
        import hashfarm.cli.miner, hashfarm.cli.bench, hashfarm.cli.block, hashfarm.api.server
        import hashfarm.miner.backends, hashfarm.pool.storage, hashfarm.economics.montecarlo
        from hashfarm.chain import address_to_script
        address_to_script("bc1p83n3au0rjylefxq2nc2xh2y4jzz4pm6zxj4mw5pagdjjr2a9f36s6jjnnu")
        loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
        print("loaded:", loaded)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout


def test_help_lists_every_command_without_the_extras() -> None:
    done = _cli("--help")
    assert done.returncode == 0, done.stderr
    for command in ("block", "calc", "miner", "bench", "pool"):
        assert f"  {command} " in done.stdout, done.stdout


def _one_clear_line(done: subprocess.CompletedProcess[str], extra: str) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = [
        line for line in done.stderr.splitlines() if f"pip install 'hashfarm[{extra}]'" in line
    ]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_calc_plot_names_the_plot_extra(tmp_path: Path) -> None:
    png = tmp_path / "payback.png"
    done = _cli("calc", "payback", "S21", "--difficulty", "1.2e14", "--height", "1000000",
                "--price", "90000", "--machine-price", "1000", "--power-price", "0.04",
                "--plot", str(png))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    line = _one_clear_line(done, "plot")
    assert (
        line
        == "Error: --plot needs matplotlib, which is not installed: pip install 'hashfarm[plot]'"
    )
    assert not png.exists()
    without_plot = _cli("calc", "payback", "S21", "--difficulty", "1.2e14", "--height",
                        "1000000", "--price", "90000", "--machine-price", "1000",
                        "--power-price", "0.04", "--json")  # fmt: skip
    assert without_plot.returncode == 0, without_plot.stderr  # the rest of calc is unaffected


def test_postgres_ledger_url_names_the_postgres_extra(tmp_path: Path) -> None:
    """The pool exits 1 with one log line; the URL's password is not in it."""
    url = "postgresql://hf:s3cret@127.0.0.1:9/hf"
    done = _cli("pool", "--network", "regtest", "--db", url, "--rpc-url", "http://127.0.0.1:9",
                "--stratum-port", "0", "--http-port", "0")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    line = _one_clear_line(done, "postgres")
    assert "storage.url: a PostgreSQL ledger needs psycopg, which is not installed" in line
    assert "s3cret" not in done.stderr


def test_sqlite_pool_ledger_opens_without_the_postgres_extra(tmp_path: Path) -> None:
    done = _run(
        """
        import asyncio
        from hashfarm.pool.settings import StorageSettings
        from hashfarm.pool.storage import open_ledger

        async def main():
            ledger = await open_ledger(StorageSettings(url="sqlite:///" + sys.argv[1]))
            await ledger.close()
            print("sqlite ok")

        asyncio.run(main())
        """,
        str(tmp_path / "shares.sqlite3"),
    )
    assert done.returncode == 0, done.stderr
    assert "sqlite ok" in done.stdout


@pytest.mark.parametrize("command", [("bench", "--backend", "numba", "--seconds", "0.1")])
def test_numba_backend_names_the_numba_extra(command: tuple[str, ...]) -> None:
    done = _cli(*command)
    assert done.returncode == 2, done.stdout + done.stderr  # click's usage error
    line = _one_clear_line(done, "numba")
    assert "backend: 'numba' needs numba, which is not installed" in line
    hashlib_still_works = _cli("bench", "--backend", "hashlib", "--seconds", "0.1", "--json")
    assert hashlib_still_works.returncode == 0, hashlib_still_works.stderr


def test_get_backend_names_the_extra() -> None:
    done = _run(
        """
        from hashfarm.errors import ConfigError
        from hashfarm.miner.backends import get_backend
        try:
            get_backend("numba")
        except ConfigError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "backend: 'numba' needs numba, which is not installed: pip install 'hashfarm[numba]'"
    )
