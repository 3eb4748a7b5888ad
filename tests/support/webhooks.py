"""A billing system's webhook receiver in the test process: records every POST, answers as
each event's script says, and can hold a request open until the test lets it go."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import select

from provisioning.billing.models import BillingEvent, BillingWebhook
from provisioning.core.db import session_scope

SECRET = "whsec_test_4f1c9a"


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got: who it says it is, its raw body, and what it answered
    (None: the sender went away before the answer)."""

    event_id: int
    signature: str | None
    body: bytes
    answered: int | None


@dataclass
class Receiver:
    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    # Per event id: the statuses to answer, in order; then 200.
    scripts: dict[int, list[int]] = field(default_factory=dict)
    # Per event id: its first request waits for this event, then goes unanswered.
    holds: dict[int, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, event_id: int) -> list[Delivery]:
        with self._lock:
            return [delivery for delivery in self.deliveries if delivery.event_id == event_id]

    def answered_ok(self, event_id: int) -> int:
        return sum(1 for delivery in self.of(event_id) if delivery.answered == 200)

    def record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)

    def next_status(self, event_id: int) -> int:
        with self._lock:
            script = self.scripts.get(event_id) or []
            return script.pop(0) if script else 200


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            event_id = int(self.headers.get("Provisioner-Event-Id", "0"))
            signature = self.headers.get("Provisioner-Signature")
            with receiver._lock:
                hold = receiver.holds.pop(event_id, None)
            if hold is not None:
                receiver.record(Delivery(event_id, signature, body, None))
                hold.wait(timeout=60)
                return  # no answer: the sender was killed meanwhile
            status = receiver.next_status(event_id)
            receiver.record(Delivery(event_id, signature, body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/billing/events"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def billing_event(account_id: int, kind: str, details: dict[str, Any], *,
                  receiver: Receiver | None = None, answers: list[int] | None = None,
                  hold: threading.Event | None = None) -> int:
    """Write a billing event the way any billing code path does (an ORM row); the receiver's
    script for it is set before it commits, so no delivery can come before it."""
    with session_scope() as session:
        event = BillingEvent(account_id=account_id, kind=kind, quantity=0, details=details)
        session.add(event)
        session.flush()
        if receiver is not None and answers is not None:
            receiver.scripts[event.id] = list(answers)
        if receiver is not None and hold is not None:
            receiver.holds[event.id] = hold
        return event.id


def webhook_row(event_id: int) -> BillingWebhook | None:
    with session_scope() as session:
        return session.scalars(select(BillingWebhook)
                               .where(BillingWebhook.event_id == event_id)).first()
