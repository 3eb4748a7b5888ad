"""`provision reseal-secrets`: move what is sealed at rest to the current secret key."""

from __future__ import annotations

import argparse
import json
from typing import Any

from provisioning.access.sealed import reseal


def cmd_reseal(args: argparse.Namespace) -> int:
    report = reseal()
    print(json.dumps(report))
    unreadable = sum(count for name, count in report.items() if "no key opens" in name)
    return 1 if unreadable else 0


def add_reseal(commands: Any) -> None:
    command = commands.add_parser(
        "reseal-secrets", help="after a key rotation, re-encrypt TOTP secrets and push keys "
        "with the current PROVISIONING_SECRET_KEY",
        description="Run with the new PROVISIONING_SECRET_KEY and the old one in "
        "PROVISIONING_PREVIOUS_SECRET_KEYS. Exits 1 when some value opens with none of them.")
    command.set_defaults(run=cmd_reseal)
