"""A job's state machine: the legal steps, the refused ones, and finished jobs staying finished."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from provisioning.imports.options import KIND
from provisioning.jobs.models import Job, JobStatus
from provisioning.jobs.states import FINISHED, TERMINAL, IllegalTransition, allowed, move

ROOT = Path(__file__).resolve().parents[2]
JOBS = ROOT / "provisioning" / "jobs"

Q, R = JobStatus.QUEUED, JobStatus.RUNNING
S, F, C = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED
LEGAL = {(Q, R), (Q, C), (R, Q), (R, S), (R, F), (R, C)}
ILLEGAL = sorted(set(itertools.product(JobStatus, repeat=2)) - LEGAL)


def _job(status: JobStatus) -> Job:
    return Job(id=1, account_id=1, kind="any", status=status.value)


@pytest.mark.parametrize(("current", "new"), sorted(LEGAL))
def test_every_legal_step_is_taken(current: JobStatus, new: JobStatus) -> None:
    job = _job(current)
    move(job, new)
    assert job.status == new.value
    assert allowed(current, new)


@pytest.mark.parametrize(("current", "new"), ILLEGAL)
def test_every_other_step_raises_and_leaves_the_job_as_it_was(current: JobStatus,
                                                              new: JobStatus) -> None:
    job = _job(current)
    with pytest.raises(IllegalTransition):
        move(job, new)
    assert job.status == current.value
    assert not allowed(current, new)


@pytest.mark.parametrize("finished", [S, F, C])
def test_a_finished_job_stays_finished(finished: JobStatus) -> None:
    assert finished in TERMINAL and finished.value in FINISHED
    for new in JobStatus:
        with pytest.raises(IllegalTransition):
            move(_job(finished), new)


def test_only_succeeded_failed_and_cancelled_are_finished() -> None:
    assert {S, F, C} == TERMINAL
    assert set(FINISHED) == {"succeeded", "failed", "cancelled"}


def test_starting_stamps_the_start_once_and_finishing_stamps_the_finish() -> None:
    job = _job(Q)
    move(job, R)
    started = job.started_at
    assert started is not None and job.finished_at is None
    move(job, Q)  # a slice handed back
    move(job, R)
    assert job.started_at == started
    move(job, S)
    assert job.finished_at is not None


def test_a_queued_job_cancelled_before_it_ran_has_no_start() -> None:
    job = _job(Q)
    move(job, C)
    assert job.started_at is None and job.finished_at is not None


def test_jobs_knows_no_kind_by_name_and_imports_nothing_of_the_import() -> None:
    for path in sorted(JOBS.rglob("*.py")):
        tree = ast.parse(path.read_text())
        strings = {node.value for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        assert KIND not in strings, path
        assert f'"{KIND}"' not in path.read_text() and "/imports" not in path.read_text(), path
        imported = {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
        assert not {name for name in imported
                    if name.split(".")[:2] == ["provisioning", "imports"]}, path
        for other in ("ImportRow", "ImportPart", "JobFile", "StagedRow"):
            assert other not in path.read_text(), (path, other)
