"""What a job did with each item it was given (each member of a bulk action), a page at a
time, in the order the items were given."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.core.errors import FieldError, InvalidInput
from provisioning.core.pages import decode_cursor, encode_cursor, page_size
from provisioning.jobs.models import JobResult
from provisioning.jobs.runs import visible_job

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
RESULT_STATUSES = (PENDING, SUCCEEDED, FAILED)


def list_results(session: Session, actor: Actor, job_id: int, status: str | None,
                 cursor: str | None, limit: int | None
                 ) -> tuple[list[dict[str, Any]], str | None]:
    """``GET /v1/jobs/{id}/results``: ``{"user_id", "status", "code"?, "message"?}`` each;
    ``status`` filters (``failed``: what to look at)."""
    visible_job(session, actor, job_id)
    size = page_size(limit)
    query = select(JobResult).where(JobResult.job_id == job_id)
    if status:
        if status not in RESULT_STATUSES:
            raise InvalidInput([FieldError("status", f"Use one of {', '.join(RESULT_STATUSES)}.",
                                           "invalid")])
        query = query.where(JobResult.status == status)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(JobResult.id > after)
    found = list(session.scalars(query.order_by(JobResult.id).limit(size + 1)))
    items = [_shown(result) for result in found[:size]]
    return items, (encode_cursor(found[size - 1].id) if len(found) > size else None)


def _shown(result: JobResult) -> dict[str, Any]:
    shown: dict[str, Any] = {"user_id": result.item_id, "status": result.status}
    if result.code is not None:
        shown["code"] = result.code
    if result.message is not None:
        shown["message"] = result.message
    return shown
