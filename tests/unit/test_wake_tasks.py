"""Every task a wake-up sends (``core.dispatch.Debounced``) takes what the wake-up carries: a
task that cannot is refused by the worker at every wake-up, and its work waits for beat."""

from __future__ import annotations

import inspect

import pytest

from provisioning.billing import announcements, due
from provisioning.mail import outbox
from provisioning.notifications import push
from worker import tasks  # noqa: F401 - registers the tasks
from worker.celery_app import app

WOKEN = (outbox.SEND_TASK, push.PUSH_TASK, announcements.ANNOUNCE_TASK,
         announcements.WEBHOOK_TASK, due.DUE_TASK)


@pytest.mark.parametrize("name", WOKEN)
def test_a_woken_task_takes_the_wake_up_s_argument(name: str) -> None:
    inspect.signature(app.tasks[name].run).bind([])  # TypeError if it cannot
