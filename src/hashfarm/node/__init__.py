"""Talking to the Bitcoin node: the only package that knows bitcoind RPC method names and ZMQ.

- `rpc`: `RPCClient`, the async JSON-RPC client (keep-alive, retries, error mapping).
- `cookie`: `NodeCookie`, Bitcoin Core's `.cookie` credentials.
- `zmq`: `hashblock_stream`, Core's ZMQ new-block notifications.
- `bcoin`: `BcoinNode`, a bcoin regtest node run as a child process (tests and the demo).

Nothing is imported here, so `import hashfarm.node.cookie` does not pull in aiohttp or zmq.
"""
