"""The aiosmtpd handler: injected faults and delay, then hand-off to the writer."""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from mailsink.store import Delivery
from mailsink.writer import MessageWriter, StoreFailed, WriterStopped

REJECTED = "550 5.7.1 Message rejected by mailsink fault injection"
TEMPFAILED = "451 4.3.0 Temporary failure injected by mailsink"
STORE_FAILED = "451 4.3.0 mailsink could not store the message"
SHUTTING_DOWN = "421 4.3.2 mailsink is shutting down"
# RFC 5321 §4.1.1.4: the message ends at a line holding a single period.
END_OF_DATA = b".\r\n"
# The usual path of MAIL and RCPT, ``<local@domain>`` of plain dot-atoms (RFC 5321 §4.1.2).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")
LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
TOO_MUCH_DATA = "552 Error: Too much mail data"

logger = logging.getLogger(__name__)


@dataclass
class FaultPlan:
    """Which share of messages to reject or temp-fail, and how long to wait first."""

    reject_rate: float
    tempfail_rate: float
    delay_seconds: float
    rng: random.Random

    def draw(self) -> str | None:
        """The error reply for the next message, or None to accept it."""
        if not (self.reject_rate or self.tempfail_rate):
            return None
        roll = self.rng.random()
        if roll < self.reject_rate:
            return REJECTED
        if roll < self.reject_rate + self.tempfail_rate:
            return TEMPFAILED
        return None


class SinkHandler:
    """Accepts every envelope; answers DATA once the message is committed."""

    def __init__(self, writer: MessageWriter, faults: FaultPlan) -> None:
        self._writer = writer
        self._faults = faults

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        """Offer PIPELINING (RFC 2920): commands are read in order however they arrive."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message (or inject a fault) and answer the client."""
        if self._faults.delay_seconds:
            await asyncio.sleep(self._faults.delay_seconds)
        fault = self._faults.draw()
        if fault:
            return fault
        assert isinstance(envelope.content, bytes)  # decode_data is off
        delivery = Delivery(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            raw=envelope.content,
            received_at=time.time(),
        )
        try:
            message_id = await self._writer.submit(delivery)
        except WriterStopped:
            return SHUTTING_DOWN
        except StoreFailed:
            return STORE_FAILED  # the writer logged why; the client may retry later
        return f"250 2.0.0 Ok: stored as {message_id}"


class LoginCheck:
    """aiosmtpd's authenticator for the one login the sink was given (AUTH PLAIN, LOGIN)."""

    def __init__(self, user: str, password: str) -> None:
        self._user = user.encode()
        self._password = password.encode()

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: object) -> AuthResult:
        matches = isinstance(auth_data, LoginPassword) and (
            hmac.compare_digest(auth_data.login, self._user)
            & hmac.compare_digest(auth_data.password, self._password))
        return AuthResult(success=bool(matches), handled=False)


class SinkSMTP(SMTP):
    """aiosmtpd's server, made cheaper per message for a sink taking a thousand a second.

    aiosmtpd takes DATA one line at a time, with a coroutine step and a log call
    for each: the biggest cost on the sink's event loop. This reads up to the
    next ``.\\r\\n`` at a time and checks the same limits on the whole message.
    Positive replies wait for the end of the loop's turn, so the answers to a
    pipelined MAIL, RCPT and DATA leave in one write instead of three. And a plain
    ``<local@domain>`` is taken as it is, without the stdlib's RFC 5322 parser.
    The content stays bytes (the sink never turns ``decode_data`` on).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._replies = bytearray()

    async def push(self, status: str | bytes) -> None:
        reply = (status.encode() if isinstance(status, str) else status) + b"\r\n"
        self._replies += reply
        if reply.startswith((b"250", b"354")):
            if len(self._replies) == len(reply):
                self.loop.call_soon(self._send_replies)
        else:
            # A refusal may be followed at once by closing the connection: send it now.
            self._send_replies()
        await self._writer.drain()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = _PLAIN_PATH.match(arg)
        rest = arg[plain.end():].lstrip(" \t") if plain else ""
        if plain is None or rest.startswith("(") or self.local_part_limit:
            return super()._getaddr(arg)  # comments and the unusual: the full parser
        return plain[1], rest

    def _send_replies(self) -> None:
        if self._replies and self.transport is not None and not self.transport.is_closing():
            self._writer.write(bytes(self._replies))
        self._replies.clear()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            received, refusal = await self._read_data()
        except asyncio.CancelledError:
            logger.info("connection lost during DATA")
            self._writer.close()
            raise
        if refusal:
            await self.push(refusal)
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = _unstuff(received)
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> tuple[bytes, str | None]:
        """The lines before the lone period, as sent, and the refusal if they broke a limit.

        A ``.\\r\\n`` ends the message only at the start of a line; any other (a
        sentence ending a line) is read past. Past the size limit the data is
        dropped as it comes, but still read to its end.
        """
        data = bytearray()
        size = 0
        refusal = None
        while True:
            try:
                piece = await self._reader.readuntil(END_OF_DATA)
            except asyncio.LimitOverrunError as overrun:  # a long stretch without one
                piece = await self._reader.readexactly(overrun.consumed)
            size += len(piece)
            data += piece
            if data.endswith(END_OF_DATA) and (size == 3 or data[-5:-3] == b"\r\n"):
                break
            if self.data_size_limit and size > self.data_size_limit:
                refusal = refusal or self._first_broken_limit(data)
                del data[:-4]  # enough to tell whether a later period starts a line
        received = bytes(data[:-3])
        return received, refusal or self._first_broken_limit(received)

    def _first_broken_limit(self, received: bytes | bytearray) -> str | None:
        """aiosmtpd's answer to a message over its limits: the first line that breaks one."""
        lines = received.split(b"\r\n")
        # Both limits count each line's CRLF.
        if (max(map(len, lines)) + 2 <= self.line_length_limit
                and not (self.data_size_limit and len(received) > self.data_size_limit)):
            return None
        size = 0
        for line in lines:
            size += len(line) + 2
            if len(line) + 2 > self.line_length_limit:
                return LINE_TOO_LONG
            if self.data_size_limit and size > self.data_size_limit:
                return TOO_MUCH_DATA
        return None


def _unstuff(received: bytes) -> bytes:
    """Undo the client's dot-stuffing: a line's leading period goes (RFC 5321 §4.5.2)."""
    content = received.replace(b"\r\n.", b"\r\n")
    return content[1:] if content.startswith(b".") else content
