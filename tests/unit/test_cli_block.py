"""`hashfarm block inspect`: through click's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hashfarm.chain import REGTEST, Block, address_to_script
from hashfarm.cli.block import block
from nodes import coinbase_only_block
from realdata import BLOCKS_DIR, REPO_DIR, load_block_bytes

SMALL = "mainnet-482683"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(block, ["inspect", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_json_report_of_a_real_block() -> None:
    code, out = _run(str(BLOCKS_DIR / f"{SMALL}.raw"), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["height"] == 482683
    assert report["hash"] == "000000000000000000c238240ef6dcb26c37e75e16514e6ffc0aef7eee73e747"
    assert (report["pow_valid"], report["merkle_valid"]) == (True, True)
    assert report["witness_commitment_valid"] is True
    assert report["coinbase_total_sats"] == 1256817877
    first, commitment = report["coinbase_outputs"]
    assert first["type"] == "p2pkh"
    assert first["address"] == "16MdTdqmXusauybtXTmFEW4GNFPPgGxQYE"  # as bcoin 1.0.2 writes it
    assert first["value_sats"] == 1256817877
    assert commitment["type"] == "op_return"
    assert commitment["address"] is None


def test_pre_segwit_block_has_no_commitment() -> None:
    code, out = _run(str(BLOCKS_DIR / "mainnet-277647.raw"), "--json")
    assert code == 0
    assert json.loads(out)["witness_commitment_valid"] is None


def test_human_table_and_hex_input(tmp_path: Path) -> None:
    raw = load_block_bytes(SMALL)
    code, out = _run(raw.hex())
    assert code == 0
    for text in ("482683", "PoW valid", "merkle valid", "witness commitment valid", "12.56817877"):
        assert text in out
    hex_file = tmp_path / "block.hex"
    hex_file.write_text(raw.hex() + "\n")
    assert _run(str(hex_file), "--json")[0] == 0


def test_bad_block_exits_1_and_names_the_reason() -> None:
    raw = bytearray(load_block_bytes(SMALL))
    raw[76:80] = (int.from_bytes(raw[76:80], "little") ^ 1).to_bytes(4, "little")  # the nonce
    code, out = _run(raw.hex(), "--json")
    assert code == 1
    checks = {c["reason"]: c["passed"] for c in json.loads(out)["checks"]}
    assert checks["high-hash"] is False
    assert checks["bad-txnmrklroot"] is True


def test_duplicated_last_transaction_is_flagged() -> None:
    """CVE-2012-2459: repeating the last tx keeps the merkle root but Core rejects it."""
    good = Block.parse(load_block_bytes("mainnet-277647"))  # 213 txs: an odd count
    bad = Block(good.header, (*good.transactions, good.transactions[-1]))
    code, out = _run(bad.serialize().hex(), "--json")
    assert code == 1
    checks = {c["reason"]: c["passed"] for c in json.loads(out)["checks"]}
    assert checks["bad-txnmrklroot"] is True
    assert checks["bad-txns-duplicate"] is False


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("zz11", "neither a readable file nor hex"),
        ("0011223", "odd number of digits"),
        ("00" * 80, "truncated data"),
    ],
)
def test_bad_input_exits_2_without_traceback(arg: str, message: str) -> None:
    code, out = _run(arg)
    assert code == 2
    assert message in out


def test_truncated_file_and_bad_network(tmp_path: Path) -> None:
    cut = tmp_path / "cut.raw"
    cut.write_bytes(load_block_bytes(SMALL)[:5000])
    code, out = _run(str(cut))
    assert code == 2
    assert "not a valid block (5000 bytes): truncated" in out
    code, out = _run(str(BLOCKS_DIR / f"{SMALL}.raw"), "--network", "dogecoin")
    assert code == 2
    assert "unknown network 'dogecoin'" in out


def test_regtest_block_with_bcoin_address() -> None:
    payout = "rb1qw508d6qejxtdg4y5r3zarvary0c5xw7k38f4sn"
    script = address_to_script(payout, REGTEST)
    raw = coinbase_only_block(bytes(32), 500, script, time=1700000000).serialize()
    code, out = _run(raw.hex(), "--network", "regtest-bcoin", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["height"] == 500
    assert report["coinbase_outputs"][0]["address"] == payout
    assert report["subsidy_sats"] == report["coinbase_total_sats"] == 50 * 10**8 >> 3
    assert all(c["passed"] is not False for c in report["checks"])
    # The same block on mainnet fails PoW: its bits exceed mainnet's pow limit.
    assert _run(raw.hex(), "--json")[0] == 1


def _hashfarm_exe() -> list[str]:
    exe = Path(sys.executable).with_name("hashfarm")
    return [str(exe)] if exe.exists() else [str(REPO_DIR / ".venv" / "bin" / "hashfarm")]


def test_real_subprocess_on_a_fixture_block() -> None:
    path = BLOCKS_DIR / "mainnet-481829.raw"
    done = subprocess.run(
        [*_hashfarm_exe(), "block", "inspect", str(path), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["hash"] == "000000000000000000917cba69f69b758fe396c8e30ae97bbcf08c4eb975e726"
    assert report["tx_count"] == 2020
    assert report["witness_commitment_valid"] is True


def test_real_subprocess_bad_input() -> None:
    done = subprocess.run(
        [*_hashfarm_exe(), "block", "inspect", "deadbeef"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "not a valid block (4 bytes): a block needs an 80-byte header" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not Path("/proc/self/clear_refs").is_file(), reason="needs Linux /proc")
def test_a_file_that_cannot_be_read_exits_2_without_traceback() -> None:
    # /proc/self/clear_refs is a regular file whose read fails (EINVAL), even for root,
    # standing in for a file without read permission.
    code, out = _run("/proc/self/clear_refs")
    assert code == 2
    assert "cannot read /proc/self/clear_refs: Invalid argument" in out
    assert "Traceback" not in out
