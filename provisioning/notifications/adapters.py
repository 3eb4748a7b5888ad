"""The push adapters: Telegram, mobile through a push gateway, browsers through Web Push.

Each takes one ``Push`` (a notification on one channel, with the person's registered
devices) and delivers it or raises ``PushFailed``. What a service says of a device that
no longer exists (a browser subscription answered 404 or 410) comes back as ``gone`` so the
sender forgets it. None of them follows a redirect: a subscription names its push
service, and an answer of that service must not send the worker anywhere else.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, b64urlencode

from provisioning.core.config import Settings, settings


@dataclass(frozen=True)
class Device:
    """One registered phone (its push token) or browser (its subscription)."""

    id: int
    platform: str  # ios | android | web
    address: str  # the push token, or the subscription's endpoint
    keys: Mapping[str, str] | None = None  # a browser's p256dh and auth


@dataclass(frozen=True)
class Push:
    """One notification to deliver on one channel."""

    id: int
    channel: str
    identity_id: int
    event: str
    text: str
    telegram_chat_id: str | None
    devices: tuple[Device, ...] = ()


class PushFailed(Exception):
    """The channel's service did not take the notification; ``permanent`` if retrying is
    pointless (a 4xx answer, nowhere to send to, no adapter for the channel)."""

    def __init__(self, reason: str, *, permanent: bool, gone: Iterable[int] = (),
                 status: int | None = None) -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.gone = tuple(gone)
        self.status = status  # the service's HTTP answer, if it gave one


@dataclass(frozen=True)
class Delivered:
    """A push the service took; ``gone``: devices it says no longer exist."""

    gone: tuple[int, ...] = field(default=())


class PushAdapter(Protocol):
    """What each push channel implements: deliver one notification or raise ``PushFailed``."""

    def send(self, push: Push) -> Delivered: ...


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx answer surfaces as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float, service: str
          ) -> bytes:
    """POST and return the answer's body; ``PushFailed`` (temporary for 429, 5xx and the
    network, permanent for any other refusal) when the service does not take it."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            return bytes(answer.read())
    except urllib.error.HTTPError as refused:
        temporary = refused.code == 429 or refused.code >= 500
        raise PushFailed(f"{service} answered {refused.code}", permanent=not temporary,
                         status=refused.code) from None
    except (urllib.error.URLError, OSError) as unreachable:
        raise PushFailed(f"{service} unreachable: {unreachable}", permanent=False) from None


class TelegramAdapter:
    """Posts to the Bot API's ``sendMessage`` (``{base}/bot{token}/sendMessage``)."""

    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def send(self, push: Push) -> Delivered:
        if not push.telegram_chat_id:
            raise PushFailed("no Telegram chat is linked (telegram_chat_id)", permanent=True)
        answer = _post(f"{self.base_url}/bot{self._token}/sendMessage",
                       json.dumps({"chat_id": push.telegram_chat_id, "text": push.text}).encode(),
                       {"Content-Type": "application/json"}, self.timeout, "Telegram")
        try:
            reply = json.loads(answer or b"{}")
        except ValueError:
            raise PushFailed("Telegram answered something other than JSON", permanent=False
                             ) from None
        if not reply.get("ok", False):
            raise PushFailed(f"Telegram refused: {reply.get('description', reply)}",
                             permanent=True)
        return Delivered()


# gorush's platform numbers
GATEWAY_PLATFORMS = {"ios": 1, "android": 2}


class MobileGatewayAdapter:
    """Sends to a person's phones through a gorush-compatible gateway (``POST {base}/api/push``),
    which holds the APNs and FCM credentials and speaks to Apple and Google."""

    def __init__(self, base_url: str, title: str, timeout: float) -> None:
        self.url = base_url.rstrip("/") + "/api/push"
        self.title = title
        self.timeout = timeout

    def send(self, push: Push) -> Delivered:
        if not push.devices:
            raise PushFailed("no phone is registered for mobile notifications", permanent=True)
        notifications = []
        for platform, number in GATEWAY_PLATFORMS.items():
            tokens = [device.address for device in push.devices if device.platform == platform]
            if tokens:
                notifications.append({
                    "tokens": tokens, "platform": number, "title": self.title,
                    "message": push.text,
                    "data": {"event": push.event, "notification_id": push.id}})
        _post(self.url, json.dumps({"notifications": notifications}).encode(),
              {"Content-Type": "application/json"}, self.timeout, "the push gateway")
        return Delivered()


def allowed_push_service(endpoint: str, services: Iterable[str]) -> bool:
    """Whether a browser subscription's endpoint names a push service the settings allow:
    a listed host name (or a subdomain of one) over https, or an exactly listed origin."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password:
        return False
    origin = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    for service in services:
        service = service.lower().rstrip("/")
        if "://" in service:
            if origin == service:
                return True
        elif parts.scheme == "https" and (host == service or host.endswith("." + service)):
            return True
    return False


def b64url_bytes(text: str) -> bytes:
    """Unpadded base64url, as Web Push spells keys (``binascii.Error`` when it is not)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def vapid_key(private_key: str) -> Vapid02:
    """The VAPID key of the setting: a PEM, or the raw private key in base64url."""
    text = private_key.strip()
    if "BEGIN" in text:
        return Vapid02.from_pem(text.encode())
    return Vapid02.from_raw(text.encode())


def application_server_key(private_key: str) -> str:
    """What a browser's ``pushManager.subscribe`` takes: the public key, base64url."""
    public = vapid_key(private_key).public_key
    return str(b64urlencode(public.public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint)))


GONE = (404, 410)  # a push service's answers for a subscription it no longer knows


class WebPushAdapter:
    """Web Push (RFC 8030) to each of a person's browsers: the payload encrypted for the
    subscription (RFC 8291, aes128gcm) and the request signed with VAPID (RFC 8292)."""

    TTL_SECONDS = 86_400  # how long the push service keeps it for an offline browser

    def __init__(self, private_key: str, subject: str, services: Iterable[str], title: str,
                 timeout: float) -> None:
        self._vapid = vapid_key(private_key)
        self.subject = subject
        self.services = tuple(services)
        self.title = title
        self.timeout = timeout

    def send(self, push: Push) -> Delivered:
        payload = json.dumps({"title": self.title, "body": push.text, "event": push.event,
                              "id": push.id}).encode()
        gone: list[int] = []
        delivered = 0
        failure: PushFailed | None = None
        for device in push.devices:
            if not device.keys or not allowed_push_service(device.address, self.services):
                gone.append(device.id)  # a service the settings no longer allow
                continue
            try:
                self._send_one(device, payload)
                delivered += 1
            except PushFailed as refused:
                if refused.status in GONE:
                    gone.append(device.id)  # the push service no longer knows it
                else:
                    failure = refused if failure is None or failure.permanent else failure
        if delivered:
            return Delivered(tuple(gone))
        if failure is not None:
            raise PushFailed(str(failure), permanent=failure.permanent, gone=gone)
        raise PushFailed("no browser is subscribed to notifications", permanent=True,
                         gone=gone)

    def _send_one(self, device: Device, payload: bytes) -> None:
        assert device.keys is not None
        sender = ec.generate_private_key(ec.SECP256R1())
        body = http_ece.encrypt(
            payload, salt=os.urandom(16), private_key=sender,
            dh=b64url_bytes(device.keys["p256dh"]), auth_secret=b64url_bytes(device.keys["auth"]),
            version="aes128gcm")
        parts = urlsplit(device.address)
        claims = {"sub": self.subject, "aud": f"{parts.scheme}://{parts.netloc}",
                  "exp": int(time.time()) + 12 * 3600}
        headers = {**self._vapid.sign(claims), "TTL": str(self.TTL_SECONDS),
                   "Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream",
                   "Urgency": "normal"}
        _post(device.address, body, headers, self.timeout, "the push service")


def configured_adapters(config: Settings | None = None) -> dict[str, PushAdapter]:
    """The adapters the settings make: Telegram with a bot token, mobile with a gateway,
    browsers with a VAPID key. A channel without one fails its messages with that reason."""
    config = config or settings()
    adapters: dict[str, PushAdapter] = {}
    if config.telegram_bot_token:
        adapters["telegram"] = TelegramAdapter(config.telegram_api_url,
                                               config.telegram_bot_token,
                                               config.push_timeout_seconds)
    if config.mobile_push_url:
        adapters["mobile"] = MobileGatewayAdapter(config.mobile_push_url, config.product_name,
                                                  config.push_timeout_seconds)
    if config.web_push_private_key:
        adapters["browser"] = WebPushAdapter(
            config.web_push_private_key, config.web_push_subject or f"mailto:{config.mail_from}",
            config.web_push_services, config.product_name, config.push_timeout_seconds)
    return adapters
