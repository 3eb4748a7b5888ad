"""Jobs: the record of slow work the workers do, visible to the account's admins."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from provisioning.auth import Actor, require_admin
from provisioning.errors import NotFound
from provisioning.models import Job


def job_view(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "total": job.total,
        "done": job.done,
        "summary": job.summary,
        "error": job.error,
        "errors_url": f"/v1/jobs/{job.id}/errors.csv",
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def get_job(session: Session, actor: Actor, job_id: int) -> dict[str, Any]:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound("No such job.")
    try:
        require_admin(session, actor, job.account_id)
    except NotFound:
        raise NotFound("No such job.") from None
    return job_view(job)
