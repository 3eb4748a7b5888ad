"""Rotating PROVISIONING_SECRET_KEY: with the old key listed in
PROVISIONING_PREVIOUS_SECRET_KEYS, an invitation queued before the rotation and sent after it
carries a working link, TOTP secrets and recovery codes keep working, and
`provision reseal-secrets` moves the sealed secrets to the new key so the old one can go."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from typing import Any

import pytest
from sqlalchemy import select

from provisioning.core import security
from provisioning.core.db import session_scope
from provisioning.members.models import Identity
from provisioning.notifications.devices import open_keys
from provisioning.notifications.models import PushDevice
from tests.conftest import Clock, Stack, activate, deactivate
from tests.integration.test_push_devices import Browser
from tests.integration.test_two_factor import _code, _login, _session
from tests.support.processes import VENV_BIN, wait_until
from tests.support.stories import invitation_link

OLD, NEW = secrets.token_hex(16), secrets.token_hex(16)


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    # The worker starts after the rotation: the invitation waits in the outbox until then.
    return make_stack(worker=False, secret_key=OLD,
                      web_push_services="http://127.0.0.1:9", web_push_private_key="")


def rotate(stack: Stack, **keys: str) -> None:
    """What an operator does: new settings for every process (this one, and the worker)."""
    changed = {f"PROVISIONING_{name.upper()}": value for name, value in keys.items()}
    stack.env.update(changed)
    activate(changed)


def reseal(stack: Stack) -> tuple[int, dict[str, int]]:
    done = subprocess.run([str(VENV_BIN / "provision"), "reseal-secrets"],
                          env={**os.environ, **stack.env}, capture_output=True, text=True,
                          timeout=120)
    return done.returncode, json.loads(done.stdout)


def test_a_rotation_keeps_links_codes_and_sealed_secrets_working(stack: Stack, clock: Clock):
    admin = stack.create_account()
    api, me = stack.api, _session(stack.api, admin.email)
    secret = api.simulate_post("/v1/me/2fa/setup", headers=me).json["secret"]
    recovery = api.simulate_post("/v1/me/2fa/enable", json={"code": _code(secret, clock)},
                                 headers=me).json["recovery_codes"]
    browser = Browser()
    device = api.simulate_post("/v1/me/devices", headers=me, json={
        "channel": "browser", "subscription": browser.subscription("http://127.0.0.1:9/sub")})
    assert device.status_code == 201, device.text
    invited = stack.invite(admin, email=f"rotated.{secrets.token_hex(4)}@example.com")
    assert invited.status_code == 201
    with session_scope() as session:
        sealed_before = session.scalar(select(Identity.totp_secret).where(
            Identity.email == admin.email))

    restore = {"PROVISIONING_SECRET_KEY": OLD, "PROVISIONING_PREVIOUS_SECRET_KEYS": ""}
    try:
        rotate(stack, secret_key=NEW, previous_secret_keys=OLD)
        stack.start_worker()
        email = invited.json["email"]
        wait_until(lambda: stack.sink.messages(to=email), timeout=30)
        [message] = stack.sink.messages(to=email)
        token = invitation_link(message)
        accepted = api.simulate_post(f"/v1/invitations/{token}/accept",
                                     json={"password": "a fresh long password"})
        assert accepted.status_code == 200, accepted.text  # made under OLD, sent under NEW

        clock.advance(30)
        assert _login(api, admin.email, code=_code(secret, clock)).status_code == 200
        assert _login(api, admin.email, code=recovery[0]).status_code == 200

        code, report = reseal(stack)
        assert code == 0, report
        assert report["identities.totp_secret"] == 1 and report["push_devices.sealed_keys"] == 1
        assert reseal(stack) == (0, {**report, "identities.totp_secret": 0,
                                     "push_devices.sealed_keys": 0})  # nothing left to move
        with session_scope() as session:
            sealed_after = session.scalar(select(Identity.totp_secret).where(
                Identity.email == admin.email))
            device_keys = session.scalar(select(PushDevice.sealed_keys))
        assert sealed_after != sealed_before
        assert security.unseal((NEW,), "totp-secret-at-rest", sealed_after) == secret

        rotate(stack, previous_secret_keys="")  # the old key is gone for good
        assert open_keys(device_keys) == browser.subscription("x")["keys"]
        clock.advance(30)
        assert _login(api, admin.email, code=_code(secret, clock)).status_code == 200
        # a recovery code is a keyed hash: it stays with the key it was made under
        refused = _login(api, admin.email, code=recovery[1])
        assert refused.status_code == 401 and refused.json["code"] == "totp_invalid"
    finally:
        if stack.worker is not None:
            stack.worker.stop()
            stack.worker = None
        stack.env.update(restore)
        deactivate(restore)
