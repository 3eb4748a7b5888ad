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
from api.resources import (
    accounts,
    auth,
    billing,
    crm,
    invitations,
    jobs,
    members,
    notifications,
    pages,
    profile,
    system,
)
from api.schemas import (
    ACCOUNT_JOB_FILTERS,
    AUDIT_FILTERS,
    IMPORT_OPTIONS,
    INBOX_FILTERS,
    JOB_FILTERS,
    MEMBER_FILTERS,
    PAGE,
    REASSIGN_TARGETS,
    RECORD_FILTERS,
    RESULT_FILTERS,
    STRING,
    ref,
)
from provisioning.crm.records import KINDS
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
PHOTO_UPLOAD = tuple(Content(media, {"type": "string", "contentMediaType": media})
                     for media in ("image/png", "image/jpeg", "image/webp",
                                   "application/octet-stream"))
PHOTO = Content("image/jpeg", {"type": "string", "contentMediaType": "image/jpeg"})


def record_routes(account: str) -> list[Route]:
    """Leads, contacts, customers and tasks alike; notes and messages on a lead."""
    table: list[Route] = []
    for kind in KINDS.values():
        name, plural = kind.noun.capitalize(), kind.plural
        table += [
            route(f"{account}/{plural}", crm.Records(plural),
                  get=Operation(f"List {plural}, oldest first", {200: json_body(f"{name}Page")},
                                query=RECORD_FILTERS | PAGE),
                  post=Operation(f"Create a {kind.noun}", {201: json_body(name)},
                                 request=json_body(f"New{name}"))),
            route(f"{account}/{plural}/{{record_id:int}}", crm.Record(plural),
                  get=Operation(f"One {kind.noun}", {200: json_body(name)}),
                  patch=Operation(f"Change a {kind.noun}", {200: json_body(name)},
                                  request=json_body(f"{name}Changes")),
                  delete=Operation(f"Delete a {kind.noun}", {204: None})),
        ]
    lead = account + "/leads/{record_id:int}"
    table += [
        route(lead + "/notes", crm.LeadEntries("notes"),
              get=Operation("A lead's notes, oldest first", {200: json_body("NotePage")},
                            query=PAGE),
              post=Operation("Write a note on a lead", {201: json_body("Note")},
                             request=json_body("NewNote"))),
        route(lead + "/messages", crm.LeadEntries("messages"),
              get=Operation("A lead's messages, oldest first", {200: json_body("MessagePage")},
                            query=PAGE),
              post=Operation("Write a message in a lead's chat", {201: json_body("Message")},
                             request=json_body("NewMessage"))),
    ]
    return table


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
        route("/v1/me", profile.Me(),
              get=Operation("The caller's profile", {200: json_body("Me")}),
              patch=Operation("Change the caller's profile", {200: json_body("Me")},
                              request=json_body("ProfileChange"))),
        route("/v1/me/photo", profile.MyPhoto(),
              put=Operation("Set the caller's photo (PNG, JPEG or WebP, at most 2 MB)",
                            {200: json_body("PhotoSet")}, request=PHOTO_UPLOAD),
              delete=Operation("Remove the caller's photo", {204: None})),
        route("/v1/identities/{identity_id:int}/photo", profile.IdentityPhoto(),
              get=Operation("A photo, for its person and whoever shares an account with them",
                            {200: PHOTO, 304: None}, query={"size": {"enum": [512, 128]},
                                                            "v": STRING})),
        route("/v1/me/password", profile.MyPassword(),
              post=Operation("Change the caller's password; their other sessions end",
                             {204: None}, request=json_body("PasswordChange"))),
        route("/v1/me/email", profile.MyEmail(),
              post=Operation("Ask to change the login email (a link goes to the new address)",
                             {202: json_body("EmailChangeSent")},
                             request=json_body("EmailChange"))),
        route("/v1/me/email/confirm", profile.MyEmailConfirmation(),
              post=Operation("Confirm a change of login email with the link's token",
                             {200: json_body("Me")}, request=json_body("EmailChangeConfirm"))),
        route("/v1/me/2fa/setup", profile.TwoFactorSetup(),
              post=Operation("Start two-factor set-up: a secret for an authenticator",
                             {200: json_body("TwoFactorSetup")})),
        route("/v1/me/2fa/enable", profile.TwoFactorEnable(),
              post=Operation("Turn two-factor sign-in on with a code",
                             {200: json_body("RecoveryCodes")},
                             request=json_body("TwoFactorCode"))),
        route("/v1/me/2fa/disable", profile.TwoFactorDisable(),
              post=Operation("Turn two-factor sign-in off with a code or a recovery code",
                             {204: None}, request=json_body("TwoFactorCode"))),
        route("/v1/me/notifications", notifications.NotificationSettings(),
              get=Operation("The caller's notification settings",
                            {200: json_body("NotificationSettings")}),
              put=Operation("Change the caller's notification settings (what the body leaves "
                            "out stays)", {200: json_body("NotificationSettings")},
                            request=json_body("NotificationSettingsChange"))),
        route("/v1/me/inbox", notifications.Inbox(),
              get=Operation("The caller's in-app notifications, newest first",
                            {200: json_body("InboxPage")}, query=INBOX_FILTERS | PAGE)),
        route("/v1/me/inbox/read", notifications.InboxRead(),
              post=Operation("Mark some of the caller's notifications read",
                             {200: json_body("InboxMarked")}, request=json_body("InboxIds"))),
        route("/v1/me/inbox/{notification_id:int}/read", notifications.InboxEntryRead(),
              post=Operation("Mark one notification read", {200: json_body("InboxEntry")})),
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
        route(account + "/billing", billing.Billing(),
              get=Operation("The plan, its period and the seats (R7)",
                            {200: json_body("Billing")}),
              patch=Operation("Buy or lower seats, change the plan (R8)",
                              {200: json_body("Billing")}, request=json_body("BillingChange"))),
        route(account + "/billing/events", billing.BillingEvents(),
              get=Operation("Billing events, newest first", {200: json_body("BillingEventPage")},
                            query=PAGE)),
        route(account + "/billing/seats", billing.BillingSeats(),
              get=Operation("Whether each member takes a seat, and why",
                            {200: json_body("SeatHolderPage")}, query=PAGE)),
        route(account + "/billing/preview", billing.BillingPreview(),
              get=Operation("What more seat-taking members would cost now",
                            {200: json_body("BillingPreview")},
                            query={"add": {"type": "integer", "minimum": 1}})),
        route(account + "/billing/recalculate", billing.BillingRecalculation(),
              post=Operation("Recalculate the account's billing now, as a job", QUEUED_JOB)),
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
        *record_routes(account),
    ]
    return table
