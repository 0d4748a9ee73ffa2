"""Hostile replies: every capture, mutated (values swapped for wrong types, Avalon blob items
for junk, bytes truncated or flipped), either parses or raises a FleetError; never an
AttributeError, TypeError or OverflowError that would take down a poll round.
Deterministic (seeded), about 4,000 parses."""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Iterator
from typing import Any

import pytest
from test_fleet_faults import CASES

from hashfarm.fleet import derive_faults, enrich
from hashfarm.fleet.errors import FleetError
from hashfarm.fleet.sources import BACKENDS, read
from hashfarm.fleet.sources.repair import decode_reply

WEIRD: list[Any] = [
    None, "", "x", "12q", [], {}, -1, 0, 1e308, True, "nan", [1, "a"], {"a": 1}, "-5", 3.5,
    "Ver[1", "Fan1[abc] MGHS[1 x]", "9" * 5000,
]  # fmt: skip
BLOB_ITEM = re.compile(r"\[[^\]]*\]")


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        yield from _paths(child, (*path, key))


def _set(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = root
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return root


def _mutants(raw: bytes, rng: random.Random, count: int) -> Iterator[bytes]:
    base = decode_reply(raw).data
    paths = list(_paths(base))
    for i in range(count):
        if i % 10 == 0:  # bytes: truncated, or one byte flipped
            cut = rng.randrange(len(raw))
            yield (
                raw[:cut] if i % 20 == 0 else raw[:cut] + bytes([raw[cut] ^ 0xFF]) + raw[cut + 1 :]
            )
            continue
        data = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(paths)
            try:
                old = _get(data, path)
                if isinstance(old, str) and BLOB_ITEM.search(old) and rng.random() < 0.5:
                    new: Any = BLOB_ITEM.sub(lambda m: _junk(rng, m.group()), old)
                else:
                    new = copy.deepcopy(rng.choice(WEIRD))
                data = _set(data, path, new)
            except (KeyError, IndexError, TypeError):
                continue  # the path went away with an earlier mutation
        yield json.dumps(data).encode()


def _junk(rng: random.Random, item: str) -> str:
    """An Avalon blob item, replaced one time in five by junk."""
    if rng.random() >= 0.2:
        return item
    return rng.choice(["[x]", "[1e999]", "[]", "[-1 nan]", "[Work: Dancing]"])


def _get(root: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        root = root[key]
    return root


@pytest.mark.parametrize(("backend", "command", "name", "model"), [c[:4] for c in CASES])
def test_mutated_captures_parse_or_raise_a_fleet_error(capture, backend, command, name, model):
    rng = random.Random(name)  # a fixed stream per capture
    outcomes = {"parsed": 0, "refused": 0}
    for raw in _mutants(capture(name), rng, 130):
        try:
            derive_faults(enrich(read(BACKENDS[backend], {command: raw}, model=model)))
            outcomes["parsed"] += 1
        except FleetError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0  # the mutations did hit values the parser reads
