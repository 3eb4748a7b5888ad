"""The sink's shortcuts through aiosmtpd must take exactly what aiosmtpd takes.

DATA is read in large pieces instead of line by line: both servers run in this
process on one event loop, each case is sent to both as raw bytes (so dot-stuffing,
bare line feeds and odd splits are exactly as written), and the replies and the
stored content must agree. A plain ``<local@domain>`` skips the RFC 5322 parser.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from mailsink.smtp import SinkSMTP

SIZE_LIMIT = 4096


class Recorder:
    """Keeps the content of every accepted message."""

    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.contents.append(envelope.content)
        return f"250 stored {len(self.contents)}"


async def exchange(server_class: type[SMTP], data: bytes, *,
                   pieces: int) -> tuple[list[bytes], list[bytes]]:
    """Send DATA in ``pieces`` writes and a NOOP after it; the reply codes and what was stored."""
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    server = await loop.create_server(
        lambda: server_class(recorder, hostname="sink", data_size_limit=SIZE_LIMIT, loop=loop),
        host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readuntil(b"\r\n")  # greeting
        for command in (b"HELO client\r\n", b"MAIL FROM:<a@example.com>\r\n",
                        b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n"):
            writer.write(command)
            await reader.readuntil(b"\r\n")
        # The NOOP follows the message at once, as a pipelining client's next command would.
        wire = data + b"NOOP\r\n"
        step = max(1, len(wire) // pieces)
        for start in range(0, len(wire), step):
            writer.write(wire[start:start + step])
            await writer.drain()
            await asyncio.sleep(0)
        replies = [await reader.readuntil(b"\r\n"), await reader.readuntil(b"\r\n")]
    finally:
        writer.close()
        server.close()
        await server.wait_closed()
    return [reply[:3] for reply in replies], recorder.contents


def both(data: bytes, pieces: int = 1) -> tuple[Any, Any]:
    async def run() -> tuple[Any, Any]:
        return (await exchange(SMTP, data, pieces=pieces),
                await exchange(SinkSMTP, data, pieces=pieces))
    return asyncio.run(run())


CASES = {
    "empty message": b".\r\n",
    "one empty line": b"\r\n.\r\n",
    "one short line": b"a\r\n.\r\n",
    "a line ending in a period": b"Subject: x\r\n\r\nThe end.\r\nMore.\r\n.\r\n",
    "stuffed periods": b"..leading\r\n...two\r\nmid.dle\r\n..\r\n.\r\n",
    "a bare line feed before the period": b"Subject: x\r\n\r\nbody\n.\r\nstill body\r\n.\r\n",
    "a period line without its line feed": b"body\r\n.\rx\r\n.\r\n",
    "no final line break in the content": b"Subject: x\r\n\r\nbody.\r\n.\r\n",
    "the longest line allowed": b"x" * 999 + b"\r\n.\r\n",
    "a line one byte too long": b"x" * 1000 + b"\r\n.\r\n",
    "a very long line": b"y" * 5000 + b"\r\n.\r\n",
    "just within the size limit": (b"z" * 62 + b"\r\n") * (SIZE_LIMIT // 64) + b".\r\n",
    "over the size limit": (b"z" * 62 + b"\r\n") * (SIZE_LIMIT // 64 + 1) + b".\r\n",
}


@pytest.mark.parametrize("pieces", [1, 7, 10_000],
                         ids=["one write", "a few writes", "byte by byte"])
@pytest.mark.parametrize("name", list(CASES))
def test_the_sink_takes_what_aiosmtpd_takes(name: str, pieces: int) -> None:
    stock, sink = both(CASES[name], pieces)
    assert sink == stock


def random_messages(count: int) -> Iterator[bytes]:
    rng = random.Random(2920)
    alphabet = [b"a", b"b", b".", b"\r\n", b"\n", b"\r", b" ", b"..", b".\r\n"]
    for _ in range(count):
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        yield body + b"\r\n.\r\n"


@pytest.mark.parametrize("data", list(random_messages(40)))
def test_random_mixtures_of_periods_and_line_breaks_are_read_alike(data: bytes) -> None:
    stock, sink = both(data, pieces=3)
    assert sink == stock


@pytest.mark.parametrize("argument", [
    "<ana@example.com>",
    "<Ana.Souza+tag@Mail.Example.COM> SIZE=3151 BODY=8BITMIME",
    "<o'brien@example.com>",
    "<a@b>rest",
    "<a@b>\t SIZE=1",
    "<a@b> (a comment) SIZE=1",
    "<>",
    "<ana@[127.0.0.1]>",
    '<"ana souza"@example.com>',
    "<ana..souza@example.com>",
    "<.ana@example.com>",
    "<ana@example..com>",
    "<ana@exa_mple.com>",
    "<ana@example.com",
    " <ana@example.com>",
    "ana@example.com",
    "<@relay.example:ana@example.com>",
    "<ана@пример.рф>",
])
def test_a_path_is_read_as_aiosmtpd_reads_it(argument: str) -> None:
    async def both() -> tuple[object, object]:
        loop = asyncio.get_running_loop()
        stock = SMTP(Recorder(), loop=loop)
        sink = SinkSMTP(Recorder(), loop=loop)
        return stock._getaddr(argument), sink._getaddr(argument)

    stock, sink = asyncio.run(both())
    assert sink == stock
