"""The SQLite ledger's batch write, and the child process that can run it.

`write_batch` writes one group commit's rows in one transaction; the ledger runs it either on
a thread of the pool's process or, by default, in a child process of its own started from
this file (`storage.sqlite_writer`, docs/persistence.md). Why a process: a thread must win
the GIL back from the event loop after every SQLite call that released it (the statement's
prepare, its step, the commit's fsync, the reply), and with the loop serving miners that
wait was most of a share's acknowledgement time (bench/bench_pool_tail.py). A child has its
own interpreter and GIL; the pool sends it a batch's rows over a socket pair and answers the
batch's miners when the child reports the commit.

The child is run as a script by path (`python sqlite_writer.py FD`), so it imports the
standard library only and starts in a few tens of milliseconds. Wire format, both ways: a
4-byte little-endian length, then a `marshal`ed value (the peer is our own parent or child,
never the network):

* parent -> child, first: a `Setup` dict (the file, PRAGMAs and SQL text; sqlite.py owns the
  SQL); then per batch: `(share_rows, block_rows)`;
* child -> parent, per message: `(status, text)`: `OK`, `TRANSIENT` (an `OperationalError`:
  locked, busy, I/O; nothing was committed, worth a retry) or `PERMANENT` (any other
  `sqlite3.Error`; nothing was committed).

The child ignores SIGINT and SIGTERM (a Ctrl-C in the terminal, or systemd's stop signal sent
to every process of the unit, must not end it while the pool still commits what it queued)
and exits when the pool closes its end of the socket, or dies.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import marshal
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict, cast

log = logging.getLogger(__name__)

OK, TRANSIENT, PERMANENT = 0, 1, 2
LENGTH = struct.Struct("<I")

Row = Sequence[object]


class Setup(TypedDict):
    """What the child needs to open the ledger's file and write its rows."""

    path: str
    synchronous: str
    busy_timeout_ms: int
    insert_share: str  # "INSERT INTO shares (...) VALUES " (the VALUES groups are appended)
    share_values: str  # one row's "(?, ?, ...)"
    insert_block: str  # one block's INSERT ... ON CONFLICT statement
    rows_per_insert: int  # share rows per INSERT at most (SQLite's bound-variable limit)


def connect(path: Path | str, synchronous: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection to the ledger's file as the ledger's writers use it: autocommit (BEGIN
    and COMMIT are issued by hand), usable from a thread that did not open it, waiting
    `busy_timeout_ms` for another connection's lock, with the ledger's synchronous policy."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def write_batch(
    conn: sqlite3.Connection, setup: Setup, shares: Sequence[Row], blocks: Sequence[Row]
) -> None:
    """Write a batch's share and block rows in ONE transaction.

    The shares go in as multi-row INSERTs of at most SQLite's bound-variable limit, not one
    statement per row: sqlite3 releases the GIL around every statement step, and a thread
    writer must win it back each time (the usual batch is one statement in autocommit)."""
    step = setup["rows_per_insert"]
    inserts = [shares[i : i + step] for i in range(0, len(shares), step)]
    if len(inserts) == 1 and not blocks:  # one statement: its own transaction
        _insert_shares(conn, setup, inserts[0])
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for rows in inserts:
            _insert_shares(conn, setup, rows)
        conn.executemany(setup["insert_block"], blocks)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _insert_shares(conn: sqlite3.Connection, setup: Setup, rows: Sequence[Row]) -> None:
    values = [v for row in rows for v in row]
    conn.execute(setup["insert_share"] + ", ".join([setup["share_values"]] * len(rows)), values)


def outcome(fn: Any, *args: Any) -> tuple[int, str]:
    """Run fn(*args); the (status, text) the child reports for it."""
    try:
        fn(*args)
    except sqlite3.OperationalError as exc:  # locked, busy, disk I/O: worth a retry
        return TRANSIENT, str(exc)
    except sqlite3.Error as exc:
        return PERMANENT, str(exc)
    return OK, ""


def frame(value: Any) -> bytes:
    """One message: its length, then the marshalled value."""
    body = marshal.dumps(value)
    return LENGTH.pack(len(body)) + body


class WriterLost(Exception):
    """The child exited or could not be reached; `started` says whether the current message
    may have reached it (then a batch's outcome is unknown)."""

    def __init__(self, message: str, *, started: bool) -> None:
        super().__init__(message)
        self.started = started


class _Channel(asyncio.Protocol):
    """The pool's end of the socket pair: sends messages and hands each reply, in order, to
    the callback of the message it answers, straight from the read callback (no stream
    reader, no task resumed a loop turn later); a lost connection hands each waiting
    callback a ConnectionResetError instead."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._waiting: collections.deque[Callable[[Any], None]] = collections.deque()
        self._buffer = bytearray()
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)

    def open(self) -> bool:
        return self.lost is None and self.transport is not None

    def send(self, message: Any, on_reply: Callable[[Any], None]) -> None:
        """Send one message; `on_reply(reply)` later (or `on_reply(ConnectionResetError)`)."""
        if not self.open():
            on_reply(ConnectionResetError(f"writer process gone: {self.lost}"))
            return
        assert self.transport is not None
        self._waiting.append(on_reply)
        self.transport.write(frame(message))

    def request(self, message: Any) -> asyncio.Future[Any]:
        """Send one message; a future for the reply (or the ConnectionResetError)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def settle(reply: Any) -> None:
            if future.done():
                return
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)

        self.send(message, settle)
        return future

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= LENGTH.size:
            end = LENGTH.size + LENGTH.unpack_from(self._buffer)[0]
            if len(self._buffer) < end:
                return
            reply = marshal.loads(self._buffer[LENGTH.size : end])
            del self._buffer[:end]
            _hand(self._waiting.popleft(), reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("the writer process closed its end")
        while self._waiting:
            _hand(self._waiting.popleft(), ConnectionResetError(str(self.lost)))


def _hand(on_reply: Callable[[Any], None], reply: Any) -> None:
    """Call one reply's callback; a bug in it must not close the channel."""
    try:
        on_reply(reply)
    except Exception:
        log.exception("ledger writer reply callback failed")


class WriterProcess:
    """The pool's side: starts the child, sends it batches, one at a time, and reads each
    outcome. A child that has exited by the next batch is started again."""

    start_timeout_s = 30.0  # how long a new child may take to start and open the file
    stop_timeout_s = 30.0  # how long close() waits for the child to finish and exit

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.starts = 0  # children started (1 unless one was lost), for tests and logs
        self.proc: subprocess.Popen[bytes] | None = None
        self._channel: _Channel | None = None

    async def start(self) -> tuple[int, str]:
        """Start a child and have it open the file: its (status, text), or WriterLost."""
        await self.close()
        parent, child = socket.socketpair()
        try:
            # (blocking, as the loop is at start or after a lost child: a fork and exec)
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, __file__, str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            parent.close()
            message = f"cannot start the ledger's writer process: {exc}"
            raise WriterLost(message, started=False) from exc
        finally:
            child.close()
        self.starts += 1
        return await asyncio.wait_for(self._connect(parent), self.start_timeout_s)

    async def _connect(self, parent: socket.socket) -> tuple[int, str]:
        loop = asyncio.get_running_loop()
        _, self._channel = await loop.create_unix_connection(_Channel, sock=parent)
        return await self._exchange(self.setup)

    def ready(self) -> bool:
        """The child is running and its socket open: `send` may be used."""
        channel = self._channel
        return (
            channel is not None
            and channel.open()
            and self.proc is not None
            and (self.proc.poll() is None)
        )

    def send(
        self, shares: Sequence[Row], blocks: Sequence[Row], on_reply: Callable[[Any], None]
    ) -> None:
        """Have the (ready) child write one batch; `on_reply((status, text))` from the read
        callback, or `on_reply(WriterLost(started=True))` if the child was lost meanwhile."""
        assert self._channel is not None

        def reply(value: Any) -> None:
            on_reply(self._lost(value) if isinstance(value, ConnectionError) else value)

        self._channel.send((shares, blocks), reply)

    async def write(self, shares: Sequence[Row], blocks: Sequence[Row]) -> tuple[int, str]:
        """Have the child write one batch, starting a child first if none is ready; its
        (status, text). WriterLost if the child is gone: with `started`, it may have
        committed the batch before it went."""
        if not self.ready():
            try:  # gone since the last batch (or never started): nothing of it was sent
                status, text = await self.start()
            except WriterLost as exc:
                raise WriterLost(str(exc), started=False) from exc
            if status != OK:
                return status, text
        return await self._exchange((shares, blocks))

    async def _exchange(self, message: Any) -> tuple[int, str]:
        assert self._channel is not None
        try:
            status, text = await self._channel.request(message)
        except ConnectionError as exc:
            await self.close()
            raise self._lost(exc) from exc
        return int(status), str(text)

    def _lost(self, exc: BaseException) -> WriterLost:
        code = None if self.proc is None else self.proc.poll()
        return WriterLost(
            f"the ledger's writer process was lost ({exc}; exit status {code})", started=True
        )

    async def close(self) -> None:
        """Close the socket (the child finishes its batch, closes the file and exits) and
        wait for it; kill it if it has not exited after `stop_timeout_s`."""
        channel, self._channel = self._channel, None
        if channel is not None and channel.transport is not None:
            channel.transport.close()
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                await asyncio.to_thread(proc.wait, self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)


def _receive(sock: socket.socket) -> Any:
    """The next message, or None once the parent has closed its end (or died)."""
    head = _exactly(sock, LENGTH.size)
    if head is None:
        return None
    body = _exactly(sock, LENGTH.unpack(head)[0])
    return None if body is None else marshal.loads(body)


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(min(size - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _open(setup: Setup) -> sqlite3.Connection:
    conn = connect(setup["path"], setup["synchronous"], setup["busy_timeout_ms"])
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # the ledger's checkpointer thread does them
    return conn


def serve(sock: socket.socket) -> None:
    """The child's loop: open the file the setup names, then write batches until EOF."""
    setup: Setup | None = _receive(sock)
    if setup is None:
        return
    conns: list[sqlite3.Connection] = []
    status, text = outcome(lambda: conns.append(_open(setup)))
    sock.sendall(frame((status, text)))
    if status != OK:
        return
    conn = conns[0]
    try:
        while (batch := _receive(sock)) is not None:
            shares, blocks = batch
            sock.sendall(frame(outcome(write_batch, conn, setup, shares, blocks)))
    finally:
        conn.close()


def main(argv: list[str]) -> None:
    """`python sqlite_writer.py FD`: serve the socket inherited as file descriptor FD."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with (
        socket.socket(fileno=int(argv[1])) as sock,
        contextlib.suppress(BrokenPipeError, ConnectionResetError),  # the pool went away
    ):
        serve(sock)


if __name__ == "__main__":
    main(sys.argv)
