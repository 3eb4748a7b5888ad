"""Redis goes away and comes back: requests still succeed, nothing is lost or sent twice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import wait_until
from tests.support.servers import RedisServer, start_redis
from tests.support.stories import all_sent, assert_each_got_exactly_one, invite_many, outbox_counts


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


def test_a_worker_survives_redis_going_away_while_its_send_task_drains(
    make_stack: Any, own_redis: RedisServer
):
    # The sink answers slowly, so the send task is still draining (unacknowledged) when
    # Redis stops; the worker must reconnect rather than exit.
    stack = make_stack(broker_url=own_redis.url(1), sink_options={"delay_ms": 40})
    admin, emails = invite_many(stack, 60)
    wait_until(lambda: outbox_counts(admin.id).get("sent", 0) > 0, timeout=30,
               interval=0.05, message="the first emails of the drain")
    own_redis.stop()
    assert outbox_counts(admin.id).get("sent", 0) < len(emails), "the drain ended too soon"
    worker = stack.worker
    assert worker is not None
    # Redis comes back only once the consumer has collected the broken connection (the
    # close that used to crash it) and tried again, or has died trying.
    wait_until(lambda: any(sign in worker.log() for sign in (
        "consumer: Cannot connect to", "Unrecoverable error")), timeout=30, interval=0.1,
        message="the worker to notice that Redis is gone")
    restarted = start_redis(own_redis.process.log_path.parent, port=own_redis.port)
    own_redis.process = restarted.process

    later = [f"later{i}.{uuid.uuid4().hex[:8]}@example.com" for i in range(5)]
    for email in later:  # delivered only if the worker still consumes (its beat sweeps)
        assert stack.invite(admin, email=email).status_code == 201
    wait_until(lambda: all_sent(len(emails) + len(later), admin.id), timeout=120, interval=0.5,
               message=f"every email after the restart; now {outbox_counts(admin.id)}")
    assert stack.worker is not None and stack.worker.running()
    assert "Unrecoverable error" not in stack.worker.log()
    assert_each_got_exactly_one(stack, emails + later)
