"""The SMTP adapter: long-lived connections per worker process, reused across emails."""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar

from provisioning.mail.message import PLAIN_ADDRESS

T = TypeVar("T")

# RFC 5321 §4.5.2: a line of the message that starts with a period gets one more.
_LEADING_PERIOD = re.compile(rb"(?m)^\.")


class DeliveryError(Exception):
    """The server did not take the message; ``permanent`` for 5xx answers."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class Outgoing(NamedTuple):
    """One message to send, and the caller's key for its result."""

    key: object
    recipient: str
    message: bytes


# What became of one message: the server's answer, or why it was not taken.
Result = str | DeliveryError


class MessageSource(Protocol):
    def next(self, *, wait: bool) -> Outgoing | None:
        """The next message; None when there is none (``wait``: none will come)."""
        ...


class MailSender:
    """Sends messages one by one; a transport that can do better overrides ``send_each``."""

    def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Send one message; the server's answer on success, DeliveryError otherwise."""
        raise NotImplementedError

    def send_each(self, sender: str, source: MessageSource
                  ) -> Generator[tuple[object, Result], None, None]:
        """Send what ``source`` hands out until it has no more; each message's key and result."""
        while (item := source.next(wait=True)) is not None:
            try:
                yield item.key, self.send(sender, item.recipient, item.message)
            except DeliveryError as refused:
                yield item.key, refused


# A connection the server dropped, or that broke under us.
_CONNECTION_LOST = (smtplib.SMTPServerDisconnected, ConnectionError)

# How the connection is protected: not at all (a sink on this machine), STARTTLS on a
# plain port (587), or TLS from the first byte (465).
SECURITY_MODES = ("none", "starttls", "tls")


@dataclass(frozen=True)
class SmtpServer:
    """Where mail goes and how to get in: the relay, its TLS, the account's login."""

    host: str
    port: int
    timeout: float = 30.0
    security: str = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None  # trust this CA bundle instead of the system's

    def __post_init__(self) -> None:
        if self.security not in SECURITY_MODES:
            raise ValueError(f"SMTP security is one of {', '.join(SECURITY_MODES)}, "
                             f"not {self.security!r}")
        if self.username and self.security == "none":
            raise ValueError("an SMTP login needs TLS (security starttls or tls): "
                             "the password would cross the network in the clear")

    def tls_context(self) -> ssl.SSLContext | None:
        """The client side of TLS: the server's certificate and name are checked."""
        if self.security == "none":
            return None
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


class SmtpSender(MailSender):
    """Keeps one SMTP connection open and reconnects when the server drops it.

    When the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in
    one write, and ``send_each`` sends the next message's three in the same
    write as the current message's content: one round trip per message instead
    of four, and one write for each on both ends.
    """

    def __init__(self, server: SmtpServer, *, tls_context: ssl.SSLContext | None = None
                 ) -> None:
        self.server = server
        # One context serves every connection of the process (it holds the loaded CAs).
        self._tls = tls_context or server.tls_context()
        self._connection: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    def send(self, sender: str, recipient: str, message: bytes) -> str:
        with self._lock:
            result = self._deliver(sender, Outgoing(None, recipient, message), attempts=2)
        if isinstance(result, DeliveryError):
            raise result
        return result

    def send_each(self, sender: str, source: MessageSource
                  ) -> Generator[tuple[object, Result], None, None]:
        with self._lock:
            try:
                item = source.next(wait=True)
                while item is not None:
                    refusal = self._open_retrying(sender, item)
                    if refusal is not None:
                        yield item.key, refusal
                        item = source.next(wait=True)
                    else:
                        item = yield from self._stream(sender, source, item)
            except BaseException:
                # Stopped part way (the caller's error, or it stopped listening): the
                # connection may be inside a message, so it goes without a QUIT (which
                # would be read as content); the server drops what it had not been given.
                self._drop()
                raise

    def _stream(self, sender: str, source: MessageSource, item: Outgoing
                ) -> Generator[tuple[object, Result], None, Outgoing | None]:
        """Send ``item`` (its DATA open) and each message that is ready by then, the next
        envelope riding on the current content; returns the next message to open."""
        while True:
            assert self._connection is not None
            connection = self._connection
            following = source.next(wait=False) if connection.has_extn("pipelining") else None
            envelope = b""
            if following is not None:
                with contextlib.suppress(ValueError):  # not ASCII: ``_open`` refuses it alone
                    envelope = _envelope_commands(sender, following.recipient)
            try:
                connection.send(_transparent(item.message) + b".\r\n" + envelope)
                result = _data_reply(connection)
            except _CONNECTION_LOST:
                # Whether the server took it is unknown: once more on a fresh connection,
                # under the same Message-ID.
                self.close()
                result = self._deliver(sender, item, attempts=1)
                envelope = b""  # the following envelope went with the connection
            except OSError as exc:
                self.close()
                result = DeliveryError(f"SMTP connection failed: {exc}", permanent=False)
                envelope = b""
            yield item.key, result
            if following is None:
                return source.next(wait=True)
            if not envelope:
                return following  # it goes on its own
            try:
                refusal = _envelope_replies(connection)
            except OSError:  # lost with the envelope in flight: it starts afresh
                self.close()
                return following
            if refusal is not None:
                self._reset(connection)
                yield following.key, refusal
                return source.next(wait=True)
            item = following

    def _deliver(self, sender: str, item: Outgoing, *, attempts: int) -> Result:
        """One message on its own: envelope, content, the server's answer."""
        def once() -> Result:
            refusal = self._open(sender, item)
            if refusal is not None:
                return refusal
            assert self._connection is not None
            self._connection.send(_transparent(item.message) + b".\r\n")
            return _data_reply(self._connection)

        return self._trying(once, attempts)

    def _open_retrying(self, sender: str, item: Outgoing) -> DeliveryError | None:
        """``_open``, once more on a fresh connection if the server had dropped this one."""
        return self._trying(lambda: self._open(sender, item), attempts=2)

    def _trying(self, step: Callable[[], T], attempts: int) -> T | DeliveryError:
        """``step``, again on a fresh connection while the server had dropped the one it
        used (``attempts`` in all); a connection that broke otherwise is closed, reported."""
        for attempt in range(1, attempts + 1):
            try:
                return step()
            except _CONNECTION_LOST as exc:
                self.close()  # an idle connection the server dropped: one fresh try
                if attempt == attempts:
                    return DeliveryError(f"SMTP connection lost: {exc}", permanent=False)
            except OSError as exc:
                self.close()
                return DeliveryError(f"SMTP connection failed: {exc}", permanent=False)
        raise AssertionError("unreachable")

    def _open(self, sender: str, item: Outgoing) -> DeliveryError | None:
        """Connect if need be and send the envelope: None once DATA is open, else the
        refusal. A connection that breaks raises (the callers decide about trying again)."""
        try:
            connection = self._connect()
        except OSError as exc:
            self.close()
            return _connect_failure(exc)
        # MAIL, RCPT, DATA by hand (what sendmail does) to keep the server's final reply:
        # it carries the provider's id for the message.
        if connection.has_extn("pipelining"):
            try:
                commands = _envelope_commands(sender, item.recipient)
            except ValueError as exc:
                return DeliveryError(f"cannot send to {item.recipient!r}: {exc}", permanent=True)
            connection.send(commands)
            refusal = _envelope_replies(connection)
        else:
            refusal = _envelope(connection, sender, item.recipient)
        if refusal is not None:
            self._reset(connection)
        return refusal

    def _reset(self, connection: smtplib.SMTP) -> None:
        """RSET after a refusal; a server that hung up instead gets a fresh connection next time."""
        try:
            connection.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def _connect(self) -> smtplib.SMTP:
        if self._connection is None:
            server = self.server
            # Given the host, smtplib connects at once and checks the certificate's name.
            connection = (
                smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout,
                                 context=self._tls)
                if server.security == "tls"
                else smtplib.SMTP(server.host, server.port, timeout=server.timeout))
            try:
                connection.ehlo_or_helo_if_needed()
                if server.security == "starttls":
                    connection.starttls(context=self._tls)
                    connection.ehlo()  # RFC 3207 §4.2: what the server offers may change
                if server.username:
                    connection.login(server.username, server.password or "")
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._connection.quit()
            self._connection = None


def _connect_failure(exc: OSError) -> DeliveryError:
    """Why no session could be opened. Always temporary: a wrong password or an untrusted
    certificate is the relay's set-up, and the emails go once it is put right."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        reason = f"SMTP login refused: {_reply(exc.smtp_code, exc.smtp_error)}"
    elif isinstance(exc, smtplib.SMTPNotSupportedError):
        reason = f"SMTP server does not offer what the settings ask for: {exc}"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        reason = f"SMTP server's certificate not trusted: {exc.verify_message}"
    elif isinstance(exc, ssl.SSLError):
        reason = f"SMTP TLS failed: {exc}"
    elif isinstance(exc, smtplib.SMTPResponseException):
        reason = f"SMTP session refused: {_reply(exc.smtp_code, exc.smtp_error)}"
    else:
        reason = f"SMTP server unreachable: {exc}"
    return DeliveryError(reason, permanent=False)


def _data_reply(connection: smtplib.SMTP) -> Result:
    """The server's answer to a message's content."""
    code, reply = connection.getreply()
    if code != 250:
        return _refused(code, reply)
    return _reply(code, reply)


def _envelope(connection: smtplib.SMTP, sender: str, recipient: str) -> DeliveryError | None:
    """MAIL, RCPT and DATA one at a time; the first refusal, or None once DATA may follow."""
    for command, argument in (("mail", sender), ("rcpt", recipient)):
        code, reply = getattr(connection, command)(argument)
        if not _accepted(command, code):
            return _refused(code, reply)
    code, reply = connection.docmd("data")
    if code != 354:
        return _refused(code, reply)
    return None


def _envelope_commands(sender: str, recipient: str) -> bytes:
    """MAIL, RCPT and DATA, to go out in one write. The addresses are plain ASCII: the
    message builder takes no other."""
    return (f"MAIL FROM:{envelope_path(sender)}\r\n"
            f"RCPT TO:{envelope_path(recipient)}\r\nDATA\r\n").encode("ascii")


def _envelope_replies(connection: smtplib.SMTP) -> DeliveryError | None:
    """The replies to a pipelined MAIL, RCPT and DATA, each checked in order."""
    replies = [connection.getreply() for _ in range(3)]
    refusals = [
        _refused(code, reply)
        for command, (code, reply) in zip(("mail", "rcpt", "data"), replies, strict=True)
        if not _accepted(command, code)
    ]
    if refusals and replies[2][0] == 354:
        # RFC 2920 §3.1: DATA was taken although the envelope was not; end it empty.
        connection.send(b".\r\n")
        connection.getreply()
    return refusals[0] if refusals else None


def envelope_path(address: str) -> str:
    """``<address>``; what is not a plain address goes through smtplib's parser
    (email.utils, about 20 µs a call), as ``sendmail`` would."""
    return f"<{address}>" if PLAIN_ADDRESS.match(address) else smtplib.quoteaddr(address)


def _accepted(command: str, code: int) -> bool:
    if command == "data":
        return code == 354
    return code == 250 or (command == "rcpt" and code == 251)


def _transparent(message: bytes) -> bytes:
    """The message as DATA carries it: periods doubled at line starts, ending in CRLF."""
    if message.startswith(b".") or b"\n." in message:
        message = _LEADING_PERIOD.sub(b"..", message)
    return message if message.endswith(b"\r\n") else message + b"\r\n"


# Refusals of the session, not of the message (RFC 4954 §6): the relay wants a login
# or TLS that the settings do not give. The email waits for the set-up to be put right.
_SESSION_REFUSALS = frozenset({530, 535, 538})


def _refused(code: int, reply: bytes | str) -> DeliveryError:
    """The server's refusal: permanent for a 5xx answer about the message itself."""
    return DeliveryError(_reply(code, reply),
                         permanent=code >= 500 and code not in _SESSION_REFUSALS)


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    return f"{code} {text}"
