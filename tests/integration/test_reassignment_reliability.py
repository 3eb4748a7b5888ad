"""A reassignment survives a killed worker, fails cleanly when its target goes, and leaves nothing
pointing at a removed member, over PostgreSQL, Redis and real Celery workers."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from provisioning.access.auth import authenticate
from provisioning.core.db import session_scope
from provisioning.members import lifecycle
from provisioning.members.acting import Acting
from provisioning.members.models import Membership
from provisioning.members.targets import TargetRequest
from tests.conftest import AdminAccount, Stack
from tests.support.imports import finished_job, job
from tests.support.members import active_member
from tests.support.processes import wait_until
from tests.support.records import add_members, give_records, owned, pointing_at, records_in

CHUNK = 2000


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(reassign_chunk_rows=str(CHUNK), job_lease_seconds="3",
                      job_sweep_seconds="1", job_slice_seconds="2")


def users(admin: AdminAccount) -> str:
    return f"/v1/accounts/{admin.id}/users"


def test_a_worker_killed_mid_reassignment_resumes_and_every_count_adds_up(stack: Stack):
    admin = stack.create_account(seats=20)
    source, target, *others = add_members(admin.id, 12)
    give_records(admin.id, source, 50_000)
    for other in others:
        give_records(admin.id, other, 1_000)
    give_records(admin.id, target, 10)
    before = records_in(admin.id)

    answer = stack.api.simulate_post(f"{users(admin)}/{source}/disable", headers=admin.headers,
                                     json={"reassign_to": target})
    assert answer.status_code == 202, answer.json
    job_id = answer.json["job"]["id"]
    wait_until(lambda: job(stack, admin, job_id)["done"] >= 10 * CHUNK, timeout=60,
               interval=0.02, message="the reassignment to be under way")
    assert stack.worker is not None
    stack.worker.kill()
    killed = job(stack, admin, job_id)
    assert killed["status"] == "running" and killed["done"] < 200_000, killed
    assert killed["done"] % CHUNK == 0  # whole chunks only: none was half-moved
    assert sum(owned(source).values()) == 200_000 - killed["done"]

    stack.start_worker()
    done = finished_job(stack, admin, job_id, timeout=90)
    assert done["status"] == "succeeded", done
    assert done["done"] == done["total"] == 200_000
    assert done["summary"] == {"leads": 50_000, "contacts": 50_000, "customers": 50_000,
                               "tasks": 50_000}
    assert pointing_at(source) == 0
    assert owned(target) == {kind: 50_010 for kind in owned(target)}
    for other in others:
        assert owned(other) == {kind: 1_000 for kind in owned(other)}
    assert records_in(admin.id) == before


def test_a_target_disabled_mid_job_fails_it_cleanly_with_whole_chunks_moved(stack: Stack):
    admin = stack.create_account(seats=20)
    source, sales, support = add_members(admin.id, 3)
    give_records(admin.id, source, 3 * CHUNK + 500)
    per_kind = 3 * CHUNK + 500
    answer = stack.api.simulate_post(
        f"{users(admin)}/{source}/disable", headers=admin.headers,
        json={"reassign_to": sales, "reassign_customers_to": support})
    assert answer.status_code == 202, answer.json
    job_id = answer.json["job"]["id"]

    with session_scope() as session:
        # Holding the support member's row, the job moves leads and contacts, then waits on
        # it for the customers; meanwhile an admin disables that member.
        session.execute(select(Membership.id).where(Membership.id == support)
                        .with_for_update())
        wait_until(lambda: job(stack, admin, job_id)["done"] >= 2 * per_kind, timeout=60,
                   message="leads and contacts moved")
        actor = authenticate(session, admin.token, admin.id)
        lifecycle.disable(session, Acting.of(session, actor, admin.id), support,
                          TargetRequest())

    failed = finished_job(stack, admin, job_id)
    assert failed["status"] == "failed", failed
    assert f"Member {support}" in failed["error"] and "disabled" in failed["error"]
    assert failed["error"].endswith(".") and "\n" not in failed["error"]
    assert failed["summary"] == {"leads": per_kind, "contacts": per_kind, "customers": 0,
                                 "tasks": 0}
    # Nothing lost: what did not move still belongs to the disabled member.
    assert owned(source) == {"leads": 0, "contacts": 0, "customers": per_kind,
                             "tasks": per_kind}
    assert owned(sales) == {"leads": per_kind, "contacts": per_kind, "customers": 0, "tasks": 0}
    assert owned(support) == {kind: 0 for kind in owned(support)}


def test_records_given_to_a_member_while_their_removal_runs_move_too(stack: Stack):
    admin = stack.create_account(seats=20)
    member, _, _ = active_member(stack, admin)
    sales, tasks_owner = add_members(admin.id, 2)
    give_records(admin.id, member, CHUNK + 10)
    answer = stack.api.simulate_delete(f"{users(admin)}/{member}", headers=admin.headers,
                                       params={"reassign_to": sales,
                                               "reassign_tasks_to": tasks_owner})
    assert answer.status_code == 202, answer.json
    job_id = answer.json["job"]["id"]
    with session_scope() as session:
        session.execute(select(Membership.id).where(Membership.id == tasks_owner)
                        .with_for_update())
        wait_until(lambda: job(stack, admin, job_id)["done"] >= 3 * (CHUNK + 10), timeout=60,
                   message="every kind but tasks moved")
        # Someone gives the member more leads (a kind already moved) and tasks meanwhile.
        give_records(admin.id, member, 7, ("leads", "tasks"))
    done = finished_job(stack, admin, job_id)
    assert done["status"] == "succeeded", done
    assert pointing_at(member) == 0
    assert owned(sales)["leads"] == CHUNK + 17
    assert owned(tasks_owner)["tasks"] == CHUNK + 17
    assert done["done"] == done["total"] == 4 * (CHUNK + 10) + 14
    with session_scope() as session:
        assert session.get(Membership, member) is None
