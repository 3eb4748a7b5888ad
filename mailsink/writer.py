"""Parsing and storing, in a writer process beside the SMTP event loop.

The SMTP handler queues each delivery and awaits a future. The writer process
reads whatever deliveries have arrived, parses them, stores them in one
transaction and only then acknowledges them; the acknowledgements resolve the
futures on the loop. So a client that got ``250`` can already find its message
in the API, and the loop never waits on parsing or on SQLite.

Why a process and not a thread: parsing and SQLite's Python side hold the GIL,
and with the writer as a thread the sink topped out near 950 messages/s on two
cores; as a process it uses the second core and takes about 1,300.

Deliveries and acknowledgements travel over a socket pair as length-prefixed
pickles; both ends are this program.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from mailsink.config import LOG_FORMAT
from mailsink.parsing import ParsedMessage, parse_message
from mailsink.store import Delivery, MessageStore, open_connection

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
# One read takes everything queued up to this size; that is the batch.
_READ_SIZE = 1 << 20


class WriterStopped(RuntimeError):
    """The writer no longer accepts messages: the sink is shutting down."""


class StoreFailed(RuntimeError):
    """The writer could not store a batch; the client may try again later."""


# The writer's answer for one delivery: (sequence, message id, None) or (sequence, None,
# why it failed). A plain tuple: the writer runs as __main__, so its classes would not
# unpickle here.
_Ack = tuple[int, int | None, str | None]


def _frame(payload: object) -> bytes:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


class _FrameBuffer:
    """Collects bytes and yields each complete frame's payload."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[object]:
        self._buffer += data
        start = 0
        while len(self._buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer, start)
            end = start + _LENGTH.size + length
            if end > len(self._buffer):
                break
            yield pickle.loads(self._buffer[start + _LENGTH.size : end])
            start = end
        del self._buffer[:start]


# --- the writer process -------------------------------------------------------------


def run_writer(db: str, channel: socket.socket) -> None:
    """Store batches arriving on ``channel`` until the sink closes it."""
    # Only the sink decides when to stop (by closing the channel), so a Ctrl-C or a
    # SIGTERM sent to the whole process group cannot cut a batch short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=LOG_FORMAT)
    store = MessageStore(Path(db))
    connection = open_connection(store.path)
    frames = _FrameBuffer()
    channel.sendall(_frame([]))  # ready
    try:
        while data := channel.recv(_READ_SIZE):
            batch = cast(list[tuple[int, Delivery]], list(frames.feed(data)))
            if batch:
                channel.sendall(_frame(_store_batch(store, connection, batch)))
    finally:
        connection.close()
        channel.close()


def _store_batch(
    store: MessageStore, connection: sqlite3.Connection, batch: list[tuple[int, Delivery]]
) -> list[_Ack]:
    parsed = [(delivery, _parse(delivery.raw)) for _, delivery in batch]
    try:
        ids = store.add_batch(connection, parsed)
    except Exception as exc:
        logger.exception("could not store %d message(s)", len(batch))
        return [(sequence, None, repr(exc)) for sequence, _ in batch]
    return [(sequence, id_, None) for (sequence, _), id_ in zip(batch, ids, strict=True)]


def _parse(raw: bytes) -> ParsedMessage:
    try:
        return parse_message(raw)
    except Exception:
        # Keep the raw source of a message the parser chokes on rather than lose it.
        logger.exception("could not parse a message; storing its raw source only")
        return ParsedMessage(
            message_id=None,
            from_header="",
            to_header="",
            subject="",
            date_header="",
            headers=[],
            text=None,
            html=None,
            to_addresses=[],
        )


# --- the loop's side ----------------------------------------------------------------


def _python_path() -> str:
    """PYTHONPATH for the writer: this package's folder first, so it imports the same code."""
    package_parent = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))


class MessageWriter(asyncio.Protocol):
    """The event loop's handle on the writer process (and its end of the channel)."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store
        self._frames = _FrameBuffer()
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._sequence = 0
        self._outgoing = bytearray()
        self._stopping = False
        self._transport: asyncio.Transport | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start the writer process and wait until it has opened the database."""
        loop = asyncio.get_running_loop()
        self._ready, self._closed = loop.create_future(), loop.create_future()
        ours, theirs = socket.socketpair()
        # A fresh interpreter rather than a fork: this process already runs threads.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "mailsink.writer", str(self._store.path), str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env={**os.environ, "PYTHONPATH": _python_path()},
        )
        theirs.close()
        await loop.create_connection(lambda: self, sock=ours)
        await asyncio.wait({self._ready, self._closed}, return_when=asyncio.FIRST_COMPLETED)
        if not self._ready.done():
            raise RuntimeError("the mailsink writer process exited while starting")

    async def wait_closed(self) -> None:
        """Return when the writer process has gone: after ``close`` or by accident."""
        assert self._closed is not None
        await self._closed

    def submit(self, delivery: Delivery) -> asyncio.Future[int]:
        """Queue a delivery; the future gets its message id once committed."""
        if self._stopping or self._transport is None or self._transport.is_closing():
            raise WriterStopped("mailsink is shutting down")
        self._sequence += 1
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[int] = loop.create_future()
        self._pending[self._sequence] = stored
        if not self._outgoing:
            # One write per turn of the loop: the writer reads it as one batch.
            loop.call_soon(self._send_outgoing)
        self._outgoing += _frame((self._sequence, delivery))
        return stored

    def _send_outgoing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(bytes(self._outgoing))
        self._outgoing.clear()

    async def close(self) -> None:
        """Accept nothing more, wait until all that is queued is stored, end the process."""
        self._stopping = True
        self._send_outgoing()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write_eof()  # the writer finishes its queue, then exits
        await self.wait_closed()
        if self._process is not None:
            await asyncio.to_thread(self._process.wait)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        for acks in self._frames.feed(data):
            self._acknowledge(cast(list[_Ack], acks))

    def eof_received(self) -> bool:
        return False  # close our side as well

    def connection_lost(self, exc: Exception | None) -> None:
        pending, self._pending = self._pending, {}
        for stored in pending.values():
            if not stored.done():
                stored.set_exception(StoreFailed("the writer process went away"))
        if not self._stopping:
            logger.error("the mailsink writer process exited unexpectedly")
        assert self._closed is not None
        if not self._closed.done():
            self._closed.set_result(None)

    def _acknowledge(self, acks: list[_Ack]) -> None:
        assert self._ready is not None
        if not self._ready.done():
            self._ready.set_result(None)  # the first frame says the writer is ready
        for sequence, message_id, error in acks:
            stored = self._pending.pop(sequence)
            if stored.done():  # the client went away meanwhile
                continue
            if message_id is not None:
                stored.set_result(message_id)
            else:
                stored.set_exception(StoreFailed(error))


def main() -> None:
    """``python -m mailsink.writer DB FD``, as ``MessageWriter.start`` runs it."""
    db, descriptor = sys.argv[1], int(sys.argv[2])
    run_writer(db, socket.socket(fileno=descriptor))


if __name__ == "__main__":
    main()
