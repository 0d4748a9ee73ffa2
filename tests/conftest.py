"""Session fixtures shared by every test: the regtest node, Core's judge, PostgreSQL.

* `regtest_node`: one bcoin regtest node for the whole session (in memory, with a wallet),
  warmed up past segwit activation; `.rpc_url`, `.api_key`, `.rpc()`, `.mine()`,
  `.mempool_txs(n)`. Tests that stop or restart a node start their own instead:
  `node = await start_regtest_node(tmp_path)` (from `nodes`), then `await node.stop()`.
* `module_node`, `module_rpc`, `module_judge`: a module's own node (warmed up, about 2 s),
  its client and a judge following it. Regtest halves the subsidy every 150 blocks and every
  test that mines makes the session node taller, so a module whose figures depend on the
  reward (payouts, TIDES, accounting) or that mines hundreds of blocks takes its own node by
  overriding `regtest_node`/`rpc`/`judge` with these (see test_payouts_regtest.py).
* `rpc`: a client of the session node, shared by the session.
* `judge`: Bitcoin Core's consensus engine following the session node;
  `await judge.check_chain(rpc)` fails unless Core accepts every block bcoin holds.
* `postgres_url`: a fresh database for the session on 127.0.0.1:5432, dropped at the end;
  `fresh_pg_url`: one for a single test.

A missing service (Node.js/bcoin, PostgreSQL) skips the tests that need it with the reason,
or fails them when HASHFARM_REQUIRE_SERVICES=1 (as CI sets).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from hashfarm.node.rpc import RPCClient
from nodes import (
    Judge,
    RegtestNode,
    bcoin_problem,
    create_database,
    drop_database,
    postgres_problem,
    service_missing,
    start_regtest_node,
)

pytest_plugins = ["browser"]  # the `browser` and `web_page` fixtures (tests/browser.py)


@pytest.fixture(scope="session")
async def regtest_node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RegtestNode]:
    """The session's bcoin regtest node, warmed up past height 432."""
    if problem := bcoin_problem():
        service_missing(problem)
    node = RegtestNode(tmp_path_factory.mktemp("bcoin"), memory=True, wallet=True)
    await node.start()
    try:
        await node.warm_up()
        yield node
    finally:
        await node.stop()


@pytest.fixture(scope="session")
async def rpc(regtest_node: RegtestNode) -> AsyncIterator[RPCClient]:
    """An RPC client of the session node."""
    async with regtest_node.rpc() as client:
        yield client


@pytest.fixture(scope="module")
async def module_node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RegtestNode]:
    """A node of this module's own, warmed up past height 432 (in memory, with a wallet)."""
    node = await start_regtest_node(tmp_path_factory.mktemp("bcoin-module"), memory=True)
    try:
        yield node
    finally:
        await node.stop()


@pytest.fixture(scope="module")
async def module_rpc(module_node: RegtestNode) -> AsyncIterator[RPCClient]:
    """An RPC client of the module's own node."""
    async with module_node.rpc() as client:
        yield client


@pytest.fixture(scope="module")
def module_judge(tmp_path_factory: pytest.TempPathFactory) -> Judge:
    """Core's consensus engine for a module's own node's chain."""
    return Judge(tmp_path_factory.mktemp("kernel-module"))


@pytest.fixture(scope="session")
def judge(tmp_path_factory: pytest.TempPathFactory) -> Judge:
    """Core's consensus engine for the session node's chain (see `Judge.check_chain`)."""
    return Judge(tmp_path_factory.mktemp("kernel"))


@pytest.fixture
def make_judge(tmp_path: Path) -> Callable[[], Judge]:
    """A factory of fresh judges, for tests that run their own node: `make_judge()`."""
    count = itertools.count(1)
    return lambda: Judge(tmp_path / f"kernel-{next(count)}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this session, dropped afterwards."""
    if problem := postgres_problem():
        service_missing(problem)
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def fresh_pg_url(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the test server for one test (`postgres_url` skips without
    one), dropped afterwards."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)
