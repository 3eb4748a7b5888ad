"""The `provision` command: migrate, create-account, demo, import, seed-records, settings,
mailsink, reseal-secrets, retry-webhooks."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from cli.billing import add_retry_webhooks
from cli.imports import EXIT_FAILED, CommandFailed, add_import
from cli.records import add_seed_records
from cli.secrets import add_reseal
from provisioning.access.auth import authenticate, issue_api_key
from provisioning.accounts.workspaces import CreatedAccount, create_account
from provisioning.core import dispatch, migrate
from provisioning.core.config import markdown_table, settings, table
from provisioning.core.db import session_scope
from provisioning.core.errors import (
    NotAuthenticated,
    ProvisioningError,
)
from provisioning.members.models import Identity
from worker.celery_app import send_task

DEMO_EMAIL = "admin@demo.example.com"


def _create(args: argparse.Namespace) -> CreatedAccount:
    with session_scope() as session:
        return create_account(
            session,
            name=args.name,
            admin_email=args.admin_email,
            admin_password=args.admin_password,
            admin_name=args.admin_name or "",
            plan=args.plan,
            seats=args.seats,
            language=args.language,
            seasonal_seats=getattr(args, "seasonal_seats", 0),
            period=getattr(args, "period", "monthly"),
        )


def cmd_migrate(args: argparse.Namespace) -> int:
    migrate.upgrade()
    print("database is up to date")
    return 0


def cmd_create_account(args: argparse.Namespace) -> int:
    created = _create(args)
    print(json.dumps({"account_id": created.account_id, "admin_token": created.admin_token}))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Create the demo workspace once; later runs print the same login again."""
    config = settings()
    saved = config.var_dir / "demo.json"
    if saved.exists():
        demo = json.loads(saved.read_text())
        demo["token"] = _working_token(demo)
        saved.write_text(json.dumps(demo))
    else:
        password = secrets.token_urlsafe(12)
        created = _create(argparse.Namespace(
            name="Demo workspace", admin_email=DEMO_EMAIL, admin_password=password,
            admin_name="Demo Admin", plan="base", seats=10, language="en"))
        demo = {"account": created.account_id, "login": DEMO_EMAIL, "password": password,
                "token": created.admin_token}
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(demo))
        saved.chmod(0o600)
    for key in ("account", "login", "password", "token"):
        print(f"{key}: {demo[key]}")
    print(f"api: {config.public_url}/v1  (OpenAPI: {config.public_url}/openapi.json)")
    print(f"mail: {config.mailsink_url}/  (SMTP sink on {config.smtp.host}:{config.smtp.port})")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    """Print every setting: the table as docs/configuration.md holds it, or this process's."""
    if args.markdown:
        print(markdown_table(), end="")
        return 0
    config = settings()
    for entry in table():
        value = getattr(config, entry.field)
        shown = "(set)" if entry.declared.secret and value else "" if value is None else value
        print(f"{entry.variable}={shown}")
    return 0


def mailsink_argv(extra: Sequence[str] = ()) -> list[str]:
    """``python -m mailsink`` where the settings expect it: SMTP on the relay's host and
    port, HTTP on the mailsink URL, its store under the var dir."""
    config = settings()
    http_host, http_port = config.mailsink_host_port
    return [sys.executable, "-m", "mailsink",
            "--smtp-host", config.smtp_host, "--smtp-port", str(config.smtp_port),
            "--http-host", http_host, "--http-port", str(http_port),
            "--db", str(config.var_dir / "mailsink.sqlite3"), *extra]


def cmd_mailsink(args: argparse.Namespace) -> int:
    argv = mailsink_argv(args.sink_args)
    os.execv(argv[0], argv)  # the sink becomes this process, as honcho expects


def _working_token(demo: dict[str, Any]) -> str:
    """The saved demo API key, or a new one if it was revoked since."""
    with session_scope() as session:
        try:
            authenticate(session, demo["token"])
            return str(demo["token"])
        except NotAuthenticated:
            login = select(Identity).where(Identity.email == demo["login"])
            identity = session.scalars(login).one()
            return issue_api_key(session, identity, int(demo["account"]), "demo")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="provision", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring the database schema up to date").set_defaults(
        run=cmd_migrate)
    create = commands.add_parser("create-account", help="create a workspace and its first admin")
    create.add_argument("--name", required=True)
    create.add_argument("--admin-email", required=True)
    create.add_argument("--admin-password", required=True)
    create.add_argument("--admin-name", default="")
    create.add_argument("--plan", default="trial")
    create.add_argument("--seats", type=int, default=None)
    create.add_argument("--seasonal-seats", type=int, default=0,
                        help="seasonal seats on the contract (R10); none: no seasonal users")
    create.add_argument("--period", default="monthly", help="monthly or annual")
    create.add_argument("--language", default="en")
    create.set_defaults(run=cmd_create_account)
    commands.add_parser("demo", help="create the demo workspace and print its login").set_defaults(
        run=cmd_demo)
    shown = commands.add_parser("settings", help="print every setting (PROVISIONING_*)")
    shown.add_argument("--markdown", action="store_true",
                       help="the table of settings, defaults and meanings (docs/configuration.md)")
    shown.set_defaults(run=cmd_settings)
    sink = commands.add_parser("mailsink", help="start the SMTP sink where the settings expect it",
                               description="Further options go to `python -m mailsink`.")
    sink.add_argument("sink_args", nargs=argparse.REMAINDER)
    sink.set_defaults(run=cmd_mailsink)
    add_import(commands)
    add_seed_records(commands)
    add_reseal(commands)
    add_retry_webhooks(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    dispatch.use_sender(send_task)  # an import from the CLI enqueues its job
    try:
        return int(args.run(args))
    except ProvisioningError as exc:
        detail = "; ".join(f"{e.field}: {e.message}" for e in exc.errors) or exc.detail
        print(f"provision: {detail}", file=sys.stderr)
        return 2
    except CommandFailed as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
