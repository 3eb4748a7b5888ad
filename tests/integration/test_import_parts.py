"""An import is planned in file order and its parts are written by whichever worker is free.

The first tests drive the steps in this process (no worker runs) to put an
invitation or a seat race exactly between a part's plan and its writing; the
last one lets a real worker's two processes share one import.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, update

from provisioning.core.db import session_scope
from provisioning.imports import planning
from provisioning.imports.models import ImportPart
from provisioning.jobs import runs
from provisioning.members.models import Invitation, Membership
from tests.conftest import Stack
from tests.support.imports import (
    error_keys,
    finished_job,
    job,
    member_count,
    people_csv,
    report,
    upload,
)


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    # A turn of zero seconds plans one chunk and stops: the test decides what happens next.
    return make_stack(worker=False, job_slice_seconds="0", import_chunk_rows="5000")


def plan_one_chunk(stack: Stack, admin: Any, body: bytes, **params: str) -> int:
    answer = upload(stack, admin, body, **params)
    assert answer.status_code == 202, answer.json
    job_id = int(answer.json["job"]["id"])
    runs.run_job(job_id)
    with session_scope() as session:
        parts = session.scalars(select(ImportPart).where(ImportPart.job_id == job_id)).all()
        assert [(part.part, part.written_at) for part in parts] == [(0, None)]
    assert job(stack, admin, job_id)["status"] == "running"
    return job_id


def invitations_to(email: str) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Invitation)
                              .where(Invitation.email == email)) or 0


def test_someone_invited_between_the_plan_and_the_write_is_skipped_not_written_twice(
        stack: Stack):
    admin = stack.create_account(plan="base", seats=10)
    body, emails = people_csv(5)
    job_id = plan_one_chunk(stack, admin, body)
    assert stack.invite(admin, email=emails[2]).status_code == 201

    planning.write_part(job_id, 0)
    runs.run_job(job_id)  # nothing left to plan or write: the job finishes

    done = job(stack, admin, job_id)
    assert done["status"] == "succeeded", done
    assert (done["summary"]["created"], done["summary"]["skipped"]) == (4, 1)
    assert done["done"] == done["total"] == 5
    assert member_count(admin.id) == 1 + 5
    assert [invitations_to(email) for email in emails] == [1] * 5
    outcomes = {row["email"]: row["outcome"] for row in report(stack, admin, job_id, "rows")}
    assert outcomes[emails[2]] == "unchanged"
    assert [outcomes[email] for email in emails if email != emails[2]] == ["create"] * 4


def test_a_seat_taken_on_a_trial_before_the_write_fails_the_last_row_of_the_part(
        stack: Stack):
    admin = stack.create_account(plan="trial", seats=5)
    body, emails = people_csv(4)  # the admin and these four fill the five seats
    job_id = plan_one_chunk(stack, admin, body, invite="false")
    outsider = f"outsider.{emails[0]}"
    assert stack.invite(admin, email=outsider).status_code == 201  # takes a held seat

    planning.write_part(job_id, 0)
    runs.run_job(job_id)

    done = job(stack, admin, job_id)
    assert done["status"] == "succeeded", done
    assert (done["summary"]["created"], done["summary"]["failed"]) == (3, 1)
    assert error_keys(stack, admin, job_id) == {(5, "row", "no_seat")}
    assert member_count(admin.id) == 5


def test_a_known_person_who_took_a_paid_seat_elsewhere_meanwhile_is_refused(stack: Stack):
    other = stack.create_account()
    admin = stack.create_account()
    body, emails = people_csv(2)
    # A free user elsewhere may join this account as a full member (R2)...
    assert stack.invite(other, email=emails[1], user_type="free").status_code == 201
    job_id = plan_one_chunk(stack, admin, body, invite="false")
    with session_scope() as session:  # ...until the other account makes them a full member
        session.execute(update(Membership).where(Membership.account_id == other.id,
                                                 Membership.user_type == "free")
                        .values(user_type="full"))

    planning.write_part(job_id, 0)
    runs.run_job(job_id)

    done = job(stack, admin, job_id)
    assert (done["summary"]["created"], done["summary"]["failed"]) == (1, 1)
    assert error_keys(stack, admin, job_id) == {(3, "email", "email_taken")}
    assert member_count(admin.id) == 2


def test_a_part_is_written_once_however_often_its_task_arrives(stack: Stack):
    admin = stack.create_account(plan="base", seats=1)
    body, _ = people_csv(3)
    job_id = plan_one_chunk(stack, admin, body, invite="false")
    for _ in range(3):
        planning.write_part(job_id, 0)
    runs.run_job(job_id)
    done = job(stack, admin, job_id)
    assert (done["status"], done["summary"]["created"]) == ("succeeded", 3)
    assert member_count(admin.id) == 4


def test_a_cancelled_job_writes_no_more_parts(stack: Stack):
    admin = stack.create_account()
    body, _ = people_csv(3)
    job_id = plan_one_chunk(stack, admin, body, invite="false")
    cancelled = stack.api.simulate_post(f"/v1/jobs/{job_id}/cancel", headers=admin.headers)
    assert cancelled.status_code == 200
    planning.write_part(job_id, 0)
    assert member_count(admin.id) == 1
    assert job(stack, admin, job_id)["summary"]["created"] == 0


def test_the_processes_of_a_worker_share_one_import(stack: Stack):
    admin = stack.create_account(plan="base", seats=1)
    body, _ = people_csv(60_000)
    worker = stack.start_worker()
    try:
        answer = upload(stack, admin, body, invite="false")
        done = finished_job(stack, admin, answer.json["job"]["id"], timeout=300)
    finally:
        worker.stop()
        stack.worker = None
    assert done["status"] == "succeeded", done
    assert done["summary"]["created"] == 60_000
    assert member_count(admin.id) == 60_001
    with session_scope() as session:
        writers = session.scalars(select(ImportPart.written_by).distinct()
                                  .where(ImportPart.job_id == done["id"])).all()
        parts = session.scalar(select(func.count()).select_from(ImportPart)
                               .where(ImportPart.job_id == done["id"],
                                      ImportPart.written_at.is_not(None)))
    assert parts == 12
    assert len(writers) >= 2, writers
