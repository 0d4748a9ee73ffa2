"""Bitcoin Core's wallet path of a payout (`RPCClient.create_payment`), against a JSON-RPC
server on 127.0.0.1 that answers as Core's wallet does (no Core runs here; bcoin's wallet is
tested end to end in tests/integration/test_payouts_regtest.py).

What is checked: the calls and their order (createrawtransaction with exact decimal-string
amounts, fundrawtransaction with lockUnspents and fee_rate, signrawtransactionwithwallet),
the txid and network fee read back, an incomplete signature refused, and the payout's own
check that the signed transaction pays exactly the planned outputs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiohttp import web

from hashfarm.accounting.payoutservice import check_payment
from hashfarm.chain.address import address_to_script, script_to_address
from hashfarm.chain.networks import get_network
from hashfarm.chain.tx import OutPoint, Transaction, TxIn, TxOut
from hashfarm.errors import HashfarmError, NodeError
from hashfarm.node.rpc import RPCClient
from rpc_server import json_rpc_server

REGTEST = get_network("regtest")


def address(i: int) -> str:
    found = script_to_address(bytes.fromhex("0014") + bytes([i]) * 20, REGTEST)
    assert found is not None
    return found


OUTPUTS = [(address(1), 123_456_789), (address(2), 1_000), (address(3), 2_100_000_000_000_000)]
CHANGE = bytes.fromhex("0014") + bytes([9]) * 20
FEE_SATS = 1_410


class CoreWallet:
    """Answers as Core's wallet RPC does, building real transactions."""

    def __init__(self, *, complete: bool = True, skim: int = 0) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.complete = complete
        self.skim = skim  # a wallet that pays less than asked (the payout must refuse it)
        self.outputs: tuple[TxOut, ...] = ()  # an input-less tx does not parse unambiguously

    async def handle(self, request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        method, params = doc["method"], doc["params"]
        self.calls.append((method, params))
        result: Any
        if method == "createrawtransaction":
            outs = []
            for item in params[1]:
                [(addr, amount)] = item.items()
                assert isinstance(amount, str)  # exact decimal text, never a float
                sats = int(Decimal(amount) * 100_000_000) - self.skim
                outs.append(TxOut(sats, address_to_script(addr, REGTEST)))
            self.outputs = tuple(outs)
            result = Transaction(2, (), self.outputs, 0).serialize(witness=False).hex()
        elif method == "fundrawtransaction":
            txin = TxIn(OutPoint(bytes(range(32)), 1), b"", 0xFFFFFFFD, ())
            funded = Transaction(2, (txin,), (*self.outputs, TxOut(50_000, CHANGE)), 0)
            result = {"hex": funded.serialize().hex(), "fee": FEE_SATS / 1e8, "changepos": 3}
        elif method == "signrawtransactionwithwallet":
            tx = Transaction.parse(bytes.fromhex(params[0]))
            signed_in = TxIn(tx.inputs[0].prevout, b"", 0xFFFFFFFD, (b"\x30" * 71, b"\x02" * 33))
            signed = Transaction(2, (signed_in,), tx.outputs, 0)
            result = {"hex": signed.serialize().hex(), "complete": self.complete}
        else:
            return web.json_response({"result": None, "error": {"code": -32601,
                                      "message": "Method not found"}, "id": doc["id"]})  # fmt: skip
        return web.Response(body=orjson.dumps({"result": result, "error": None, "id": doc["id"]}))


async def test_core_wallet_funds_and_signs_exactly_the_outputs_without_broadcasting() -> None:
    core = CoreWallet()
    async with (
        json_rpc_server(core.handle) as url,
        RPCClient(url, password="x", retries=0) as wallet,
    ):
        signed = await wallet.create_payment(OUTPUTS, fee_rate=7)
    assert [m for m, _ in core.calls] == [
        "createrawtransaction",
        "fundrawtransaction",
        "signrawtransactionwithwallet",
    ]  # nothing broadcast: no sendrawtransaction, no sendmany
    assert core.calls[0][1] == [
        [],
        [{address(1): "1.23456789"}, {address(2): "0.00001000"}, {address(3): "21000000.00000000"}],
    ]
    assert core.calls[1][1][1] == {"lockUnspents": True, "fee_rate": 7}
    tx = Transaction.parse(bytes.fromhex(signed.hex))
    assert signed.txid == tx.txid_hex()
    assert signed.fee_sats == FEE_SATS
    check_payment(signed.hex, signed.txid, OUTPUTS, REGTEST)  # pays exactly what was planned


async def test_an_incomplete_signature_or_a_changed_amount_is_refused() -> None:
    async with (
        json_rpc_server(CoreWallet(complete=False).handle) as url,
        RPCClient(url, password="x", retries=0) as wallet,
    ):
        with pytest.raises(NodeError, match="could not sign"):
            await wallet.create_payment(OUTPUTS)
    async with (
        json_rpc_server(CoreWallet(skim=1).handle) as url,
        RPCClient(url, password="x", retries=0) as wallet,
    ):
        skimmed = await wallet.create_payment(OUTPUTS)
    with pytest.raises(HashfarmError, match="does not pay"):
        check_payment(skimmed.hex, skimmed.txid, OUTPUTS, REGTEST)
    with pytest.raises(HashfarmError, match="named txid"):
        check_payment(skimmed.hex, "00" * 32, OUTPUTS, REGTEST)
