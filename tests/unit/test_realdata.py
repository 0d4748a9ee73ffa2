"""The tests' real data travels with the clone; what may not be copied skips, or fails in CI."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

from realdata import BLOCKS_DIR, DATA_DIR, FIXTURE_BLOCKS, REPO_DIR

PACKAGE_DATA_TEST = (
    "tests/unit/economics/test_data.py::test_package_data_is_the_shared_data_unmodified"
)


def test_fixture_blocks_are_in_the_repository_and_match_their_readme() -> None:
    """Every block the README lists is here, inside the repo, with the sha256 it states."""
    readme = (BLOCKS_DIR / "README.md").read_text()
    stated = dict(
        re.findall(r"\*\*(mainnet-\d+\.raw)\*\*:.*?sha256\(file\) `([0-9a-f]{64})`", readme)
    )
    assert len(stated) == 5
    assert sorted(p.name for p in FIXTURE_BLOCKS) == sorted(stated)
    for path in FIXTURE_BLOCKS:
        assert path.resolve().is_relative_to(REPO_DIR), path  # not read from ../shared
        assert hashlib.sha256(path.read_bytes()).hexdigest() == stated[path.name], path.name
    assert DATA_DIR.resolve().is_relative_to(REPO_DIR)


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the test that needs ../shared with `$HASHFARM_SHARED` pointing at an empty folder."""
    environ = {**os.environ, "HASHFARM_SHARED": str(tmp_path / "no-shared")}
    environ.pop("HASHFARM_REQUIRE_SERVICES", None)  # the outer run's CI setting is not this one's
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", PACKAGE_DATA_TEST],
        cwd=REPO_DIR, env=environ, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_missing_shared_data_skips_with_the_path_as_reason(tmp_path: Path) -> None:
    run = _pytest(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 skipped" in run.stdout, run.stdout
    assert f"needs {tmp_path / 'no-shared' / 'data' / 'asic_models.csv'}" in run.stdout


def test_missing_shared_data_fails_when_services_are_required(tmp_path: Path) -> None:
    run = _pytest(tmp_path, HASHFARM_REQUIRE_SERVICES="1")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "3 failed" in run.stdout, run.stdout
    assert "HASHFARM_REQUIRE_SERVICES=1 makes this a failure" in run.stdout
