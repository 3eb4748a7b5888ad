"""`provision retry-webhooks`: send again the billing webhooks that failed for good."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from provisioning.billing.announcements import wake_webhook_sender
from provisioning.billing.webhooks import retry_failed


def _day(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def cmd_retry_webhooks(args: argparse.Namespace) -> int:
    queued = retry_failed(since=args.since)
    if queued:
        wake_webhook_sender()
    print(json.dumps({"queued": queued}))
    return 0


def add_retry_webhooks(commands: Any) -> None:
    command = commands.add_parser(
        "retry-webhooks", help="queue again the billing webhooks that failed for good",
        description="Once the receiver is fixed: each failed webhook goes once more, with a "
        "fresh count of attempts. Prints {\"queued\": N}.")
    command.add_argument("--since", type=_day, default=None,
                         help="only events written on or after this day (YYYY-MM-DD, UTC)")
    command.set_defaults(run=cmd_retry_webhooks)
