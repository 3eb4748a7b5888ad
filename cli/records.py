"""provision seed-records: fill an account with one member's records, for demos and benchmarks."""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from typing import Any

from provisioning.core.config import PREFIX, settings
from provisioning.core.db import session_scope
from provisioning.crm.records import KINDS
from provisioning.crm.seeding import seed_records


def cmd_seed_records(args: argparse.Namespace) -> int:
    """Write the records in one transaction and print one JSON line with what was written."""
    if args.database_url:
        os.environ[PREFIX + "DATABASE_URL"] = args.database_url
        settings.cache_clear()  # read again, with this database
    kinds = [name.strip() for name in args.kinds.split(",") if name.strip()]
    started = time.perf_counter()
    with session_scope() as session:
        seeded = seed_records(session, args.account, args.member, args.count, kinds)
    print(json.dumps({**asdict(seeded),
                      "seconds": round(time.perf_counter() - started, 3)}))
    return 0


def add_seed_records(commands: Any) -> None:
    seed = commands.add_parser(
        "seed-records", help="write realistic records owned by one member (demos, benchmarks)",
        description="Write COUNT leads, contacts, customers and tasks owned by one member, "
                    "with a conversation, a note and a message on one lead in ten. Prints "
                    "one JSON line with the counts.")
    seed.add_argument("--account", type=int, required=True, metavar="ID",
                      help="the account (workspace)")
    seed.add_argument("--member", type=int, required=True, metavar="ID",
                      help="the member (a user id of that account) who owns the records")
    seed.add_argument("--count", type=int, required=True, metavar="N",
                      help="records of each kind")
    seed.add_argument("--kinds", default=",".join(KINDS), metavar="LIST",
                      help=f"which kinds, comma-separated (default: {','.join(KINDS)})")
    seed.add_argument("--database-url", metavar="URL",
                      help=f"the database to write to (default: ${PREFIX}DATABASE_URL)")
    seed.set_defaults(run=cmd_seed_records)
