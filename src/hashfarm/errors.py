"""The one exception tree of hashfarm.

    HashfarmError
    ├── ChainError            consensus/format data that is malformed or invalid
    │   ├── DecodeError       bytes that do not parse (truncated, trailing data, bad varint)
    │   └── AddressError      an address with a bad checksum, wrong network or unknown form
    ├── ConfigError           a setting with a bad key or value (names the key)
    ├── NodeError             talking to the Bitcoin node
    │   ├── NodeUnavailable   transport failure or warm-up (transient: retry with backoff)
    │   ├── NodeAuthError     401/403 from the node (permanent)
    │   └── RPCError          the node answered with a JSON-RPC error (code, message)
    ├── LedgerError           the share ledger could not store a record (permanent)
    │   └── TransientLedgerError  locked database or dropped connection (retried)
    ├── StratumError          a Stratum message that breaks the protocol
    └── BrokerError           the message broker and its local spool cannot take a message

Lower layers translate third-party exceptions at their boundary (`raise ... from exc`), so
aiohttp, zmq or database exceptions never leave their adapters.
"""

from __future__ import annotations


class HashfarmError(Exception):
    """Base class of every error hashfarm raises on purpose."""


class ChainError(HashfarmError):
    """Consensus or serialization data that is malformed or invalid."""


class DecodeError(ChainError):
    """Bytes that do not parse: truncated input, trailing data, a non-canonical integer."""


class AddressError(ChainError):
    """An address that cannot be turned into a scriptPubKey; the message says why."""


class ConfigError(HashfarmError):
    """A configuration key or value that is wrong; the message names the key."""


class NodeError(HashfarmError):
    """Any failure talking to the Bitcoin node."""


class NodeUnavailable(NodeError):
    """The node cannot be reached or is warming up; transient, worth retrying."""


class NodeAuthError(NodeError):
    """The node refused our credentials; permanent until the configuration changes."""


class RPCError(NodeError):
    """The node answered a call with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, method: str = "") -> None:
        super().__init__(f"{method or 'rpc'} failed: [{code}] {message}")
        self.code = code
        self.message = message
        self.method = method


class LedgerError(HashfarmError):
    """The ledger could not store a record, or was used after close; the message says why."""


class TransientLedgerError(LedgerError):
    """A failure worth retrying: the database is locked or the connection dropped."""


class StratumError(HashfarmError):
    """A Stratum message that breaks the protocol (bad JSON, wrong shape, too long)."""


class BrokerError(HashfarmError):
    """Neither the message broker nor the local spool could take a message (spool full,
    publisher closed, broker refused it); the message was not acknowledged."""
