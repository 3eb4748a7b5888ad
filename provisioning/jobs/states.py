"""A job's states and the one place its status changes (SPEC §3).

queued → running → succeeded | failed | cancelled. A running job may go back to
queued (a slice handed back to wait its turn, or a stalled job resumed); a queued
job may be cancelled before it ever ran. A finished job never changes again.
"""

from __future__ import annotations

from collections.abc import Mapping

from provisioning.core.models import utcnow
from provisioning.jobs.models import Job, JobStatus

QUEUED, RUNNING = JobStatus.QUEUED, JobStatus.RUNNING
SUCCEEDED, FAILED, CANCELLED = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED

TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    QUEUED: frozenset({RUNNING, CANCELLED}),
    RUNNING: frozenset({QUEUED, SUCCEEDED, FAILED, CANCELLED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}
TERMINAL = frozenset(status for status, onward in TRANSITIONS.items() if not onward)
FINISHED = tuple(status.value for status in JobStatus if status in TERMINAL)


class IllegalTransition(Exception):
    """A status change the job's state machine does not allow: a bug, never the admin's doing."""


def allowed(current: str, new: str) -> bool:
    return JobStatus(new) in TRANSITIONS[JobStatus(current)]


def is_finished(job: Job) -> bool:
    return job.status in FINISHED


def move(job: Job, new: JobStatus) -> None:
    """Change the job's status, or raise ``IllegalTransition``; stamps its start and finish."""
    if not allowed(job.status, new):
        raise IllegalTransition(f"job {job.id}: {job.status} → {new.value} is not allowed")
    job.status = new.value
    if new is RUNNING and job.started_at is None:
        job.started_at = utcnow()
    if new in TERMINAL:
        job.finished_at = utcnow()
