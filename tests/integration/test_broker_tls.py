"""A TLS-only Redis broker: invitations go through it, and an untrusted certificate is refused."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu.exceptions import OperationalError

from provisioning.core.config import load_settings
from tests.support.processes import wait_until
from tests.support.servers import RedisServer, start_redis
from tests.support.stories import all_sent
from tests.support.tls import make_tls_files
from worker.celery_app import create_app


@pytest.fixture(scope="module")
def tls_redis(log_dir: Path) -> Iterator[RedisServer]:
    directory = log_dir / "tls-redis"
    server = start_redis(directory, tls=make_tls_files(directory / "certificates"))
    yield server
    server.stop()


def test_an_invitation_is_delivered_through_a_tls_broker(make_stack: Any, tls_redis: RedisServer):
    stack = make_stack(broker_url=tls_redis.url(1))
    assert stack.env["PROVISIONING_BROKER_URL"].startswith("rediss://")
    admin = stack.create_account()
    email = f"tls.{uuid.uuid4().hex[:8]}@example.com"
    assert stack.invite(admin, email=email).status_code == 201

    wait_until(lambda: all_sent(1, admin.id), timeout=15, message="the invitation over TLS")
    assert len(stack.sink.messages(to=email)) == 1
    ready = stack.api.simulate_get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["broker"] == "ok", ready.json


def _connect(broker_url: str) -> None:
    app = create_app(dataclasses.replace(load_settings(), broker_url=broker_url))
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=5)


@pytest.mark.parametrize("query", ["?ssl_cert_reqs=required", ""])
def test_a_broker_whose_certificate_is_not_trusted_is_refused(tls_redis: RedisServer,
                                                                query: str):
    # The server's CA is not in the system store: without ssl_ca_certs, no connection.
    with pytest.raises(OperationalError, match="certificate verify failed"):
        _connect(f"rediss://127.0.0.1:{tls_redis.port}/1{query}")


def test_verification_is_off_only_when_the_url_says_so(tls_redis: RedisServer):
    _connect(f"rediss://127.0.0.1:{tls_redis.port}/1?ssl_cert_reqs=none")
