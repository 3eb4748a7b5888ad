"""Redis goes away and comes back: requests still succeed, nothing is lost or sent twice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import wait_until
from tests.support.servers import RedisServer, start_redis
from tests.support.stories import all_sent, outbox_counts


@pytest.fixture(scope="module")
def own_redis(log_dir: Path) -> Iterator[RedisServer]:
    directory = log_dir / "own-redis"
    directory.mkdir(exist_ok=True)
    server = start_redis(directory)
    yield server
    server.stop()


def test_invitations_made_while_redis_is_down_are_delivered_once_it_is_back(
    make_stack: Any, own_redis: RedisServer
):
    stack = make_stack(broker_url=own_redis.url(0))
    admin = stack.create_account()
    run = uuid.uuid4().hex[:8]
    before = [f"before{i}.{run}@example.com" for i in range(3)]
    during = [f"during{i}.{run}@example.com" for i in range(5)]
    for email in before:
        assert stack.invite(admin, email=email).status_code == 201
    wait_until(lambda: all_sent(len(before), admin.id), timeout=30, message="first emails")

    own_redis.stop()
    not_ready = stack.api.simulate_get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json["checks"]["broker"] != "ok"
    for email in during:  # the API records and answers; the wake-up waits for the sweeper
        assert stack.invite(admin, email=email).status_code == 201

    restarted = start_redis(own_redis.process.log_path.parent, port=own_redis.port)
    own_redis.process = restarted.process
    wait_until(lambda: stack.api.simulate_get("/readyz").status_code == 200, timeout=30,
               message="the broker to be reachable again")
    wait_until(lambda: all_sent(len(before) + len(during), admin.id), timeout=120,
               interval=0.5, message=f"emails after the restart; now {outbox_counts(admin.id)}")
    for email in before + during:
        assert len(stack.sink.messages(to=email)) == 1, email
