"""Imports survive a killed worker, share the work between workers, and take turns fairly."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from provisioning.core import dispatch
from provisioning.core.db import session_scope
from provisioning.jobs import runs
from provisioning.members.models import Identity, Invitation, Membership
from tests.conftest import Stack
from tests.support.imports import (
    error_keys,
    finished_job,
    job,
    member_count,
    people_csv,
    upload,
)
from tests.support.processes import wait_until
from tests.support.servers import start_worker
from tests.support.stories import INVITATION_TEMPLATES, outbox_counts


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(import_chunk_rows="2000", job_lease_seconds="3", job_sweep_seconds="1",
                      job_slice_seconds="2")


def untidy_csv(count: int) -> tuple[bytes, int, int]:
    """``count`` rows where every 1000th email is invalid and every 997th repeats an earlier
    one; returns the file, how many rows are bad and how many are duplicates."""
    t = uuid.uuid4().hex[:8]
    lines = ["name,email,role,group,language"]
    invalid = duplicates = 0
    for i in range(count):
        if i % 1000 == 999:
            email, invalid = f"broken {i}", invalid + 1
        elif i % 997 == 996:
            earlier = i // 2
            while earlier % 1000 == 999 or earlier % 997 == 996:  # a row that was kept
                earlier -= 1
            email, duplicates = f"p{earlier}.{t}@example.com".upper(), duplicates + 1
        else:
            email = f"p{i}.{t}@example.com"
        lines.append(f"Person {i},{email},member,Sales,{('en', 'es', 'ru')[i % 3]}")
    return ("\n".join(lines) + "\n").encode(), invalid, duplicates


def test_a_worker_killed_mid_import_resumes_with_one_member_and_one_email_each(stack: Stack):
    admin = stack.create_account(plan="base", seats=1)
    rows = 50_000
    body, emails = people_csv(rows)
    answer = upload(stack, admin, body)
    assert answer.status_code == 202, answer.json
    job_id = answer.json["job"]["id"]
    wait_until(lambda: job(stack, admin, job_id)["done"] >= 8000, timeout=120, interval=0.1,
               message="the import to be well under way")
    assert stack.worker is not None
    stack.worker.kill()
    killed = job(stack, admin, job_id)
    assert killed["status"] == "running" and killed["done"] < rows, killed

    stack.start_worker()
    done = finished_job(stack, admin, job_id, timeout=300)
    assert done["status"] == "succeeded", done
    assert done["summary"]["created"] == rows and done["summary"]["failed"] == 0
    assert member_count(admin.id) == rows + 1
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Invitation)
                              .where(Invitation.account_id == admin.id)) == rows
        assert session.scalar(select(func.count(func.distinct(Identity.email)))
                              .join(Membership, Membership.identity_id == Identity.id)
                              .where(Membership.account_id == admin.id)) == rows + 1
    # the import buys seats too: its admin is told once, beside the invitations
    wait_until(lambda: outbox_counts(admin.id, INVITATION_TEMPLATES).get("sent", 0) == rows,
               timeout=600, interval=1, message=f"every invitation sent: {outbox_counts(admin.id)}")
    deliveries = stack.sink.deliveries()
    got = [deliveries.get(email, (0, 0))[0] for email in emails]
    assert got.count(1) == rows, (f"{got.count(0)} addresses got nothing, "
                                  f"{sum(1 for n in got if n > 1)} got two different emails")


def test_two_workers_on_one_import_give_the_same_result_as_one(stack: Stack):
    rows = 100_000
    results = []
    second = None
    try:
        for workers in (1, 2):
            if workers == 2:
                second = start_worker(stack.log_dir, stack.env, name="second-worker",
                                      beat=False)
            admin = stack.create_account(plan="base", seats=1)
            body, invalid, duplicates = untidy_csv(rows)
            answer = upload(stack, admin, body, invite="false")
            job_id = answer.json["job"]["id"]
            if workers == 2:  # both workers at the same job at the same moment
                for _ in range(3):
                    dispatch.send_task(runs.JOB_TASK, job_id)
            done = finished_job(stack, admin, job_id, timeout=300)
            assert done["status"] == "succeeded", done
            results.append((done["summary"], done["total"], done["done"],
                            member_count(admin.id), sorted(error_keys(stack, admin, job_id))))
    finally:
        if second is not None:
            second.stop()
    one, two = results
    assert one == two
    summary, total, processed, members, errors = one
    assert total == processed == rows
    assert summary["failed"] == invalid + duplicates == len(errors)
    assert members == 1 + rows - invalid - duplicates


def test_a_small_import_is_not_stuck_behind_big_ones(stack: Stack):
    big = []
    for _ in range(2):  # one for each of the worker's two processes
        admin = stack.create_account(plan="base", seats=1)
        body, _ = people_csv(60_000)
        answer = upload(stack, admin, body, invite="false")
        big.append((admin, answer.json["job"]["id"]))
    wait_until(lambda: all(job(stack, admin, job_id)["status"] == "running"
                           for admin, job_id in big), timeout=60, interval=0.1,
               message="both big imports to run")
    small_admin = stack.create_account()
    body, _ = people_csv(10)
    answer = upload(stack, small_admin, body, invite="false")
    small = finished_job(stack, small_admin, answer.json["job"]["id"], timeout=120)
    assert small["status"] == "succeeded"
    assert all(job(stack, admin, job_id)["status"] == "running" for admin, job_id in big), \
        "the small import waited for a big one to finish"
    for admin, job_id in big:
        assert finished_job(stack, admin, job_id, timeout=300)["status"] == "succeeded"
