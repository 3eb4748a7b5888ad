"""Push notifications through the adapter interface and their own outbox: the Telegram adapter
posts to a Bot API base URL (here a local receiver), once per entry, retrying after a 5xx."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from provisioning.core.db import session_scope
from provisioning.notifications.adapters import configured_adapters
from provisioning.notifications.models import PushMessage
from provisioning.notifications.publish import notify
from provisioning.notifications.push import deliver_pushes
from tests.conftest import Stack

BOT_TOKEN = "123456:test-token"
T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class BotApi:
    """A stand-in for the Telegram Bot API: records each request, answers as scripted."""

    answers: list[int] = field(default_factory=list)  # statuses to give, in order; then 200
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture(scope="module")
def bot_api() -> Iterator[BotApi]:
    api = BotApi()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            api.received.append((self.path, json.loads(self.rfile.read(length))))
            status = api.answers.pop(0) if api.answers else 200
            reply = {"ok": status == 200, "result": {}} if status < 500 else {"ok": False}
            payload = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield api
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(make_stack: Any, bot_api: BotApi) -> Stack:
    # No worker: the tests run the push sends themselves, with their own clock.
    return make_stack(worker=False, telegram_api_url=bot_api.url + "/",
                      telegram_bot_token=BOT_TOKEN)


def person_on(stack: Stack, **settings: Any) -> int:
    admin = stack.create_account()
    changed = stack.api.simulate_put("/v1/me/notifications", json=settings, headers=admin.headers)
    assert changed.status_code == 200, changed.json
    return int(stack.api.simulate_get("/v1/me", headers=admin.headers).json["id"])


def call_from(identity_id: int, caller: str, at: datetime = T0) -> int:
    with session_scope() as session:
        entry = notify(session, identity_id, "call", {"caller": caller}, now=at)
    assert entry is not None
    return entry


def pushes_of(entry: int) -> dict[str, tuple[str, int, str | None]]:
    with session_scope() as session:
        return {row.channel: (row.status, row.attempts, row.last_error)
                for row in session.execute(select(PushMessage).where(
                    PushMessage.notification_id == entry)).scalars()}


def test_telegram_gets_each_entry_once_and_retries_after_a_server_error(
        stack: Stack, bot_api: BotApi):
    identity_id = person_on(stack, channels={"telegram": True}, telegram_chat_id="4242")
    entry = call_from(identity_id, "Budi Santoso")
    assert pushes_of(entry) == {"telegram": ("queued", 0, None)}
    adapters = configured_adapters()
    bot_api.answers[:] = [500]
    before = len(bot_api.received)

    first = deliver_pushes(adapters, now=T0)
    assert first.deferred and not first.sent
    status, attempts, error = pushes_of(entry)["telegram"]
    assert (status, attempts) == ("deferred", 1) and "500" in (error or "")
    # not due yet: nothing is sent again before its backoff has passed
    assert deliver_pushes(adapters, now=T0 + timedelta(seconds=1)).deferred == []
    assert len(bot_api.received) == before + 1

    later = deliver_pushes(adapters, now=T0 + timedelta(hours=1))
    assert pushes_of(entry)["telegram"][:2] == ("sent", 2)
    assert later.sent
    for again in (T0 + timedelta(hours=2), T0 + timedelta(days=1)):
        assert deliver_pushes(adapters, now=again).sent == []
    requests = bot_api.received[before:]
    assert len(requests) == 2
    for path, body in requests:
        assert path == f"/bot{BOT_TOKEN}/sendMessage"
        assert body == {"chat_id": "4242", "text": "Incoming call from Budi Santoso"}


def test_sends_racing_for_the_same_entries_deliver_each_once(stack: Stack, bot_api: BotApi):
    identity_id = person_on(stack, channels={"telegram": True}, telegram_chat_id="77")
    entries = [call_from(identity_id, f"Caller {n}") for n in range(20)]
    before = len(bot_api.received)
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        deliver_pushes(configured_adapters(), now=T0 + timedelta(days=2))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    texts = sorted(body["text"] for _, body in bot_api.received[before:])
    assert texts == sorted(f"Incoming call from Caller {n}" for n in range(20))
    assert all(pushes_of(entry)["telegram"][0] == "sent" for entry in entries)


def test_a_refusal_or_a_channel_without_an_adapter_fails_without_retrying(
        stack: Stack, bot_api: BotApi):
    identity_id = person_on(stack, channels={"telegram": True, "mobile": True},
                            telegram_chat_id="blocked")
    entry = call_from(identity_id, "Nobody")
    bot_api.answers[:] = [403]
    deliver_pushes(configured_adapters(), now=T0 + timedelta(days=3))
    pushes = pushes_of(entry)
    assert pushes["telegram"][:2] == ("failed", 1) and "403" in (pushes["telegram"][2] or "")
    assert pushes["mobile"][:2] == ("failed", 1)
    assert "no mobile adapter" in (pushes["mobile"][2] or "")
    # a person with Telegram on but no chat linked: refused at once, the service not called
    unlinked = person_on(stack, channels={"telegram": True})
    before = len(bot_api.received)
    lonely = call_from(unlinked, "Nobody")
    deliver_pushes(configured_adapters(), now=T0 + timedelta(days=3))
    assert pushes_of(lonely)["telegram"][0] == "failed"
    assert len(bot_api.received) == before
