"""Job kinds: each kind (import, and later reassignment and billing) registers what is its own.

``jobs`` runs, lists, cancels and purges any job through its kind's entry here, and
knows no kind by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session

from provisioning.jobs.models import Job

Progress = tuple[int, dict[str, Any]]  # rows done, and the summary's counts
# runner(job_id, deadline) -> True when the job needs no more turns
Runner = Callable[[int, float], bool]
# The kind's own counts added to the job row's: {job id: (rows done, summary)}
ProgressOf = Callable[[Session, dict[int, Progress]], dict[int, Progress]]
ViewExtension = Callable[[Job], dict[str, Any]]
# Deletes the kind's rows (those the database does not cascade) of the expired jobs
Forget = Callable[[Session, Select[Any]], None]


@dataclass(frozen=True)
class JobKind:
    name: str
    run: Runner
    progress: ProgressOf | None = None
    view: ViewExtension | None = None
    forget: Forget | None = None


KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    KINDS[kind.name] = kind
    return kind


def progress_of(session: Session, jobs: Sequence[Job]) -> dict[int, Progress]:
    """Rows done and the summary of several jobs: the rows' own counts plus their kind's."""
    seen = {job.id: (job.done or 0, dict(job.summary or {})) for job in jobs}
    for name in {job.kind for job in jobs}:
        kind = KINDS.get(name)
        if kind is not None and kind.progress is not None:
            own = {job.id: seen[job.id] for job in jobs if job.kind == name}
            seen.update(kind.progress(session, own))
    return seen


def progress(session: Session, job: Job) -> Progress:
    return progress_of(session, [job])[job.id]


def view_extension(job: Job) -> dict[str, Any]:
    kind = KINDS.get(job.kind)
    return kind.view(job) if kind is not None and kind.view is not None else {}
