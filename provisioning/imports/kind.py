"""The import as a job kind: its turn, the progress its written parts add, its view and rows.

Importing this module registers the kind with ``jobs``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from provisioning.imports.models import ImportPart
from provisioning.imports.models import ImportRow as StagedRow
from provisioning.imports.options import KIND
from provisioning.imports.planning import run_import
from provisioning.jobs.kinds import JobKind, Progress, register
from provisioning.jobs.models import Job


def import_url(job: Job) -> str:
    return f"/v1/accounts/{job.account_id}/imports/{job.id}"


def parts_progress(session: Session, seen: dict[int, Progress]) -> dict[int, Progress]:
    """The job's own counts plus those of its written parts, read in one query."""
    seen = dict(seen)
    for job_id, rows, counts in session.execute(
            select(ImportPart.job_id, ImportPart.rows, ImportPart.counts)
            .where(ImportPart.job_id.in_(list(seen)), ImportPart.written_at.is_not(None))):
        done, summary = seen[job_id]
        for key, count in (counts or {}).items():
            summary[key] = summary.get(key, 0) + count
        seen[job_id] = (done + rows, summary)
    return seen


def import_view(job: Job) -> dict[str, Any]:
    """What an import adds to the job: its options, its row report, committing a dry run."""
    params = job.params or {}
    view: dict[str, Any] = {
        "options": {key: params[key] for key in ("dry_run", "on_existing", "invite")
                    if key in params},
        "rows_url": f"{import_url(job)}/rows.csv",
    }
    if params.get("dry_run"):
        view["commit_url"] = f"{import_url(job)}/commit"
        view["committed_as"] = params.get("committed_as")
    if params.get("snapshot_of"):
        view["dry_run_job"] = params["snapshot_of"]
    return view


def forget_rows(session: Session, expired: Select[Any]) -> None:
    """The checked rows of expired imports (the file and parts go with the job)."""
    session.execute(delete(StagedRow).where(StagedRow.job_id.in_(expired)))


IMPORT = register(JobKind(name=KIND, run=run_import, progress=parts_progress,
                          view=import_view, forget=forget_rows))
