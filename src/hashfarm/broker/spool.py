"""The publisher's local spool: fsynced, length-prefixed records while the broker is away.

A spool directory holds numbered segment files (`000000000001.spool`, ...), each an
append-only run of records:

    u32 body length | u32 CRC-32 of body | body
    body = u16 subject length | u16 msg_id length | subject | msg_id | payload

Writes go to the active segment and are fsynced in batches (group commit) before any of
their messages is acknowledged. Replay reads the sealed segments oldest first; a segment is
deleted only once the broker acknowledged every record in it. A process killed mid-write
leaves a torn last record (short, or failing its CRC): it was never acknowledged, so
reading stops there and `open` truncates it away.

The file operations block; the publisher runs them in a worker thread, one at a time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from hashfarm.errors import BrokerError

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")  # body length, CRC-32 of the body
_NAMES = struct.Struct("<HH")  # subject length, msg_id length
MAX_RECORD_BYTES = 8 << 20  # larger than any message the broker takes (its max_payload)
SEGMENT_BYTES = 64 << 20  # rotate the active segment past this size (replay reads a whole one)
_SUFFIX = ".spool"


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One spooled message, as it will be published again."""

    subject: str
    msg_id: str
    payload: bytes


def encode_record(subject: str, msg_id: str, payload: bytes) -> bytes:
    """The bytes of one record (header and body)."""
    s, m = subject.encode(), msg_id.encode()
    body = b"".join((_NAMES.pack(len(s), len(m)), s, m, payload))
    if len(body) > MAX_RECORD_BYTES:
        raise BrokerError(f"message of {len(body)} bytes is larger than a spool record may be")
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


def decode_records(data: bytes) -> tuple[list[SpoolRecord], int]:
    """The whole records at the start of `data` and how many bytes they span; whatever
    follows (a torn or corrupt record) is not part of the result."""
    records: list[SpoolRecord] = []
    pos, end = 0, len(data)
    while pos + _HEADER.size <= end:
        length, crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        if length < _NAMES.size or length > MAX_RECORD_BYTES or start + length > end:
            break
        body = data[start : start + length]
        if zlib.crc32(body) != crc:
            break
        s_len, m_len = _NAMES.unpack_from(body)
        if _NAMES.size + s_len + m_len > length:
            break
        names = body[_NAMES.size : _NAMES.size + s_len + m_len]
        records.append(
            SpoolRecord(
                names[:s_len].decode(errors="replace"),
                names[s_len:].decode(errors="replace"),
                bytes(body[_NAMES.size + s_len + m_len :]),
            )
        )
        pos = start + length
    return records, pos


class Spool:
    """A bounded directory of spool segments, owned by one process (an flock on `LOCK`)."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES):
        self.directory = directory
        self.max_bytes = max_bytes  # refuse appends that would take the spool past this
        self.segment_bytes = segment_bytes
        self.bytes = 0  # bytes in every segment on disk
        self.messages = 0  # records in every segment on disk
        self._reserved = 0  # bytes promised to appends not yet written
        self._sealed: list[tuple[Path, int, int]] = []  # (path, records, bytes), oldest first
        self._active: tuple[Path, int] | None = None  # (path, fd)
        self._active_counts = (0, 0)  # records, bytes of the active segment
        self._next_seq = 1
        self._lock_fd = -1

    # -- opening -------------------------------------------------------------------------------

    def open(self) -> None:
        """Take the directory's lock, drop torn tails and count what earlier runs left."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise BrokerError(f"spool {self.directory} is in use by another process") from exc
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            if not path.stem.isdigit():
                continue  # not one of ours
            records, valid = decode_records(path.read_bytes())
            size = path.stat().st_size
            if valid < size:
                log.warning(
                    "spool %s: dropped a torn tail of %d bytes (never acknowledged)",
                    path.name,
                    size - valid,
                )
                with path.open("r+b") as f:
                    f.truncate(valid)
                    os.fsync(f.fileno())
            if not records:
                path.unlink()
                continue
            self._sealed.append((path, len(records), valid))
            self.messages += len(records)
            self.bytes += valid
            self._next_seq = max(self._next_seq, int(path.stem) + 1)

    def close(self) -> None:
        """Close the active segment and release the lock."""
        self._close_active()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- writing -------------------------------------------------------------------------------

    def reserve(self, size: int) -> bool:
        """Promise `size` bytes to an append; False when that would pass `max_bytes`."""
        if self.bytes + self._reserved + size > self.max_bytes:
            return False
        self._reserved += size
        return True

    def release(self, size: int) -> None:
        """Give back a reservation that will not be written."""
        self._reserved -= size

    def append(self, records: list[bytes]) -> None:
        """Write reserved records to the active segment and fsync them (blocking)."""
        size = sum(len(r) for r in records)
        try:
            _, fd = self._active or self._open_active()
            n, b = self._active_counts
            try:
                data = memoryview(b"".join(records))
                while data:  # os.write may write less than asked
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, b)  # no half record in front of the next append
                raise
        finally:
            self._reserved -= size
        self._active_counts = (n + len(records), b + size)
        self.messages += len(records)
        self.bytes += size
        if b + size >= self.segment_bytes:
            self.seal()

    def _open_active(self) -> tuple[Path, int]:
        path = self.directory / f"{self._next_seq:012d}{_SUFFIX}"
        self._next_seq += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new file's name is durable before its records count
        finally:
            os.close(dir_fd)
        self._active = (path, fd)
        self._active_counts = (0, 0)
        return self._active

    def _close_active(self) -> None:
        if self._active is not None:
            os.close(self._active[1])
            self._active = None

    def seal(self) -> None:
        """Close the active segment (if it holds records) so replay may take it."""
        if self._active is None:
            return
        path = self._active[0]
        records, size = self._active_counts
        self._close_active()
        if records:
            self._sealed.append((path, records, size))
        else:
            path.unlink(missing_ok=True)

    # -- replaying -----------------------------------------------------------------------------

    def sealed(self) -> list[Path]:
        """The sealed segments, oldest first."""
        return [path for path, _, _ in self._sealed]

    def read(self, path: Path) -> list[SpoolRecord]:
        """The whole records of one segment, in order."""
        return decode_records(path.read_bytes())[0]

    def drop(self, path: Path) -> None:
        """Delete a segment whose every record the broker acknowledged."""
        for i, (p, records, size) in enumerate(self._sealed):
            if p == path:
                del self._sealed[i]
                path.unlink(missing_ok=True)
                self.messages -= records
                self.bytes -= size
                return
