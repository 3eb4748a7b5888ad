"""The SMTP adapter: one long-lived connection per worker process, reused across emails."""

from __future__ import annotations

import contextlib
import smtplib
import threading
from typing import Protocol


class DeliveryError(Exception):
    """The server did not take the message; ``permanent`` for 5xx answers."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class MailSender(Protocol):
    def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Send one message; the server's answer on success, DeliveryError otherwise."""
        ...


class SmtpSender:
    """Keeps one SMTP connection open and reconnects when the server drops it."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._connection: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    def send(self, sender: str, recipient: str, message: bytes) -> str:
        with self._lock:
            for attempt in (1, 2):
                try:
                    connection = self._connect()
                except OSError as exc:
                    self.close()
                    raise DeliveryError(f"SMTP server unreachable: {exc}",
                                        permanent=False) from exc
                try:
                    return self._send_once(connection, sender, recipient, message)
                except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                    self.close()  # an idle connection the server dropped: one fresh try
                    if attempt == 2:
                        raise DeliveryError(f"SMTP connection lost: {exc}",
                                            permanent=False) from exc
                except OSError as exc:
                    self.close()
                    raise DeliveryError(f"SMTP connection failed: {exc}",
                                        permanent=False) from exc
            raise AssertionError("unreachable")

    def _send_once(self, connection: smtplib.SMTP, sender: str, recipient: str,
                   message: bytes) -> str:
        # MAIL, RCPT, DATA by hand (what sendmail does) to keep the server's final
        # reply: it carries the provider's id for the message.
        for command, argument in (("mail", sender), ("rcpt", recipient)):
            code, reply = getattr(connection, command)(argument)
            if code != 250 and not (command == "rcpt" and code == 251):
                connection.rset()
                raise DeliveryError(_reply(code, reply), permanent=code >= 500)
        code, reply = connection.data(message)
        if code != 250:
            connection.rset()
            raise DeliveryError(_reply(code, reply), permanent=code >= 500)
        return _reply(code, reply)

    def _connect(self) -> smtplib.SMTP:
        if self._connection is None:
            connection = smtplib.SMTP(timeout=self.timeout)
            connection.connect(self.host, self.port)
            connection.ehlo_or_helo_if_needed()
            self._connection = connection
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._connection.quit()
            self._connection = None


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    return f"{code} {text}"
