"""An async JSON-RPC client for bitcoind-compatible nodes (Bitcoin Core, bcoin).

One `aiohttp` session with keep-alive connections and orjson on both sides, because the pool
polls `getbestblockhash` every 100 ms. Failures are sorted at this boundary:

* transient (`NodeUnavailable`): connection refused or dropped, no answer in time, HTTP
  502/503/504, a non-JSON 5xx page, RPC error -28 (the node is warming up). Retried with a
  capped exponential backoff, and the recovery is logged. A call that may have reached the
  node and is not idempotent (`sendtoaddress`...) is retried only if it surely was not sent.
* permanent: `NodeAuthError` (HTTP 401/403; with a cookie file the cookie is read again once,
  since Core draws a new one at each start) and `RPCError(code, message)` for any other
  error object the node returns (Core answers them with HTTP 500 or 404, bcoin with 200).

A body over 64 KiB (a block for `submitblock`) is written in two slices, so aiohttp does not
copy a 2 MB body once more to put its headers in front. aiohttp and orjson exceptions never
leave this module.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiohttp.payload
import orjson
from aiohttp.abc import AbstractStreamWriter
from yarl import URL

from hashfarm.chain.tx import Transaction
from hashfarm.errors import NodeAuthError, NodeError, NodeUnavailable, RPCError
from hashfarm.node.cookie import NodeCookie

log = logging.getLogger(__name__)

T = TypeVar("T")

RPC_IN_WARMUP = -28  # Core/bcoin: loading the block index, verifying blocks...
TRANSIENT_HTTP = frozenset({502, 503, 504})  # 503 = Core's "Work queue depth exceeded"
# Calls whose repetition would do the work twice; never resent once they may have arrived.
NOT_IDEMPOTENT = frozenset(
    {"sendtoaddress", "sendmany", "generatetoaddress", "generateblock", "getnewaddress"}
)
Call = tuple[str, Sequence[Any]]


class _Transient(Exception):
    """A failure worth retrying; `unsent` says the node surely did not act on the request."""

    def __init__(self, message: str, *, unsent: bool) -> None:
        super().__init__(message)
        self.unsent = unsent


class _AuthRefused(Exception):
    """HTTP 401/403; turned into NodeAuthError unless a fresh cookie helps."""


class RPCClient:
    """A JSON-RPC 1.0 client for one node URL; create it once and share it.

    Credentials come from `user`/`password`, from the URL (`http://user:pass@host:port`), or
    from Core's `cookie_file` (read at the first call, so the node may start later).
    `timeout` bounds each attempt in seconds; `retries` is the number of extra attempts
    for transient failures, waiting `backoff` seconds first and doubling up to `max_backoff`.
    `gbt_rules` are the rules `getblocktemplate` names by default (`node.template.gbt_rules`
    gives a network's: signet needs "signet" too).
    """

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        cookie_file: str | Path | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        gbt_rules: Sequence[str] = ("segwit",),
    ) -> None:
        parsed = URL(url)
        self.url = str(parsed.with_user(None))
        self._user = user if user is not None else parsed.user
        self._password = password if password is not None else parsed.password
        self._cookie_file = Path(cookie_file) if cookie_file is not None else None
        self._auth: str | None = None
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.gbt_rules = tuple(gbt_rules)
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RPCClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session and its kept-alive connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the two entry points ---------------------------------------------------------------

    async def call(self, method: str, *params: Any, attempt_timeout: float | None = None) -> Any:
        """Call `method`, return its result; `attempt_timeout` (s) overrides `timeout` once."""
        payload = orjson.dumps(
            {"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": list(params)}
        )
        return await self._exchange(
            payload, method, method not in NOT_IDEMPOTENT, _single_result(method), attempt_timeout
        )

    async def batch(
        self, calls: Sequence[Call | str], *, return_exceptions: bool = False
    ) -> list[Any]:
        """Send several calls in one HTTP request; results come back in the order asked.

        An item may be `(method, params)` or a bare method name. The first error object
        raises its `RPCError`, unless `return_exceptions` puts the errors in the list.
        """
        items = [(c, ()) if isinstance(c, str) else (c[0], tuple(c[1])) for c in calls]
        if not items:
            return []
        first = next(self._ids)
        ids = list(range(first, first + len(items)))
        self._ids = itertools.count(first + len(items))
        payload = orjson.dumps(
            [
                {"jsonrpc": "1.0", "id": i, "method": m, "params": list(p)}
                for i, (m, p) in zip(ids, items, strict=True)
            ]
        )
        idempotent = all(m not in NOT_IDEMPOTENT for m, _ in items)
        interpret = _batch_results(ids, [m for m, _ in items], return_exceptions)
        return await self._exchange(payload, "batch", idempotent, interpret, None)

    # -- retries and the wire ------------------------------------------------------------------

    async def _exchange(
        self,
        payload: bytes,
        label: str,
        idempotent: bool,
        interpret: Callable[[Any], T],
        attempt_timeout: float | None,
    ) -> T:
        delay = self.backoff
        cookie_reloaded = False
        attempt = 0
        while True:
            try:
                result = interpret(await self._post(payload, label, attempt_timeout))
            except _AuthRefused as exc:
                if self._cookie_file is None or cookie_reloaded:
                    raise NodeAuthError(f"{label}: {exc}") from exc
                cookie_reloaded, self._auth = True, None  # Core drew a new cookie: read again
                continue
            except _Transient as exc:
                if attempt >= self.retries or not (idempotent or exc.unsent):
                    raise NodeUnavailable(f"{label}: {exc}") from exc
                attempt += 1
                # the first failure is news; the rest of one call's retries only repeat it
                log.log(logging.WARNING if attempt == 1 else logging.DEBUG,
                        "node %s: %s; retry %d/%d in %.2fs", self.url, exc, attempt, self.retries,
                        delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            if attempt:
                log.info("node %s answered %s again after %d retries", self.url, label, attempt)
            return result

    async def _post(self, payload: bytes, label: str, attempt_timeout: float | None) -> Any:
        session = self._session or self._open_session()
        try:
            authorization = self._authorization()
        except NodeUnavailable as exc:  # no cookie yet: the node may still be starting
            raise _Transient(str(exc), unsent=True) from exc
        headers = {"Authorization": authorization, "Content-Type": "application/json"}
        # timeout=None would mean "no limit" to aiohttp, so always pass one.
        limit = aiohttp.ClientTimeout(total=attempt_timeout or self.timeout)
        data = payload if len(payload) <= _SLICE else _SlicedBody(payload)
        try:
            async with session.post(self.url, data=data, headers=headers, timeout=limit) as resp:
                body = await resp.read()
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            raise _Transient(f"cannot connect: {exc.os_error or exc}", unsent=True) from exc
        except TimeoutError as exc:
            raise _Transient(
                f"no answer within {attempt_timeout or self.timeout}s", unsent=False
            ) from exc
        except aiohttp.ClientError as exc:
            raise _Transient(f"connection lost: {exc!r}", unsent=False) from exc
        return _decode(status, body, label)

    def _open_session(self) -> aiohttp.ClientSession:
        # Idle connections close before Core's -rpcservertimeout (30 s by default) would cut
        # them under us; `limit` stays below a typical -rpcthreads x -rpcworkqueue.
        connector = aiohttp.TCPConnector(limit=16, keepalive_timeout=15)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
        )
        return self._session

    def _authorization(self) -> str:
        if self._auth is None:
            if self._cookie_file is not None:
                cookie = NodeCookie.read(self._cookie_file)
                user, password = cookie.user, cookie.password
            else:
                user, password = self._user or "", self._password or ""
            token = base64.b64encode(f"{user}:{password}".encode())
            self._auth = f"Basic {token.decode('ascii')}"
        return self._auth

    # -- typed helpers (the calls the pool, miner and economics make) ----------------------

    async def getblocktemplate(
        self,
        rules: Sequence[str] | None = None,
        longpollid: str | None = None,
        attempt_timeout: float | None = None,
    ) -> dict[str, Any]:
        """A block template (BIP 22/23); with `longpollid` it waits for a change (BIP 22).

        `rules` defaults to the client's `gbt_rules`."""
        request: dict[str, Any] = {"rules": list(self.gbt_rules if rules is None else rules)}
        if longpollid is not None:
            request["longpollid"] = longpollid
        template = await self.call("getblocktemplate", request, attempt_timeout=attempt_timeout)
        return _as_dict(template, "getblocktemplate")

    async def submitblock(self, block_hex: str) -> str | None:
        """Submit a full block; None when accepted, else the node's reason (`high-hash`...).

        bcoin prefixes its reasons with `rejected: `, removed here so both nodes read alike.
        `duplicate` means the node already has the block.
        """
        verdict = await self.call("submitblock", block_hex)
        if verdict is None:
            return None
        return str(verdict).removeprefix("rejected: ")

    async def proposeblock(self, block_hex: str) -> str | None:
        """Ask the node to check a block without its proof of work (BIP 23 proposal mode).

        None when the node finds nothing wrong, else its reason (`bad-cb-amount`...), with
        bcoin's `rejected: ` prefix removed like submitblock's. A block not built on the
        current tip answers `inconclusive-not-best-prevblk` on both nodes.
        """
        request = {"mode": "proposal", "data": block_hex}
        verdict = await self.call("getblocktemplate", request)
        if verdict is None:
            return None
        return str(verdict).removeprefix("rejected: ")

    async def getbestblockhash(self) -> str:
        """Hash of the tip (display hex)."""
        return _as_str(await self.call("getbestblockhash"), "getbestblockhash")

    async def getblockcount(self) -> int:
        """Height of the tip."""
        count = await self.call("getblockcount")
        if not isinstance(count, int):
            raise NodeError(f"getblockcount: expected an integer, got {str(count)[:120]!r}")
        return count

    async def getblockhash(self, height: int) -> str:
        """Hash (display hex) of the active chain's block at `height`."""
        return _as_str(await self.call("getblockhash", height), "getblockhash")

    async def getblockheader(self, block_hash: str, verbose: bool = True) -> Any:
        """The header as a dict (verbose) or as 80-byte hex."""
        return await self.call("getblockheader", block_hash, verbose)

    async def getblock(self, block_hash: str, verbosity: int = 1) -> Any:
        """The block: hex at verbosity 0, a dict with txids at 1, with decoded txs at 2."""
        return await self.call("getblock", block_hash, verbosity)

    async def getrawblock(self, block_hash: str) -> bytes:
        """The serialized block (with witness data)."""
        raw = _as_str(await self.call("getblock", block_hash, 0), "getblock")
        try:
            return bytes.fromhex(raw)
        except ValueError:
            raise NodeError(f"getblock: not a hex block: {raw[:120]!r}") from None

    async def getmininginfo(self) -> dict[str, Any]:
        """Difficulty, network hash rate, current template size..."""
        return _as_dict(await self.call("getmininginfo"), "getmininginfo")

    async def getblockchaininfo(self) -> dict[str, Any]:
        """Chain name, height, best hash, difficulty, verification progress."""
        return _as_dict(await self.call("getblockchaininfo"), "getblockchaininfo")

    async def getrawmempool(self) -> list[str]:
        """Txids in the mempool (display hex)."""
        return _as_list(await self.call("getrawmempool"), "getrawmempool")

    async def generatetoaddress(self, count: int, address: str) -> list[str]:
        """Regtest: mine `count` blocks paying `address`; their hashes."""
        return _as_list(await self.call("generatetoaddress", count, address), "generatetoaddress")

    async def sendtoaddress(self, address: str, amount_btc: float) -> str:
        """Wallet: pay `amount_btc` to `address`; the txid."""
        return _as_str(await self.call("sendtoaddress", address, amount_btc), "sendtoaddress")

    # -- payouts: a transaction signed by the wallet, recorded, then broadcast ---------------
    # Bitcoin Core and bcoin both speak these on the node's RPC: sendrawtransaction,
    # gettxout; on the wallet's: gettransaction, abandontransaction. Signing a payment
    # without broadcasting it differs: Core (this client on the wallet's URL,
    # `http://host:port/wallet/NAME`) funds and signs with `create_payment`; bcoin's
    # JSON-RPC cannot sign with the wallet's keys, so `node.bcoin.BcoinWallet` uses its REST API.

    async def sendrawtransaction(self, tx_hex: str) -> str:
        """Broadcast a signed transaction; its txid. Sending the same bytes again is harmless
        (Core answers that it already has them; bcoin relays without waiting, so look in the
        mempool to know it was taken)."""
        return _as_str(await self.call("sendrawtransaction", tx_hex), "sendrawtransaction")

    async def gettxout(self, txid: str, vout: int, include_mempool: bool = True) -> Any:
        """The unspent output (a dict), or None when it is spent or never existed."""
        return await self.call("gettxout", txid, vout, include_mempool)

    async def gettransaction(self, txid: str) -> dict[str, Any]:
        """Wallet: one of its transactions (`blockhash` once mined)."""
        return _as_dict(await self.call("gettransaction", txid), "gettransaction")

    async def wallet_transaction(self, txid: str) -> dict[str, Any] | None:
        """Wallet: `gettransaction`, or None when the wallet does not know the txid (Core:
        -5 "Invalid or non-wallet transaction id"; bcoin: -4 "TX not found.")."""
        try:
            return await self.gettransaction(txid)
        except RPCError as exc:
            if exc.code in (RPC_INVALID_ADDRESS_OR_KEY, RPC_WALLET_ERROR):
                return None
            raise

    async def abandontransaction(self, txid: str) -> None:
        """Wallet: forget an unconfirmed transaction not in the mempool (inputs freed)."""
        await self.call("abandontransaction", txid)

    async def create_payment(
        self, outputs: Sequence[tuple[str, int]], fee_rate: int | None = None
    ) -> SignedTransaction:
        """Bitcoin Core's wallet: a transaction paying exactly `outputs` (address, sats),
        funded with change, signed, NOT broadcast. `fee_rate` in sat/vB (None: the wallet's
        estimate). Amounts go as decimal strings (exact; Core's AmountFromValue takes them).

        createrawtransaction -> fundrawtransaction (lockUnspents: the coins stay reserved
        until it is broadcast or the wallet restarts) -> signrawtransactionwithwallet.
        """
        wanted = [{address: _btc_text(sats)} for address, sats in outputs]
        unsigned = _as_str(await self.call("createrawtransaction", [], wanted), "createrawtx")
        options: dict[str, Any] = {"lockUnspents": True}
        if fee_rate is not None:
            options["fee_rate"] = fee_rate
        funded = _as_dict(await self.call("fundrawtransaction", unsigned, options), "fund")
        signed = _as_dict(
            await self.call("signrawtransactionwithwallet", funded["hex"]), "signrawtx"
        )
        if not signed.get("complete"):
            raise NodeError(f"the wallet could not sign the payment: {signed.get('errors')}")
        raw = _as_str(signed.get("hex"), "signrawtransactionwithwallet")
        return SignedTransaction(_txid_of(raw), raw, _sats(funded.get("fee"), "fee"))


RPC_WALLET_ERROR = -4  # bcoin's "TX not found."
RPC_INVALID_ADDRESS_OR_KEY = -5  # Core's "Invalid or non-wallet transaction id"


@dataclass(frozen=True, slots=True)
class SignedTransaction:
    """A payment the wallet funded and signed, not broadcast."""

    txid: str  # display hex
    hex: str  # serialized with witnesses
    fee_sats: int  # the network fee it pays


def _btc_text(sats: int) -> str:
    """Satoshis as an exact decimal BTC string ("0.00012345")."""
    if sats < 0:
        raise ValueError(f"negative amount {sats}")
    return f"{sats // 100_000_000}.{sats % 100_000_000:08d}"


def _sats(value: Any, what: str) -> int:
    """A BTC amount a node wrote as a JSON number, in satoshis (exact to 8 decimals)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NodeError(f"{what}: expected an amount, got {str(value)[:60]!r}")
    return round(Decimal(repr(value)) * 100_000_000)


def _txid_of(raw_hex: str) -> str:
    """The txid (display hex) of a serialized transaction."""
    return Transaction.parse(bytes.fromhex(raw_hex)).txid_hex()


_SLICE = 64 * 1024  # bytes per write of a large body: under malloc's mmap threshold, so warm


class _SlicedBody(aiohttp.payload.BytesPayload):
    """A large request body (a block for `submitblock`) written in 64 KiB memoryview slices.

    Given plain bytes, aiohttp joins its headers and the whole body into one new buffer
    (a second copy of a 2 MB block, in fresh memory on a process's first block); sliced,
    only the first slice is joined and the rest go to the transport as views of our bytes.
    """

    def __init__(self, value: bytes) -> None:
        # Payload's own __init__: BytesPayload's warns about large bodies, the point here.
        aiohttp.payload.Payload.__init__(self, value, content_type="application/json")
        self._size = len(value)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        view = memoryview(self._value)[:content_length]
        await writer.write(view[:_SLICE])  # aiohttp joins this one to its headers
        await writer.write(view[_SLICE:])  # the rest as a view of our bytes: no copy here


def _as_dict(value: Any, method: str) -> dict[str, Any]:
    """A result that must be a JSON object."""
    if not isinstance(value, dict):
        raise NodeError(f"{method}: expected an object, got {str(value)[:120]!r}")
    return value


def _as_str(value: Any, method: str) -> str:
    """A result that must be a JSON string (a hash, hex): never "None" for a null."""
    if not isinstance(value, str):
        raise NodeError(f"{method}: expected a string, got {str(value)[:120]!r}")
    return value


def _as_list(value: Any, method: str) -> list[str]:
    """A result that must be a JSON array of strings (txids, block hashes)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NodeError(f"{method}: expected a list of strings, got {str(value)[:120]!r}")
    return value


def _decode(status: int, body: bytes, label: str) -> Any:
    """Parse a reply, classifying HTTP-level failures."""
    if status in (401, 403):
        raise _AuthRefused(f"HTTP {status}: the node refused our credentials")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        snippet = body[:120].decode("utf-8", "replace").strip()
        if status in TRANSIENT_HTTP or status >= 500:
            raise _Transient(f"HTTP {status}: {snippet!r}", unsent=status == 503) from None
        raise NodeError(f"{label}: HTTP {status} with a non-JSON body: {snippet!r}") from None


def _error_of(doc: Any, method: str) -> RPCError | None:
    """The RPCError an answer carries, or None; warm-up becomes a transient failure."""
    if not isinstance(doc, dict) or ("error" not in doc and "result" not in doc):
        raise NodeError(f"{method}: not a JSON-RPC answer: {str(doc)[:120]!r}")
    err = doc.get("error")
    if err is None:
        return None
    if isinstance(err, dict):
        code, message = err.get("code", -1), str(err.get("message", ""))
        if not isinstance(code, int) or isinstance(code, bool):  # a node's bug, still an error
            code, message = -1, f"{message} (error code {code!r})"
    else:
        code, message = -1, str(err)
    if code == RPC_IN_WARMUP:
        raise _Transient(f"node warming up: {message}", unsent=True)
    return RPCError(code, message, method)


def _single_result(method: str) -> Callable[[Any], Any]:
    def interpret(doc: Any) -> Any:
        error = _error_of(doc, method)
        if error is not None:
            raise error
        return doc.get("result")

    return interpret


def _batch_results(
    ids: list[int], methods: list[str], return_exceptions: bool
) -> Callable[[Any], list[Any]]:
    def interpret(doc: Any) -> list[Any]:
        if not isinstance(doc, list):
            _single_result("batch")(doc)  # a whole-request error object raises here
            raise NodeError(f"batch: expected a list, got {str(doc)[:120]!r}")
        by_id = {item.get("id"): item for item in doc if isinstance(item, dict)}
        results: list[Any] = []
        for request_id, method in zip(ids, methods, strict=True):
            if request_id not in by_id:
                raise NodeError(f"batch: no answer for {method} (id {request_id})")
            error = _error_of(by_id[request_id], method)
            if error is not None and not return_exceptions:
                raise error
            results.append(error if error is not None else by_id[request_id].get("result"))
        return results

    return interpret
