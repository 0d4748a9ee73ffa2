"""A bcoin regtest node run as a child process: the real node behind the tests and the demo.

bcoin 1.0.2 comes from npm (`package.json` in the repository root; `make setup` runs
`npm ci`). Each node gets free loopback ports for its HTTP/RPC server, its P2P port (not
listened on) and its wallet's RPC server, so any number can run side by side.

Two bcoin 1.0.2 defects are handled here rather than patched in node_modules:

* With leveldown 5 (the only leveldown with binaries for current Node.js), every range scan
  of bcoin's database returns nothing: bcoin's `bdb` passes `gt: null`/`lt: null`, which
  leveldown 5 turns into the key `"null"`. Chain data survive, but the wallet cannot start on
  disk (`assert(tip)`) and scans miss blocks. A `--require` preload passes null range bounds
  through untouched (`PRELOAD_JS`), which makes on-disk nodes restartable with their chain and
  wallet; memory nodes do not use leveldown at all. The mempool is not kept across a
  restart (bcoin's mempool cache records a stale tip and is dropped at the next start), so
  tests re-create unconfirmed transactions after one.
* The wallet's `getnewaddress` formats addresses for mainnet; `getaccountaddress` formats
  them for the node's network, so `wallet_address()` uses it.

The same preload makes a node exit once the process that started it is gone
(`ORPHAN_WATCH_JS`), so a test run killed with SIGKILL leaves no bcoin behind.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from hashfarm.errors import NodeError, NodeUnavailable, RPCError
from hashfarm.node.rpc import RPCClient, SignedTransaction

START_TIMEOUT = 30.0  # seconds a starting node has to answer RPC before we give up
STOP_TIMEOUT = 10.0  # seconds after SIGTERM before the node is killed
POLL_INTERVAL = 0.02  # seconds between readiness probes
FUNDS_WAIT = 10.0  # seconds a payment waits for the wallet to see its coins

ORPHAN_WATCH_JS = """'use strict';
// hashfarm: exit when the process that started us is gone (a killed test run).
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) process.exit(1); }, 500).unref();
"""

PRELOAD_JS = """// hashfarm: bcoin's bdb passes null range bounds; leveldown 5 reads them as "null".
const LevelDOWN = require(%s);
const serializeKey = LevelDOWN.prototype._serializeKey;
LevelDOWN.prototype._serializeKey = function (key) {
  return key == null ? key : serializeKey.call(this, key);
};
"""


def find_bcoin(start: Path | None = None) -> Path:
    """The `node_modules/bcoin` folder: `$HASHFARM_BCOIN`, else above `start` or this file."""
    if env := os.environ.get("HASHFARM_BCOIN"):
        if not (Path(env) / "bin/node").is_file():
            raise NodeError(f"HASHFARM_BCOIN={env} holds no bcoin (bin/node is missing)")
        return Path(env)
    for base in (start or Path.cwd(), Path(__file__)):
        for folder in (base, *base.resolve().parents):
            if (folder / "node_modules/bcoin/bin/node").is_file():
                return folder / "node_modules/bcoin"
    raise NodeError("bcoin not found: run `npm ci` in the repository root (make setup)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class BcoinPorts:
    """The loopback ports one node uses; kept across restarts."""

    http: int  # JSON-RPC and REST
    p2p: int  # peer-to-peer (bound only if listening is enabled)
    wallet: int  # the wallet plugin's JSON-RPC

    @classmethod
    def pick(cls) -> BcoinPorts:
        """Three currently free ports."""
        return cls(free_port(), free_port(), free_port())


class BcoinNode:
    """One bcoin regtest node process with its data folder, ports and API key.

    `memory=True` keeps the chain in RAM (fastest; gone at stop); otherwise the chain,
    wallet and mempool live in `datadir`, and `restart()` brings the same node back on the
    same ports. `wallet=False` leaves the wallet plugin out.
    """

    def __init__(
        self,
        datadir: str | Path,
        *,
        memory: bool = False,
        wallet: bool = True,
        api_key: str | None = None,
        ports: BcoinPorts | None = None,
        bcoin_dir: Path | None = None,
        log_level: str = "warning",
    ) -> None:
        self.datadir = Path(datadir)
        self.memory = memory
        self.wallet = wallet
        self.api_key = api_key or secrets.token_hex(16)
        self.ports = ports or BcoinPorts.pick()
        self.bcoin_dir = bcoin_dir or find_bcoin()
        self.log_level = log_level
        self._fixed_ports = ports is not None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        """The node's JSON-RPC URL (no credentials: any user, password = api key)."""
        return f"http://127.0.0.1:{self.ports.http}/"

    @property
    def wallet_url(self) -> str:
        """The wallet's JSON-RPC URL."""
        return f"http://127.0.0.1:{self.ports.wallet}/"

    @property
    def log_path(self) -> Path:
        """Where the process's stdout and stderr go."""
        return self.datadir / "bcoin.out"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._proc.pid if self.running and self._proc else None

    def rpc(self, *, timeout: float = 30.0, retries: int = 5) -> RPCClient:
        """A new RPC client for the node (the caller closes it)."""
        return RPCClient(self.rpc_url, password=self.api_key, timeout=timeout, retries=retries)

    def wallet_rpc(self, *, timeout: float = 30.0, retries: int = 5) -> RPCClient:
        """A new RPC client for the wallet (the caller closes it)."""
        return RPCClient(self.wallet_url, password=self.api_key, timeout=timeout, retries=retries)

    # -- process lifecycle -----------------------------------------------------------------

    async def start(self, wait_s: float = START_TIMEOUT) -> None:
        """Start the process and return once its RPC (and wallet RPC) answer."""
        if self.running:
            return
        for attempt in range(3):
            self._spawn()
            try:
                await self._wait_ready(wait_s)
                return
            except NodeError:
                exited = self._proc is not None and self._proc.poll() is not None
                await self.stop()
                if self._fixed_ports or not exited or attempt == 2:
                    raise
                self.ports = BcoinPorts.pick()  # a port got taken meanwhile: try new ones

    async def stop(self) -> None:
        """Stop the node and wait for its exit; data stay on disk.

        bcoin has no signal handlers, so a clean close (databases flushed, mempool saved)
        is asked through RPC `stop`; SIGTERM and then SIGKILL follow if that fails.
        """
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            async with RPCClient(self.rpc_url, password=self.api_key, retries=0, timeout=2) as rpc:
                await rpc.call("stop")
            await asyncio.to_thread(proc.wait, STOP_TIMEOUT)
            return
        except (NodeError, subprocess.TimeoutExpired):
            proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)

    async def restart(self) -> None:
        """Stop and start again on the same ports (same chain unless `memory`)."""
        self._fixed_ports = True
        await self.stop()
        await self.start()

    def _spawn(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise NodeError("Node.js (`node`) is not on PATH; bcoin needs it")
        self.datadir.mkdir(parents=True, exist_ok=True)
        command = [node, *self._preload(), str(self.bcoin_dir / "bin/node"), *self._flags()]
        env = {k: v for k, v in os.environ.items() if not k.startswith("BCOIN_")}
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def _preload(self) -> list[str]:
        """A script Node.js runs before bcoin: the orphan watch, and the leveldown fix on disk."""
        code = ORPHAN_WATCH_JS
        if not self.memory:
            code += PRELOAD_JS % json.dumps(str(self.bcoin_dir.parent / "leveldown"))
        script = self.datadir / "hashfarm-preload.js"
        script.write_text(code)
        return ["--require", str(script)]

    def _flags(self) -> list[str]:
        flags = [
            "--network=regtest",
            f"--prefix={self.datadir}",
            f"--memory={str(self.memory).lower()}",
            "--http-host=127.0.0.1",
            f"--http-port={self.ports.http}",
            f"--api-key={self.api_key}",
            "--listen=false",  # tests need no peers; the P2P port stays closed
            f"--port={self.ports.p2p}",
            "--workers=false",  # one process: less start-up time, nothing left behind
            f"--log-level={self.log_level}",
        ]
        if not self.wallet:
            return [*flags, "--no-wallet=true"]
        # bcoin reads the wallet's own prefix; without it the wallet would use ~/.bcoin.
        return [*flags, f"--wallet-prefix={self.datadir}", "--wallet-http-host=127.0.0.1",
                f"--wallet-http-port={self.ports.wallet}"]  # fmt: skip

    async def _wait_ready(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        urls = [self.rpc_url, *([self.wallet_url] if self.wallet else [])]
        for url in urls:
            async with RPCClient(url, password=self.api_key, retries=0, timeout=2) as probe:
                while True:
                    if not self.running:
                        raise NodeError(f"bcoin exited at start-up: {self.log_tail()}")
                    try:
                        await probe.call("getblockcount" if url == self.rpc_url else "getbalance")
                        break
                    except NodeUnavailable:
                        if time.monotonic() > deadline:
                            raise NodeError(f"bcoin gave no RPC answer in {wait_s}s") from None
                        await asyncio.sleep(POLL_INTERVAL)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines bcoin printed (for error messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"

    # -- wallet helpers (mempool transactions for tests and the demo) ----------------------

    async def wallet_address(self) -> str:
        """A receive address of the wallet's default account, in regtest format."""
        async with self.wallet_rpc() as wallet:
            address = await wallet.call("getaccountaddress", "default")
        if not isinstance(address, str):  # never the string "None"
            raise NodeError(f"getaccountaddress: expected an address, got {address!r}")
        return address

    async def send(self, address: str, amount_btc: float) -> str:
        """Pay from the wallet; returns the txid once the node's mempool holds the tx (or
        already a block: a fast regtest pool can mine it in between).

        Waits (up to FUNDS_WAIT) while the wallet, which follows the chain asynchronously,
        has not yet seen the coins it needs.
        """
        deadline = time.monotonic() + FUNDS_WAIT
        async with self.wallet_rpc() as wallet, self.rpc() as node:
            while True:
                try:
                    txid = await wallet.sendtoaddress(address, amount_btc)
                    break
                except RPCError as exc:
                    if "funds" not in exc.message.lower() or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            while txid not in await node.getrawmempool():
                if await _confirmed(wallet, txid):  # miners already put it in a block
                    break
                if time.monotonic() > deadline:
                    raise NodeError(f"transaction {txid} never reached the mempool")
                await asyncio.sleep(POLL_INTERVAL)
        return txid


class BcoinWallet:
    """bcoin's wallet as the pool's payout wallet (`accounting.payoutservice.PayoutWallet`),
    through its REST API.

    bcoin's JSON-RPC cannot sign with the wallet's keys without broadcasting
    (`signrawtransaction` there takes private keys), and its `gettransaction` fails with
    "Invalid integer value." on a transaction the wallet sent (bcoin 1.0.2, seen here), so:
    `POST /wallet/<id>/create` funds and signs a payment (nothing broadcast, nothing added
    to the wallet), `GET /wallet/<id>/tx/<txid>` says where a transaction is (404: unknown),
    `DELETE /wallet/<id>/tx/<txid>` abandons one. `url` is the wallet server's
    (`BcoinNode.wallet_url`), `api_key` the node's (bcoin checks it as the HTTP password).
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        wallet_id: str = "primary",
        account: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/") + "/"
        self.wallet_id = wallet_id
        self.account = account  # None: coins of every account of the wallet
        token = base64.b64encode(f"hashfarm:{api_key}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def create_payment(
        self, outputs: Sequence[tuple[str, int]], fee_rate: int | None = None
    ) -> SignedTransaction:
        """Fund and sign a transaction paying exactly `outputs` (address, sats); not
        broadcast. `fee_rate` in sat/vB (bcoin takes sat/kB; None: its estimate)."""
        body: dict[str, Any] = {
            "outputs": [{"address": a, "value": v} for a, v in outputs],
        }
        if fee_rate is not None:
            body["rate"] = fee_rate * 1000
        if self.account is not None:
            body["account"] = self.account
        _, doc = await self._request("POST", f"wallet/{self.wallet_id}/create", body)
        raw, txid, fee = doc.get("hex"), doc.get("hash"), doc.get("fee")
        if not isinstance(raw, str) or not isinstance(txid, str) or not isinstance(fee, int):
            raise NodeError(f"bcoin wallet create: unexpected answer {str(doc)[:160]!r}")
        return SignedTransaction(txid, raw, fee)

    async def wallet_transaction(self, txid: str) -> dict[str, Any] | None:
        """The wallet's view of `txid`: bcoin's details, plus `blockhash` (Core's name; None
        while unconfirmed). None when the wallet does not know it."""
        status, doc = await self._request("GET", f"wallet/{self.wallet_id}/tx/{txid}", None)
        if status == 404:
            return None
        return {**doc, "blockhash": doc.get("block")}

    async def abandontransaction(self, txid: str) -> None:
        """Forget an unconfirmed transaction (its coins become spendable again)."""
        await self._request("DELETE", f"wallet/{self.wallet_id}/tx/{txid}", None)

    async def close(self) -> None:
        """Nothing is kept open between calls."""

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any]]:
        try:
            async with (
                aiohttp.ClientSession(headers=self._headers, timeout=self._timeout) as session,
                session.request(method, self.url + path, json=body) as resp,
            ):
                status, text = resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NodeUnavailable(f"bcoin wallet {method} {path}: {exc!r}") from exc
        if status == 404 and method == "GET":
            return status, {}
        if status in (401, 403):
            raise NodeError(f"bcoin wallet {path}: HTTP {status}: the API key was refused")
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if status != 200 or not isinstance(doc, dict):
            said = doc.get("error", doc) if isinstance(doc, dict) else text[:160]
            if isinstance(said, dict):
                said = said.get("message", said)
            raise NodeError(f"bcoin wallet {method} {path}: HTTP {status}: {said}")
        return status, doc


async def _confirmed(wallet: RPCClient, txid: str) -> bool:
    """Whether the wallet sees `txid` in a block (a fast regtest pool mines a payment
    between two looks at the mempool)."""
    try:
        doc = await wallet.call("gettransaction", txid)
    except RPCError:
        return False
    # bcoin's wallet names the block (Core also counts confirmations; bcoin leaves that out)
    return isinstance(doc, dict) and bool(doc.get("blockhash"))
