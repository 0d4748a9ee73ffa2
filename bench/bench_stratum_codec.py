"""Stratum codec on the pool's share path: decode a `mining.submit` line, parse its params,
encode the reply (`true`, or a low-difficulty error triple).

Reference in the same run: the same steps with `stratum/codec.py` and `stratum/messages.py`
as they are at git revision `--ref` (loaded from `git show` as separate modules), so the
ratio is before / after on the same machine and interpreter.
Run: .venv/bin/python bench/bench_stratum_codec.py [--ref HEAD] [--runs 7] [--n 50000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hashfarm.stratum import codec, messages

ROOT = Path(__file__).resolve().parent.parent
LINE = (
    b'{"id":4217,"method":"mining.submit","params":["bc1qworker.rig7","1a2f",'
    b'"0000000000000a3c","6543a1b2","deadbeef","1fffe000"]}'
)


def load_reference(rev: str) -> tuple[Any, Any]:
    """codec and messages as they are at `rev`, imported under private module names."""

    def source(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout

    ref_codec = types.ModuleType("ref_stratum_codec")
    sys.modules[ref_codec.__name__] = ref_codec  # dataclasses look their module up by name
    exec(compile(source("src/hashfarm/stratum/codec.py"), "ref_codec", "exec"), ref_codec.__dict__)
    ref_messages = types.ModuleType("ref_stratum_messages")
    sys.modules[ref_messages.__name__] = ref_messages
    text = source("src/hashfarm/stratum/messages.py")
    text = text.replace("from hashfarm.stratum.codec import", "from ref_stratum_codec import")
    exec(compile(text, "ref_messages", "exec"), ref_messages.__dict__)
    return ref_codec, ref_messages


def steps(cod: Any, msg: Any) -> dict[str, Callable[[], Any]]:
    """The three paths measured, bound to one pair of modules."""
    decode, encode, parse_submit = cod.decode, cod.encode, msg.parse_submit
    result, error, low = msg.result, msg.error, cod.ErrorCode.LOW_DIFFICULTY

    def rejected() -> bytes:
        request = decode(LINE)
        parse_submit(request.params)
        return encode(error(request.id, low, "Low difficulty share"))  # type: ignore[no-any-return]

    def accepted() -> bytes:
        request = decode(LINE)
        parse_submit(request.params)
        return encode(result(request.id, True))  # type: ignore[no-any-return]

    def decode_parse() -> Any:
        return parse_submit(decode(LINE).params)

    return {"decode+parse": decode_parse, "rejected": rejected, "accepted": accepted}


def per_call_us(fn: Callable[[], Any], n: int) -> float:
    """Mean microseconds per call over `n` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="git revision of the reference codec")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--n", type=int, default=50_000)
    args = parser.parse_args()
    ref = steps(*load_reference(args.ref))
    new = steps(codec, messages)
    for name in new:
        assert repr(ref[name]()) == repr(new[name]()), f"{name}: the two versions disagree"
    print(f"median of {args.runs} runs x {args.n:,} calls, us/call (reference = {args.ref})")
    for name in new:
        before, after = [], []
        for _ in range(args.runs):  # interleaved, so drift hits both alike
            before.append(per_call_us(ref[name], args.n))
            after.append(per_call_us(new[name], args.n))
        b, a = statistics.median(before), statistics.median(after)
        print(f"  {name:13s} reference {b:6.2f}  now {a:6.2f}  ratio {b / a:5.2f}x")


if __name__ == "__main__":
    main()
