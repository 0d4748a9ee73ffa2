"""Without the `cluster` extra, hashfarm.broker says which extra to install (a ConfigError,
which the command line prints as one line), and nothing else in hashfarm needs nats."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_NATS = textwrap.dedent(
    """
    import sys

    class NotInstalled:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] == "nats":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    """
)


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK_NATS + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_the_broker_names_the_cluster_extra() -> None:
    done = run(
        """
        from hashfarm.errors import ConfigError
        try:
            import hashfarm.broker
        except ConfigError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'hashfarm[cluster]'" in done.stdout


def test_the_single_process_pool_imports_without_nats() -> None:
    done = run("import hashfarm.cli.main, hashfarm.cli.pool, hashfarm.pool.service\n")
    assert done.returncode == 0, done.stderr
