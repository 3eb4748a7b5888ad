"""Mobile and browser notifications: devices registered over the API, Web Push encrypted for
the browser and signed with VAPID, phones reached through a gorush-style gateway, each
entry once, and a subscription its push service has forgotten is forgotten here too.

The push service and the gateway are local HTTP receivers; the browser's side (its key pair
and auth secret) is made here, so the test decrypts what a real browser would."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from sqlalchemy import select

from provisioning.core.db import session_scope
from provisioning.notifications.adapters import application_server_key, configured_adapters
from provisioning.notifications.models import PushDevice, PushMessage
from provisioning.notifications.publish import notify
from provisioning.notifications.push import deliver_pushes
from tests.conftest import AdminAccount, Stack

T0 = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass
class Receiver:
    """A push service or gateway: records each request, answers as scripted."""

    answers: list[int] = field(default_factory=list)  # statuses to give, in order; then 201
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    redirect_to: str = ""


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Receiver, Receiver, Receiver]]:
    made, servers = [], []
    for _ in range(3):
        receiver = Receiver()

        class Handler(BaseHTTPRequestHandler):
            mine = receiver

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                headers = {name.lower(): value for name, value in self.headers.items()}
                self.mine.received.append((self.path, headers, self.rfile.read(length)))
                status = self.mine.answers.pop(0) if self.mine.answers else 201
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("Location", self.mine.redirect_to)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
        made.append(receiver)
        servers.append(server)
    yield made[0], made[1], made[2]
    for server in servers:
        server.shutdown()
        server.server_close()


VAPID_KEY = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def stack(make_stack: Any, receivers: tuple[Receiver, Receiver, Receiver]) -> Stack:
    push_service, gateway, elsewhere = receivers
    push_service.redirect_to = elsewhere.url + "/stolen"
    # No worker: the tests run the push sends themselves, with their own clock.
    return make_stack(worker=False, web_push_private_key=VAPID_KEY,
                      web_push_subject="mailto:ops@example.com",
                      web_push_services=f"fcm.googleapis.com,{push_service.url}",
                      mobile_push_url=gateway.url + "/", push_devices_per_person="4")


@dataclass
class Browser:
    """A browser's side of a subscription: its key pair and auth secret."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self, endpoint: str) -> dict[str, Any]:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": endpoint, "keys": {"p256dh": b64url(public),
                                               "auth": b64url(self.auth)}}

    def read(self, body: bytes) -> dict[str, Any]:
        return json.loads(http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth,
                                           version="aes128gcm"))


def person(stack: Stack, **channels: bool) -> tuple[AdminAccount, int]:
    admin = stack.create_account()
    changed = stack.api.simulate_put("/v1/me/notifications", json={"channels": channels},
                                     headers=admin.headers)
    assert changed.status_code == 200, changed.json
    return admin, int(stack.api.simulate_get("/v1/me", headers=admin.headers).json["id"])


def register(stack: Stack, admin: AdminAccount, **body: Any) -> Any:
    return stack.api.simulate_post("/v1/me/devices", json=body, headers=admin.headers)


def call_from(identity_id: int, caller: str) -> int:
    with session_scope() as session:
        entry = notify(session, identity_id, "call", {"caller": caller}, now=T0)
    assert entry is not None
    return entry


def pushes_of(entry: int) -> dict[str, tuple[str, str | None]]:
    with session_scope() as session:
        return {row.channel: (row.status, row.last_error) for row in session.scalars(
            select(PushMessage).where(PushMessage.notification_id == entry))}


def test_a_browser_gets_each_entry_encrypted_for_it_and_signed(
        stack: Stack, receivers: tuple[Receiver, Receiver, Receiver]):
    push_service, _, _ = receivers
    admin, identity_id = person(stack, browser=True)
    key = stack.api.simulate_get("/v1/push/web-push-key", headers=admin.headers)
    assert key.status_code == 200
    assert key.json["public_key"] == application_server_key(VAPID_KEY)
    browser = Browser()
    endpoint = f"{push_service.url}/push/{b64url(os.urandom(8))}"
    created = register(stack, admin, channel="browser",
                       subscription=browser.subscription(endpoint))
    assert created.status_code == 201, created.json
    assert set(created.json) == {"id", "channel", "platform", "created_at"}
    again = register(stack, admin, channel="browser", subscription=browser.subscription(endpoint))
    assert (again.status_code, again.json["id"]) == (200, created.json["id"])
    with session_scope() as session:  # the subscription's keys are sealed at rest
        sealed = session.scalars(select(PushDevice.sealed_keys).where(
            PushDevice.id == created.json["id"])).one()
    assert sealed and b64url(browser.auth) not in sealed

    entry = call_from(identity_id, "Ayşe Yılmaz")
    before = len(push_service.received)
    deliver_pushes(configured_adapters(), now=T0)
    deliver_pushes(configured_adapters(), now=T0 + timedelta(hours=1))
    assert pushes_of(entry)["browser"][0] == "sent"
    requests = push_service.received[before:]
    assert len(requests) == 1
    path, headers, body = requests[0]
    assert endpoint.endswith(path)
    assert headers["content-encoding"] == "aes128gcm" and int(headers["ttl"]) > 0
    assert browser.read(body) == {"title": "Provisioner", "body": "Incoming call from Ayşe Yılmaz",
                                  "event": "call", "id": entry}
    assert b"Ay" not in body  # encrypted: the push service cannot read it
    assert Vapid02.verify(headers["authorization"])
    token = headers["authorization"].split("t=")[1].split(",")[0]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["aud"] == push_service.url and claims["sub"] == "mailto:ops@example.com"


def test_a_subscription_the_push_service_forgot_is_forgotten(
        stack: Stack, receivers: tuple[Receiver, Receiver, Receiver]):
    push_service, _, _ = receivers
    admin, identity_id = person(stack, browser=True)
    kept, dropped = Browser(), Browser()
    for browser, name in ((kept, "kept"), (dropped, "dropped")):
        answer = register(stack, admin, channel="browser",
                          subscription=browser.subscription(f"{push_service.url}/{name}"))
        assert answer.status_code == 201
    entry = call_from(identity_id, "Ivan")
    push_service.answers[:] = [201, 410]  # the devices in the order registered
    deliver_pushes(configured_adapters(), now=T0 + timedelta(days=1))
    assert pushes_of(entry)["browser"][0] == "sent"
    listed = stack.api.simulate_get("/v1/me/devices", headers=admin.headers).json["items"]
    assert len(listed) == 1
    # the last browser gone: the next entry fails for good and the device is forgotten
    push_service.answers[:] = [404]
    lonely = call_from(identity_id, "Ivan again")
    deliver_pushes(configured_adapters(), now=T0 + timedelta(days=1))
    status, error = pushes_of(lonely)["browser"]
    assert status == "failed" and "no browser" in (error or "")
    assert stack.api.simulate_get("/v1/me/devices", headers=admin.headers).json["items"] == []


def test_a_push_service_that_redirects_is_not_followed(
        stack: Stack, receivers: tuple[Receiver, Receiver, Receiver]):
    push_service, _, elsewhere = receivers
    admin, identity_id = person(stack, browser=True)
    register(stack, admin, channel="browser",
             subscription=Browser().subscription(f"{push_service.url}/moved"))
    push_service.answers[:] = [307]
    entry = call_from(identity_id, "Mallory")
    deliver_pushes(configured_adapters(), now=T0 + timedelta(days=2))
    assert pushes_of(entry)["browser"] == ("failed", "the push service answered 307")
    assert elsewhere.received == []


def test_phones_go_through_the_gateway_once_after_a_retry(
        stack: Stack, receivers: tuple[Receiver, Receiver, Receiver]):
    _, gateway, _ = receivers
    admin, identity_id = person(stack, mobile=True)
    for platform, token in (("ios", "apns-token-1"), ("android", "fcm-token-1"),
                            ("android", "fcm-token-2")):
        answer = register(stack, admin, channel="mobile", platform=platform, token=token)
        assert answer.status_code == 201, answer.json
    entry = call_from(identity_id, "Budi")
    gateway.answers[:] = [502]
    before = len(gateway.received)
    deliver_pushes(configured_adapters(), now=T0 + timedelta(days=3))
    assert pushes_of(entry)["mobile"][0] == "deferred"
    deliver_pushes(configured_adapters(), now=T0 + timedelta(days=4))
    deliver_pushes(configured_adapters(), now=T0 + timedelta(days=5))
    assert pushes_of(entry)["mobile"][0] == "sent"
    requests = gateway.received[before:]
    assert len(requests) == 2 and {path for path, _, _ in requests} == {"/api/push"}
    sent = json.loads(requests[-1][2])["notifications"]
    assert sorted((n["platform"], tuple(n["tokens"])) for n in sent) == [
        (1, ("apns-token-1",)), (2, ("fcm-token-1", "fcm-token-2"))]
    assert {n["message"] for n in sent} == {"Incoming call from Budi"}
    assert {n["data"]["notification_id"] for n in sent} == {entry}


def test_registering_refuses_bad_devices_naming_the_field(
        stack: Stack, receivers: tuple[Receiver, Receiver, Receiver]):
    push_service, _, elsewhere = receivers
    admin, _ = person(stack, browser=True)
    good = Browser().subscription(f"{push_service.url}/ok")
    cases = [
        ({"channel": "pager"}, "channel"),
        ({"channel": "mobile", "token": "t"}, "platform"),
        ({"channel": "mobile", "platform": "symbian", "token": "t"}, "platform"),
        ({"channel": "browser"}, "subscription"),
        ({"channel": "browser", "subscription": {**good, "endpoint": elsewhere.url + "/x"}},
         "subscription.endpoint"),
        ({"channel": "browser", "subscription": {**good, "endpoint": "http://10.0.0.1/x"}},
         "subscription.endpoint"),
        ({"channel": "browser",
          "subscription": {**good, "endpoint": "https://fcm.googleapis.com.evil.example/x"}},
         "subscription.endpoint"),
        ({"channel": "browser",
          "subscription": {**good, "endpoint": "https://evil@fcm.googleapis.com/x"}},
         "subscription.endpoint"),
        ({"channel": "browser", "subscription": {**good, "keys": {"p256dh": "AAAA",
                                                                  "auth": "AAAA"}}},
         "subscription.keys.p256dh"),
    ]
    for body, named in cases:
        answer = register(stack, admin, **body)
        assert answer.status_code == 422, (body, answer.json)
        assert named in {error["field"] for error in answer.json["errors"]}, (body, answer.json)
    fcm = {**good, "endpoint": "https://fcm.googleapis.com/fcm/send/abc"}
    assert register(stack, admin, channel="browser", subscription=fcm).status_code == 201
    assert stack.api.simulate_get("/v1/me/devices", headers=admin.headers).json["items"]


def test_devices_are_the_callers_own_and_limited(stack: Stack):
    admin, _ = person(stack, mobile=True)
    other, _ = person(stack, mobile=True)
    ids = [register(stack, admin, channel="mobile", platform="ios", token=f"t{n}").json["id"]
           for n in range(4)]
    fifth = register(stack, admin, channel="mobile", platform="ios", token="t5")
    assert (fifth.status_code, fifth.json["code"]) == (409, "too_many_devices")
    assert stack.api.simulate_get("/v1/me/devices", headers=other.headers).json["items"] == []
    stolen = stack.api.simulate_delete(f"/v1/me/devices/{ids[0]}", headers=other.headers)
    assert stolen.status_code == 404
    assert stack.api.simulate_delete(f"/v1/me/devices/{ids[0]}",
                                     headers=admin.headers).status_code == 204
    listed = stack.api.simulate_get("/v1/me/devices", headers=admin.headers).json["items"]
    assert [device["id"] for device in listed] == ids[1:]
    assert all("token" not in device for device in listed)
    assert stack.api.simulate_get("/v1/me/devices").status_code == 401
