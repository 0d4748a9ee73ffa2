"""The publisher's spool: record framing, torn tails after a crash, bounds, the lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.broker.spool import Spool, SpoolRecord, decode_records, encode_record
from hashfarm.errors import BrokerError

RECORDS = [
    SpoolRecord("pool.shares", "share-1", b"\x00\x01payload"),
    SpoolRecord("pool.blocks", "block-\u00e9", b""),
    SpoolRecord("pool.shares", "share-3", bytes(range(256)) * 4),
]


def encoded() -> bytes:
    return b"".join(encode_record(r.subject, r.msg_id, r.payload) for r in RECORDS)


def test_records_round_trip_in_order() -> None:
    data = encoded()
    assert decode_records(data) == (RECORDS, len(data))


def test_every_torn_tail_is_dropped_and_earlier_records_kept() -> None:
    data = encoded()
    last = len(data) - len(encode_record(*vars_of(RECORDS[-1])))
    for cut in range(last, len(data)):  # a kill -9 at every byte of the last record
        records, valid = decode_records(data[:cut])
        assert records == RECORDS[:-1]
        assert valid == last


def test_a_corrupt_record_ends_the_readable_prefix() -> None:
    data = bytearray(encoded())
    first = len(encode_record(*vars_of(RECORDS[0])))
    data[first + 12] ^= 0xFF  # a byte inside the second record's body: its CRC fails
    assert decode_records(bytes(data)) == (RECORDS[:1], first)


def vars_of(r: SpoolRecord) -> tuple[str, str, bytes]:
    return r.subject, r.msg_id, r.payload


def write(spool: Spool, records: list[SpoolRecord]) -> None:
    blobs = [encode_record(*vars_of(r)) for r in records]
    assert spool.reserve(sum(map(len, blobs)))
    spool.append(blobs)


def test_open_truncates_a_torn_tail_and_replays_the_rest(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    write(spool, RECORDS)
    spool.close()
    (segment,) = tmp_path.glob("*.spool")
    with segment.open("ab") as f:
        f.write(encode_record("pool.shares", "torn", b"x" * 100)[:37])  # killed mid-write

    again = Spool(tmp_path, max_bytes=1 << 20)
    again.open()
    assert again.messages == 3
    assert again.bytes == len(encoded()) == segment.stat().st_size
    assert [again.read(p) for p in again.sealed()] == [RECORDS]
    again.close()


def test_seal_rotates_and_drop_frees_space(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    write(spool, RECORDS[:2])
    spool.seal()
    write(spool, RECORDS[2:])
    spool.seal()
    first, second = spool.sealed()
    assert spool.read(first) == RECORDS[:2]
    assert spool.read(second) == RECORDS[2:]
    spool.drop(first)
    assert spool.messages == 1
    assert spool.bytes == second.stat().st_size
    assert not first.exists()
    spool.close()


def test_reserve_refuses_past_max_bytes(tmp_path: Path) -> None:
    record = encode_record("s", "id", b"x" * 100)
    spool = Spool(tmp_path, max_bytes=3 * len(record))
    spool.open()
    assert spool.reserve(len(record))
    spool.append([record])
    assert spool.reserve(2 * len(record))
    assert not spool.reserve(1)  # written plus reserved already at the bound
    spool.release(2 * len(record))
    assert spool.reserve(len(record))
    spool.close()


def test_a_second_process_cannot_share_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    with pytest.raises(BrokerError, match="in use"):
        Spool(tmp_path, max_bytes=1 << 20).open()
    spool.close()
    other = Spool(tmp_path, max_bytes=1 << 20)
    other.open()  # released on close
    other.close()


def test_an_oversized_message_is_refused() -> None:
    with pytest.raises(BrokerError, match="larger"):
        encode_record("s", "id", b"x" * (9 << 20))


def test_server_list_splits_a_comma_separated_setting() -> None:
    from hashfarm.broker.stream import server_list

    assert server_list("nats://a:4222, nats://b:4222,") == ["nats://a:4222", "nats://b:4222"]
    with pytest.raises(BrokerError):
        server_list(" , ")


@given(
    st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40), st.binary(max_size=300)),
             max_size=8),
    st.integers(min_value=0),
    st.binary(max_size=64),
)  # fmt: skip
def test_any_damage_yields_a_prefix_of_the_records(
    items: list[tuple[str, str, bytes]], cut: int, garbage: bytes
) -> None:
    """Whatever a crash or a bad disk leaves, decoding never raises and never invents a
    record: the result is a prefix of what was written."""
    blobs = [encode_record(*item) for item in items]
    data = b"".join(blobs)
    damaged = data[: cut % (len(data) + 1)] + garbage
    records, valid = decode_records(damaged)
    written = [SpoolRecord(*item) for item in items]
    assert records == written[: len(records)]
    assert valid == sum(len(b) for b in blobs[: len(records)])
