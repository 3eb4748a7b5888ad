"""The recalculation's wake-up after membership changes: one send per delay per process, and
every change followed by a send that runs after the change is due."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from provisioning.billing import due
from provisioning.core import dispatch
from provisioning.core.config import settings
from tests.support.processes import wait_until

DELAY = 0.3


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[float, dict[str, Any]]]]:
    monkeypatch.setenv("PROVISIONING_BILLING_RECALC_DELAY_SECONDS", str(DELAY))
    settings.cache_clear()
    seen: list[tuple[float, dict[str, Any]]] = []
    previous = dispatch.use_sender(
        lambda name, args, options: seen.append((time.monotonic(), options))
        if name == due.DUE_TASK else None)
    yield seen
    dispatch.use_sender(previous)
    settings.cache_clear()


def test_a_burst_of_changes_sends_once_now_and_once_after_the_delay(
        sent: list[tuple[float, dict[str, Any]]]):
    dispatch.debounced.cache_clear()  # a waker of its own, with this test's delay
    wake = due._wake
    started = time.monotonic()
    for _ in range(500):
        wake()
    assert len(sent) == 1 and sent[0][1] == {"countdown": DELAY + 1}
    last_change = time.monotonic()
    wait_until(lambda: len(sent) == 2, timeout=5, message="the trailing send")
    # The trailing send's task runs after the last change of the burst is due.
    assert sent[1][0] + DELAY + 1 >= last_change + DELAY
    assert sent[1][0] - started >= DELAY * 0.9
    wake()  # inside the delay after the trailing send: one more trailing send, not a burst
    wait_until(lambda: len(sent) == 3, timeout=5, message="the next trailing send")
    assert sent[2][0] - sent[1][0] >= DELAY * 0.9
