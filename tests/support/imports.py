"""Steps the import stories share: uploading a file, waiting for its job, reading reports."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

from sqlalchemy import func, select

from provisioning.core.db import session_scope
from provisioning.members.models import Membership
from tests.support.processes import wait_until

FINISHED = ("succeeded", "failed", "cancelled")


def upload(stack: Any, admin: Any, body: bytes, *, media: str = "text/csv",
           **params: str) -> Any:
    return stack.api.simulate_post(f"/v1/accounts/{admin.id}/imports", params=params, body=body,
                                   headers={**admin.headers, "Content-Type": media})


def job(stack: Any, admin: Any, job_id: int) -> dict[str, Any]:
    answer = stack.api.simulate_get(f"/v1/jobs/{job_id}", headers=admin.headers)
    assert answer.status_code == 200, answer.json
    return dict(answer.json)


def finished_job(stack: Any, admin: Any, job_id: int, timeout: float = 120) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(job(stack, admin, job_id))
        return seen["status"] in FINISHED

    wait_until(done, timeout=timeout, interval=0.2, message=f"job {job_id} to finish: {seen}")
    return seen


def run_import(stack: Any, admin: Any, body: bytes, *, media: str = "text/csv",
               timeout: float = 120, **params: str) -> dict[str, Any]:
    """Upload, wait, and return the finished job."""
    answer = upload(stack, admin, body, media=media, **params)
    assert answer.status_code == 202, answer.json
    return finished_job(stack, admin, answer.json["job"]["id"], timeout)


def report(stack: Any, admin: Any, job_id: int, name: str = "errors") -> list[dict[str, str]]:
    """A job's error report, or (``name="rows"``) an import's row report."""
    base = f"/v1/accounts/{admin.id}/imports/{job_id}" if name == "rows" else f"/v1/jobs/{job_id}"
    answer = stack.api.simulate_get(f"{base}/{name}.csv", headers=admin.headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(answer.text)))


def error_keys(stack: Any, admin: Any, job_id: int) -> set[tuple[int, str, str]]:
    return {(int(row["line"]), row["column"], row["code"])
            for row in report(stack, admin, job_id)}


def member_count(account_id: int) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Membership)
                              .where(Membership.account_id == account_id)) or 0


def people_csv(count: int, *, tag: str | None = None, header: str = "name,email,role,group",
               start: int = 0) -> tuple[bytes, list[str]]:
    """A CSV of ``count`` distinct people; returns it and their emails."""
    tag = tag or uuid.uuid4().hex[:8]
    emails = [f"p{i}.{tag}@example.com" for i in range(start, start + count)]
    lines = [header] + [f"Person {i},{email},member,Sales"
                        for i, email in enumerate(emails, start)]
    return ("\n".join(lines) + "\n").encode(), emails
