"""Who acts on members, in which account: what every lifecycle rule needs of its caller,
whether a request (its bearer token) or a job (the admin who started it) acts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import (
    AdministeredAccount,
    Permission,
    Standing,
    require,
    standing_in,
    standing_of,
)
from provisioning.jobs.models import Job
from provisioning.jobs.runs import JobFailed
from provisioning.members.models import Identity


@dataclass(frozen=True)
class Acting:
    """An active member holding ``users.manage`` (R1), acting in ``account``."""

    account: AdministeredAccount
    standing: Standing
    identity_id: int
    label: str  # how the audit log names them
    name: str  # how emails name them

    @classmethod
    def of(cls, session: Session, actor: Actor, account_id: int) -> Acting:
        """The caller of a request, if the policy lets them manage users here."""
        account = require(session, actor, account_id, Permission.USERS_MANAGE)
        return cls(account, standing_of(session, actor, account_id), actor.identity_id,
                   actor.label, actor.name or actor.email)

    @classmethod
    def for_job(cls, session: Session, job: Job) -> Acting:
        """The admin who started ``job``, as they stand now: a job does no more than its
        starter may still do."""
        standing = (standing_in(session, job.created_by_id, job.account_id)
                    if job.created_by_id is not None else None)
        if (standing is None or standing.account is None
                or not standing.holds(Permission.USERS_MANAGE)):
            raise JobFailed("The administrator who started this job can no longer manage "
                            "users in this account; what was done so far stays.")
        identity = session.get_one(Identity, job.created_by_id)
        return cls(standing.account, standing, identity.id,
                   str((job.params or {}).get("actor_label") or identity.email),
                   identity.name or identity.email)
