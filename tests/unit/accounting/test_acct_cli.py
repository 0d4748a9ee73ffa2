"""`hashfarm accounts list|show|statement` over a ledger the service credited."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import Prop
from hashfarm.accounting.service import CreditingService
from hashfarm.accounting.store import open_store
from hashfarm.cli.main import cli
from hashfarm.pool.storage.sqlite import SQLiteLedger
from unit.accounting.acct_pool import PoolHistory, ScriptedChain, block_hash

REWARD = 1_000_000_001


async def _credited_ledger(path: Path) -> str:
    """Alice 2/3 and bob 1/3 of a PROP round (block 100); block 101 orphaned."""
    ledger = SQLiteLedger(path)
    await ledger.start()
    pool = PoolHistory(ledger)
    chain = ScriptedChain()
    await pool.share("alice", 2.0)
    kept = await pool.block("bob", 1.0, block_hash(1), chain.tip + 1, REWARD)
    chain.place(kept.hash_hex)
    lost = await pool.block("alice", 1.0, block_hash(2), chain.tip + 1, REWARD)
    chain.place(lost.hash_hex)
    await ledger.close()
    url = f"sqlite:///{path}"
    store = await open_store(url)
    service = CreditingService(store, chain, Prop(Fee.bps(100)))
    await service.step()
    chain.reorg(lost.height)
    chain.extend(100)
    await service.step()
    await store.close()
    return url


async def test_list_show_and_statements(tmp_path: Path) -> None:
    url = await _credited_ledger(tmp_path / "pool.sqlite3")
    net = REWARD - Fee.bps(100).of(REWARD)
    alice = net * 2 // 3 + 1  # 660,000,000.67: the odd satoshi goes to the larger remainder
    run = CliRunner().invoke
    listed = run(cli, ["accounts", "list", "--storage-url", url, "--json"])
    assert listed.exit_code == 0, listed.output
    assert orjson.loads(listed.output) == [
        {"account": "alice", "spendable": alice, "immature": 0},
        {"account": "bob", "spendable": net - alice, "immature": 0},
    ]
    shown = run(cli, ["accounts", "show", "alice", "--storage-url", url])
    assert f"{alice:,} sats spendable, 0 immature" in shown.output
    by_block = run(cli, ["accounts", "statement", "alice", "--storage-url", url])
    assert "66.67% of the round of block 100 (prop)" in by_block.output
    assert "finder of block 101" not in by_block.output  # PROP: alice had the whole round
    assert "100% of the round of block 101 (prop)  (reversed: the block left the chain)" in (
        by_block.output
    )
    by_day = run(cli, ["accounts", "statement", "alice", "--day", "--storage-url", url, "--json"])
    days = orjson.loads(by_day.output)
    assert sum(d["earned"] for d in days) == alice + net  # both blocks were posted...
    assert sum(d["reversed"] for d in days) == net  # ...the orphan taken back
    assert sum(d["matured"] for d in days) == alice


def test_refusals_are_one_line(tmp_path: Path) -> None:
    run = CliRunner().invoke
    missing = run(cli, ["accounts", "list", "--storage-url", f"sqlite:///{tmp_path}/no.db"])
    assert missing.exit_code == 1
    assert "no ledger database" in missing.output
    both = run(cli, ["accounts", "statement", "a", "--day", "--block"])
    assert both.exit_code == 2
    assert "not both" in both.output
    unknown = run(cli, ["accounts", "credit", "--scheme", "pps-plus"])
    assert unknown.exit_code == 2


def test_postgres_url_without_the_extra_is_one_line_naming_it() -> None:
    """As a light install: psycopg refused by an import hook, as tests/unit/test_optional_extras."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import sys

        class NotInstalled:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in ("psycopg", "psycopg_binary"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NotInstalled())
        from hashfarm.cli.main import main
        sys.argv[0] = "hashfarm"
        main()
        """
    )
    url = "postgresql://hf:s3cret@127.0.0.1:9/hf"
    done = subprocess.run(
        [sys.executable, "-c", code, "accounts", "list", "--storage-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "Error: a PostgreSQL ledger needs psycopg, which is not installed: "
        "pip install 'hashfarm[postgres]'"
    )
