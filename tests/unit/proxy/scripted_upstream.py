"""The upstream pool's side of the Stratum handshake, for the proxy tests' scripted pools."""

from __future__ import annotations

import asyncio

from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import Request, encode
from hashfarm.stratum.work import Job

EXTRANONCE1 = bytes.fromhex("0a0b0c0d")  # the same on every scripted pool (failover resumes)


def answer_handshake(
    req: Request, writer: asyncio.StreamWriter, difficulty: float, job: Job
) -> bool:
    """Answer configure, subscribe and authorize (then `difficulty` and `job`); False for any
    other request, which the caller scripts itself."""
    if req.method == m.CONFIGURE:
        writer.write(encode(m.result(req.id, m.configure_result(0x1FFFE000))))
    elif req.method == m.SUBSCRIBE:
        writer.write(encode(m.result(req.id, m.subscribe_result(EXTRANONCE1, 8, "s1"))))
    elif req.method == m.AUTHORIZE:
        writer.write(encode(m.result(req.id, True)))
        writer.write(encode(m.set_difficulty(difficulty)) + encode(m.notify(job)))
    else:
        return False
    return True
