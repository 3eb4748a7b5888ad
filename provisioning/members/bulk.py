"""One action on many selected members, as a job (SPEC §10): disable, activate, remove,
set_role or set_group on up to ``bulk_max_members`` members.

Each member goes through exactly the function the single action calls, inside a savepoint
of its chunk's transaction: a refusal (the last admin, a missing target, a seat the plan
cannot give …) is that member's result and never stops the rest. A chunk's members and
their results commit together, so a worker killed mid-chunk redoes the chunk, never half
of it. Importing this module registers the kind with ``jobs``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import refuse_beyond_grant
from provisioning.accounts.models import Group, Role
from provisioning.core import audit
from provisioning.core.bulk import insert_rows
from provisioning.core.config import settings
from provisioning.core.db import after_commit, is_conflict, session_scope
from provisioning.core.errors import FieldError, InvalidInput, ProvisioningError
from provisioning.core.models import utcnow
from provisioning.core.validation import Form
from provisioning.jobs.kinds import JobKind, register
from provisioning.jobs.models import Job, JobResult, JobStatus
from provisioning.jobs.results import FAILED, PENDING, SUCCEEDED
from provisioning.jobs.runs import enqueue, job_view
from provisioning.jobs.states import SUCCEEDED as JOB_SUCCEEDED
from provisioning.jobs.states import move
from provisioning.members import rules
from provisioning.members.acting import Acting
from provisioning.members.changes import UNSET, MemberChanges, update
from provisioning.members.directory import catalog
from provisioning.members.lifecycle import Done, activate, disable, remove
from provisioning.members.targets import TARGET_FIELDS, TargetRequest, check_targets

KIND = "bulk"
ACTIONS = ("disable", "activate", "remove", "set_role", "set_group")


@dataclass(frozen=True)
class BulkRequest:
    """A bulk action as the API receives it: the action, the members, and what it needs."""

    action: str
    user_ids: list[int]
    targets: TargetRequest
    role: str | None
    group: object  # a name, None (no group) or UNSET

    @classmethod
    def parse(cls, body: Any, most: int) -> BulkRequest:
        form = Form(body)
        action = form.text("action", required=True, max_length=32)
        if action is not None and action not in ACTIONS:
            form.errors.append(FieldError("action", f"Use one of: {', '.join(ACTIONS)}.",
                                          "invalid_action"))
        user_ids = _user_ids(form, most)
        role = form.text("role", max_length=rules.MAX_ROLE_OR_GROUP_NAME)
        group: object = UNSET
        if action == "set_role" and role is None:
            form.errors.append(FieldError("role", "Name the role to give.", "required"))
        if action == "set_group":
            if "group" not in form.body:
                form.errors.append(FieldError("group", "Name the group (null: no group).",
                                              "required"))
            else:
                group = form.text("group", max_length=rules.MAX_ROLE_OR_GROUP_NAME)
        targets = TargetRequest()
        if action in ("disable", "remove"):
            targets = form.ruled(TargetRequest.parse, {
                name: form.body.get(name) for name in TARGET_FIELDS}) or TargetRequest()
        form.finish()
        assert action is not None
        return cls(action, user_ids, targets, role, group)


def _user_ids(form: Form, most: int) -> list[int]:
    """The members named, each once, in the order given."""
    raw = form.body.get("user_ids")
    if not isinstance(raw, list) or not raw:
        form.errors.append(FieldError("user_ids", "List the ids of the members to act on.",
                                      "required"))
        return []
    if len(raw) > most:
        form.errors.append(FieldError("user_ids", f"At most {most:,} members at once.",
                                      "too_many"))
        return []
    if any(isinstance(value, bool) or not isinstance(value, int) or value < 1
           for value in raw):
        form.errors.append(FieldError("user_ids", "Each must be a member's id (a number).",
                                      "invalid_type"))
        return []
    return list(dict.fromkeys(raw))


def start_bulk_action(session: Session, actor: Actor, account_id: int, body: Any
                      ) -> dict[str, Any]:
    """``POST /v1/accounts/{a}/users/bulk``: checks what holds for every member now (the
    role, the group, the targets), then queues the job; answers with it at once."""
    acting = Acting.of(session, actor, account_id)
    request = BulkRequest.parse(body, settings().bulk_max_members)
    _check_once(session, acting, request)
    job = Job(account_id=account_id, kind=KIND, status=JobStatus.QUEUED.value,
              total=len(request.user_ids), done=0, summary={SUCCEEDED: 0, FAILED: 0},
              checkpoint={}, created_by_id=acting.identity_id,
              params={"action": request.action, "role": request.role,
                      "group": None if request.group is UNSET else request.group,
                      "sets_group": request.group is not UNSET,
                      "targets": request.targets.as_params(), "actor_label": acting.label})
    session.add(job)
    session.flush()
    insert_rows(session.connection(), JobResult, ("job_id", "position", "item_id", "status"),
                ((job.id, position, user_id, PENDING)
                 for position, user_id in enumerate(request.user_ids)))
    job_id = job.id
    after_commit(session, lambda: enqueue(job_id))
    return job_view(session, job)


def _check_once(session: Session, acting: Acting, request: BulkRequest) -> None:
    """What does not depend on the member, refused before any job is queued."""
    connection = session.connection()
    if request.action == "set_role" and request.role is not None:
        role_id, _ = rules.named(request.role, catalog(connection, Role, acting.account.id),
                                 "role")
        if not acting.standing.is_admin:
            refuse_beyond_grant(acting.standing, session.scalar(
                select(Role.permissions).where(Role.id == role_id)))
    if (request.action == "set_group" and isinstance(request.group, str)
            and rules.name_key(request.group) != rules.name_key(rules.FREE_USERS_GROUP)):
        rules.named(request.group, catalog(connection, Group, acting.account.id), "group")
    if request.targets:
        check_targets(session, acting.account.id, None, request.targets)
        chosen = set(request.user_ids)
        leaving = [FieldError(name, f"Member {target} is among the members this action "
                                    "takes out; choose someone who stays.",
                              "target_in_selection")
                   for name, target in request.targets.given.items() if target in chosen]
        if leaving:
            raise InvalidInput(leaving)


Action = Callable[[Session, Acting, int], Any]


def _action(params: dict[str, Any]) -> Action:
    """The single action's own function, with what this bulk action gives it."""
    name = params["action"]
    targets = TargetRequest(dict(params.get("targets") or {}))
    if name == "disable":
        return lambda session, acting, member_id: disable(session, acting, member_id, targets)
    if name == "activate":
        return activate
    if name == "remove":
        return lambda session, acting, member_id: remove(session, acting, member_id, targets)
    if name == "set_role":
        changes = MemberChanges(role=params["role"])
    else:
        changes = MemberChanges(group=params.get("group") if params.get("sets_group")
                                else UNSET)
    return lambda session, acting, member_id: update(session, acting, member_id, changes)


def run_bulk(job_id: int, deadline: float) -> bool:
    """One turn: chunks of members in the order given, until none is pending or the slice
    is over."""
    size = settings().bulk_chunk_members
    while True:
        if _handle_chunk(job_id, size):
            return True
        if time.monotonic() > deadline:
            return False


def _handle_chunk(job_id: int, size: int) -> bool:
    """The next members and their results in one transaction; True when the job is over."""
    with session_scope() as session:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None or job.status != JobStatus.RUNNING.value:
            return True
        acting = Acting.for_job(session, job)
        pending = list(session.scalars(
            select(JobResult).where(JobResult.job_id == job_id, JobResult.status == PENDING)
            .order_by(JobResult.position).limit(size)))
        if not pending:
            _finish(session, job)
            return True
        act = _action(job.params or {})
        for result in pending:
            _handle_member(session, acting, act, result)
        summary = {SUCCEEDED: 0, FAILED: 0, **(job.summary or {})}
        for result in pending:
            summary[result.status] += 1
        job.summary = summary
        job.done = (job.done or 0) + len(pending)
        job.heartbeat_at = utcnow()
    return False


def _handle_member(session: Session, acting: Acting, act: Action, result: JobResult) -> None:
    """One member, exactly as the single action would: its refusal is its result."""
    try:
        with session.begin_nested():
            done = act(session, acting, result.item_id)
    except ProvisioningError as refused:
        result.status, result.code, result.message = FAILED, refused.code, refused.detail
        return
    except IntegrityError as error:  # a racing change to the same member
        if not is_conflict(error):
            raise
        result.status, result.code = FAILED, "conflict"
        result.message = "The member changed while this ran; try again."
        return
    result.status = SUCCEEDED
    if isinstance(done, Done) and done.job_id is not None:
        result.message = f"Job {done.job_id} moves the member's records."


def _finish(session: Session, job: Job) -> None:
    move(job, JOB_SUCCEEDED)
    params = job.params or {}
    audit.record(session, account_id=job.account_id, actor_id=job.created_by_id,
                 actor_label=str(params.get("actor_label", "")),
                 action=f"members.bulk_{params.get('action')}", target_type="job",
                 target_id=job.id, after={"action": params.get("action"),
                                          "summary": job.summary, "total": job.total})


def bulk_view(job: Job) -> dict[str, Any]:
    """What a bulk action adds to the job: the action and where each member's result is."""
    return {"action": (job.params or {}).get("action"),
            "results_url": f"/v1/jobs/{job.id}/results"}


BULK = register(JobKind(name=KIND, run=run_bulk, view=bulk_view))
