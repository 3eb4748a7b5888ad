"""The phones and browsers a person registers for mobile and browser notifications.

A phone registers its push token (APNs or FCM, as the app gets it); a browser registers
its Web Push subscription (``PushSubscription.toJSON()``: the endpoint and the keys
``p256dh`` and ``auth``). The endpoint must name a push service the settings allow, so a
subscription cannot make the worker post anywhere else. The keys are sealed at rest.
Registering the same token or endpoint again keeps one device.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.core import security
from provisioning.core.config import settings
from provisioning.core.errors import Conflict, FieldError, NotFound
from provisioning.core.validation import Form
from provisioning.notifications.adapters import (
    GATEWAY_PLATFORMS,
    allowed_push_service,
    application_server_key,
    b64url_bytes,
)
from provisioning.notifications.models import PushDevice

SEALED_FOR = "push-subscription-keys"  # what the key sealing a browser's keys is derived for
DEVICE_CHANNELS = ("mobile", "browser")
MAX_ADDRESS = 1024


def open_keys(sealed: str | None) -> dict[str, str] | None:
    """A browser's subscription keys as registered; None for a phone (or another key)."""
    opened = security.unseal(settings().secret_keys, SEALED_FOR, sealed)
    return json.loads(opened) if opened else None


def web_push_key() -> dict[str, str]:
    """The key a browser subscribes with (``applicationServerKey``)."""
    private_key = settings().web_push_private_key
    if not private_key:
        raise NotFound("Browser notifications are not set up on this server.",
                       code="web_push_off")
    return {"public_key": application_server_key(private_key)}


def register_device(session: Session, actor: Actor, body: Any) -> tuple[dict[str, Any], bool]:
    """Register the caller's phone or browser; returns the device and whether it is new."""
    form = Form(body)
    channel = form.text("channel", required=True, max_length=16)
    if channel is not None and channel not in DEVICE_CHANNELS:
        form.errors.append(FieldError("channel", "Use mobile or browser.", "invalid_choice"))
    form.finish()
    if channel == "mobile":
        platform = form.text("platform", required=True, max_length=16)
        address = form.text("token", required=True, max_length=MAX_ADDRESS)
        if platform is not None and platform not in GATEWAY_PLATFORMS:
            form.errors.append(FieldError("platform", "Use ios or android.", "invalid_choice"))
        keys = None
    else:
        platform = "web"
        address, keys = _subscription(form)
    form.finish()
    assert platform is not None and address is not None
    existing = session.scalar(select(PushDevice).where(
        PushDevice.identity_id == actor.identity_id, PushDevice.channel == channel,
        PushDevice.address == address))
    if existing is not None:
        existing.platform = platform
        existing.sealed_keys = _sealed(keys)
        return device_view(existing), False
    held = session.scalar(select(func.count()).select_from(PushDevice).where(
        PushDevice.identity_id == actor.identity_id)) or 0
    limit = settings().push_devices_per_person
    if held >= limit:
        raise Conflict(f"You have registered {limit} devices, the most allowed: remove one "
                       "you no longer use first.", code="too_many_devices")
    device = PushDevice(identity_id=actor.identity_id, channel=channel, platform=platform,
                        address=address, sealed_keys=_sealed(keys))
    session.add(device)
    session.flush()
    return device_view(device), True


def _subscription(form: Form) -> tuple[str | None, dict[str, str] | None]:
    """A browser's subscription: its endpoint, on an allowed push service, and its keys."""
    subscription = form.body.get("subscription")
    if not isinstance(subscription, Mapping):
        form.errors.append(FieldError("subscription", "Send the browser's PushSubscription "
                                      "as JSON: endpoint and keys.", "required"))
        return None, None
    endpoint = subscription.get("endpoint")
    if not isinstance(endpoint, str) or not 0 < len(endpoint) <= MAX_ADDRESS:
        form.errors.append(FieldError("subscription.endpoint", "Send the endpoint URL.",
                                      "required"))
        endpoint = None
    elif not allowed_push_service(endpoint, settings().web_push_services):
        form.errors.append(FieldError("subscription.endpoint",
                                      "This endpoint is not on a push service this server "
                                      "sends to.", "push_service_not_allowed"))
        endpoint = None
    keys = subscription.get("keys")
    checked: dict[str, str] = {}
    for name, size in (("p256dh", 65), ("auth", 16)):
        value = keys.get(name) if isinstance(keys, Mapping) else None
        if not isinstance(value, str) or _decoded_size(value) != size:
            form.errors.append(FieldError(f"subscription.keys.{name}",
                                          f"Send the subscription's {name} key (base64url).",
                                          "invalid_key"))
        else:
            checked[name] = value
    return endpoint, checked if len(checked) == 2 else None


def _decoded_size(value: str) -> int | None:
    try:
        return len(b64url_bytes(value))
    except ValueError:
        return None


def _sealed(keys: dict[str, str] | None) -> str | None:
    return security.seal(settings().secret_key, SEALED_FOR, json.dumps(keys)) if keys else None


def list_devices(session: Session, actor: Actor) -> list[dict[str, Any]]:
    return [device_view(device) for device in session.scalars(
        select(PushDevice).where(PushDevice.identity_id == actor.identity_id)
        .order_by(PushDevice.id))]


def remove_device(session: Session, actor: Actor, device_id: int) -> None:
    removed = session.execute(delete(PushDevice).where(
        PushDevice.id == device_id, PushDevice.identity_id == actor.identity_id))
    if not removed.rowcount:  # type: ignore[attr-defined]
        raise NotFound("No such device.", code="not_found")


def device_view(device: PushDevice) -> dict[str, Any]:
    """A device as its person sees it: never its token or keys, only where it points."""
    return {"id": device.id, "channel": device.channel, "platform": device.platform,
            "created_at": device.created_at}

