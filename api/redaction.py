"""Secrets kept out of log lines. An invitation or email-change link works like a password
until it is used, so its token is cut from every path a log line shows
(``/v1/invitations/[redacted]/accept``), as are secret query values and credentials in
headers. gunicorn's access and error logs
(``GunicornLogger``, named in ``api.gunicorn_conf``) and the API's own log (``api.wsgi``) go
through the same filter."""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn import glogging

REDACTED = "[redacted]"
_SECRETS = (
    # the path segment after /invitations/ (/v1/invitations/{token}… and /invitations/{token})
    # and after /email-change/ (the page a new login email's link opens)
    (re.compile(r"(/(?:invitations|email-change)/)[^/?#\s\"']+"), r"\1" + REDACTED),
    # a secret query value, in a URL or a bare query string (gunicorn's %(q)s)
    (re.compile(r"(?i)(?<![\w-])((?:token|access_token|api_key|password|secret)=)"
                r"[^&#\s\"']*"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b((?:bearer|basic)\s+)[\w.~+/=-]{8,}"), r"\1" + REDACTED),
)


def redact(text: str) -> str:
    """``text`` with every secret it shows replaced by ``[redacted]``."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Redacts a record's message, traceback and stack as a handler is about to write them."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class GunicornLogger(glogging.Logger):
    """gunicorn's logger, each of its handlers redacting secrets, whatever the access log's
    format prints (the request line, the Referer, any header)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(REDACT_SECRETS)


REDACT_SECRETS = RedactSecrets()
