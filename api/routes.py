"""The whole URL map in one table: what ``create_app`` adds and what /openapi.json describes.

A route's entry names its resource and, for each responder, what it takes and answers; who
may call it is the resource's ``auth`` (the authentication middleware reads the same word).
"""

from __future__ import annotations

from api.openapi import (
    MEDIA_JSON,
    Content,
    Operation,
    Route,
    document,
    json_body,
    route,
)
from api.resources import accounts, auth, invitations, jobs, members, pages, system
from api.schemas import (
    ACCOUNT_JOB_FILTERS,
    AUDIT_FILTERS,
    IMPORT_OPTIONS,
    JOB_FILTERS,
    MEMBER_FILTERS,
    PAGE,
    REASSIGN_TARGETS,
    RESULT_FILTERS,
    ref,
)
from provisioning.imports.formats import MEDIA_CSV, MEDIA_NDJSON

CSV_REPORT = Content(MEDIA_CSV, {"type": "string"})
HTML_PAGE = Content("text/html", {"type": "string"})
IMPORT_FILE = (
    Content(MEDIA_CSV, {"type": "string", "description": "A header row, then one row a member"}),
    Content(MEDIA_JSON, {"type": "array", "items": ref("ImportRow")}),
    Content(MEDIA_NDJSON, {"type": "string", "description": "One ImportRow object a line"}),
    Content("multipart/form-data", ref("ImportUpload")),
)
QUEUED_JOB = {202: json_body("QueuedJob")}
# A lifecycle action: the member, or the job that moves their records (with the member)
MEMBER_OR_JOB = {200: json_body("Member"), 202: json_body("QueuedMemberJob")}


def routes() -> list[Route]:
    """Every route the API serves, each with the operations its responders carry out."""
    account = "/v1/accounts/{account_id:int}"
    member = account + "/users/{member_id:int}"
    job = "/v1/jobs/{job_id:int}"
    table: list[Route] = [
        route("/healthz", system.Health(),
              get=Operation("Liveness", {200: json_body("Health")})),
        route("/readyz", system.Ready(),
              get=Operation("Database and broker reachable",
                            {200: json_body("Readiness"), 503: json_body("Readiness")})),
        route("/openapi.json", system.OpenApi(lambda: document(table)),
              get=Operation("This document", {200: json_body("OpenApiDocument")})),
        route("/v1/auth/login", auth.Login(),
              post=Operation("Log in", {200: json_body("Session")},
                             request=json_body("Login"))),
        route("/v1/auth/logout", auth.Logout(),
              post=Operation("Log out", {204: None})),
        route("/v1/me", auth.Me(),
              get=Operation("The caller", {200: json_body("Me")})),
        route(account + "/api-keys", auth.ApiKeys(),
              get=Operation("List API keys", {200: json_body("ApiKeyPage")}),
              post=Operation("Create an API key", {201: json_body("IssuedApiKey")},
                             request=json_body("NewApiKey"))),
        route(account + "/api-keys/{key_id:int}", auth.ApiKey(),
              delete=Operation("Revoke an API key", {204: None})),
        route(account + "/users", members.Members(),
              get=Operation("List members", {200: json_body("MemberPage")},
                            query=MEMBER_FILTERS | PAGE),
              post=Operation("Invite a member", {201: json_body("Member")},
                             request=json_body("Invite"))),
        route(account + "/users/bulk", members.MembersBulk(),
              post=Operation("One action on many members, as a job", QUEUED_JOB,
                             request=json_body("BulkAction"))),
        route(member, members.Member(),
              get=Operation("One member", {200: json_body("Member")}),
              patch=Operation("Change a member's role, group, name or note",
                              {200: json_body("Member")}, request=json_body("MemberChanges")),
              delete=Operation("Remove a member, moving their records first",
                               MEMBER_OR_JOB, query=REASSIGN_TARGETS)),
        route(member + "/disable", members.MemberDisable(),
              post=Operation("Disable a member (and move their records)", MEMBER_OR_JOB,
                             request=json_body("Reassign"), request_required=False)),
        route(member + "/activate", members.MemberActivate(),
              post=Operation("Activate a disabled member", MEMBER_OR_JOB)),
        route(member + "/records", members.MemberRecords(),
              get=Operation("What the member owns: the reassignment's preview",
                            {200: json_body("RecordCounts")})),
        route(member + "/invitation", members.MemberInvitation(),
              delete=Operation("Revoke the invitation", {200: json_body("Member")})),
        route(member + "/invitation/resend", members.MemberInvitationResend(),
              post=Operation("Resend the invitation", {200: json_body("Member")})),
        route(account + "/roles", accounts.Roles(),
              get=Operation("Roles", {200: json_body("RolePage")}),
              post=Operation("Create a custom role", {201: json_body("Role")},
                             request=json_body("NewRole"))),
        route(account + "/permissions", accounts.Permissions(),
              get=Operation("Every permission a role can hold",
                            {200: json_body("PermissionPage")})),
        route(account + "/groups", accounts.Groups(),
              get=Operation("Groups", {200: json_body("GroupPage")})),
        route(account + "/audit", accounts.Audit(),
              get=Operation("Audit log, newest first", {200: json_body("AuditPage")},
                            query=AUDIT_FILTERS | PAGE)),
        route(account + "/jobs", jobs.AccountJobs(),
              get=Operation("The account's jobs, newest first", {200: json_body("JobPage")},
                            query=ACCOUNT_JOB_FILTERS | PAGE)),
        route(account + "/imports", jobs.Imports(),
              get=Operation("List imports, newest first", {200: json_body("JobPage")},
                            query=JOB_FILTERS | PAGE),
              post=Operation("Import people from a CSV, JSON or NDJSON file", QUEUED_JOB,
                             request=IMPORT_FILE, query=IMPORT_OPTIONS)),
        route(account + "/imports/{job_id:int}", jobs.Import(),
              get=Operation("One import's status and progress", {200: json_body("Job")})),
        route(account + "/imports/{job_id:int}/rows.csv", jobs.ImportRows(),
              get=Operation("What an import did, or would do, with each row",
                            {200: CSV_REPORT})),
        route(account + "/imports/{job_id:int}/commit", jobs.ImportCommit(),
              post=Operation("Carry out a dry run's import", QUEUED_JOB)),
        route(job, jobs.Job(),
              get=Operation("A job's status and progress", {200: json_body("Job")})),
        route(job + "/errors.csv", jobs.JobErrors(),
              get=Operation("The rows a job could not take, and why", {200: CSV_REPORT})),
        route(job + "/results", jobs.JobResults(),
              get=Operation("What a bulk action did with each member",
                            {200: json_body("JobResultPage")}, query=RESULT_FILTERS | PAGE)),
        route(job + "/cancel", jobs.JobCancel(),
              post=Operation("Stop a job at its next chunk", {200: json_body("Job")})),
        route("/v1/invitations/{token}", invitations.InvitationPreview(),
              get=Operation("Preview an invitation", {200: json_body("InvitationPreview")})),
        route("/v1/invitations/{token}/accept", invitations.InvitationAccept(),
              post=Operation("Accept an invitation", {200: json_body("Member")},
                             request=json_body("Accept"), request_required=False)),
        route("/v1/invitations/{token}/renew", invitations.InvitationRenew(),
              post=Operation("Ask for a fresh link", {202: json_body("RenewalSent")})),
        route("/invitations/{token}", pages.InvitationPage(),
              get=Operation("The invitee's landing page", {200: HTML_PAGE, 404: HTML_PAGE})),
    ]
    return table
