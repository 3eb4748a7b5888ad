"""Log lines never carry a secret: invitation tokens in paths, secret query values, credentials.
gunicorn's access and error logs and the application's own log all go through one filter."""

from __future__ import annotations

import io
import logging
import secrets
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from gunicorn.config import Config

from api.redaction import GunicornLogger, RedactSecrets, redact
from api.routes import routes


def test_the_token_of_every_route_that_carries_one_is_redacted() -> None:
    token_routes = [entry.path for entry in routes() if "{token}" in entry.path]
    assert token_routes
    for path in token_routes:
        token = secrets.token_hex(32)
        line = f'"GET {path.replace("{token}", token)} HTTP/1.1" 200'
        assert token not in redact(line), path
        assert "[redacted]" in redact(line)


def test_secret_query_values_and_credentials_are_redacted() -> None:
    secret = secrets.token_urlsafe(32)
    for text in (f"/v1/me/email?token={secret}&x=1", f"/x?password={secret}",
                 f"Authorization: Bearer {secret}", f"basic {secret}"):
        assert secret not in redact(text), text
    assert redact("/v1/accounts/12/users?status=active") == "/v1/accounts/12/users?status=active"


def test_the_access_log_hides_secrets_whatever_its_format(tmp_path: Path) -> None:
    token, bearer = secrets.token_hex(32), secrets.token_urlsafe(32)
    config = Config()
    config.set("accesslog", str(tmp_path / "access.log"))
    config.set("errorlog", str(tmp_path / "error.log"))
    config.set("access_log_format",
               '%(h)s "%(r)s" %(s)s "%(f)s" %(U)s %(q)s %({authorization}i)s %({referer}i)s')
    logger = GunicornLogger(config)
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": f"/invitations/{token}?token={token}",
               "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": f"/invitations/{token}",
               "QUERY_STRING": f"token={token}", "REMOTE_ADDR": "203.0.113.9",
               "HTTP_REFERER": f"https://app.example.com/invitations/{token}"}
    request = SimpleNamespace(headers=[("AUTHORIZATION", f"Bearer {bearer}"),
                                       ("REFERER", environ["HTTP_REFERER"])])
    response = SimpleNamespace(status="200 OK", headers=[], sent=120)
    logger.access(response, request, environ, timedelta(milliseconds=3))
    logger.error("Error handling request /v1/invitations/%s/accept", token)
    for handler in logger.access_log.handlers + logger.error_log.handlers:
        handler.flush()
    line = (tmp_path / "access.log").read_text()
    assert line.startswith('203.0.113.9 "GET /invitations/[redacted]?token=[redacted] HTTP/1.1"')
    assert token not in line and bearer not in line
    errors = (tmp_path / "error.log").read_text()
    assert "/v1/invitations/[redacted]/accept" in errors and token not in errors


def test_application_log_lines_and_their_tracebacks_hide_secrets() -> None:
    token = secrets.token_hex(32)
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.addFilter(RedactSecrets())
    log = logging.getLogger("tests.redaction")
    log.addHandler(handler)
    try:
        try:
            raise LookupError(f"no invitation at /v1/invitations/{token}/accept")
        except LookupError:
            log.exception("unexpected error on %s %s", "POST", f"/v1/invitations/{token}/accept")
    finally:
        log.removeHandler(handler)
    text = output.getvalue()
    assert token not in text
    assert text.count("/v1/invitations/[redacted]/accept") >= 2  # the message and the error
