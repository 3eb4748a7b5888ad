"""provision import: upload a file of people, follow the job, print what happened."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import struct
import sys
import time
from collections.abc import Mapping
from datetime import date, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import Permission, first_member_holding
from provisioning.core.config import PREFIX, settings
from provisioning.core.db import session_scope
from provisioning.core.errors import (
    FieldError,
    InvalidInput,
    NotFound,
    ProvisioningError,
)
from provisioning.core.validation import normalise_email
from provisioning.imports.formats import MEDIA_BY_EXTENSION
from provisioning.imports.options import ON_EXISTING, ImportOptions
from provisioning.imports.upload import import_members
from provisioning.jobs.runs import get_job
from provisioning.jobs.states import FINISHED
from provisioning.members.models import Identity

API_TOKEN_VARIABLE = PREFIX + "API_TOKEN"
UPLOAD_BLOCK = 1 << 16
REQUEST_TIMEOUT = 300.0  # the upload's answer comes once the server has stored the whole file
QUIET_PROGRESS_SECONDS = 5.0  # without a terminal: one progress line at most this often
OUTAGE_SECONDS = 60.0  # how long following a job rides out an unreachable service
IDLE_HINT_SECONDS = 30.0  # still queued after this long: probably no worker on that broker
EXIT_FAILED, EXIT_REFUSED, EXIT_INTERRUPTED = 1, 2, 130
SUCCEEDED = "succeeded"


class CommandFailed(Exception):
    """The command could not finish, through no fault of its input (exit 1)."""


class Unreachable(CommandFailed):
    """The service did not answer (network, 5xx); following a job retries for a while."""


class Progress:
    """One line redrawn in place on a terminal; in a pipe or a log, a plain line now and then."""

    def __init__(self, stream: TextIO, file_name: str) -> None:
        self.stream = stream
        self.file_name = file_name
        self.live = stream.isatty()
        self.phase = ""
        self.printed_at = time.monotonic()
        self.last_text = ""
        self.on_screen = False
        self.queued_since: float | None = None

    def uploading(self, sent: int, size: int) -> None:
        fraction = sent / size if size else 1.0
        self._show("upload", f"uploading {self.file_name}: {_megabytes(sent)} of "
                             f"{_megabytes(size)} ({fraction:.0%})", fraction, announce=False)

    def job(self, view: Mapping[str, Any]) -> None:
        now = time.monotonic()
        if view["status"] == "queued":
            self.queued_since = self.queued_since or now
        else:
            self.queued_since = None
        idle = self.queued_since is not None and now - self.queued_since > IDLE_HINT_SECONDS
        phase, text, fraction = _describe(view, idle)
        self._show(phase, text, fraction, announce=True)

    def end(self) -> None:
        """Leave the live line as it is and go on below it."""
        if self.on_screen:
            self.stream.write("\n")
            self.stream.flush()
            self.on_screen = False

    def _show(self, phase: str, text: str, fraction: float | None, *, announce: bool) -> None:
        now = time.monotonic()
        changed, self.phase = phase != self.phase, phase
        if self.live:
            width = max(shutil.get_terminal_size().columns - 1, 20)
            if fraction is not None:
                text = f"{_bar(fraction, width // 4)} {text}"
            self.stream.write("\r" + text[:width] + "\x1b[K")  # a wrapped line cannot be redrawn
            self.stream.flush()
            self.on_screen = True
            return
        # A log gets each new phase at once, otherwise a line every few seconds.
        due = (changed and announce) or now - self.printed_at >= QUIET_PROGRESS_SECONDS
        if due and text != self.last_text:
            print(text, file=self.stream, flush=True)
            self.printed_at, self.last_text = now, text


def _describe(view: Mapping[str, Any], idle: bool) -> tuple[str, str, float | None]:
    """The job's phase, its progress line, and the share done once the rows are counted."""
    name = f"job {view['id']}"
    status, done, total = view["status"], int(view.get("done") or 0), view.get("total")
    if status == "queued":
        hint = (f" (nobody took it for {IDLE_HINT_SECONDS:.0f} s: is a worker running on the "
                f"same broker?)") if idle else ""
        return "queued", f"{name} queued, waiting for a worker…{hint}", None
    if total is None:
        return "counting", f"{name} counting rows…", None
    fraction = min(done / total, 1.0) if total else 1.0
    rows = f"{name} {done:,}/{total:,} rows ({fraction:.0%})"
    if status in FINISHED:
        return "finished", f"{rows} {status}", fraction
    rate = view.get("rows_per_second")
    if not rate:
        return "counted", f"{rows} counted, importing…", fraction
    eta = _clock(max(total - done, 0) / rate)
    return "rows", f"{rows}  {rate:,.0f} rows/s  ETA {eta}", fraction


def _bar(fraction: float, width: int) -> str:
    width = min(max(width, 10), 30)
    filled = round(fraction * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def _megabytes(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MB"


class UploadReader:
    """The file as the upload reads it, block by block, reporting how much has gone."""

    def __init__(self, file: BinaryIO, size: int, progress: Progress) -> None:
        self.file = file
        self.size = size
        self.sent = 0
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.sent += len(data)
        self.progress.uploading(self.sent, self.size)
        return data


class ApiImports:
    """Upload and follow through the HTTP API, as any admin's script would."""

    def __init__(self, api_url: str, token: str) -> None:
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput([FieldError("--api-url", f"Give an http(s) URL, not {api_url!r}.")])
        self.api_url = api_url.rstrip("/")
        self.token = token
        self._parts = parts

    def upload(self, file: UploadReader, media_type: str, options: ImportOptions,
               account_id: int) -> dict[str, Any]:
        query = "&".join(f"{key}={str(value).lower()}"
                         for key, value in options.as_params().items())
        status, answer = self._request(
            "POST", f"/v1/accounts/{account_id}/imports?{query}", body=file,
            headers={"Content-Type": media_type, "Content-Length": str(file.size)})
        if status != 202:
            raise _problem(status, answer)
        return dict(answer["job"])

    def fetch(self, job_id: int) -> dict[str, Any]:
        status, answer = self._request("GET", f"/v1/jobs/{job_id}")
        if status != 200:
            problem = _problem(status, answer)
            raise problem if isinstance(problem, Unreachable) else CommandFailed(str(problem))
        return dict(answer)

    def report_hint(self) -> str:
        return ""

    def _request(self, method: str, path: str, *, body: UploadReader | None = None,
                 headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        kind = (http.client.HTTPSConnection if self._parts.scheme == "https"
                else http.client.HTTPConnection)
        connection = kind(self._parts.hostname or "", self._parts.port,
                          timeout=REQUEST_TIMEOUT, blocksize=UPLOAD_BLOCK)
        try:
            try:
                connection.request(method, self._parts.path.rstrip("/") + path, body=body,
                                   headers={"Authorization": f"Bearer {self.token}",
                                            "Accept": "application/json", **(headers or {})})
            except (BrokenPipeError, ConnectionResetError):
                if body is None:
                    raise
                # The server answered before it took the whole file (a refusal): read why.
            except KeyboardInterrupt:
                _reset(connection)
                raise
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            cut = ""
            if body is not None and 0 < body.sent < body.size:
                cut = (f" after {_megabytes(body.sent)} of {_megabytes(body.size)} (a server "
                       "may close early on a file too large or a wrong token)")
            raise Unreachable(f"no answer from {self.api_url}{cut}: {exc}") from None
        finally:
            connection.close()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None


def _reset(connection: http.client.HTTPConnection) -> None:
    """Close with a reset, not an end of file: a server must not take a cut file for a whole one.

    (Over HTTP/1.1 with a Content-Length, a body that simply ends early can be read as
    complete by the server; a reset makes its read fail instead.)
    """
    if connection.sock is not None:
        connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _problem(status: int, answer: Any) -> Unreachable | ProvisioningError:
    """What an error answer means: the service is unwell (5xx), or it refuses (problem+json)."""
    problem = answer if isinstance(answer, dict) else {}
    try:
        reason = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        reason = str(status)
    detail = str(problem.get("detail") or problem.get("title") or
                 f"The service answered {reason}.")
    if status >= 500:
        return Unreachable(f"the service answered {reason}: {detail}")
    if status < 400:  # a redirect: most likely http:// where the service wants https://
        detail += " Check --api-url."
    if status == 401:
        detail += f" Check --token or ${API_TOKEN_VARIABLE}."
    errors = [FieldError(str(error.get("field", "")), str(error.get("message", "")),
                         str(error.get("code", "invalid")))
              for error in problem.get("errors") or [] if isinstance(error, dict)]
    return ProvisioningError(detail, code=str(problem.get("code") or "error"), errors=errors)


class DatabaseImports:
    """Store and enqueue the import from this process, acting as one of the account's admins."""

    def __init__(self, api_url: str | None, account_id: int, admin_email: str | None) -> None:
        self.api_url = (api_url or settings().public_url).rstrip("/")
        try:
            with session_scope() as session:
                self.actor = _account_admin(session, account_id, admin_email)
        except OperationalError as exc:
            raise Unreachable(f"the database is not reachable: {exc.orig}") from None

    def upload(self, file: UploadReader, media_type: str, options: ImportOptions,
               account_id: int) -> dict[str, Any]:
        try:
            with session_scope() as session:  # the job is enqueued once this commits
                return import_members(session, self.actor, account_id, cast(BinaryIO, file),
                                      media_type, options, length=file.size)
        except OperationalError as exc:
            raise Unreachable(f"the database is not reachable: {exc.orig}") from None

    def fetch(self, job_id: int) -> dict[str, Any]:
        try:
            with session_scope() as session:
                return get_job(session, self.actor, job_id)
        except OperationalError as exc:
            raise Unreachable(f"the database is not reachable: {exc.orig}") from None

    def report_hint(self) -> str:
        return (f"  (it needs an admin's API token: curl -H \"Authorization: Bearer "
                f"${API_TOKEN_VARIABLE}\" URL)")


def _account_admin(session: Session, account_id: int, email: str | None) -> Actor:
    """``email``'s identity (the service checks its rights), else a member holding users.manage."""
    if email:
        identity = session.scalars(
            select(Identity).where(Identity.email == normalise_email(email, "--as-admin"))).first()
        if identity is None:
            raise NotFound(f"Nobody with the email {email} exists.", code="no_such_admin")
    else:  # whoever the policy lets manage users, not a role's name
        identity = first_member_holding(session, account_id, Permission.USERS_MANAGE)
        if identity is None:
            raise NotFound(f"Account {account_id} does not exist or has no active admin.",
                           code="no_admin")
    return Actor(identity.id, identity.email, identity.name or "", token_id=0,
                 account_id=account_id)


Channel = ApiImports | DatabaseImports


def cmd_import(args: argparse.Namespace) -> int:
    """Upload a file of people, follow its job with a progress line, and print what happened."""
    path = Path(args.file)
    if not path.is_file():
        raise InvalidInput([FieldError("FILE", f"{path} is not a file that can be read.")])
    if args.database_url:
        if args.token:
            raise InvalidInput([FieldError("--token", "Use --token (through the API) or "
                                                      "--database-url (directly), not both.")])
        os.environ[PREFIX + "DATABASE_URL"] = args.database_url
        settings.cache_clear()  # read again, with this database
        channel: Channel = DatabaseImports(args.api_url, args.account, args.as_admin)
    else:
        if args.as_admin:
            raise InvalidInput([FieldError("--as-admin", "Only with --database-url; through "
                                                         "the API the token says who you are.")])
        token = args.token or settings().api_token or ""
        if not token:
            raise InvalidInput([FieldError("--token", f"Give an admin's API token with --token "
                                                      f"or ${API_TOKEN_VARIABLE}.")])
        channel = ApiImports(args.api_url or settings().public_url, token)
    options = ImportOptions(dry_run=args.dry_run, on_existing=args.on_existing,
                            invite=args.invite)
    # any other name goes as CSV, which the server refuses with a reason if it is not text
    media_type = MEDIA_BY_EXTENSION.get(path.suffix.lower(), "text/csv")
    progress = Progress(sys.stderr, path.name)
    with path.open("rb") as file:
        upload = UploadReader(file, path.stat().st_size, progress)
        try:
            job = channel.upload(upload, media_type, options, args.account)
        except KeyboardInterrupt:
            if upload.sent < upload.size:
                print(f"provision: upload stopped after {_megabytes(upload.sent)} of "
                      f"{_megabytes(upload.size)}; nothing was imported.", file=sys.stderr)
            else:
                print("provision: stopped while the service was storing the file; the import "
                      "may have started anyway.", file=sys.stderr)
            return EXIT_INTERRUPTED
        except ProvisioningError as refused:
            print(_refusal(refused), file=sys.stderr)
            return EXIT_REFUSED
        finally:
            progress.end()  # what follows starts on a line of its own
    if args.no_wait:
        print(json.dumps({"job": job}, default=_json_value))
        return 0
    try:
        job = _follow(channel, job, progress, args.poll)
    except KeyboardInterrupt:
        progress.end()
        print(f"Stopped waiting; import job {job['id']} keeps running.\n"
              f"{_how_to_follow(channel, int(job['id']))}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CommandFailed as lost:
        progress.end()
        print(f"provision: {lost}\nImport job {job['id']} may still be running.\n"
              f"{_how_to_follow(channel, int(job['id']))}", file=sys.stderr)
        return EXIT_FAILED
    progress.end()
    _print_outcome(channel, job)
    return 0 if job["status"] == SUCCEEDED else EXIT_FAILED


def _follow(channel: Channel, job: dict[str, Any], progress: Progress,
            poll: float) -> dict[str, Any]:
    """Poll the job until it finishes, riding out a short outage of the service."""
    progress.job(job)
    heard_at = time.monotonic()
    while job["status"] not in FINISHED:
        time.sleep(poll)
        try:
            latest = channel.fetch(int(job["id"]))
        except Unreachable:
            if time.monotonic() - heard_at > OUTAGE_SECONDS:
                raise
            continue
        heard_at = time.monotonic()
        job = latest
        progress.job(job)
    return job


def _refusal(refused: ProvisioningError) -> str:
    lines = [f"provision: import refused: {refused.detail}"]
    lines += [f"  {error.field}: {error.message}" for error in refused.errors
              if error.message != refused.detail]
    return "\n".join(lines)


def _how_to_follow(channel: Channel, job_id: int) -> str:
    auth = f"-H \"Authorization: Bearer ${API_TOKEN_VARIABLE}\""
    return (f"Follow it:  curl {auth} {channel.api_url}/v1/jobs/{job_id}\n"
            f"Cancel it:  curl -X POST {auth} {channel.api_url}/v1/jobs/{job_id}/cancel")


COUNTS = (("created", "created"), ("updated", "updated"), ("skipped", "skipped"),
          ("failed", "failed"), ("invitations", "invitations sent"),
          ("seats_added", "seats added"))
DRY_RUN_COUNTS = (("created", "would create"), ("updated", "would update"),
                  ("skipped", "would skip"), ("failed", "would fail"),
                  ("invitations", "would invite"))


def _print_outcome(channel: Channel, job: Mapping[str, Any]) -> None:
    """What the job did (or, for a dry run, would do), where its errors are, then one JSON line."""
    summary: dict[str, Any] = dict(job.get("summary") or {})
    dry_run = bool((job.get("options") or {}).get("dry_run"))
    status, job_id = job["status"], job["id"]
    took = ""
    if job.get("elapsed_seconds") is not None:
        rate = job.get("rows_per_second")
        took = f" in {job['elapsed_seconds']:.1f} s" + (f" ({rate:,.0f} rows/s)" if rate else "")
    print(f"{'Dry run' if dry_run else 'Import'} job {job_id} {status}: "
          f"{int(job.get('done') or 0):,} rows{took}.")
    if dry_run:
        print("Nothing was written. What committing this dry run would do:")
    for key, label in DRY_RUN_COUNTS if dry_run else COUNTS:
        print(f"  {label:<17}{int(summary.get(key) or 0):>9,}")
    seats = summary.get("seats")
    if dry_run and isinstance(seats, dict):
        print("  " + _seat_impact(seats))
    errors_url = f"{channel.api_url}{job.get('errors_url') or f'/v1/jobs/{job_id}/errors.csv'}"
    if int(summary.get("failed") or 0):
        print(f"Error report ({int(summary['failed']):,} rows): {errors_url}"
              f"{channel.report_hint()}")
    if dry_run and status == SUCCEEDED and job.get("commit_url"):
        print(f"Commit it (applies the checked rows, no new upload):\n  curl -X POST "
              f"-H \"Authorization: Bearer ${API_TOKEN_VARIABLE}\" "
              f"{channel.api_url}{job['commit_url']}")
    if status != SUCCEEDED:
        reason = job.get("error") or ("it was cancelled; what was written before stays"
                                      if status == "cancelled" else "no reason given")
        print(f"provision: import job {job_id} {status}: {reason}", file=sys.stderr)
    print(json.dumps({"job": job_id, "status": status, "summary": summary,
                      "error": job.get("error"), "errors_url": errors_url},
                     default=_json_value))


def _seat_impact(seats: Mapping[str, Any]) -> str:
    fit = (f"seats: {seats.get('in_use', 0):,} in use + {seats.get('new', 0):,} new, "
           f"{seats.get('purchased', 0):,} purchased")
    to_add = int(seats.get("to_add") or 0)
    if not to_add:
        return f"{fit}: no seat to add"
    charge = int(seats.get("prorated_charge_cents") or 0) / 100
    return (f"{fit}: {to_add:,} seats to add on the {seats.get('plan')} plan "
            f"(prorated charge now ${charge:,.2f})")


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"give a number of seconds above 0, not {text!r}")
    return value


def add_import(commands: Any) -> None:
    imports = commands.add_parser(
        "import", help="import members from a file and follow the job",
        description="Upload a CSV, JSON or NDJSON file of people (SPEC §6), show the job's "
                    "progress, and print its summary and where the error report is. The "
                    "last line of the output is JSON. Exit status: 0 succeeded, 1 failed or "
                    "cancelled, 2 refused, 130 stopped waiting (the job goes on).")
    imports.add_argument("file", metavar="FILE",
                         help=".csv/.tsv/.txt as CSV, .json as a JSON array, .ndjson/.jsonl "
                              "as NDJSON; any other name as CSV")
    imports.add_argument("--account", type=int, required=True, metavar="ID",
                         help="the account (workspace) to import into")
    imports.add_argument("--dry-run", action="store_true",
                         help="check and plan every row, write nothing; commit it later")
    imports.add_argument("--on-existing", choices=ON_EXISTING, default="skip",
                         help="what to do with rows of people already in the account "
                              "(default: skip)")
    imports.add_argument("--no-invite", dest="invite", action="store_false",
                         help="create the members without sending invitations")
    api = imports.add_argument_group("through the API (the default)")
    api.add_argument("--api-url", metavar="URL",
                     help=f"default: ${PREFIX}PUBLIC_URL (also shapes the URLs printed in "
                          "direct mode)")
    api.add_argument("--token", metavar="TOKEN",
                     help=f"an admin's API token; prefer ${API_TOKEN_VARIABLE}, which "
                          "other users cannot see in the process list")
    direct = imports.add_argument_group("directly against the database (an operator's tool)")
    direct.add_argument("--database-url", metavar="URL",
                        help=f"store and enqueue the job from here; the broker is "
                             f"${PREFIX}BROKER_URL")
    direct.add_argument("--as-admin", metavar="EMAIL",
                        help="act as this admin (default: the account's first active admin)")
    follow = imports.add_argument_group("following the job")
    follow.add_argument("--no-wait", action="store_true",
                        help="print the job as JSON right after the upload and exit")
    follow.add_argument("--poll", type=_positive_seconds, default=1.0, metavar="SECONDS",
                        help="how often to ask for progress (default: 1)")
    imports.set_defaults(run=cmd_import)
