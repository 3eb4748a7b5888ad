"""An invitation link works like a password until it is used. Its token appears in no log
line; the page it opens is never cached, framed, or sent on as a Referer; and the JSON answers
about it are never cached. Every route of the route table with a token in its path is tried,
so a route added later is covered too."""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api.routes import routes
from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.security import invitation_token
from provisioning.members.models import Invitation
from tests.conftest import AdminAccount, Stack
from tests.support.processes import free_port
from tests.support.servers import start_web

TOKEN_ROUTES = [(method.upper(), entry.path) for entry in routes() if "{token}" in entry.path
                for method in entry.operations]


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)


def invitation(stack: Stack) -> tuple[AdminAccount, str]:
    """An admin and the token of a fresh invitation they sent."""
    admin = stack.create_account()
    answer = stack.invite(admin, email=f"secret.{uuid.uuid4().hex[:8]}@example.com",
                          name="Sam Secret")
    assert answer.status_code == 201, answer.json
    with session_scope() as session:
        nonce = session.scalars(select(Invitation.token_nonce).where(
            Invitation.membership_id == answer.json["id"])).one()
    return admin, invitation_token(settings().secret_key, nonce)


def _url(path: str, token: str) -> str:
    return path.replace("{token}", token)


def test_the_route_table_has_token_routes() -> None:
    assert {("GET", "/invitations/{token}"), ("GET", "/v1/invitations/{token}"),
            ("POST", "/v1/invitations/{token}/accept")} <= set(TOKEN_ROUTES)


def test_no_line_gunicorn_logs_shows_an_invitation_token_or_a_credential(stack: Stack) -> None:
    admin, token = invitation(stack)
    port = free_port()
    web = start_web(stack.log_dir, stack.env, port, workers=1, procfile=True,
                    name="gunicorn-secrets")
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            # as a browser on the landing page would send them: the page's URL as the Referer
            landing = {"Referer": f"{base}/invitations/{token}"}
            for method, path in TOKEN_ROUTES:
                answered = client.request(method, _url(path, token) + f"?token={token}",
                                          headers=landing, json={} if method == "POST" else None)
                assert answered.status_code < 500, (method, path, answered.text)
            assert client.get("/v1/me", headers=admin.headers).status_code == 200
    finally:
        web.stop()
    log = web.log()
    assert "/invitations/[redacted]" in log  # the requests were logged, without their token
    assert token not in log
    assert admin.token not in log


def test_an_unexpected_error_on_an_invitation_route_logs_no_token(
        stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from provisioning.members import invitations

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the invitation could not be read")

    monkeypatch.setattr(invitations, "preview_invitation", broken)
    token = secrets.token_hex(32)
    with caplog.at_level(logging.ERROR):
        answer = stack.api.simulate_get(f"/v1/invitations/{token}", query_string=f"token={token}")
    assert answer.status_code == 500 and answer.json["code"] == "internal_error"
    assert "unexpected error on GET /v1/invitations/[redacted]" in caplog.text
    assert token not in caplog.text


def _directives(policy: str) -> dict[str, list[str]]:
    parts = [part.split() for part in policy.split(";") if part.strip()]
    return {part[0]: part[1:] for part in parts}


def test_the_invitation_page_is_never_cached_framed_or_sent_on_as_a_referer(
        stack: Stack) -> None:
    _, token = invitation(stack)
    nonces = set()
    for token_in_url, status in ((token, 200), (secrets.token_hex(32), 404)):
        page = stack.api.simulate_get(f"/invitations/{token_in_url}")
        assert page.status_code == status
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        policy = _directives(page.headers["content-security-policy"])
        assert policy["frame-ancestors"] == ["'none'"]
        assert policy["default-src"] == ["'none'"]
        # the page's own script and style run, and nothing else: no script another could inject
        nonce = re.search(r'<script nonce="([^"]+)">', page.text)
        assert nonce, page.text
        assert policy["script-src"] == policy["style-src"] == [f"'nonce-{nonce.group(1)}'"]
        assert f'<style nonce="{nonce.group(1)}">' in page.text
        nonces.add(nonce.group(1))
    assert len(nonces) == 2  # a fresh nonce for each page


def test_the_answers_about_an_invitation_are_never_cached(stack: Stack) -> None:
    _, token = invitation(stack)
    for method, path in TOKEN_ROUTES:
        answered = stack.api.simulate_request(method, _url(path, token),
                                              json={} if method == "POST" else None)
        assert answered.headers.get("cache-control") == "no-store", (method, path)
        assert answered.headers.get("referrer-policy") == "no-referrer", (method, path)
    login = stack.api.simulate_post("/v1/auth/login",
                                    json={"email": "nobody@example.com", "password": "wrong"})
    assert login.headers.get("cache-control") == "no-store"  # a session token is a secret too
