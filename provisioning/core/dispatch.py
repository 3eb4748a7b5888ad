"""The port through which services hand work to the workers. The broker carries ids only.

Services call ``send_task`` after their transaction commits; if the broker is
unreachable the rows stay queued in the database and the beat sweepers pick
them up, so a failed dispatch is logged and never fails the request. The domain
knows no broker: each entrypoint (the API, the worker, the CLI) connects the
sender that ``worker.celery_app`` provides with ``use_sender``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

Sender = Callable[[str, list[Any], dict[str, Any]], None]


def _not_connected(name: str, args: list[Any], options: dict[str, Any]) -> None:
    raise RuntimeError("no task sender is connected (dispatch.use_sender)")


_sender: Sender = _not_connected


def use_sender(sender: Sender) -> Sender:
    """Connect how tasks are sent (an entrypoint at start, or a unit test); returns the previous."""
    global _sender
    previous, _sender = _sender, sender
    return previous


def send_task(name: str, *args: Any, **options: Any) -> None:
    try:
        _sender(name, list(args), options)
    except Exception:
        log.warning("could not enqueue %s; the sweeper will retry", name, exc_info=True)


class Debounced:
    """Sends a wake-up task at most once per ``window`` seconds per process.

    A call inside the window schedules one trailing send at the window's end, so
    every caller is followed by a send that happens after its call: work committed
    before the call is always seen by a task. Turns a thousand invitations a
    second into a few dozen broker messages. ``options`` go with every send (e.g. a
    ``countdown``); a ``daemon`` trailing send does not hold a process at its exit.
    """

    def __init__(self, name: str, window: float, *, daemon: bool = False,
                 **options: Any) -> None:
        self.name = name
        self.window = window
        self.daemon = daemon
        self.options = options
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._trailing: threading.Timer | None = None

    def __call__(self) -> None:
        with self._lock:
            wait = self._last + self.window - time.monotonic()
            if self._trailing is not None:
                return  # a send after this call is already scheduled
            if wait > 0:
                self._trailing = threading.Timer(wait, self._send_trailing)
                self._trailing.daemon = self.daemon
                self._trailing.start()
                return
            self._last = time.monotonic()
        send_task(self.name, [], **self.options)

    def _send_trailing(self) -> None:
        with self._lock:
            self._trailing = None
            self._last = time.monotonic()
        send_task(self.name, [], **self.options)


@lru_cache(maxsize=32)
def debounced(name: str, window: float, *, daemon: bool = False,
              countdown: float | None = None) -> Debounced:
    """The process's one ``Debounced`` sender of ``name`` with these settings (the settings
    are read when work is first queued, not at import)."""
    options = {} if countdown is None else {"countdown": countdown}
    return Debounced(name, window, daemon=daemon, **options)


def backoff_seconds(attempts: int, base: float, most: float) -> float:
    """The wait before retrying after ``attempts``: from ``base``, doubling each attempt, with
    jitter in the upper half, never beyond ``most``."""
    ceiling = min(most, base * 2 ** max(attempts - 1, 0))
    return random.uniform(ceiling / 2, max(ceiling, 0.001))
