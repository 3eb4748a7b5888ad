"""Task bodies: a few lines each, calling one service in provisioning."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.signals import worker_process_shutdown, worker_ready

from provisioning.billing import announcements, due, webhooks
from provisioning.billing import changes as billing
from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.models import utcnow
from provisioning.imports import kind, options, planning
from provisioning.jobs import runs
from provisioning.jobs.kinds import KINDS
from provisioning.mail import delivery, outbox
from provisioning.mail.sender import SmtpSender
from provisioning.members import bulk, directory, reassignment, seasons
from provisioning.notifications import adapters, digest, push, retention
from worker.celery_app import app

log = logging.getLogger(__name__)

_senders: list[SmtpSender] = []


def smtp_senders() -> list[SmtpSender]:
    """This process's SMTP connections, each opened on first use and reused by every send task."""
    if not _senders:
        config = settings()
        tls = config.smtp.tls_context()  # one for all: it holds the loaded CAs
        _senders.extend(SmtpSender(config.smtp, tls_context=tls)
                        for _ in range(max(config.smtp_connections, 1)))
    return _senders


@worker_process_shutdown.connect
def _close_smtp(**_: Any) -> None:
    for sender in _senders:
        sender.close()


@worker_ready.connect
def _recover_on_start(**_: Any) -> None:
    """A worker that starts picks up what a dead one left behind."""
    for sweep in (outbox.sweep, runs.sweep):
        try:
            sweep()
        except Exception:
            log.exception("start-up sweep failed; beat will retry")


@app.task(name=outbox.SEND_TASK, bind=True, acks_late=True)
def send_emails(self: Task, ids: list[int]) -> dict[str, int]:
    report = delivery.deliver(ids, smtp_senders())
    if report.deferred:
        # Stay under the broker's visibility timeout; the sweeper covers longer waits.
        countdown = min(report.retry_in, settings().broker_visibility_timeout / 2)
        self.apply_async(args=[report.deferred], countdown=countdown)
    return {"sent": len(report.sent), "failed": len(report.failed),
            "deferred": len(report.deferred)}


@app.task(name="provisioning.sweep_outbox")
def sweep_outbox() -> int:
    return outbox.sweep()


@app.task(name=runs.JOB_TASK, acks_late=True)
def run_job(job_id: int) -> None:
    runs.run_job(job_id)


@app.task(name=options.PART_TASK, acks_late=True)
def write_import_part(job_id: int, part: int) -> None:
    planning.write_part(job_id, part)


@app.task(name="provisioning.sweep_jobs")
def sweep_jobs() -> int:
    return runs.sweep()


@app.task(name="provisioning.purge_outbox")
def purge_outbox() -> int:
    return outbox.purge() + webhooks.purge()


@app.task(name=announcements.ANNOUNCE_TASK, acks_late=True)
def announce_billing_events(_wake: list[int] | None = None) -> int:
    # A wake-up (core.dispatch.Debounced) carries an empty list: there is nothing to pass.
    return announcements.announce_billing_events().events


@app.task(name=announcements.WEBHOOK_TASK, bind=True, acks_late=True)
def send_billing_webhooks(self: Task, _wake: list[int] | None = None) -> dict[str, int]:
    report = webhooks.deliver_webhooks()
    if report.next_due is not None:
        # The retry comes back on its own; beat's sweep covers one longer than the broker keeps.
        wait = max((report.next_due - utcnow()).total_seconds(), 0.0)
        if wait < settings().broker_visibility_timeout / 2:
            self.apply_async(countdown=wait)
    return {"delivered": len(report.delivered), "failed": len(report.failed),
            "deferred": len(report.deferred)}


@app.task(name=push.PUSH_TASK, acks_late=True)
def send_pushes(_wake: list[int] | None = None) -> dict[str, int]:
    # A wake-up (core.dispatch.Debounced) carries an empty list: the task claims what is due.
    report = push.deliver_pushes(adapters.configured_adapters())
    return {"sent": len(report.sent), "failed": len(report.failed),
            "deferred": len(report.deferred)}


@app.task(name=digest.DIGEST_TASK)
def send_digests() -> int:
    return digest.send_digests().digests


@app.task(name="provisioning.purge_notifications")
def purge_notifications() -> dict[str, int]:
    return retention.purge()


@app.task(name=seasons.SEASON_TASK)
def apply_seasons() -> dict[str, int]:
    with session_scope() as session:
        run = seasons.apply_seasons(session)
    return {"activated": run.activated, "deactivated": run.deactivated}


@app.task(name="provisioning.purge_jobs")
def purge_jobs() -> int:
    with session_scope() as session:
        return runs.purge(session)


@app.task(name=billing.ALL_TASK)
def recalculate_billing(account_id: int | None = None) -> dict[str, int]:
    return billing.recalculate_billing(account_id)


@app.task(name=due.DUE_TASK)
def recalculate_due_billing(_wake: list[int] | None = None) -> dict[str, int]:
    return billing.recalculate_due_billing()


# importing the modules registers their job kinds
assert {kind.IMPORT.name, reassignment.REASSIGNMENT.name, bulk.BULK.name,
        billing.RECALCULATION.name} <= set(KINDS)
# importing the module keeps the emails the member list reads from the outbox's purge
assert directory.open_invitations_last_emails in outbox.STILL_READ
