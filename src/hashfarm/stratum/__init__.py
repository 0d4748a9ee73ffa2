"""Stratum V1, sans-I/O: the only package that knows the wire format.

- `codec`: line framing with a length limit, Request/Notification/Response, error codes 20-25,
  decode/encode with orjson.
- `messages`: typed builders and parsers for each method (pool side and client side).
- `work`: a job's notify fields in native types, their byte order, and header building.

Pool, proxy and miner wrap these in their own asyncio shells.
"""
